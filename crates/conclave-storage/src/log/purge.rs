//! Purging: entries a snapshot covers are dropped at once in memory, and on disk only as far
//! as a snapshot is durable.
//!
//! Why: openraft 0.9, installing a snapshot on a follower, issues the log purge without
//! waiting for the state machine to write that snapshot. Crash between the two and the log
//! on disk is purged beyond the newest snapshot on disk: the entries in between exist
//! nowhere, and openraft refuses to start from that state (it panics checking it; the
//! power-loss test found this). So the `purged` record and the deletion of segments never
//! pass the newest durable snapshot ([`SnapshotWatermark`]); what is left is finished by the
//! next append or purge once the snapshot is written.

use std::io;
use std::sync::Mutex;

use super::{Log, Segment};
use crate::LogId;
use crate::fsutil;

/// The last log id of the newest snapshot known to be durable, shared by the two stores.
#[derive(Debug, Default)]
pub struct SnapshotWatermark {
    newest: Mutex<Option<LogId>>,
}

impl SnapshotWatermark {
    pub fn get(&self) -> Option<LogId> {
        *self.newest.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A snapshot up to `last` is durable now.
    pub fn advance(&self, last: Option<LogId>) {
        let mut newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        if last.map(|l| l.index) > newest.map(|l| l.index) {
            *newest = last;
        }
    }
}

impl Log {
    /// How far the purge may go on disk now: what was asked, capped by the durable snapshot
    /// (when the log is tied to a state machine).
    fn purge_target(&self) -> Option<LogId> {
        let wanted = self.last_purged?;
        // Nothing asked beyond what is on disk (every append comes here): no need to look.
        if self.durable_purged.is_some_and(|d| d.index >= wanted.index) {
            return None;
        }
        let Some(snapshots) = &self.snapshots else {
            return Some(wanted);
        };
        match snapshots.get() {
            Some(s) if s.index < wanted.index => Some(s),
            Some(_) => Some(wanted),
            None => None,
        }
    }

    /// Make the purge durable as far as [`Log::purge_target`] allows: record it first (on
    /// restart, entries at or below it are ignored even if their segments still exist),
    /// then delete every segment whose entries are all covered.
    pub(super) fn persist_purge(&mut self) -> io::Result<()> {
        let Some(target) = self.purge_target() else {
            return Ok(());
        };
        if self.durable_purged.is_some_and(|d| d.index >= target.index) {
            return Ok(());
        }
        let framed = super::encode_meta(&Some(target)).map_err(io::Error::other)?;
        fsutil::write_atomic_on(&*self.disk, &self.dir.join("purged"), &framed)?;
        self.durable_purged = Some(target);

        // Segment k holds indexes below the next segment's first one; the last segment holds
        // up to the log's last index. When nothing is left, all go, and the next append
        // starts a fresh segment at its own index.
        let last_index = self.last_log_id().map_or(0, |l| l.index);
        let keep_from = if last_index <= target.index {
            self.segments.len()
        } else {
            (0..self.segments.len())
                .position(|k| {
                    self.segments
                        .get(k + 1)
                        .is_none_or(|next| next.first_index > target.index + 1)
                })
                .unwrap_or(0)
        };
        let removed: Vec<Segment> = self.segments.drain(..keep_from).collect();
        for seg in removed {
            self.disk.remove_file(&seg.path)?;
        }
        Ok(())
    }
}
