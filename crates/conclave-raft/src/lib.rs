//! conclave's Raft node: openraft wired to conclave's storage and transport.
//!
//! Why this crate exists: it turns "a replicated log" into the two operations the API needs,
//! each with the right guarantees:
//! - [`RaftNode::propose`]: a command is applied exactly once, in log order, after it is
//!   durable on a quorum. Concurrent proposals are grouped by the [`batcher`] into one log
//!   entry, so they share one append and one fsync (group commit).
//! - [`RaftNode::read_barrier`]: after it returns, the local state reflects every write
//!   acknowledged before the call started (linearizable reads). Concurrent callers share one
//!   leadership confirmation (the [`read_barrier`] coalescer).
//!
//! Architecture invariant: this crate knows nothing about HTTP or gossip.

// openraft's trait signatures fix the error type (StorageError, RaftError); boxing it
// would only add conversions at every call.
#![allow(clippy::result_large_err)]

pub mod batcher;
pub mod network;
pub mod read_barrier;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use conclave_state::{Command, Outcome};
use conclave_storage::{
    LogStats, LogStore, NodeId, NodeInfo, StateHandle, StateMachineStore, TypeConfig,
};
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{Config, Raft, RaftMetrics, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use batcher::BatchStats;

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

impl Default for RaftTuning {
    fn default() -> Self {
        Self {
            heartbeat_ms: 100,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            snapshot_threshold: 10_000,
            logs_kept_after_snapshot: 1_000,
            max_batch_commands: 1024,
        }
    }
}

impl RaftTuning {
    fn openraft_config(&self, cluster_id: &str) -> Result<Config, StartError> {
        let config = Config {
            cluster_name: cluster_id.to_owned(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_threshold),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| StartError::Config(e.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid raft settings: {0}")]
    Config(String),
    #[error("raft failed to start: {0}")]
    Raft(String),
}

/// Why a proposal or read could not be served here. Cloneable so one failure can answer many
/// batched callers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsensusError {
    /// This node is not the leader; the leader is named when known, for forwarding.
    #[error("this node is not the leader{}", leader_hint(.leader_id))]
    NotLeader {
        leader_id: Option<NodeId>,
        leader: Option<NodeInfo>,
    },
    /// The node is shutting down or Raft stopped; retry on another node.
    #[error("consensus is unavailable: {0}")]
    Unavailable(String),
    /// The request may or may not have been applied (e.g. leadership changed mid-flight).
    #[error("the outcome is unknown: {0}; retry, preferably with a compare-and-swap")]
    Indeterminate(String),
}

fn leader_hint(leader: &Option<NodeId>) -> String {
    match leader {
        Some(id) => format!(" (leader is node {id})"),
        None => " and no leader is known".to_string(),
    }
}

/// A running Raft member: consensus, local state, and the RPC server.
#[derive(Clone)]
pub struct RaftNode {
    pub id: NodeId,
    raft: Raft<TypeConfig>,
    state: StateHandle,
    proposals: batcher::Batcher,
    reads: read_barrier::ReadBarrier,
    log_stats: Arc<LogStats>,
    log: LogStore,
}

impl RaftNode {
    /// Start Raft over already opened stores and serve node RPC on `rpc_listener`.
    pub async fn start(
        id: NodeId,
        cluster_id: &str,
        tuning: &RaftTuning,
        log: LogStore,
        sm: StateMachineStore,
        rpc_listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        let config = Arc::new(tuning.openraft_config(cluster_id)?);
        let cluster_id: Arc<str> = Arc::from(cluster_id);
        let network = network::NetworkFactory {
            cluster_id: cluster_id.clone(),
            self_id: id,
        };
        let state = sm.handle();
        let log_stats = log.stats();
        let log_handle = log.clone();
        let raft = Raft::new(id, config, network, log, sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        tokio::spawn(network::serve(
            rpc_listener,
            raft.clone(),
            cluster_id,
            shutdown.clone(),
        ));
        let proposals = batcher::Batcher::spawn(raft.clone(), tuning.max_batch_commands);
        let reads = read_barrier::ReadBarrier::spawn(raft.clone());
        Ok(Self {
            id,
            raft,
            state,
            proposals,
            reads,
            log_stats,
            log: log_handle,
        })
    }

    /// Make this node the single voter of a new cluster, unless the log already holds a
    /// membership (then this is a restart and nothing happens).
    pub async fn initialize_single(&self, info: NodeInfo) -> Result<(), StartError> {
        let members = BTreeMap::from([(self.id, info)]);
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(StartError::Raft(e.to_string())),
        }
    }

    /// Replicate and apply `command`; returns its outcome once durable on a quorum.
    pub async fn propose(&self, command: Command) -> Result<Outcome, ConsensusError> {
        self.proposals.propose(command).await
    }

    /// Wait until the local state is at least as new as every write acknowledged before now.
    pub async fn read_barrier(&self) -> Result<(), ConsensusError> {
        self.reads.wait().await
    }

    pub fn state(&self) -> &StateHandle {
        &self.state
    }

    pub fn metrics(&self) -> RaftMetrics<NodeId, NodeInfo> {
        self.raft.metrics().borrow().clone()
    }

    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    pub fn log_stats(&self) -> &LogStats {
        &self.log_stats
    }

    pub fn batch_stats(&self) -> &BatchStats {
        self.proposals.stats()
    }

    /// The highest log index known to be committed.
    pub fn committed_index(&self) -> Option<u64> {
        self.log.committed_index()
    }

    /// First and last log index held on disk.
    pub fn log_bounds(&self) -> (u64, Option<u64>) {
        self.log.first_and_last_index()
    }

    /// Wait until this node knows a leader, up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> bool {
        self.raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
            .is_ok()
    }

    /// Stop Raft (replication, elections, the state machine worker).
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown reported an error");
        }
    }
}

/// Map openraft's write error to conclave's.
pub(crate) fn map_write_error(
    e: RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>,
) -> ConsensusError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ConsensusError::NotLeader {
            leader_id: f.leader_id,
            leader: f.leader_node,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            ConsensusError::Unavailable(e.to_string())
        }
        RaftError::Fatal(f) => ConsensusError::Unavailable(f.to_string()),
    }
}
