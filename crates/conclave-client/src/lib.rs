//! The typed client for conclave's HTTP API: one method per operation the project's own
//! tools use (the CLI, `conclave elect`, tests), each returning the API's types or an
//! [`ApiError`] with its stable [`ErrorCode`].
//!
//! Why a crate: the routes and their error contract are spelled here once, next to the
//! server's (`conclave-api`); no other crate builds a `/v1/` URL (a tidy test checks the
//! binary). reqwest does the HTTP; `conclave_types::sse` the event-stream framing.

use conclave_types::{
    AddMemberRequest, CampaignRequest, ClusterMember, ClusterStatus, ConfigDocument, ConfigHistory,
    ConfigListItem, ConfigWriteResponse, DeleteResponse, ElectionStatus, ErrorBody, ErrorCode,
    HEADER_INDEX, HEADER_NEXT_AFTER, HEADER_REVISION, KvItem, LeaseRequest, PutResponse, Status,
    TransferRequest, TransferResponse,
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Characters left as they are in one path segment (a document kind or name, an election).
const SEGMENT_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Characters left as they are in a key path: unreserved ones and `/`.
const KEY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// An error answer of the API: its HTTP status and the body's code, message and hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: ErrorCode,
    pub message: String,
    pub hint: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing accepted the connection: the request was never sent.
    #[error("no conclave agent at {0} — start one with: conclave agent")]
    NoAgent(String),
    /// The request was sent (or its connection opened) but no answer came in time: a
    /// write may or may not have been applied.
    #[error("no answer from {0} in time")]
    TimedOut(String),
    /// The agent answered with an error.
    #[error("{0}")]
    Api(ApiError),
    #[error("{0}")]
    Local(String),
    /// The command line itself is wrong (exit code 2).
    #[error("{0}")]
    Usage(String),
}

impl ClientError {
    /// The API's error code, when the agent answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api(e) => Some(e.code),
            _ => None,
        }
    }

    /// The HTTP status, when the agent answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api(e) => Some(e.status),
            _ => None,
        }
    }
}

/// Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

pub struct GotValue {
    pub value: Vec<u8>,
    pub revision: u64,
    pub index: u64,
}

/// What `GET /v1/status` answered.
pub enum AgentStatus {
    Raft(Box<Status>),
    /// A client agent: node id, cluster id, leader (from gossip), member counts.
    Client(serde_json::Value),
}

impl Client {
    pub fn new(addr: &str) -> Result<Self, ClientError> {
        let base = Self::new_base(addr)?;
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| ClientError::Local(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self { base, http })
    }

