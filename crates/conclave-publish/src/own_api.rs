//! The agent's own HTTP API, as its background tasks call it.
//!
//! Configuration sync, the seed importer and the roles runtime read the registry and the
//! cluster through the same API operators use, so they see exactly what an operator would
//! (including a client agent's forwarding). This is the one place that GETs JSON from it.

use std::time::Duration;

/// The local agent's API at `base` (`http://host:port`).
#[derive(Clone)]
pub struct OwnApi {
    http: reqwest::Client,
    base: String,
}

impl OwnApi {
    pub fn new(base: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            base,
        }
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The HTTP client, for requests other than [`OwnApi::get_json`].
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// GET `path` with `query`: the JSON body and the `X-Conclave-Index` header (0 when
    /// absent). The error says which path failed and how, for a log line.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<(T, u64), String> {
        let resp = self
            .http
            .get(self.url(path))
            .query(query)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{path}: HTTP {}", resp.status()));
        }
        let index = resp
            .headers()
            .get(conclave_types::HEADER_INDEX)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body = resp.json().await.map_err(|e| format!("{path}: {e}"))?;
        Ok((body, index))
    }
}
