//! conclave's durable storage for Raft.
//!
//! Why this crate exists: a write may only be acknowledged once it is on disk on a quorum,
//! and a restarted node must come back with exactly what it acknowledged. This crate owns
//! every byte conclave keeps on disk for consensus and implements openraft's storage traits:
//!
//! - [`log::LogStore`]: the Raft log as append-only segment files of CRC-framed records,
//!   fsync'd (by a dedicated flusher thread) before openraft is told an append is durable;
//!   plus the vote (fsync'd) and the committed index.
//! - [`state_machine::StateMachineStore`]: the applied [`conclave_state::State`] in memory,
//!   made durable by snapshots (atomic files); restart = newest snapshot + log replay.
//! - [`fuzzing`]: what recovery must do with any bytes on disk (fuzz target and tests).
//!
//! Architecture invariant: this crate knows nothing about HTTP or the network.

// openraft's trait signatures fix the error type (StorageError, RaftError); boxing it
// would only add conversions at every call.
#![allow(clippy::result_large_err)]

pub mod disk;
pub mod feed;
pub mod fsutil;
pub mod fuzzing;
pub mod identity;
pub mod log;
pub mod offline;
pub mod powerloss;
pub mod state_machine;

use std::fmt;
use std::io::Cursor;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use disk::{Disk, DiskFile, OpenMode, OsDisk, SharedDisk};
pub use feed::{Compacted, FeedLimits};
pub use log::{LOG_FORMAT_VERSION, LogStats, LogStore};
pub use state_machine::{StateHandle, StateMachineStore};

/// A node's identity as Raft knows it. Node ids are minted once and never reused.
pub type NodeId = u64;

/// What the cluster records about each member in the Raft membership: where to reach it and
/// whether it may ever be made a voter. Changing it goes through consensus, so every node
/// agrees on every member's addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node-to-node RPC address (`host:port`).
    pub rpc_addr: String,
    /// HTTP API address (`host:port`); empty until the node has announced it.
    pub api_addr: String,
    /// Started with `--role learner`: never promoted to voter automatically.
    pub learner_only: bool,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rpc={} api={}", self.rpc_addr, self.api_addr)
    }
}

openraft::declare_raft_types!(
    /// openraft's type configuration for conclave. It lives here, in the lowest crate that
    /// needs openraft, so storage and the Raft node agree on one definition.
    pub TypeConfig:
        D = conclave_state::Batch,
        R = Vec<conclave_state::Outcome>,
        NodeId = NodeId,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, NodeInfo>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeInfo>;

/// Storage tuning that operators may set.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// Roll to a new log segment file after this many bytes.
    pub segment_max_bytes: u64,
    /// How many recent changes each node keeps for watches.
    pub feed: FeedLimits,
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self {
            segment_max_bytes: 64 * 1024 * 1024,
            feed: FeedLimits::default(),
        }
    }
}

/// Open (or create) both stores under `dir` (`dir/log`, `dir/snapshots`).
pub fn open(
    dir: &Path,
    options: &StorageOptions,
) -> Result<(LogStore, StateMachineStore), OpenError> {
    open_on(OsDisk::shared(), dir, options)
}

/// [`open`] on `disk` (the power-loss tests pass a [`powerloss::PowerLossDisk`]).
pub fn open_on(
    disk: SharedDisk,
    dir: &Path,
    options: &StorageOptions,
) -> Result<(LogStore, StateMachineStore), OpenError> {
    let log = LogStore::open_on(disk.clone(), &dir.join("log"), options.segment_max_bytes)?;
    let sm = StateMachineStore::open_on(disk, &dir.join("snapshots"), options.feed)?;
    log.bind_purges_to(sm.durable_snapshots());
    Ok((log, sm))
}

/// Why the on-disk stores could not be opened. Messages name the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot use {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is corrupt at byte {offset}: {reason}. The file is not the last log segment, so this is not a torn write; restore this node from a snapshot or re-join it to the cluster"
    )]
    CorruptSegment {
        path: String,
        offset: u64,
        reason: String,
    },
    #[error(
        "{path} is corrupt: {reason}. Move it aside to start from the log alone, or restore a snapshot"
    )]
    CorruptFile { path: String, reason: String },
}

impl OpenError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        OpenError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
