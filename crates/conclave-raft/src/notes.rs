//! What the audit log learns from consensus itself: each new leader notes its term, and
//! the leader notes the nodes that join or move (see `conclave_state::audit`).
//!
//! Why proposed, not inferred: the state machine sees log entries, not elections; a note
//! in the log is how every node's audit log gets the same entry. A note is best effort:
//! a leader deposed before its note commits is credited to nobody, and its successor's
//! entry names the last leader that was noted.

use std::time::Duration;

use conclave_state::Command;
use conclave_state::audit::{AuditMeta, Ending, Note};
use openraft::ServerState;
use tokio_util::sync::CancellationToken;

use crate::RaftNode;

/// How long a leader waits before noting its term again after a failed proposal.
const RETRY: Duration = Duration::from_millis(250);

/// On every term this node leads, propose `LeaderElected` once.
pub(crate) async fn note_leadership(node: RaftNode, shutdown: CancellationToken) {
    let mut metrics = node.raft().metrics();
    let mut noted_term = 0;
    loop {
        let (state, term) = {
            let m = metrics.borrow_and_update();
            (m.state, m.current_term)
        };
        if state == ServerState::Leader && term > noted_term {
            let note = Command::Note {
                meta: AuditMeta::node(node.id),
                note: Note::LeaderElected {
                    term,
                    leader: node.id,
                },
                ending: Ending::Applied,
            };
            match node.propose(note).await {
                Ok(_) => noted_term = term,
                Err(e) => {
                    tracing::debug!(error = %e, term, "could not note this node's leadership");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(RETRY) => {}
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
    }
}

impl RaftNode {
    /// Note `note` in the audit log, by `meta`, without waiting: the change it records has
    /// happened (or was refused) already, and the caller's answer must not wait on it.
    pub fn note(&self, meta: AuditMeta, note: Note, ending: Ending) {
        let node = self.clone();
        tokio::spawn(async move {
            if let Err(e) = node.propose(Command::Note { meta, note, ending }).await {
                tracing::debug!(error = %e, "could not add a note to the audit log");
            }
        });
    }
}
