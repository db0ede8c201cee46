//! A node's TLS material that follows its files: loaded and checked at start, loaded again
//! on request (SIGHUP) or when a file changes, the old material kept when the new is bad.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;

use crate::files::{CertInfo, TlsFiles, load_certs, load_checked};
use crate::{TlsError, provider};

/// One loaded, checked set of files.
pub struct Material {
    /// What a new server connection uses.
    pub server: Arc<rustls::ServerConfig>,
    /// The leaf certificate and key, also this node's client certificate (when it forwards
    /// a request to another agent).
    pub certified: Arc<CertifiedKey>,
    /// The CA's certificates, when `ca_file` is set.
    pub roots: Option<Arc<RootCertStore>>,
    pub info: CertInfo,
    pub loaded_at: SystemTime,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("info", &self.info)
            .field("loaded_at", &self.loaded_at)
            .finish_non_exhaustive()
    }
}

/// The identity of a file's current contents, as far as its metadata tells: a rotation
/// (rewrite, rename over, Kubernetes' symlink swap) changes at least one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Vec<Option<(SystemTime, u64, u64)>>);

impl Stamp {
    fn of(files: &TlsFiles) -> Self {
        use std::os::unix::fs::MetadataExt;
        let paths = [
            Some(&files.cert_file),
            Some(&files.key_file),
            files.ca_file.as_ref(),
        ];
        Stamp(
            paths
                .into_iter()
                .flatten()
                .map(|p| {
                    std::fs::metadata(p)
                        .ok()
                        .and_then(|m| Some((m.modified().ok()?, m.len(), m.ino())))
                })
                .collect(),
        )
    }
}

/// The current material of one node, swapped whole on a successful reload.
pub struct Reloadable {
    files: TlsFiles,
    current: RwLock<Arc<Material>>,
    /// The files' stamp when last read (successfully or not): a change means "read again".
    seen: Mutex<Stamp>,
    last_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for Reloadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloadable")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

fn load(files: &TlsFiles) -> Result<Material, TlsError> {
    if files.verify_incoming && files.ca_file.is_none() {
        return Err(TlsError::Setting(
            "tls.verify_incoming needs tls.ca_file (--tls-ca-file): the CA whose client certificates are accepted".into(),
        ));
    }
    let now = UnixTime::now();
    let ca_certs = files
        .ca_file
        .as_deref()
        .map(|p| load_certs(p).map(|c| (p, c)))
        .transpose()?;
    let checked = load_checked(
        &files.cert_file,
        &files.key_file,
        ca_certs.as_ref().map(|(p, c)| (*p, c.as_slice())),
        now,
    )?;
    let roots = match &ca_certs {
        Some((path, certs)) => Some(Arc::new(root_store(path, certs)?)),
        None => None,
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setting(format!("TLS protocol versions: {e}")))?;
    let builder = match (&roots, files.verify_incoming) {
        (Some(roots), true) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|e| TlsError::BadCertificate {
                    path: files.ca_file.clone().unwrap_or_default(),
                    detail: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut server = builder
        .with_single_cert(checked.chain, checked.key)
        .map_err(|e| TlsError::BadCertificate {
            path: files.cert_file.clone(),
            detail: e.to_string(),
        })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Material {
        server: Arc::new(server),
        certified: checked.certified,
        roots,
        info: checked.info,
        loaded_at: SystemTime::now(),
    })
}

pub(crate) fn root_store(
    path: &Path,
    certs: &[CertificateDer<'static>],
) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert.clone())
            .map_err(|e| TlsError::BadCertificate {
                path: path.to_path_buf(),
                detail: format!("not a usable CA certificate: {e}"),
            })?;
    }
    Ok(roots)
}

impl Reloadable {
    /// Load and check `files`; an error here is a configuration error (the agent does not
    /// start).
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let seen = Stamp::of(&files);
        let material = load(&files)?;
        Ok(Self {
            files,
            current: RwLock::new(Arc::new(material)),
            seen: Mutex::new(seen),
            last_error: Mutex::new(None),
        })
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The material new connections use.
    pub fn current(&self) -> Arc<Material> {
        match self.current.read() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Why the last reload failed, while the files stay as they were then.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().map(|e| e.clone()).unwrap_or(None)
    }

    /// Read the files again; on success new connections use them, on failure the old
    /// material stays and the error is kept for `last_error` (and returned).
    pub fn reload(&self) -> Result<Arc<Material>, TlsError> {
        let stamp = Stamp::of(&self.files);
        let result = load(&self.files);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = stamp;
        }
        let mut last_error = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(material) => {
                let material = Arc::new(material);
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = material.clone();
                *last_error = None;
                Ok(material)
            }
            Err(e) => {
                *last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Reload when a file changed since it was last read; `None` when none did.
    pub fn reload_if_changed(&self) -> Option<Result<Arc<Material>, TlsError>> {
        let stamp = Stamp::of(&self.files);
        let changed = self.seen.lock().map(|s| *s != stamp).unwrap_or(true);
        changed.then(|| self.reload())
    }

    /// An acceptor for one new connection, with the material current now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current().server.clone())
    }

    /// A client configuration that presents this node's certificate and trusts its CA,
    /// both as they are at each handshake (so rotation reaches the forwarding client too).
    pub fn client_config(self: &Arc<Self>) -> Result<rustls::ClientConfig, TlsError> {
        crate::client::following(self.clone())
    }
}
