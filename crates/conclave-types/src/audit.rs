//! The audit log as the API shows it: `GET /v1/audit` (newest first) and the values of
//! `_conclave/audit/<seq>` on a watch.
//!
//! One flat record per entry, the same for every kind of change, so a tool can filter and
//! print entries without knowing every kind: `kind` and `action` say what happened,
//! `subject` to what, `actor` who asked (`token:<accessor>`, `node:<id>`, `anonymous`,
//! `agent` for an agent's own timers, `operator` for an offline command on a data
//! directory), `outcome` how it ended, `details` anything else worth keeping. No record
//! ever holds a value, a document's content or a secret: a key, a document's name and hash.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// HTTP header: the request's id, taken from the caller when it sends a usable one (1 to
/// 128 visible ASCII characters), else made by the agent; echoed on every answer and kept
/// in the audit entry of any change the request made.
pub const HEADER_REQUEST_ID: &str = "x-request-id";

/// HTTP header on `GET /v1/audit`: pass it as `cursor=` for the next (older) page.
pub const HEADER_AUDIT_CURSOR: &str = "x-conclave-audit-cursor";

/// What part of the cluster an entry is about (`?kind=` filters on it).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// Raft membership: joins, adds, removals, promotions, demotions, gossip reaping.
    Membership,
    /// Who leads: a new leader's term, and transfers asked for.
    Leadership,
    /// Configuration documents.
    Config,
    /// Tokens and policies.
    Acl,
    /// Holders of elections and leader-bound roles.
    Election,
    /// Key-value writes under the prefixes `[audit] kv_prefixes` names.
    Kv,
    /// A data directory restored from a snapshot file.
    Snapshot,
    /// A node made the only voter of its cluster after losing the others (`conclave recover`).
    Recovery,
    /// Networks and address allocations.
    Ipam,
}

impl AuditKind {
    pub const ALL: [AuditKind; 9] = [
        AuditKind::Membership,
        AuditKind::Leadership,
        AuditKind::Config,
        AuditKind::Acl,
        AuditKind::Election,
        AuditKind::Kv,
        AuditKind::Snapshot,
        AuditKind::Recovery,
        AuditKind::Ipam,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Membership => "membership",
            AuditKind::Leadership => "leadership",
            AuditKind::Config => "config",
            AuditKind::Acl => "acl",
            AuditKind::Election => "election",
            AuditKind::Kv => "kv",
            AuditKind::Snapshot => "snapshot",
            AuditKind::Recovery => "recovery",
            AuditKind::Ipam => "ipam",
        }
    }

    /// The kind a `?kind=` value names.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Put,
    Delete,
    Bootstrap,
    Create,
    /// A node asked to join and was added as a learner.
    Join,
    /// An operator added a node.
    Add,
    /// A member announced new addresses.
    Move,
    Remove,
    Promote,
    Demote,
    /// Dead gossip members were removed from every agent's view.
    Reap,
    /// A leadership transfer was asked for.
    TransferRequested,
    /// A node became leader of a new term.
    Elected,
    Resigned,
    Expired,
    HandoverRequested,
    Restore,
    Recover,
    /// An address was allocated.
    Allocate,
    /// An address was released.
    Release,
    /// An address lease was renewed.
    Renew,
    /// An existing allocation list was taken over.
    Import,
}

/// How a change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// It took effect.
    Applied,
    /// It was refused and changed nothing (`reason` says why).
    Refused,
}

/// One audit-log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Position in the log: increases by one per entry, never reused (`?cursor=` pages by it).
    pub seq: u64,
    /// When it was applied, on the leader's wall clock (RFC 3339).
    pub time: String,
    pub time_ms: u64,
    /// The store revision after it applied.
    pub revision: u64,
    pub kind: AuditKind,
    pub action: AuditAction,
    /// What it changed: `remote-peers/main`, `node 7`, a key, an election, a token's accessor.
    pub subject: String,
    pub actor: String,
    /// The caller's address, when the change came over HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The request's `X-Request-Id` (the caller's, or the one the agent gave it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub outcome: AuditOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(r: &AuditRecord) {
        let json = serde_json::to_string(r).unwrap();
        let back: AuditRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, r, "{json}");
    }

    #[test]
    fn records_round_trip_with_optional_fields_empty_and_full() {
        let empty = AuditRecord {
            seq: 1,
            time: "2026-12-06T04:00:00.000Z".into(),
            time_ms: 1_796_529_600_000,
            revision: 3,
            kind: AuditKind::Leadership,
            action: AuditAction::Elected,
            subject: "term 2".into(),
            actor: "node:1".into(),
            source: None,
            request_id: None,
            outcome: AuditOutcome::Applied,
            reason: None,
            details: BTreeMap::new(),
        };
        round_trip(&empty);
        let json = serde_json::to_value(&empty).unwrap();
        assert!(json.get("source").is_none() && json.get("details").is_none());
        let full = AuditRecord {
            kind: AuditKind::Config,
            action: AuditAction::Put,
            subject: "remote-peers/main".into(),
            actor: "token:0123456789abcdef".into(),
            source: Some("10.0.0.9:50412".into()),
            request_id: Some("req-1".into()),
            outcome: AuditOutcome::Refused,
            reason: Some("the document changed since revision 4".into()),
            details: BTreeMap::from([("hash".into(), "ab12".into())]),
            ..empty
        };
        round_trip(&full);
    }

    #[test]
    fn kinds_parse_as_they_print() {
        for k in AuditKind::ALL {
            assert_eq!(AuditKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        assert_eq!(AuditKind::parse("nope"), None);
    }
}
