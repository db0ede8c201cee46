//! `[tls]`: HTTPS for the API, with client certificates when a CA is given.
//!
//! The variables `CONCLAVE_MTLS_CA_FILE`, `CONCLAVE_MTLS_CERT_FILE` and
//! `CONCLAVE_MTLS_KEY_FILE` (the database-cluster seed's `CLUSTER_MTLS_*` under conclave's
//! prefix) set the same three files for the agent and for the CLI on that machine.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use conclave_tls::TlsFiles;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The CA whose client certificates are accepted (and whose agents a client agent
    /// forwards to).
    pub ca_file: Option<PathBuf>,
    /// This node's certificate (chain, leaf first): set, the API serves HTTPS only.
    pub cert_file: Option<PathBuf>,
    /// The certificate's private key.
    pub key_file: Option<PathBuf>,
    /// Require a client certificate signed by `ca_file` [default: true when `ca_file` is
    /// set].
    pub verify_incoming: Option<bool>,
    /// How often the files are checked for a change (they are reloaded on SIGHUP too).
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            ca_file: None,
            cert_file: None,
            key_file: None,
            verify_incoming: None,
            reload_interval: Duration::from_secs(5),
        }
    }
}

impl TlsConfig {
    /// The files to serve HTTPS with, or `None` for plain HTTP; an incomplete set is an
    /// error that says what is missing.
    pub fn files(&self) -> anyhow::Result<Option<TlsFiles>> {
        let verify_incoming = self.verify_incoming.unwrap_or(self.ca_file.is_some());
        match (&self.cert_file, &self.key_file) {
            (None, None) => {
                if self.ca_file.is_some() || self.verify_incoming == Some(true) {
                    bail!(
                        "tls.ca_file / tls.verify_incoming are set but tls.cert_file and tls.key_file are not: the API needs its own certificate to serve HTTPS (conclave tls cert create --dir DIR --name NODE)"
                    );
                }
                Ok(None)
            }
            (Some(_), None) => bail!("tls.cert_file is set without tls.key_file (--tls-key-file)"),
            (None, Some(_)) => bail!("tls.key_file is set without tls.cert_file (--tls-cert-file)"),
            (Some(cert), Some(key)) => {
                if verify_incoming && self.ca_file.is_none() {
                    bail!(
                        "tls.verify_incoming needs tls.ca_file (--tls-ca-file): the CA whose client certificates are accepted"
                    );
                }
                if self.reload_interval.is_zero() {
                    bail!("tls.reload_interval must be more than 0 (e.g. \"5s\")");
                }
                Ok(Some(TlsFiles {
                    ca_file: self.ca_file.clone(),
                    cert_file: cert.clone(),
                    key_file: key.clone(),
                    verify_incoming,
                }))
            }
        }
    }
}

/// `--tls-*` flags of `conclave agent`.
#[derive(Debug, Default, Clone, Serialize, clap::Args)]
pub struct TlsFlags {
    /// CA certificate (PEM) that client certificates must chain to; set, clients must
    /// present one (see --tls-verify-incoming).
    #[arg(long = "tls-ca-file", env = "CONCLAVE_MTLS_CA_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// This node's certificate (PEM): set, the HTTP API serves HTTPS only.
    #[arg(long = "tls-cert-file", env = "CONCLAVE_MTLS_CERT_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long = "tls-key-file", env = "CONCLAVE_MTLS_KEY_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Require client certificates from the CA [default: true with --tls-ca-file].
    #[arg(long = "tls-verify-incoming")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_incoming: Option<bool>,
}

impl TlsFlags {
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none()
            && self.cert_file.is_none()
            && self.key_file.is_none()
            && self.verify_incoming.is_none()
    }
}