    /// The same client with every request bounded by `timeout` (a request that takes longer
    /// fails as [`ClientError::TimedOut`]); for background loops, not for watch streams.
    pub fn with_timeout(self, timeout: std::time::Duration) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| ClientError::Local(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self { http, ..self })
    }

    /// A client of the agent at `addr` (`http://host:port`) that shares this one's
    /// connection pool and timeout.
    pub fn rebased(&self, addr: &str) -> Result<Self, ClientError> {
        let base = Self::new_base(addr)?;
        Ok(Self {
            base,
            http: self.http.clone(),
        })
    }

    fn new_base(addr: &str) -> Result<String, ClientError> {
        let base = addr.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Usage(format!(
                "--addr must be a URL such as http://127.0.0.1:7400, got {addr:?}"
            )));
        }
        Ok(base)
    }

    fn key_url(&self, key: &str) -> String {
        format!("{}/v1/kv/{}", self.base, utf8_percent_encode(key, KEY_SET))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                ClientError::NoAgent(self.base.clone())
            } else if e.is_timeout() {
                ClientError::TimedOut(self.base.clone())
            } else {
                ClientError::Local(format!("request to {} failed: {e}", self.base))
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
                },
                Err(_) => ApiError {
                    status,
                    code: ErrorCode::Unknown,
                    message: format!("HTTP {status}: {text}"),
                    hint: None,
                },
            },
        ))
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        resp: reqwest::Response,
    ) -> Result<T, ClientError> {
        resp.json()
            .await
            .map_err(|e| ClientError::Local(format!("unexpected answer from {}: {e}", self.base)))
    }

    pub async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        cas: Option<u64>,
    ) -> Result<PutResponse, ClientError> {
        let mut req = self.http.put(self.key_url(key)).body(value);
        if let Some(cas) = cas {
            req = req.query(&[("cas", cas)]);
        }
        let resp = self.send(req).await?;
        self.json(resp).await
    }

    pub async fn get(&self, key: &str, stale: bool) -> Result<GotValue, ClientError> {
        let mut req = self.http.get(self.key_url(key));
        if stale {
            req = req.query(&[("consistency", "stale")]);
        }
        let resp = self.send(req).await.map_err(|e| match e {
            ClientError::Api(mut e) if e.code == ErrorCode::KeyNotFound => {
                e.hint = Some("list the keys with: conclave kv ls PREFIX".into());
                ClientError::Api(e)
            }
            other => other,
        })?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let (revision, index) = (header(HEADER_REVISION), header(HEADER_INDEX));
        let value = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Local(format!("reading the value failed: {e}")))?
            .to_vec();
        Ok(GotValue {
            value,
            revision,
            index,
        })
    }

    pub async fn delete(&self, key: &str, cas: Option<u64>) -> Result<DeleteResponse, ClientError> {
        let mut req = self.http.delete(self.key_url(key));
        if let Some(cas) = cas {
            req = req.query(&[("cas", cas)]);
        }
        let resp = self.send(req).await?;
        self.json(resp).await
    }

    /// One page of keys under `prefix` after `after`, and the key to continue after when
    /// more match.
    pub async fn list(
        &self,
        prefix: &str,
        limit: usize,
        after: Option<&str>,
    ) -> Result<(Vec<KvItem>, Option<String>), ClientError> {
        let limit = limit.to_string();
        let mut req = self
            .http
            .get(format!("{}/v1/kv", self.base))
            .query(&[("prefix", prefix), ("limit", &limit)]);
        if let Some(after) = after {
            req = req.query(&[("after", after)]);
        }
        let resp = self.send(req).await?;
        let next = resp
            .headers()
            .get(HEADER_NEXT_AFTER)
            .and_then(|v| v.to_str().ok())
            // The header carries the key percent-encoded (keys are any UTF-8).
            .map(|v| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            });
        Ok((self.json(resp).await?, next))
    }

    /// `GET /v1/status`: a Raft member's status, or a client agent's (a different shape).
    pub async fn status(&self) -> Result<AgentStatus, ClientError> {
        let resp = self
            .send(self.http.get(format!("{}/v1/status", self.base)))
            .await?;
        let v: serde_json::Value = self.json(resp).await?;
        if v["role"] == "client" {
            return Ok(AgentStatus::Client(v));
        }
        serde_json::from_value(v)
            .map(|s| AgentStatus::Raft(Box::new(s)))
            .map_err(|e| ClientError::Local(format!("unexpected answer from {}: {e}", self.base)))
    }

    pub async fn cluster_status(&self) -> Result<ClusterStatus, ClientError> {
        let resp = self
            .send(self.http.get(format!("{}/v1/cluster/status", self.base)))
            .await?;
        self.json(resp).await
    }

    pub async fn members(&self) -> Result<Vec<ClusterMember>, ClientError> {
        let resp = self
            .send(self.http.get(format!("{}/v1/cluster/members", self.base)))
            .await?;
        self.json(resp).await
    }

    /// The members as the agent alone knows them (roles and addresses, no health).
    pub async fn members_stale(&self) -> Result<Vec<ClusterMember>, ClientError> {
        let resp = self
            .send(
                self.http
                    .get(format!("{}/v1/cluster/members", self.base))
                    .query(&[("consistency", "stale")]),
            )
            .await?;
        self.json(resp).await
    }

    /// `GET /v1/members` with a raw filter query (`role=..&healthy=true&tag=k=v`).
    pub async fn gossip_members(
        &self,
        query: &[(&str, String)],
    ) -> Result<Vec<conclave_types::GossipMember>, ClientError> {
        let resp = self
            .send(
                self.http
                    .get(format!("{}/v1/members", self.base))
                    .query(query),
            )
            .await?;
        self.json(resp).await
    }

    pub async fn remove_dead(&self) -> Result<conclave_types::RemoveDeadResponse, ClientError> {
        let resp = self
            .send(
                self.http
                    .post(format!("{}/v1/members/remove-dead", self.base)),
            )
            .await?;
        self.json(resp).await
    }

    pub async fn publish_status(&self) -> Result<Vec<conclave_types::SinkStatus>, ClientError> {
        let resp = self
            .send(self.http.get(format!("{}/v1/publish/status", self.base)))
            .await?;
        self.json(resp).await
    }

    pub async fn add_member(
        &self,
        req: &AddMemberRequest,
    ) -> Result<Vec<ClusterMember>, ClientError> {
        let resp = self
            .send(
                self.http
                    .post(format!("{}/v1/cluster/members", self.base))
                    .json(req),
            )
            .await?;
        self.json(resp).await
    }

    /// `action` is `remove`, `promote` or `demote`.
    pub async fn change_member(
        &self,
        action: &str,
        node_id: u64,
        force: bool,
    ) -> Result<Vec<ClusterMember>, ClientError> {
        let base = format!("{}/v1/cluster/members/{node_id}", self.base);
        let req = match action {
            "remove" => self.http.delete(base),
            _ => self.http.post(format!("{base}/{action}")),
        };
        let req = if force {
            req.query(&[("force", "true")])
        } else {
            req
        };
        let resp = self.send(req).await?;
        self.json(resp).await
    }

    pub async fn transfer_leader(&self, to: Option<u64>) -> Result<TransferResponse, ClientError> {
        let resp = self
            .send(
                self.http
                    .post(format!("{}/v1/cluster/leader/transfer", self.base))
                    .json(&TransferRequest { to }),
            )
            .await?;
        self.json(resp).await
    }

    pub async fn snapshot(&self) -> Result<Vec<u8>, ClientError> {
        let resp = self
            .send(self.http.get(format!("{}/v1/snapshot", self.base)))
            .await?;
        resp.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| ClientError::Local(format!("snapshot download failed: {e}")))
    }
}

