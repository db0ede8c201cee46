//! Elections, roles and watches.

use conclave_types::{CampaignRequest, ElectionStatus, LeaseRequest};
use percent_encoding::utf8_percent_encode;

use crate::{Client, ClientError, SEGMENT_SET, SseReader, json_body, stale_query};

/// Elections, roles and watches.
impl Client {
    pub(crate) fn election_path(name: &str, action: &str) -> String {
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

    /// [`Client::watch`] asking for a heartbeat every `heartbeat`, and ending with
    /// [`ClientError::TimedOut`] when three of them in a row do not come (a member that went
    /// silent behind a partition).
    pub async fn watch_with_heartbeat(
        &self,
        prefix: &str,
        from_revision: Option<u64>,
        heartbeat: std::time::Duration,
    ) -> Result<SseReader, ClientError> {
        let mut query = vec![
            ("prefix", prefix.to_owned()),
            ("heartbeat_ms", heartbeat.as_millis().to_string()),
        ];
        if let Some(r) = from_revision {
            query.push(("from_revision", r.to_string()));
        }
        Ok(self
            .events("/v1/watch", &query, None)
            .await?
            .with_idle_timeout(heartbeat * 3))
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
