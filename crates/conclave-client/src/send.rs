//! How a request reaches an agent: to the endpoint that answered last, and, with a retry
//! policy, on to the next endpoints while [`crate::retry::decide`] allows.

use std::sync::atomic::Ordering;

use conclave_types::{ErrorBody, ErrorCode};

use crate::{ApiError, Client, ClientError, retry};

impl Client {
    /// Send `req` to the preferred endpoint; with a retry policy, repeat it on the next
    /// endpoints while [`retry::decide`] says so.
    pub(crate) async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let request = req
            .build()
            .map_err(|e| ClientError::Local(format!("cannot build a request: {e}")))?;
        let idempotent = matches!(
            *request.method(),
            reqwest::Method::GET | reqwest::Method::HEAD
        );
        let started = std::time::Instant::now();
        let n = self.endpoints.len();
        let mut endpoint = self.preferred.load(Ordering::Relaxed) % n;
        let mut attempt = 0;
        let mut refused_in_a_row = 0;
        let mut request = Some(request);
        loop {
            let base = &self.endpoints[endpoint];
            // A streamed body cannot be sent twice: it gets one attempt.
            let this = match request.as_ref().and_then(reqwest::Request::try_clone) {
                Some(r) => r,
                None => match request.take() {
                    Some(r) => r,
                    None => return Err(ClientError::Local("the request was already sent".into())),
                },
            };
            // Requests are built against the first endpoint; only another one needs a rebase.
            let this = if *base == self.base {
                this
            } else {
                rebase(this, base)?
            };
            let err = match self.send_once(this, base).await {
                Ok(resp) => {
                    self.preferred.store(endpoint, Ordering::Relaxed);
                    return Ok(resp);
                }
                Err(e) => e,
            };
            let (Some(policy), Some(_)) = (self.retry, request.as_ref()) else {
                return Err(err);
            };
            let failure = err.as_failure();
            refused_in_a_row = if failure == retry::Failure::Refused {
                refused_in_a_row + 1
            } else {
                0
            };
            match retry::decide(
                &policy,
                failure,
                idempotent,
                attempt,
                started.elapsed(),
                refused_in_a_row,
                n,
            ) {
                retry::Decision::GiveUp => return Err(err),
                retry::Decision::Retry { after } => {
                    tokio::time::sleep(after).await;
                    endpoint = (endpoint + 1) % n;
                    attempt += 1;
                }
            }
        }
    }

    async fn send_once(
        &self,
        request: reqwest::Request,
        base: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let resp = self.http.execute(request).await.map_err(|e| {
            if let Some(why) = tls_failure(&e) {
                ClientError::Local(format!(
                    "TLS with {base} failed: {why}; check --ca-file (the CA that signed the agent's certificate) and, if the agent verifies clients, --cert-file and --key-file"
                ))
            } else if e.is_connect() {
                ClientError::NoAgent(base.to_string())
            } else if e.is_timeout() {
                ClientError::TimedOut(base.to_string())
            } else {
                ClientError::Local(format!("request to {base} failed: {e}"))
            }
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Err(ClientError::Api(
            match serde_json::from_str::<ErrorBody>(&text) {
                Ok(body) => ApiError {
                    status,
                    code: body.error.code,
                    message: body.error.message,
                    hint: Some(body.error.hint).filter(|h| !h.is_empty()),
                    conflicts: body.error.conflicts.unwrap_or_default(),
                },
                Err(_) => ApiError {
                    status,
                    code: ErrorCode::Unknown,
                    message: format!("HTTP {status}: {text}"),
                    hint: None,
                    conflicts: Vec::new(),
                },
            },
        ))
    }
}

/// `request` aimed at `base` (scheme, host and port) instead of the endpoint it was built for.
fn rebase(mut request: reqwest::Request, base: &str) -> Result<reqwest::Request, ClientError> {
    let target = reqwest::Url::parse(base)
        .map_err(|e| ClientError::Usage(format!("{base:?} is not a URL: {e}")))?;
    let url = request.url_mut();
    if url.scheme() != target.scheme() && url.set_scheme(target.scheme()).is_err() {
        return Err(ClientError::Usage(format!("cannot send to {base}")));
    }
    url.set_host(target.host_str())
        .map_err(|e| ClientError::Usage(format!("{base:?} has no usable host: {e}")))?;
    url.set_port(target.port())
        .map_err(|()| ClientError::Usage(format!("{base:?} has no usable port")))?;
    Ok(request)
}

/// The TLS error under a failed request, if TLS is what failed (a certificate not trusted,
/// or refused): not a missing agent, and not worth retrying elsewhere.
fn tls_failure(e: &reqwest::Error) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = next {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        // An io::Error's source() skips the error it wraps; look inside it instead.
        next = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}
