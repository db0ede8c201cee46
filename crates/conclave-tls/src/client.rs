//! Client configurations: the CLI's and `conclave-client`'s (from files given once), and an
//! agent's own when it forwards to another agent (following its reloadable material).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::ResolvesClientCert;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;

use crate::files::{load_certs, load_checked};
use crate::reload::{Reloadable, root_store};
use crate::{TlsError, provider};

/// What a client of the API presents and trusts (`--ca-file`, `--cert-file`, `--key-file`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientFiles {
    /// The CA that signed the agents' certificates.
    pub ca_file: Option<PathBuf>,
    /// A client certificate, for agents that verify incoming connections.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl ClientFiles {
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.cert_file.is_none() && self.key_file.is_none()
    }
}

/// A rustls client configuration from `files`: agents are trusted when their certificate
/// chains to `ca_file` and names the host dialled; a client certificate is presented when
/// given.
pub fn client_config(files: &ClientFiles) -> Result<rustls::ClientConfig, TlsError> {
    let Some(ca_file) = &files.ca_file else {
        return Err(TlsError::Setting(
            "https needs --ca-file (or CONCLAVE_MTLS_CA_FILE): the CA that signed the agents' certificates".into(),
        ));
    };
    let ca_certs = load_certs(ca_file)?;
    let roots = Arc::new(root_store(ca_file, &ca_certs)?);
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setting(format!("TLS protocol versions: {e}")))?
        .with_root_certificates(roots);
    let mut config = match (&files.cert_file, &files.key_file) {
        (Some(cert), Some(key)) => {
            let checked = load_checked(
                cert,
                key,
                Some((ca_file, ca_certs.as_slice())),
                UnixTime::now(),
            )?;
            builder
                .with_client_auth_cert(checked.chain, checked.key)
                .map_err(|e| TlsError::BadCertificate {
                    path: cert.clone(),
                    detail: e.to_string(),
                })?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            return Err(TlsError::Setting(
                "--cert-file needs --key-file (the certificate's private key)".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(TlsError::Setting(
                "--key-file needs --cert-file (the certificate it belongs to)".into(),
            ));
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A client configuration over a node's reloadable material (see [`Reloadable::client_config`]).
pub(crate) fn following(material: Arc<Reloadable>) -> Result<rustls::ClientConfig, TlsError> {
    if material.current().roots.is_none() {
        return Err(TlsError::Setting(
            "forwarding to other agents over TLS needs tls.ca_file (--tls-ca-file): the CA that signed their certificates".into(),
        ));
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setting(format!("TLS protocol versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Following(material.clone())))
        .with_client_cert_resolver(Arc::new(Following(material)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Verifies servers against, and presents, whatever the node's material is at each
/// handshake. "dangerous" only in rustls' sense of a custom verifier: it delegates to
/// webpki's own server verifier over the current CA.
#[derive(Debug)]
struct Following(Arc<Reloadable>);

impl Following {
    fn verifier(&self) -> Result<Arc<WebPkiServerVerifier>, rustls::Error> {
        let roots = self
            .0
            .current()
            .roots
            .clone()
            .ok_or_else(|| rustls::Error::General("no CA configured (tls.ca_file)".into()))?;
        WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))
    }
}

impl ServerCertVerifier for Following {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ResolvesClientCert for Following {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
