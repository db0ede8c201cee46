//! What the dashboard (`/ui`) reads besides the rest of the API: the agent's own recent
//! history (`GET /v1/agent/samples`), its effective settings (`GET /v1/agent/settings`) and
//! the previews of membership changes (`?dry_run=true`).

use serde::{Deserialize, Serialize};

/// `POST /v1/cluster/members/{id}/{remove,promote,demote}?dry_run=true` and
/// `POST /v1/cluster/leader/transfer?dry_run=true` → 200 when the leader would accept the
/// change (a refusal is the change's own 4xx error).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ChangePreview {
    /// Always true: nothing was changed.
    pub dry_run: bool,
    /// What the change would do, for a person.
    pub effect: String,
}

/// `GET /v1/agent/samples`: this agent's recent history, oldest first, one sample per
/// `interval_ms` over the last 15 minutes (kept in memory; a restart starts afresh).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Samples {
    pub node_id: u64,
    pub interval_ms: u64,
    pub samples: Vec<Sample>,
}

/// One round of the agent's sampler.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Sample {
    /// Unix time of the sample, in milliseconds.
    pub at_ms: u64,
    pub term: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_id: Option<u64>,
    /// Log entries this node applied per second since the previous sample: the cluster's
    /// committed writes (every member applies every entry).
    pub applied_per_s: f64,
    /// Reads (GET) and writes (other methods) this agent's API served per second.
    pub reads_per_s: f64,
    pub writes_per_s: f64,
    /// Each member's replication lag as the leader reported it; `None` when no leader
    /// answered this round (the chart shows a gap, not a zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<Vec<NodeLag>>,
}

/// A member's replication lag at one sample.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct NodeLag {
    pub node_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
    pub seconds: f64,
}

/// `GET /v1/agent/settings`: the agent's effective configuration (secrets redacted), each
/// top-level setting with whether a reload applies it live or it takes a restart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AgentSettings {
    pub node_id: u64,
    pub settings: Vec<AgentSetting>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AgentSetting {
    /// The top-level key in the config file.
    pub key: String,
    pub value: serde_json::Value,
    /// A reload (`conclave reload`, SIGHUP, `POST /v1/agent/reload`) applies a change live.
    pub live: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T>(value: &T)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        let json = serde_json::to_string(value).unwrap();
        assert_eq!(&serde_json::from_str::<T>(&json).unwrap(), value, "{json}");
    }

    #[test]
    fn dashboard_messages_round_trip_empty_and_full() {
        round_trip(&ChangePreview {
            dry_run: true,
            effect: "node 3 leaves".into(),
        });
        let bare = Sample {
            at_ms: 1,
            term: 2,
            leader_id: None,
            applied_per_s: 0.0,
            reads_per_s: 0.0,
            writes_per_s: 0.0,
            lag: None,
        };
        let full = Sample {
            leader_id: Some(1),
            applied_per_s: 12.5,
            reads_per_s: 3.0,
            writes_per_s: 1.5,
            lag: Some(vec![
                NodeLag {
                    node_id: 1,
                    entries: Some(0),
                    seconds: 0.0,
                },
                NodeLag {
                    node_id: 2,
                    entries: None,
                    seconds: 1.25,
                },
            ]),
            ..bare.clone()
        };
        round_trip(&Samples {
            node_id: 7,
            interval_ms: 2000,
            samples: vec![],
        });
        round_trip(&Samples {
            node_id: 7,
            interval_ms: 2000,
            samples: vec![bare, full],
        });
        round_trip(&AgentSettings {
            node_id: 1,
            settings: vec![],
        });
        round_trip(&AgentSettings {
            node_id: 1,
            settings: vec![AgentSetting {
                key: "raft".into(),
                value: serde_json::json!({"heartbeat_ms": 50}),
                live: false,
            }],
        });
    }
}
