//! Wire types of conclave's HTTP API, shared by the server (`conclave-api`) and the CLI.
//!
//! Why a crate of its own: the API is a contract other tools rely on. Keeping its shapes in
//! one place, with no IO and no behaviour beyond the event-stream framing (`sse`), makes a
//! change to the contract visible in review.

use serde::{Deserialize, Serialize};

/// HTTP header: the key's mod revision on `GET /v1/kv/{key}`.
pub const HEADER_REVISION: &str = "x-conclave-revision";
/// HTTP header: the store revision the answer was read at.
pub const HEADER_INDEX: &str = "x-conclave-index";
/// HTTP header: the key's create revision.
pub const HEADER_CREATE_REVISION: &str = "x-conclave-create-revision";
/// HTTP header: the key's version (puts since creation).
pub const HEADER_VERSION: &str = "x-conclave-version";
/// HTTP header on a listing: the last key returned, when more keys match (pass as `after=`).
pub const HEADER_NEXT_AFTER: &str = "x-conclave-next-after";

pub mod acl;
pub mod audit;
pub mod dashboard;
mod error_code;
pub mod gossip;
pub mod gossip_keys;
pub mod invalid;
pub mod ipam;
pub mod member_events;
pub mod node_label;
pub mod reload;
pub mod secret;
pub mod sse;

pub use gossip::GossipStats;
pub use invalid::InvalidSetting;
pub use secret::Secret;

pub use error_code::ErrorCode;

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every error response: `{"error": {"code", "message", "hint"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    pub hint: String,
    /// On a CAS conflict: the key's current mod revision (0 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<u64>,
    /// On an invalid document (422): every problem with the JSON path of its field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violations: Option<Vec<Violation>>,
    /// On a watch from a compacted revision (410): the newest revision that is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compacted_revision: Option<u64>,
    /// On an IPAM address or hostname conflict (409): the allocation holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<ipam::AddressHolder>,
    /// On a full network (409 `network_full`): how its addresses are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ipam::NetworkUsage>,
    /// On a refused import (409): the rows that conflict (the first 100; `message` counts
    /// them all). Nothing was imported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflicts: Option<Vec<ipam::ImportConflict>>,
    /// The request's `X-Request-Id` (the caller's, or the one the agent gave it): quote it
    /// when asking about the request; every node it crossed logged it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// One problem in a configuration document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Violation {
    /// JSON Pointer of the bad field (`""` = the whole document).
    pub path: String,
    pub message: String,
}

/// `GET /v1/config/{kind}/{name}` → 200 (also one version, with `?revision=`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ConfigDocument {
    pub kind: String,
    pub name: String,
    /// The store revision that wrote this version (the document's mod revision).
    pub revision: u64,
    /// Hex SHA-256 of the canonical content.
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// When it was written (leader's clock, RFC 3339).
    pub updated_at: String,
    pub content: serde_json::Value,
}

/// `PUT`/`DELETE /v1/config/{kind}/{name}` → 200.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ConfigWriteResponse {
    pub revision: u64,
    /// The content hash (empty after a delete).
    #[serde(default)]
    pub hash: String,
    /// `PUT ...?dry_run=true`: validated, nothing written.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Whether the content differs from the current version (or a delete removed something).
    pub changed: bool,
}

/// One entry of `GET /v1/config/{kind}/{name}/history` (newest first).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ConfigVersionInfo {
    pub revision: u64,
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub updated_at: String,
    pub deleted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ConfigHistory {
    pub kind: String,
    pub name: String,
    pub versions: Vec<ConfigVersionInfo>,
}

/// One line of `GET /v1/config` (live documents).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ConfigListItem {
    pub kind: String,
    pub name: String,
    pub revision: u64,
    pub hash: String,
}

/// The longest a campaign waits to be elected.
pub const MAX_CAMPAIGN_WAIT_MS: u64 = 300_000;

/// `POST /v1/elections/{name}/campaign` body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignRequest {
    /// 1 to 256 bytes.
    #[schema(min_length = 1, max_length = 256)]
    pub candidate: String,
    /// Lease length; the holder must keep it alive within this time.
    #[schema(minimum = 500, maximum = 3600000)]
    pub ttl_ms: u64,
    /// How long to wait to be elected before answering `elected: false` (0 = try once); at
    /// most the agent's `max_campaign_wait_ms` (300000 unless set lower).
    #[serde(default)]
    #[schema(maximum = 300000)]
    pub wait_ms: u64,
}

/// `/keepalive` and `/resign` body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    #[schema(min_length = 1, max_length = 256)]
    pub candidate: String,
    pub epoch: u64,
}

/// An election as the API shows it (`GET /v1/elections/{name}`, campaign and keepalive
/// answers, observe events).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ElectionStatus {
    pub name: String,
    /// The current holder, or `None`.
    pub holder: Option<String>,
    /// The holder's epoch (the fencing token), or the last epoch granted when vacant.
    pub epoch: u64,
    /// Campaign answers: whether the asking candidate holds it now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elected: Option<bool>,
    #[serde(default)]
    pub ttl_ms: u64,
    /// Lease left by this node's estimate of the cluster clock (0 when vacant).
    #[serde(default)]
    pub lease_remaining_ms: u64,
    /// When the holder was elected (leader's clock, RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The store revision of the last transition.
    #[serde(default)]
    pub revision: u64,
    /// A planned handover still standing: until it ends only `target` can be elected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<HandoverStatus>,
}

/// A planned handover of an election, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct HandoverStatus {
    /// The candidate the holder steps down for.
    pub target: String,
    /// The holder's epoch it was asked of.
    pub from_epoch: u64,
    /// How long other candidates are still held off (this node's estimate).
    pub remaining_ms: u64,
}

/// The data of one watch event (`GET /v1/watch`, SSE; the event id is the revision).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct WatchEvent {
    pub revision: u64,
    /// `put` or `delete`.
    #[serde(rename = "type")]
    pub kind: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
}

/// `PUT /v1/kv/{key}` → 200.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PutResponse {
    pub revision: u64,
}

/// `DELETE /v1/kv/{key}` → 200.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct DeleteResponse {
    pub revision: u64,
    pub deleted: bool,
}

/// One item of `GET /v1/kv?prefix=P`. `value` holds the value when it is UTF-8; otherwise
/// `value` is absent and `value_base64` holds it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct KvItem {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    /// The key's mod revision.
    pub revision: u64,
    pub create_revision: u64,
    pub version: u64,
}

/// One Raft member as `GET /v1/status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct MemberStatus {
    pub node_id: u64,
    /// Its readable name; absent until the leader has recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub rpc_addr: String,
    pub api_addr: String,
    /// `voter` or `learner`.
    pub role: String,
}

