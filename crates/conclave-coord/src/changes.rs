//! Changes under a prefix (or to one key) from this node's change feed, in revision order.
//!
//! Every revision is exactly one change and the feed holds them in order, so a stream that
//! starts after revision `r` delivers every later matching change exactly once. A start
//! older than the feed is refused with [`CoordError::Compacted`]; a stream that falls behind
//! the feed's window mid-way yields that error once and ends, so the reader lists the
//! state again instead of missing changes silently. The HTTP watch (`/v1/watch`, `observe`)
//! and the in-process watchers (configuration sync) read the same stream.

use std::collections::VecDeque;
use std::sync::Arc;

use base64::Engine;
use conclave_state::Change;
use conclave_storage::StateHandle;
use conclave_types::WatchEvent;
use futures::Stream;
use tokio::sync::watch;

use crate::CoordError;

/// Changes read from the feed per step.
const PAGE: usize = 512;

/// Which changes a stream delivers.
#[derive(Clone, Debug)]
pub enum Filter {
    Prefix(String),
    Key(String),
}

impl Filter {
    fn matches(&self, key: &str) -> bool {
        match self {
            Filter::Prefix(p) => key.starts_with(p.as_str()),
            Filter::Key(k) => key == k,
        }
    }
}

struct Cursor {
    state: StateHandle,
    feed: watch::Receiver<u64>,
    after: u64,
    filter: Filter,
    pending: VecDeque<Arc<Change>>,
    done: bool,
}

/// The changes after `after` that pass `filter`, or [`CoordError::Compacted`] when `after`
/// is older than this node's feed. The stream ends when the node shuts down.
pub fn after(
    state: StateHandle,
    after: u64,
    filter: Filter,
) -> Result<impl Stream<Item = Result<Arc<Change>, CoordError>> + Send + 'static, CoordError> {
    let feed = state.feed_revision();
    state
        .changes_after(after, 0)
        .map_err(|c| CoordError::Compacted {
            compacted: c.compacted,
        })?;
    let cursor = Cursor {
        state,
        feed,
        after,
        filter,
        pending: VecDeque::new(),
        done: false,
    };
    Ok(futures::stream::unfold(cursor, |mut c| async move {
        loop {
            if c.done {
                return None;
            }
            if let Some(change) = c.pending.pop_front() {
                c.after = change.revision;
                if c.filter.matches(&change.key) {
                    return Some((Ok(change), c));
                }
                continue;
            }
            // Mark the feed seen *before* reading it, so a change pushed in between wakes us.
            c.feed.borrow_and_update();
            match c.state.changes_after(c.after, PAGE) {
                Ok(page) if !page.is_empty() => c.pending.extend(page),
                Ok(_) => {
                    if c.feed.changed().await.is_err() {
                        return None; // the node is shutting down
                    }
                }
                Err(gone) => {
                    c.done = true;
                    let e = CoordError::Compacted {
                        compacted: gone.compacted,
                    };
                    return Some((Err(e), c));
                }
            }
        }
    }))
}

/// A change as a key-value event: `put`/`delete`, the value as text or else base64.
pub fn watch_event(change: &Change) -> WatchEvent {
    let (kind, value, value_base64) = match &change.value {
        None => ("delete", None, None),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => ("put", Some(text.to_owned()), None),
            Err(_) => (
                "put",
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            ),
        },
    };
    WatchEvent {
        revision: change.revision,
        kind: kind.into(),
        key: change.key.clone(),
        value,
        value_base64,
    }
}
