//! Coalesced read-index: many concurrent linearizable reads share one leadership check.
//!
//! A linearizable read must observe every write acknowledged before the read began. The
//! leader confirms it still leads (a quorum round trip) and names its commit index as the
//! *read index*; the reader then waits until its own state machine has applied that index.
//! On a follower the read index is asked from the leader, so reads scale over all nodes.
//!
//! One round costs a quorum round trip (and on a follower a hop to the leader), so callers
//! are grouped into *rounds*: a caller arriving when `r` rounds have started needs round
//! `r + 1`, which by construction starts after it arrived, so its result is valid for that
//! caller. One round runs at a time; everyone who arrived during a round is served by the next.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, watch};

use crate::ConsensusError;

type RoundResult = (u64, Result<u64, ConsensusError>);

/// Produces one read index (one round).
pub(crate) type RoundFn = Box<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<u64, ConsensusError>> + Send>> + Send + Sync,
>;

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
    pub(crate) fn spawn(round: RoundFn) -> Self {
        let inner = Arc::new(Inner {
            started: Mutex::new(0),
            wake: Notify::new(),
            done: watch::channel((0, Ok(0))).0,
        });
        tokio::spawn(run(round, inner.clone()));
        Self { inner }
    }

    /// A read index valid for a read that starts now.
    pub(crate) async fn read_index(&self) -> Result<u64, ConsensusError> {
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

/// The round loop. It ends with the runtime.
async fn run(round_fn: RoundFn, inner: Arc<Inner>) {
    loop {
        inner.wake.notified().await;
        let round = {
            let mut started = inner.started.lock().unwrap_or_else(|p| p.into_inner());
            *started += 1;
            *started
        };
        let result = round_fn().await;
        // Returns the previous round's result, which nobody needs any more.
        let _previous = inner.done.send_replace((round, result));
    }
}