pub use conclave_types::sse::SseEvent;

/// Reads Server-Sent Events from a streaming response.
pub struct SseReader {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    parser: conclave_types::sse::SseParser,
}

impl SseReader {
    /// The next event (comments such as heartbeats are skipped); `None` when the stream ends.
    pub async fn next(&mut self) -> Result<Option<SseEvent>, ClientError> {
        use futures::StreamExt;
        loop {
            if let Some(event) = self.parser.next_event() {
                return Ok(Some(event));
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.parser.push(&chunk),
                Some(Err(e)) => return Err(ClientError::Local(format!("the stream broke: {e}"))),
                None => return Ok(None),
            }
        }
    }
}

impl Client {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path` → JSON.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let resp = self
            .send(self.http.get(self.url(path)).query(query))
            .await?;
        self.json(resp).await
    }

    /// `method path` with a JSON body → JSON.
    async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let mut req = self
            .http
            .request(method, self.url(path))
            .query(query)
            .header("content-type", "application/json");
        if let Some(body) = body {
            req = req.body(body);
        }
        let resp = self.send(req).await?;
        self.json(resp).await
    }

    /// Open an event stream at `path`, resuming after `last_event_id` when given.
    async fn events(
        &self,
        path: &str,
        query: &[(&str, String)],
        last_event_id: Option<&str>,
    ) -> Result<SseReader, ClientError> {
        let mut req = self
            .http
            .get(self.url(path))
            .query(query)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = self.send(req).await?;
        Ok(SseReader {
            body: Box::pin(resp.bytes_stream()),
            parser: conclave_types::sse::SseParser::default(),
        })
    }
}

fn doc_path(kind: &str, name: &str) -> String {
    format!(
        "/v1/config/{}/{}",
        utf8_percent_encode(kind, SEGMENT_SET),
        utf8_percent_encode(name, SEGMENT_SET)
    )
}

fn kind_query(kind: Option<&str>) -> Vec<(&'static str, String)> {
    kind.map(|k| vec![("kind", k.to_string())])
        .unwrap_or_default()
}

fn stale_query(stale: bool) -> Vec<(&'static str, String)> {
    if stale {
        vec![("consistency", "stale".to_string())]
    } else {
        Vec::new()
    }
}

fn json_body<T: serde::Serialize>(body: &T) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(body).unwrap_or_default())
}

/// Configuration documents (`/v1/config`).
impl Client {
    /// The live document from the agent's own copy, without a read barrier.
    pub async fn config_get_stale(
        &self,
        kind: &str,
        name: &str,
    ) -> Result<ConfigDocument, ClientError> {
        self.get_json(&doc_path(kind, name), &stale_query(true))
            .await
    }

    /// A document, as of store revision `revision` when given.
    pub async fn config_get(
        &self,
        kind: &str,
        name: &str,
        revision: Option<u64>,
    ) -> Result<ConfigDocument, ClientError> {
        let query: Vec<(&str, String)> = revision
            .map(|r| vec![("revision", r.to_string())])
            .unwrap_or_default();
        self.get_json(&doc_path(kind, name), &query).await
    }

    /// Live documents, of one kind when given.
    pub async fn config_list(
        &self,
        kind: Option<&str>,
    ) -> Result<Vec<ConfigListItem>, ClientError> {
        let query = kind_query(kind);
        self.get_json("/v1/config", &query).await
    }

    /// Live documents with the store revision they were read at (`X-Conclave-Index`), where
    /// a watch must start to miss nothing after this listing.
    pub async fn config_list_indexed(
        &self,
        kind: Option<&str>,
    ) -> Result<(Vec<ConfigListItem>, u64), ClientError> {
        let query = kind_query(kind);
        let resp = self
            .send(self.http.get(self.url("/v1/config")).query(&query))
            .await?;
        let index = resp
            .headers()
            .get(HEADER_INDEX)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                ClientError::Local(format!(
                    "{} answered the listing without {HEADER_INDEX}",
                    self.base
                ))
            })?;
        Ok((self.json(resp).await?, index))
    }

    pub async fn config_history(
        &self,
        kind: &str,
        name: &str,
    ) -> Result<ConfigHistory, ClientError> {
        self.get_json(&format!("{}/history", doc_path(kind, name)), &[])
            .await
    }

    /// Validate and store `content` (`cas`: only if the document's revision is still it;
    /// `dry_run`: validate only).
    pub async fn config_put(
        &self,
        kind: &str,
        name: &str,
        content: &serde_json::Value,
        cas: Option<u64>,
        dry_run: bool,
    ) -> Result<ConfigWriteResponse, ClientError> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(c) = cas {
            query.push(("cas", c.to_string()));
        }
        if dry_run {
            query.push(("dry_run", "true".into()));
        }
        self.send_json(
            reqwest::Method::PUT,
            &doc_path(kind, name),
            &query,
            json_body(content),
        )
        .await
    }

    pub async fn config_delete(
        &self,
        kind: &str,
        name: &str,
        cas: Option<u64>,
    ) -> Result<ConfigWriteResponse, ClientError> {
        let query: Vec<(&str, String)> = cas
            .map(|c| vec![("cas", c.to_string())])
            .unwrap_or_default();
        self.send_json(reqwest::Method::DELETE, &doc_path(kind, name), &query, None)
            .await
    }

    /// Desired vs applied configuration per node (`GET /v1/config/status`), as JSON.
    pub async fn config_status(&self) -> Result<serde_json::Value, ClientError> {
        self.get_json("/v1/config/status", &[]).await
    }

    /// Whether secret references resolve on this agent (`POST /v1/agent/secrets/check`):
    /// `{"results": [{"reference", "resolves", "problem"}]}`, never a value.
    pub async fn check_secrets(
        &self,
        references: &[String],
    ) -> Result<serde_json::Value, ClientError> {
        let body = serde_json::json!({ "references": references });
        self.send_json(
            reqwest::Method::POST,
            "/v1/agent/secrets/check",
            &[],
            json_body(&body),
        )
        .await
    }
}

/// Elections, roles and watches.
impl Client {
    fn election_path(name: &str, action: &str) -> String {
        format!(
            "/v1/elections/{}/{action}",
            utf8_percent_encode(name, SEGMENT_SET)
        )
    }

    /// An election as the agent sees it; `stale` reads its own copy without a read barrier.
    pub async fn election(&self, name: &str, stale: bool) -> Result<ElectionStatus, ClientError> {
        let path = format!("/v1/elections/{}", utf8_percent_encode(name, SEGMENT_SET));
        self.get_json(&path, &stale_query(stale)).await
    }

    pub async fn campaign(
        &self,
        name: &str,
        req: &CampaignRequest,
    ) -> Result<ElectionStatus, ClientError> {
        self.send_json(
            reqwest::Method::POST,
            &Self::election_path(name, "campaign"),
            &[],
            json_body(req),
        )
        .await
    }

    pub async fn keepalive(
        &self,
        name: &str,
        req: &LeaseRequest,
    ) -> Result<ElectionStatus, ClientError> {
        self.send_json(
            reqwest::Method::POST,
            &Self::election_path(name, "keepalive"),
            &[],
            json_body(req),
        )
        .await
    }

    pub async fn resign(
        &self,
        name: &str,
        req: &LeaseRequest,
    ) -> Result<serde_json::Value, ClientError> {
        self.send_json(
            reqwest::Method::POST,
            &Self::election_path(name, "resign"),
            &[],
            json_body(req),
        )
        .await
    }

    /// Every change under `prefix` after `from_revision` (or, resuming, after
    /// `last_event_id`), as a stream of [`WatchEvent`]s in the events' `data`.
    pub async fn watch(
        &self,
        prefix: &str,
        from_revision: Option<u64>,
        last_event_id: Option<&str>,
    ) -> Result<SseReader, ClientError> {
        let mut query = vec![("prefix", prefix.to_owned())];
        if let Some(r) = from_revision {
            query.push(("from_revision", r.to_string()));
        }
        self.events("/v1/watch", &query, last_event_id).await
    }

    /// An election's transitions (`state`, then `elected`, `resigned`, ...).
    pub async fn observe(
        &self,
        name: &str,
        last_event_id: Option<&str>,
    ) -> Result<SseReader, ClientError> {
        self.events(&Self::election_path(name, "observe"), &[], last_event_id)
            .await
    }

    /// Every leader-bound role (`GET /v1/roles`), as JSON.
    pub async fn roles(&self) -> Result<serde_json::Value, ClientError> {
        self.get_json("/v1/roles", &[]).await
    }

    pub async fn role(&self, name: &str) -> Result<serde_json::Value, ClientError> {
        self.get_json(
            &format!("/v1/roles/{}", utf8_percent_encode(name, SEGMENT_SET)),
            &[],
        )
        .await
    }

    /// Planned handover of `name` to `to` (the best candidate when `None`).
    pub async fn handover(
        &self,
        name: &str,
        to: Option<u64>,
    ) -> Result<serde_json::Value, ClientError> {
        let body = to.map(|t| serde_json::json!({ "to": t }).to_string().into_bytes());
        self.send_json(
            reqwest::Method::POST,
            &format!(
                "/v1/roles/{}/handover",
                utf8_percent_encode(name, SEGMENT_SET)
            ),
            &[],
            body,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded_whole() {
        assert_eq!(
            doc_path("remote-peers", "a b/c"),
            "/v1/config/remote-peers/a%20b%2Fc"
        );
        assert_eq!(
            Client::election_path("role:gw", "campaign"),
            "/v1/elections/role%3Agw/campaign"
        );
    }

    #[test]
    fn an_api_error_shows_its_message_and_hint() {
        let e = ClientError::Api(ApiError {
            status: 409,
            code: ErrorCode::CasConflict,
            message: "m".into(),
            hint: Some("h".into()),
        });
        assert_eq!(e.to_string(), "m\nhint: h");
        assert_eq!(
            (e.status(), e.code()),
            (Some(409), Some(ErrorCode::CasConflict))
        );
        assert!(Client::new("localhost:7400").is_err_and(|e| matches!(e, ClientError::Usage(_))));
    }
}
