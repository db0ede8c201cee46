//! HTTPS and tokens for the load generator: the same keep-alive load over mutual TLS and with
//! an ACL token, so that their cost can be measured side by side with plain HTTP and with
//! etcd over TLS.

use std::path::PathBuf;

/// HTTPS for `load`: set `--ca-file` to speak TLS (with a client certificate when given).
#[derive(clap::Args, Clone, Debug, Default)]
pub(crate) struct TlsArgs {
    #[arg(long)]
    ca_file: Option<PathBuf>,
    #[arg(long)]
    cert_file: Option<PathBuf>,
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// An ACL token sent as `Authorization: Bearer` on every request.
    #[arg(long)]
    token: Option<String>,
}

impl TlsArgs {
    pub(crate) fn authorization(&self) -> anyhow::Result<Option<hyper::header::HeaderValue>> {
        self.token
            .as_ref()
            .map(|t| {
                Ok(hyper::header::HeaderValue::from_str(&format!(
                    "Bearer {t}"
                ))?)
            })
            .transpose()
    }

    pub(crate) fn connector(&self) -> anyhow::Result<Option<tokio_rustls::TlsConnector>> {
        if self.ca_file.is_none() {
            return Ok(None);
        }
        let files = conclave_tls::ClientFiles {
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
        };
        let config = conclave_tls::client_config(&files)?;
        Ok(Some(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
            config,
        ))))
    }
}
