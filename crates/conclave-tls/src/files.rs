//! Reading and checking the PEM files: certificates, keys and the CA, each error naming its
//! file.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::sign::CertifiedKey;

use crate::TlsError;

/// The files a node's TLS is made of (`[tls]` in the agent's configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signs client certificates (and, for clients, servers' certificates).
    pub ca_file: Option<PathBuf>,
    /// This node's certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// The private key of `cert_file`'s leaf.
    pub key_file: PathBuf,
    /// Require a client certificate signed by `ca_file` on every connection.
    pub verify_incoming: bool,
}

/// What an operator wants to know about a certificate: who it names and when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
    /// SHA-256 of the DER encoding, lower-case hex (what `openssl x509 -fingerprint
    /// -sha256` prints, without colons).
    pub sha256: String,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in the PEM file at `path`, in order; at least one.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The private key in the PEM file at `path` (PKCS#8, SEC1 or PKCS#1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        // The error never carries key material, only what kind of PEM problem it was.
        other => TlsError::BadPem {
            path: path.to_path_buf(),
            detail: other.to_string(),
        },
    })
}

/// Subject, names and validity of `cert` (read from `path`, for errors).
pub fn cert_info(path: &Path, cert: &CertificateDer<'_>) -> Result<CertInfo, TlsError> {
    use x509_parser::extensions::GeneralName;
    let bad = |detail: String| TlsError::BadCertificate {
        path: path.to_path_buf(),
        detail,
    };
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| bad(e.to_string()))?;
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns_names.push((*d).to_string()),
                GeneralName::IPAddress(raw) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*raw) {
                        ip_addresses.push(IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*raw) {
                        ip_addresses.push(IpAddr::from(v6));
                    }
                }
                _ => {}
            }
        }
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    Ok(CertInfo {
        subject: parsed.subject().to_string(),
        dns_names,
        ip_addresses,
        not_before: parsed.validity().not_before.timestamp(),
        not_after: parsed.validity().not_after.timestamp(),
        sha256: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
    })
}

/// RFC 3339 for a Unix time, for messages.
pub(crate) fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{unix} (Unix time)"))
}

/// A certificate chain and its key, checked: the key is the leaf's, the leaf is within its
/// validity, and (given a CA) the chain leads to the CA.
pub(crate) struct Checked {
    pub certified: Arc<CertifiedKey>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub info: CertInfo,
}

pub(crate) fn load_checked(
    cert_file: &Path,
    key_file: &Path,
    ca: Option<(&Path, &[CertificateDer<'static>])>,
    now: UnixTime,
) -> Result<Checked, TlsError> {
    let chain = load_certs(cert_file)?;
    let key = load_key(key_file)?;
    let info = cert_info(cert_file, &chain[0])?;
    let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if info.not_after < now_secs {
        return Err(TlsError::Expired {
            path: cert_file.to_path_buf(),
            not_after: rfc3339(info.not_after),
        });
    }
    let provider = crate::provider();
    let signing = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| TlsError::BadPem {
            path: key_file.to_path_buf(),
            detail: format!("not a key rustls can sign with: {e}"),
        })?;
    let certified = CertifiedKey::new(chain.clone(), signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(TlsError::KeyMismatch {
                cert: cert_file.to_path_buf(),
                key: key_file.to_path_buf(),
            });
        }
    }
    if let Some((ca_file, roots)) = ca {
        verify_chain(&chain, roots, now).map_err(|e| TlsError::NotSignedByCa {
            cert: cert_file.to_path_buf(),
            ca: ca_file.to_path_buf(),
            detail: match e {
                ChainError::Anchor(e) => format!("the CA certificate cannot be used: {e}"),
                ChainError::Path(e) => format!("{e:?}"),
            },
        })?;
    }
    Ok(Checked {
        certified: Arc::new(certified),
        chain,
        key,
        info,
    })
}

/// Why a chain does not lead to the CA.
enum ChainError {
    /// The CA's certificate is not usable as a trust anchor.
    Anchor(webpki::Error),
    /// No path from the leaf to the CA (or the leaf cannot be parsed).
    Path(webpki::Error),
}

/// Whether `chain` (leaf first) leads to one of `roots`, for any purpose a node's
/// certificate serves (a server's, or a client's).
fn verify_chain(
    chain: &[CertificateDer<'static>],
    roots: &[CertificateDer<'static>],
    now: UnixTime,
) -> Result<(), ChainError> {
    let anchors = roots
        .iter()
        .map(|c| {
            webpki::anchor_from_trusted_cert(c)
                .map(|a| a.to_owned())
                .map_err(ChainError::Anchor)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let leaf = webpki::EndEntityCert::try_from(&chain[0]).map_err(ChainError::Path)?;
    let algs = crate::provider().signature_verification_algorithms.all;
    let try_usage = |usage| {
        leaf.verify_for_usage(algs, &anchors, &chain[1..], now, usage, None, None)
            .map(|_| ())
    };
    try_usage(webpki::KeyUsage::server_auth())
        .or_else(|_| try_usage(webpki::KeyUsage::client_auth()))
        .map_err(ChainError::Path)
}

#[cfg(test)]
mod tests;
