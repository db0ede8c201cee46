//! TLS for conclave's HTTP API: the server's and clients' rustls configurations, built from
//! PEM files, checked before use and followed when the files are rotated.
//!
//! Why a crate: the agent (server, and client of other agents when it forwards), the CLI and
//! `conclave-client` all read the same three files (`ca_file`, `cert_file`, `key_file`), and
//! an operator's mistake in them (a certificate that does not match its key, one not signed
//! by the CA, one expired) must be reported the same way everywhere: naming the file and
//! what to do. rustls does the protocol and webpki the chain check; this crate only reads,
//! checks and swaps. `issue` makes a CA and certificates with rcgen for `conclave tls`.
//!
//! Rotation: [`Reloadable`] holds the material last loaded; a reload that fails keeps the
//! old material and reports why, so a half-written file never takes the API down. A new
//! connection uses whatever is current; connections already open keep theirs.

mod client;
mod files;
pub mod issue;
mod reload;

pub use client::{ClientFiles, client_config};
pub use files::{CertInfo, TlsFiles, cert_info, load_certs, load_key};
pub use reload::{Material, Reloadable};

use std::path::PathBuf;

/// What went wrong with TLS material: always naming the file, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
        path.display()
    )]
    NoCertificate { path: PathBuf },
    #[error(
        "{} holds no PEM private key (expected -----BEGIN PRIVATE KEY----- or an EC/RSA key)",
        path.display()
    )]
    NoKey { path: PathBuf },
    #[error("{} is not valid PEM: {detail}", path.display())]
    BadPem { path: PathBuf, detail: String },
    #[error("{} is not a certificate conclave can use: {detail}", path.display())]
    BadCertificate { path: PathBuf, detail: String },
    #[error(
        "the certificate in {} does not match the private key in {}: give the key the certificate was issued for",
        cert.display(),
        key.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error(
        "the certificate in {} is not signed by the CA in {} ({detail}): issue it with that CA (conclave tls cert create --dir DIR) or point ca_file at its issuer",
        cert.display(),
        ca.display()
    )]
    NotSignedByCa {
        cert: PathBuf,
        ca: PathBuf,
        detail: String,
    },
    #[error("the certificate in {} expired at {not_after}: issue a new one", path.display())]
    Expired { path: PathBuf, not_after: String },
    #[error("{0}")]
    Setting(String),
    #[error("cannot issue the certificate: {0}")]
    Issue(String),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The rustls crypto provider conclave uses (ring: no C++ or CMake build).
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
