//! Offline operations on a stopped node's data directory: inspect it, restore a snapshot
//! file into it, and rewrite it as a single-voter cluster (quorum-loss recovery).
//!
//! Both restore and recover end the same way: the applied state is written as the node's
//! only snapshot, whose membership names this node alone as voter, the log is purged up to
//! it, and the vote is raised to its term. Started again, the node elects itself and serves
//! the data; other nodes join it with fresh data directories.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

use conclave_state::State;
use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft::{EntryPayload, Membership};

use crate::state_machine::{decode_snapshot, encode_snapshot};
use crate::{LogId, NodeId, NodeInfo, SnapshotMeta, StoredMembership, Vote};

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error(
        "data directory {dir} is in use by a running conclave agent (pid {pid}); stop it first"
    )]
    InUse { dir: String, pid: String },
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Open(#[from] crate::OpenError),
    #[error("{0}")]
    Storage(String),
    #[error("{path}: {source}")]
    Snapshot {
        path: String,
        source: crate::state_machine::SnapshotFileError,
    },
}

fn io_err(what: &str, e: impl std::fmt::Display) -> OfflineError {
    OfflineError::Io(format!("{what}: {e}"))
}

/// Hold the data directory's lock (one agent or tool at a time); released on drop/exit.
pub fn lock_dir(dir: &Path) -> Result<File, OfflineError> {
    crate::disk::Disk::create_dir_all(&crate::disk::OsDisk, dir)
        .map_err(|e| io_err(&format!("cannot create {}", dir.display()), e))?;
    if crate::disk::open_to_others(dir).unwrap_or(false) {
        tracing::warn!(
            dir = %dir.display(),
            "the data directory can be read by other users, and it holds every stored value; restrict it with: chmod 700 {}",
            dir.display()
        );
    }
    let path = dir.join("lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_err(&format!("cannot open {}", path.display()), e))?;
    if file.try_lock().is_err() {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        return Err(OfflineError::InUse {
            dir: dir.display().to_string(),
            pid: holder.trim().to_owned(),
        });
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    Ok(file)
}

/// What a stopped node holds.
#[derive(Debug)]
pub struct Inspection {
    pub state: State,
    /// The last entry in its log (or its snapshot when the log is empty).
    pub last_log_id: Option<LogId>,
    /// The last membership it knows (from the log or the snapshot).
    pub membership: StoredMembership,
    pub snapshot_index: Option<u64>,
}

/// Load the snapshot and apply every log entry after it (appended ones included: after a
/// quorum loss the survivor's log is the best record there is).
pub async fn inspect(dir: &Path) -> Result<Inspection, OfflineError> {
    let (mut log, sm) = crate::open(dir, &crate::StorageOptions::default())?;
    let (mut state, applied, mut membership) = sm
        .handle()
        .read(|a| (a.state.clone(), a.last_applied, a.membership.clone()));
    let snapshot_index = applied.map(|l| l.index);
    let from = applied.map_or(0, |l| l.index + 1);
    let entries = log
        .try_get_log_entries(from..)
        .await
        .map_err(|e| OfflineError::Storage(e.to_string()))?;
    let mut last = applied;
    for entry in entries {
        match &entry.payload {
            EntryPayload::Normal(batch) => {
                state.apply_batch(batch);
            }
            EntryPayload::Membership(m) => {
                membership = StoredMembership::new(Some(entry.log_id), m.clone());
            }
            EntryPayload::Blank => {}
        }
        last = Some(entry.log_id);
    }
    let log_state = log
        .get_log_state()
        .await
        .map_err(|e| OfflineError::Storage(e.to_string()))?;
    drop(sm);
    Ok(Inspection {
        state,
        last_log_id: last.or(log_state.last_log_id),
        membership,
        snapshot_index,
    })
}

/// Rewrite `dir` so that it holds `state` at `at` as a cluster whose only voter is
/// `node_id` at `info`.
pub async fn rewrite_single(
    dir: &Path,
    node_id: NodeId,
    info: NodeInfo,
    state: &State,
    at: LogId,
) -> Result<(), OfflineError> {
    let membership = Membership::new(
        vec![BTreeSet::from([node_id])],
        BTreeMap::from([(node_id, info)]),
    );
    let meta = SnapshotMeta {
        last_log_id: Some(at),
        last_membership: StoredMembership::new(Some(at), membership),
        snapshot_id: format!("recovered-{}-{}", at.leader_id.term, at.index),
    };
    let bytes = encode_snapshot(&meta, state);
    let (mut log, sm) = crate::open(dir, &crate::StorageOptions::default())?;
    sm.persist_file(Some(at), &bytes)
        .map_err(|e| io_err("cannot write the snapshot", e))?;
    let log_state = log
        .get_log_state()
        .await
        .map_err(|e| OfflineError::Storage(e.to_string()))?;
    if log_state.last_log_id.is_some_and(|l| l.index > at.index) {
        log.truncate(LogId::new(at.leader_id, at.index + 1))
            .await
            .map_err(|e| OfflineError::Storage(e.to_string()))?;
    }
    log.purge(at)
        .await
        .map_err(|e| OfflineError::Storage(e.to_string()))?;
    let vote = Vote::new(at.leader_id.term.max(1), node_id);
    let current = log
        .read_vote()
        .await
        .map_err(|e| OfflineError::Storage(e.to_string()))?;
    if current.is_none_or(|v| v.leader_id().term < vote.leader_id().term) {
        log.save_vote(&vote)
            .await
            .map_err(|e| OfflineError::Storage(e.to_string()))?;
    }
    Ok(())
}

/// Read and verify a snapshot file.
pub fn read_snapshot_file(
    path: &Path,
) -> Result<crate::state_machine::LoadedSnapshot, OfflineError> {
    let bytes =
        std::fs::read(path).map_err(|e| io_err(&format!("cannot read {}", path.display()), e))?;
    decode_snapshot(&bytes).map_err(|source| OfflineError::Snapshot {
        path: path.display().to_string(),
        source,
    })
}