/// Group-commit and storage counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct StorageStatus {
    pub log_fsyncs: u64,
    pub log_entries_appended: u64,
    pub commands_proposed: u64,
    pub batches_proposed: u64,
    /// Commands made durable per log fsync since start (group commit efficiency).
    pub writes_per_fsync: f64,
    pub log_first_index: u64,
    pub log_last_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub keys: u64,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Status {
    pub node_id: u64,
    /// This node's readable name (`--node-name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The cluster's readable name (`--cluster-name`), when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    pub cluster_id: String,
    pub leader_id: Option<u64>,
    pub term: u64,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    pub commit_index: u64,
    pub applied_index: u64,
    pub revision: u64,
    pub version: String,
    pub api_addr: String,
    pub rpc_addr: String,
    pub members: Vec<MemberStatus>,
    pub storage: StorageStatus,
    /// The certificate this node serves HTTPS with; absent on plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsStatus>,
}

/// `tls` in `GET /v1/status`: the certificate the API serves and how its files last loaded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct TlsStatus {
    pub cert_file: String,
    pub subject: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// Seconds from now until `not_after` (negative once expired).
    pub expires_in_seconds: i64,
    /// SHA-256 of the certificate (DER), hex.
    pub sha256: String,
    /// Clients must present a certificate from the CA.
    pub verify_incoming: bool,
    /// Unix seconds of the last successful load.
    pub loaded_at: i64,
    /// Why the last reload failed (the previous files are still served); absent when it
    /// succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload_error: Option<String>,
}

/// `GET /v1/health` and `/v1/ready` → 200.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct HealthResponse {
    /// `ok`, or `degraded` (serving, but see `degraded`).
    pub status: String,
    pub node_id: u64,
    pub leader_id: Option<u64>,
    pub applied_index: u64,
    /// Why the node is degraded: e.g. cut off from gossip while it has peers (it then
    /// campaigns for no role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
}

/// One Raft member as `GET /v1/cluster/members` and `/v1/cluster/status` show it. Replication
/// fields come from the leader and are absent when no leader answered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ClusterMember {
    pub node_id: u64,
    /// Its readable name (`--node-name`); absent until the leader has recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `voter` or `learner`.
    pub role: String,
    /// Started with `--role learner` or demoted: never promoted automatically.
    pub learner_only: bool,
    pub is_leader: bool,
    pub rpc_addr: String,
    pub api_addr: String,
    /// Highest log index known to be replicated to this member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_index: Option<u64>,
    /// Entries this member is behind the leader's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_entries: Option<u64>,
    /// How long this member has been behind (0 when caught up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// Milliseconds since the leader last heard from this member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_contact_ms: Option<u64>,
    /// Reachable and caught up (the leader is healthy by definition while it leads).
    pub healthy: bool,
}

