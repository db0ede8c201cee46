//! Making a [`Client`]: its endpoints, its connection pool, and TLS for `https://` agents.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use crate::{Client, ClientError, RetryPolicy};

/// The HTTP client: each request bounded by `timeout` when given, speaking TLS with `tls`.
fn http_client(
    timeout: Option<Duration>,
    tls: Option<&Arc<rustls::ClientConfig>>,
    auth: Option<&reqwest::header::HeaderValue>,
) -> Result<reqwest::Client, ClientError> {
    // An agent closes a kept-alive connection that sends no request for its header timeout
    // (10 s by default); reusing one just as it closes would fail a write with an unknown
    // outcome, so idle connections are dropped well before that.
    let mut builder = reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(4));
    if let Some(t) = timeout {
        builder = builder.timeout(t);
    }
    if let Some(tls) = tls {
        builder = builder.use_preconfigured_tls(rustls::ClientConfig::clone(tls));
    }
    if let Some(auth) = auth {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, auth.clone());
        builder = builder.default_headers(headers);
    }
    builder
        .build()
        .map_err(|e| ClientError::Local(format!("cannot build an HTTP client: {e}")))
}

impl Client {
    /// A client of the agent at `addr` (`http://host:port`), or of several agents of one
    /// cluster (`http://a:7400,http://b:7400`). For `https://` agents see
    /// [`Client::with_tls`].
    pub fn new(addr: &str) -> Result<Self, ClientError> {
        Self::with_tls(addr, None)
    }

    /// A client of `https://` agents too: `tls` says which CA to trust and which client
    /// certificate to present (`conclave_tls::client_config`).
    pub fn with_tls(addr: &str, tls: Option<rustls::ClientConfig>) -> Result<Self, ClientError> {
        let endpoints = addr
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(Self::new_base)
            .collect::<Result<Vec<_>, _>>()?;
        let Some(base) = endpoints.first().cloned() else {
            return Err(ClientError::Usage(
                "--addr names no agent; pass a URL such as http://127.0.0.1:7400".into(),
            ));
        };
        if tls.is_none()
            && let Some(https) = endpoints.iter().find(|e| e.starts_with("https://"))
        {
            return Err(ClientError::Usage(format!(
                "{https} is an HTTPS agent: give the CA that signed its certificate with --ca-file (or CONCLAVE_MTLS_CA_FILE), and --cert-file/--key-file if it verifies clients"
            )));
        }
        let tls = tls.map(Arc::new);
        Ok(Self {
            base,
            endpoints: Arc::new(endpoints),
            preferred: Arc::new(AtomicUsize::new(0)),
            retry: None,
            http: http_client(None, tls.as_ref(), None)?,
            tls,
            auth: None,
            timeout: None,
        })
    }

    /// A client of `https://` agents from the files an operator gives (`--ca-file`,
    /// `--cert-file`, `--key-file`); plain HTTP when none is given.
    pub fn with_files(addr: &str, files: &conclave_tls::ClientFiles) -> Result<Self, ClientError> {
        if files.is_empty() {
            return Self::new(addr);
        }
        let config =
            conclave_tls::client_config(files).map_err(|e| ClientError::Usage(e.to_string()))?;
        Self::with_tls(addr, Some(config))
    }

    /// The same client sending `token` as `Authorization: Bearer` on every request (none:
    /// anonymous). The header is marked sensitive: reqwest never logs it.
    pub fn with_token(self, token: Option<&str>) -> Result<Self, ClientError> {
        let auth = token
            .map(|t| {
                let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
                    .map_err(|_| {
                        ClientError::Usage(
                            "the token has characters a header cannot carry; copy the secret_id exactly".into(),
                        )
                    })?;
                v.set_sensitive(true);
                Ok(v)
            })
            .transpose()?;
        Ok(Self {
            http: http_client(self.timeout, self.tls.as_ref(), auth.as_ref())?,
            auth,
            ..self
        })
    }

    /// `http` or `https`: how this client reaches agents, for URLs it is given as
    /// `host:port` (an agent's advertised address).
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The same client with every request bounded by `timeout` (a request that takes longer
    /// fails as [`ClientError::TimedOut`]); for background loops, not for watch streams.
    pub fn with_timeout(self, timeout: Duration) -> Result<Self, ClientError> {
        Ok(Self {
            http: http_client(Some(timeout), self.tls.as_ref(), self.auth.as_ref())?,
            timeout: Some(timeout),
            ..self
        })
    }

    /// The same client, repeating what certainly did nothing (see [`crate::retry`]).
    pub fn with_retry(self, policy: RetryPolicy) -> Self {
        Self {
            retry: Some(policy),
            ..self
        }
    }

    /// The same client, sending each request once: for questions about one node (its
    /// health), whose error answer is the answer.
    pub fn without_retry(self) -> Self {
        Self {
            retry: None,
            ..self
        }
    }

    /// A client of the agent at `addr` (`http://host:port`) that shares this one's
    /// connection pool, TLS, timeout and retry policy.
    pub fn rebased(&self, addr: &str) -> Result<Self, ClientError> {
        let base = Self::new_base(addr)?;
        Ok(Self {
            endpoints: Arc::new(vec![base.clone()]),
            base,
            preferred: Arc::new(AtomicUsize::new(0)),
            retry: self.retry,
            http: self.http.clone(),
            tls: self.tls.clone(),
            auth: self.auth.clone(),
            timeout: self.timeout,
        })
    }

    fn new_base(addr: &str) -> Result<String, ClientError> {
        let base = addr.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://"))
            || reqwest::Url::parse(&base).is_err()
        {
            return Err(ClientError::Usage(format!(
                "--addr must be a URL such as http://127.0.0.1:7400 (several: comma-separated), got {addr:?}"
            )));
        }
        Ok(base)
    }
}
