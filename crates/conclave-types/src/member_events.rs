//! Membership changes as this agent saw them: `GET /v1/members/watch` (Server-Sent Events)
//! and the `[[event_handler]]` programs get them, so tools need not poll member lists.

use serde::{Deserialize, Serialize};

use crate::GossipMember;

/// What happened to a member.
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
pub enum MemberEventKind {
    /// New here, back from dead or left, or restarted (a new generation).
    Join,
    /// Still alive, with other tags, health, addresses or advertised state (or no longer
    /// suspect).
    Update,
    /// Its heartbeat went silent: not yet declared dead.
    Suspect,
    /// Declared dead by the failure detector.
    Dead,
    /// It said goodbye.
    Left,
    /// Forgotten (reaped after `gossip.reap_dead_after`, or by `remove-dead`).
    Reaped,
}

impl MemberEventKind {
    pub const ALL: [MemberEventKind; 6] = [
        MemberEventKind::Join,
        MemberEventKind::Update,
        MemberEventKind::Suspect,
        MemberEventKind::Dead,
        MemberEventKind::Left,
        MemberEventKind::Reaped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MemberEventKind::Join => "join",
            MemberEventKind::Update => "update",
            MemberEventKind::Suspect => "suspect",
            MemberEventKind::Dead => "dead",
            MemberEventKind::Left => "left",
            MemberEventKind::Reaped => "reaped",
        }
    }

    /// Serf's name for it, as `[[event_handler]] events` takes it (`member-failed` is
    /// `dead`).
    pub fn serf_name(self) -> &'static str {
        match self {
            MemberEventKind::Join => "member-join",
            MemberEventKind::Update => "member-update",
            MemberEventKind::Suspect => "member-suspect",
            MemberEventKind::Dead => "member-failed",
            MemberEventKind::Left => "member-leave",
            MemberEventKind::Reaped => "member-reap",
        }
    }

    /// The kind a handler's `events` entry names (Serf's name or ours).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s || k.serf_name() == s)
    }
}

/// One change to one member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberEvent {
    pub kind: MemberEventKind,
    /// The member after the change (as last seen, for `reaped`).
    pub member: GossipMember,
    /// When this agent saw it (RFC 3339, this agent's clock).
    pub seen_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_by_either_name_and_events_round_trip() {
        for k in MemberEventKind::ALL {
            assert_eq!(MemberEventKind::parse(k.as_str()), Some(k));
            assert_eq!(MemberEventKind::parse(k.serf_name()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        assert_eq!(MemberEventKind::parse("member-fail"), None);
        let e = MemberEvent {
            kind: MemberEventKind::Dead,
            member: GossipMember {
                name: None,
                id: 7,
                role: "client".into(),
                api_addr: String::new(),
                rpc_addr: "10.0.0.7:7401".into(),
                state: crate::MemberState::Dead,
                healthy: false,
                failing_checks: vec![],
                tags: Default::default(),
                last_seen_ms: 1500,
                raft_role: None,
                version: "0.1.0".into(),
                generation: 1,
                cluster_id: "c".into(),
                advertised: Default::default(),
            },
            seen_at: "2026-12-06T05:00:00.000Z".into(),
        };
        let back: MemberEvent = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }
}