/// `GET /v1/cluster/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ClusterStatus {
    pub cluster_id: String,
    pub leader_id: Option<u64>,
    pub term: u64,
    pub commit_index: u64,
    pub last_log_index: u64,
    /// Voters the cluster promotes learners towards (`--voters`).
    pub voters_wanted: usize,
    /// Whether the voters that are healthy form a quorum.
    pub quorum_healthy: bool,
    /// Which node answered (the leader, normally).
    pub reported_by: u64,
    pub members: Vec<ClusterMember>,
}

/// `POST /v1/cluster/members`: add a node by its id and RPC address.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    #[schema(minimum = 1)]
    pub node_id: u64,
    /// `HOST:PORT`; `addr` in the IPAM seed's `POST /api/v1/cluster/nodes`.
    #[serde(alias = "addr")]
    #[schema(
        pattern = "^([A-Za-z0-9.-]+|\\[[0-9A-Fa-f:.]+\\]):([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"
    )]
    pub rpc_addr: String,
    #[serde(default)]
    pub api_addr: String,
    /// Add as a voter (after it has caught up as a learner) instead of a learner.
    #[serde(default)]
    pub voter: bool,
}

/// `POST /v1/cluster/leader/transfer`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// The node to hand leadership to; the most caught-up voter when absent.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub to: Option<u64>,
}

/// `POST /v1/cluster/leader/transfer` → 200.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct TransferResponse {
    pub previous_leader: u64,
    pub leader_id: u64,
    pub term: u64,
}

/// Liveness of a member as gossip sees it.
#[derive(
    Debug,
    Clone,
    Copy,
    Serialize,
    Deserialize,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Heartbeats arrive.
    Alive,
    /// Heartbeats stopped recently; not yet declared dead.
    Suspect,
    /// The failure detector declared it dead; reaped after `gossip.reap_dead_after`.
    Dead,
    /// It said goodbye (SIGTERM) before going away.
    Left,
}

impl MemberState {
    pub const ALL: [MemberState; 4] = [
        MemberState::Alive,
        MemberState::Suspect,
        MemberState::Dead,
        MemberState::Left,
    ];

    /// The name the API and the CLI use (serde's spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Dead => "dead",
            MemberState::Left => "left",
        }
    }
}

/// One agent in `GET /v1/members`: every node, whatever its role, as gossip sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct GossipMember {
    pub id: u64,
    /// Its readable name (`--node-name`); absent from agents of earlier releases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `voter`, `learner` or `client` (the role it was started with).
    pub role: String,
    pub api_addr: String,
    pub rpc_addr: String,
    pub state: MemberState,
    /// Its own health checks pass (and it is alive).
    pub healthy: bool,
    /// Names of its failing health checks.
    pub failing_checks: Vec<String>,
    pub tags: std::collections::BTreeMap<String, String>,
    /// Milliseconds since its heartbeat last advanced, as this node saw it.
    pub last_seen_ms: u64,
    /// `leader`, `follower`, `candidate` or `learner` for Raft members; absent for clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_role: Option<String>,
    pub version: String,
    /// Start generation (milliseconds since the epoch at its start).
    pub generation: u64,
    /// The cluster id it belongs to (empty while a client has not met a Raft member).
    pub cluster_id: String,
    /// What it advertises about configuration and roles: `cfg:<kind>/<name>` (applied
    /// revision, hash, status), `cfg-subscribe`, `setting:<name>`, `role:<name>` (claims).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub advertised: std::collections::BTreeMap<String, String>,
}

/// `POST /v1/members/remove-dead` → which dead or left members were reaped (with
/// `?dry_run=true`: which would be, and nothing was changed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RemoveDeadResponse {
    pub removed: Vec<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// One sink in `GET /v1/publish/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SinkStatus {
    pub name: String,
    pub path: String,
    pub format: String,
    /// Members in the last publication.
    pub published_count: usize,
    /// SHA-256 (hex) of the last published content, if any.
    pub content_hash: Option<String>,
    /// When it was last written, RFC 3339.
    pub last_write: Option<String>,
    /// Writes since the agent started.
    pub writes: u64,
    /// Why the sink is holding its last publication, if it is.
    pub held: Option<String>,
    pub last_hook: Option<HookResult>,
    pub hook_failures: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct HookResult {
    pub at: String,
    pub ok: bool,
    pub detail: String,
    pub attempts: u32,
}

#[cfg(test)]
mod tests;
