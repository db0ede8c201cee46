//! Raft timings and log compaction, and how they become openraft's configuration.

use openraft::{Config, SnapshotPolicy};
use serde::{Deserialize, Serialize};

use crate::{StartError, Timings};

/// Raft timings and log-compaction settings. Timings must match across a cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RaftTuning {
    /// Leader heartbeat interval, milliseconds.
    pub heartbeat_ms: u64,
    /// Lower bound of the randomized election timeout, milliseconds.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout, milliseconds.
    pub election_timeout_max_ms: u64,
    /// Take a snapshot (and allow purging the log) after this many new log entries.
    pub snapshot_threshold: u64,
    /// Log entries kept behind a snapshot so lagging followers can catch up without one.
    pub logs_kept_after_snapshot: u64,
    /// Most commands grouped into one log entry.
    pub max_batch_commands: usize,
}

/// The default timings, chosen so a silent leader is replaced as fast as etcd replaces one
/// with its defaults (heartbeat 100 ms, election timeout 1 s): openraft 0.9 makes a follower
/// wait out a leader lease of `election_timeout_max` *and then* its own randomized election
/// timeout, so 300–600 ms here mean 0.9–1.2 s of silence before a follower campaigns, and no
/// voter grants a vote within 600 ms of hearing from its leader (the role etcd's check-quorum
/// plays). The README's timing section explains each value.
impl Default for RaftTuning {
    fn default() -> Self {
        Self {
            heartbeat_ms: 100,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            snapshot_threshold: 10_000,
            logs_kept_after_snapshot: 1_000,
            max_batch_commands: 1024,
        }
    }
}

impl RaftTuning {
    /// The timings every member of a cluster must share.
    pub fn timings(&self) -> Timings {
        Timings {
            heartbeat_ms: self.heartbeat_ms,
            election_timeout_min_ms: self.election_timeout_min_ms,
            election_timeout_max_ms: self.election_timeout_max_ms,
        }
    }

    pub(crate) fn openraft_config(&self) -> Result<Config, StartError> {
        let config = Config {
            cluster_name: "conclave".to_owned(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_threshold),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            install_snapshot_timeout: 10_000,
            // openraft 0.9 gives each append request one heartbeat interval to complete,
            // whatever its size. Entries are batches of at most MAX_BATCH_BYTES (plus one
            // oversized command), so this keeps an append to a few MiB: small enough for a
            // catching-up follower to receive and fsync within the heartbeat.
            max_payload_entries: 4,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| StartError::Config(e.to_string()))
    }
}
