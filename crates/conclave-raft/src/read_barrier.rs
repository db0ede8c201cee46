//! Coalesced read-index: many concurrent linearizable reads share one leadership check.
//!
//! A linearizable read must observe every write acknowledged before the read began. openraft's
//! `ensure_linearizable` gives that (confirm leadership with a quorum, then wait until the
//! state machine has applied the read index). It costs a quorum round trip, so callers are
//! grouped into *rounds*: a caller arriving when `r` rounds have started needs round `r + 1`,
//! which by construction starts after it arrived, so its result is valid for that caller.
//! One round runs at a time; everyone who arrived during a round is served by the next one.

use std::sync::{Arc, Mutex};

use conclave_storage::TypeConfig;
use openraft::Raft;
use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::{Notify, watch};

use crate::ConsensusError;

type RoundResult = (u64, Result<(), ConsensusError>);

#[derive(Clone)]
pub(crate) struct ReadBarrier {
    inner: Arc<Inner>,
}

struct Inner {
    started: Mutex<u64>,
    wake: Notify,
    done: watch::Sender<RoundResult>,
}

impl ReadBarrier {
    pub(crate) fn spawn(raft: Raft<TypeConfig>) -> Self {
        let inner = Arc::new(Inner {
            started: Mutex::new(0),
            wake: Notify::new(),
            done: watch::channel((0, Ok(()))).0,
        });
        tokio::spawn(run(raft, inner.clone()));
        Self { inner }
    }

    pub(crate) async fn wait(&self) -> Result<(), ConsensusError> {
        let needed = *self.inner.started.lock().unwrap_or_else(|p| p.into_inner()) + 1;
        let mut rx = self.inner.done.subscribe();
        self.inner.wake.notify_one();
        loop {
            {
                let (round, result) = &*rx.borrow_and_update();
                if *round >= needed {
                    return result.clone();
                }
            }
            if rx.changed().await.is_err() {
                return Err(ConsensusError::Unavailable(
                    "the node is shutting down".into(),
                ));
            }
        }
    }
}

/// The round loop. It ends with the runtime; a stopped Raft answers every round with an error.
async fn run(raft: Raft<TypeConfig>, inner: Arc<Inner>) {
    loop {
        inner.wake.notified().await;
        let round = {
            let mut started = inner.started.lock().unwrap_or_else(|p| p.into_inner());
            *started += 1;
            *started
        };
        let result = raft
            .ensure_linearizable()
            .await
            .map(|_| ())
            .map_err(map_read_error);
        // Returns the previous round's result, which nobody needs any more.
        let _previous = inner.done.send_replace((round, result));
    }
}

fn map_read_error(
    e: RaftError<u64, CheckIsLeaderError<u64, conclave_storage::NodeInfo>>,
) -> ConsensusError {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => ConsensusError::NotLeader {
            leader_id: f.leader_id,
            leader: f.leader_node,
        },
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
            ConsensusError::Unavailable(format!("leadership could not be confirmed: {q}"))
        }
        RaftError::Fatal(f) => ConsensusError::Unavailable(f.to_string()),
    }
}
