//! `/v1/gossip/stats`: what this agent's gossip sent, received and refused.

use serde::{Deserialize, Serialize};

/// `GET /v1/gossip/stats`: counters of this agent's gossip and publishing (metrics-ready).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct GossipStats {
    pub node_id: u64,
    /// Members by state as this agent sees them.
    pub members: std::collections::BTreeMap<String, usize>,
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Datagrams refused, all reasons (the fields below break them down).
    pub datagrams_rejected: u64,
    /// Refused: did not authenticate under any key held (another cluster, a forged or
    /// damaged datagram).
    #[serde(default)]
    pub refused_forged: u64,
    /// Refused: a replay of a datagram already taken.
    #[serde(default)]
    pub refused_replayed: u64,
    /// Refused: sealed under a key this agent does not hold (a rotation not installed here).
    #[serde(default)]
    pub refused_unknown_key: u64,
    /// Refused: too short, another layout version, or sent minutes away from this clock.
    #[serde(default)]
    pub refused_other: u64,
    /// Opened but not understood (another build's message).
    #[serde(default)]
    pub undecodable: u64,
    /// Datagrams the socket would not send.
    #[serde(default)]
    pub send_errors: u64,
    /// Adverts too large to piggyback, pushed whole to every member.
    #[serde(default)]
    pub adverts_pushed: u64,
    /// Peers-file writes, holds in force and hook failures, over all sinks.
    pub publications: u64,
    pub publications_held: u64,
    pub hook_failures: u64,
    /// Why this agent has not met another member yet, if it has not.
    pub join_problem: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_round_trip_empty_and_full_and_read_an_older_agents_answer() {
        let full = GossipStats {
            node_id: 7,
            members: [("alive".to_owned(), 3)].into(),
            datagrams_sent: 1,
            datagrams_received: 2,
            bytes_sent: 3,
            bytes_received: 4,
            datagrams_rejected: 5,
            refused_forged: 1,
            refused_replayed: 1,
            refused_unknown_key: 2,
            refused_other: 1,
            undecodable: 6,
            send_errors: 7,
            adverts_pushed: 8,
            publications: 9,
            publications_held: 10,
            hook_failures: 11,
            join_problem: Some("not joined yet".into()),
        };
        let empty = GossipStats {
            members: Default::default(),
            join_problem: None,
            ..full.clone()
        };
        for s in [full, empty] {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<GossipStats>(&json).unwrap(), s);
        }
        // Before the refusals were broken down by reason.
        let older = r#"{"node_id":1,"members":{},"datagrams_sent":0,"datagrams_received":0,
            "bytes_sent":0,"bytes_received":0,"datagrams_rejected":4,"publications":0,
            "publications_held":0,"hook_failures":0,"join_problem":null}"#;
        let s: GossipStats = serde_json::from_str(older).unwrap();
        assert_eq!((s.datagrams_rejected, s.refused_forged), (4, 0));
    }
}
