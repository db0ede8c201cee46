//! The change feed: the most recent changes this node applied, for watches.
//!
//! Why here: watches must survive a reconnect and work on any node, so each node keeps the
//! changes it applied, in revision order, in a bounded window. A watcher resumes from any
//! revision still in the window; older ones are *compacted* and get a clear refusal. The
//! window starts at the revision the node started from (its snapshot) or installed a
//! snapshot at, since the changes before that were never applied here one by one.

use std::collections::VecDeque;
use std::sync::Arc;

use conclave_state::Change;

/// Retention of the change feed: whichever limit is reached first drops the oldest changes.
#[derive(Debug, Clone, Copy)]
pub struct FeedLimits {
    pub max_changes: usize,
    pub max_bytes: usize,
}

impl Default for FeedLimits {
    fn default() -> Self {
        Self {
            max_changes: 100_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A watcher asked for changes the feed no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("changes up to revision {compacted} are no longer available here")]
pub struct Compacted {
    /// The newest revision that is gone; a watch can start from it or later.
    pub compacted: u64,
}

pub(crate) struct Feed {
    changes: VecDeque<Arc<Change>>,
    /// Every change with a revision above `floor` is (or was, until dropped) in `changes`.
    floor: u64,
    bytes: usize,
    limits: FeedLimits,
}

fn size_of(c: &Change) -> usize {
    c.key.len() + c.value.as_ref().map_or(0, |v| v.len()) + 48
}

impl Feed {
    pub(crate) fn new(floor: u64, limits: FeedLimits) -> Self {
        Self {
            changes: VecDeque::new(),
            floor,
            bytes: 0,
            limits,
        }
    }

    /// Start over at `floor` (after installing a snapshot).
    pub(crate) fn reset(&mut self, floor: u64) {
        self.changes.clear();
        self.bytes = 0;
        self.floor = floor;
    }

    pub(crate) fn push(&mut self, change: Change) {
        self.bytes += size_of(&change);
        self.changes.push_back(Arc::new(change));
        while self.changes.len() > self.limits.max_changes
            || (self.bytes > self.limits.max_bytes && self.changes.len() > 1)
        {
            if let Some(old) = self.changes.pop_front() {
                self.bytes -= size_of(&old);
                self.floor = old.revision;
            }
        }
    }

    /// Up to `limit` changes with a revision above `after`, oldest first.
    pub(crate) fn after(&self, after: u64, limit: usize) -> Result<Vec<Arc<Change>>, Compacted> {
        if after < self.floor {
            return Err(Compacted {
                compacted: self.floor,
            });
        }
        // Revisions are consecutive inside the window, so the start is an index.
        let start = (after - self.floor) as usize;
        Ok(self
            .changes
            .iter()
            .skip(start)
            .take(limit)
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(revision: u64, bytes: usize) -> Change {
        Change {
            revision,
            key: "k".into(),
            value: Some(vec![0; bytes].into()),
        }
    }

    #[test]
    fn the_window_drops_the_oldest_and_reports_what_is_gone() {
        let mut feed = Feed::new(
            10,
            FeedLimits {
                max_changes: 3,
                max_bytes: 1 << 20,
            },
        );
        for r in 11..=15 {
            feed.push(change(r, 1));
        }
        assert_eq!(feed.after(11, 10), Err(Compacted { compacted: 12 }));
        let got: Vec<u64> = feed
            .after(12, 10)
            .unwrap()
            .iter()
            .map(|c| c.revision)
            .collect();
        assert_eq!(got, vec![13, 14, 15]);
        let got: Vec<u64> = feed
            .after(13, 1)
            .unwrap()
            .iter()
            .map(|c| c.revision)
            .collect();
        assert_eq!(got, vec![14]);
        assert!(feed.after(15, 10).unwrap().is_empty());
        assert!(feed.after(99, 10).unwrap().is_empty());
        feed.reset(40);
        assert_eq!(feed.after(39, 1), Err(Compacted { compacted: 40 }));
    }

    #[test]
    fn the_byte_limit_keeps_at_least_the_newest_change() {
        let mut feed = Feed::new(
            0,
            FeedLimits {
                max_changes: 100,
                max_bytes: 1000,
            },
        );
        feed.push(change(1, 600));
        feed.push(change(2, 600));
        assert_eq!(feed.after(0, 10), Err(Compacted { compacted: 1 }));
        feed.push(change(3, 5000));
        assert_eq!(feed.after(2, 10).unwrap().len(), 1);
    }
}
