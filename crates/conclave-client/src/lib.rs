//! The typed client for conclave's HTTP API: one method per operation the project's own
//! tools use (the CLI, `conclave elect`, tests), each returning the API's types or an
//! [`ApiError`] with its stable [`ErrorCode`].
//!
//! Why a crate: the routes and their error contract are spelled here once, next to the
//! server's (`conclave-api`); no other crate builds a `/v1/` URL (a tidy test checks the
//! binary). reqwest does the HTTP; `conclave_types::sse` the event-stream framing.

use conclave_types::{
    AddMemberRequest, ClusterMember, ClusterStatus, DeleteResponse, ErrorCode, HEADER_INDEX,
    HEADER_NEXT_AFTER, HEADER_REVISION, KvItem, PutResponse, Status, TransferRequest,
    TransferResponse,
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

mod acl;
mod audit;
mod connect;
mod documents;
mod elections;
mod error;
mod ipam;
mod members;
pub mod retry;
mod send;
mod tags;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

pub use audit::AuditFilter;
pub use error::{ApiError, ClientError};
pub use members::NodeLabels;
pub use retry::RetryPolicy;
pub use tags::Tags;

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

/// Cheap to clone: clones share one connection pool.
///
/// A client may know several endpoints of one cluster (`Client::new` takes them
/// comma-separated); with [`Client::with_retry`] it follows the retry contract of [`retry`]:
/// a request that certainly did nothing is repeated on the next endpoint until it is
/// answered or the budget is spent.
#[derive(Clone)]
pub struct Client {
    /// The first endpoint: requests are built against it and sent to whichever endpoint
    /// answers.
    base: String,
    endpoints: Arc<Vec<String>>,
    /// The endpoint that answered last; the next request starts there.
    preferred: Arc<AtomicUsize>,
    retry: Option<RetryPolicy>,
    http: reqwest::Client,
    /// How `https://` agents are reached; kept to build a client with another timeout.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// `Authorization: Bearer <token>` on every request, when the client has a token.
    auth: Option<reqwest::header::HeaderValue>,
    /// The bound on every request, when set ([`Client::with_timeout`]).
    timeout: Option<std::time::Duration>,
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
    fn key_url(&self, key: &str) -> String {
        format!("{}/v1/kv/{}", self.base, utf8_percent_encode(key, KEY_SET))
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

    /// `GET /v1/health`: `ok` or `degraded` with the reason; an error (503) says why the
    /// node should not get clients (`no_leader`, `no_quorum`, `not_ready`, …).
    pub async fn health(&self) -> Result<conclave_types::HealthResponse, ClientError> {
        let resp = self
            .send(self.http.get(format!("{}/v1/health", self.base)))
            .await?;
        self.json(resp).await
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

    /// Membership events as they happen (`GET /v1/members/watch`): a `snapshot`, then
    /// `join`, `update`, ... events whose data is a `MemberEvent`. `events`: the kinds to
    /// send, comma-separated (all when `None`).
    pub async fn members_watch(&self, events: Option<&str>) -> Result<SseReader, ClientError> {
        let query: Vec<(&str, String)> = events
            .map(|e| ("events", e.to_owned()))
            .into_iter()
            .collect();
        self.events("/v1/members/watch", &query, None).await
    }

    /// Forget dead and left members now; with `dry_run`, only list them.
    pub async fn remove_dead(
        &self,
        dry_run: bool,
    ) -> Result<conclave_types::RemoveDeadResponse, ClientError> {
        let req = self
            .http
            .post(format!("{}/v1/members/remove-dead", self.base));
        let req = if dry_run {
            req.query(&[("dry_run", "true")])
        } else {
            req
        };
        let resp = self.send(req).await?;
        self.json(resp).await
    }

    /// Every agent's gossip keyring (`GET /v1/gossip/keys`).
    pub async fn gossip_keys(
        &self,
    ) -> Result<conclave_types::gossip_keys::KeyringAnswer, ClientError> {
        let resp = self
            .send(self.http.get(format!("{}/v1/gossip/keys", self.base)))
            .await?;
        self.json(resp).await
    }

    /// Change every agent's gossip keyring (`POST /v1/gossip/keys`); each agent's outcome.
    pub async fn change_gossip_keys(
        &self,
        op: &conclave_types::gossip_keys::KeyOp,
    ) -> Result<conclave_types::gossip_keys::KeyringAnswer, ClientError> {
        let resp = self
            .send(
                self.http
                    .post(format!("{}/v1/gossip/keys", self.base))
                    .json(op),
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

    /// What a leadership transfer would do (`?dry_run=true`).
    pub async fn preview_transfer(
        &self,
        to: Option<u64>,
    ) -> Result<conclave_types::dashboard::ChangePreview, ClientError> {
        let resp = self
            .send(
                self.http
                    .post(format!("{}/v1/cluster/leader/transfer", self.base))
                    .query(&[("dry_run", "true")])
                    .json(&TransferRequest { to }),
            )
            .await?;
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
    /// With [`SseReader::with_idle_timeout`]: how long the stream may send nothing (no
    /// event, no heartbeat comment) before it counts as dead, and when it last sent.
    idle: Option<(std::time::Duration, tokio::time::Instant)>,
}

impl SseReader {
    /// End the stream with [`ClientError::TimedOut`] when it sends nothing, not even a
    /// heartbeat, for `limit`: a member cut off by a partition closes no connection, so a
    /// reader without a limit would wait forever. Ask the server for heartbeats well inside
    /// it (`heartbeat_ms`).
    pub fn with_idle_timeout(self, limit: std::time::Duration) -> Self {
        Self {
            idle: Some((limit, tokio::time::Instant::now())),
            ..self
        }
    }

    /// The next event (comments such as heartbeats are skipped); `None` when the stream ends.
    /// Cancel-safe: a partly received event stays in the parser, and the idle deadline
    /// counts from the last data received, not from the call.
    pub async fn next(&mut self) -> Result<Option<SseEvent>, ClientError> {
        use futures::StreamExt;
        loop {
            if let Some(event) = self.parser.next_event() {
                return Ok(Some(event));
            }
            let chunk = match self.idle {
                None => self.body.next().await,
                Some((limit, last)) => {
                    match tokio::time::timeout_at(last + limit, self.body.next()).await {
                        Ok(chunk) => chunk,
                        Err(_) => {
                            return Err(ClientError::TimedOut(format!(
                                "the event stream (silent for {limit:?})"
                            )));
                        }
                    }
                }
            };
            if let Some((limit, _)) = self.idle {
                self.idle = Some((limit, tokio::time::Instant::now()));
            }
            match chunk {
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
            idle: None,
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
            conflicts: Vec::new(),
        });
        assert_eq!(e.to_string(), "m\nhint: h");
        let refused = ApiError {
            conflicts: vec![conclave_types::ipam::ImportConflict {
                row: 2,
                code: ErrorCode::AddressTaken,
                message: "10.0.0.5 is taken".into(),
                holder: None,
            }],
            ..ApiError {
                status: 409,
                code: ErrorCode::Conflict,
                message: "m".into(),
                hint: Some("h".into()),
                conflicts: Vec::new(),
            }
        };
        assert_eq!(
            refused.to_string(),
            "m\n  row 2: 10.0.0.5 is taken (address_taken)\nhint: h"
        );
        assert_eq!(
            (e.status(), e.code()),
            (Some(409), Some(ErrorCode::CasConflict))
        );
        assert!(Client::new("localhost:7400").is_err_and(|e| matches!(e, ClientError::Usage(_))));
    }
}
