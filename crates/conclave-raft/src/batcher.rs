//! Group commit: concurrent proposals share one Raft log entry, hence one fsync.
//!
//! Why: openraft 0.9 appends one entry per `client_write` and waits for each append's fsync
//! before taking the next, so without grouping, throughput is capped at one write per fsync.
//! The batcher keeps exactly one batch in flight; while it is being made durable, new
//! proposals queue up and form the next batch. Under load, batches grow by themselves; with a
//! single client, a batch is one command and latency is one fsync.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use conclave_state::{Batch, Command, Outcome};
use conclave_storage::{StateHandle, TypeConfig};
use openraft::Raft;
use tokio::sync::{mpsc, oneshot};

use crate::{ConsensusError, map_write_error};

type Reply = oneshot::Sender<Result<Outcome, ConsensusError>>;

/// A batch stops growing past this many bytes of keys and values, so one log entry (and one
/// append request of several entries) stays a bounded size.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

fn command_bytes(c: &Command) -> usize {
    match c {
        Command::Put { key, value, .. } => key.len() + value.len() + 16,
        Command::ConfigPut { content, .. } => content.len() + 128,
        Command::Audited { command, .. } => command_bytes(command) + 256,
        _ => 128,
    }
}

/// The cluster clock as this leader keeps it: continued from the applied state's clock at the
/// start of its term with the monotonic clock, so wall-clock jumps cannot move it and a new
/// leader never starts ahead of what the cluster has seen plus real elapsed time.
struct LeaderClock {
    term: u64,
    base_ms: u64,
    since: Instant,
}

impl LeaderClock {
    /// A clock stamp for a batch proposed in `term`.
    fn stamp(&mut self, term: u64, state: &StateHandle) -> Command {
        if term != self.term {
            self.term = term;
            self.base_ms = state.cluster_clock_estimate();
            self.since = Instant::now();
        }
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Command::Clock {
            term,
            now_ms: self.base_ms + self.since.elapsed().as_millis() as u64,
            wall_ms,
        }
    }
}

/// Counters: commands proposed and log entries (batches) they were grouped into.
#[derive(Debug, Default)]
pub struct BatchStats {
    pub commands: AtomicU64,
    pub batches: AtomicU64,
}

#[derive(Clone)]
pub(crate) struct Batcher {
    tx: mpsc::Sender<(Command, Reply)>,
    stats: Arc<BatchStats>,
    /// Proposals taken and not yet answered (see [`Batcher::enter`]).
    in_flight: Arc<AtomicUsize>,
}

/// One proposal counted as in flight until this is dropped.
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Batcher {
    pub(crate) fn spawn(raft: Raft<TypeConfig>, state: StateHandle, max_batch: usize) -> Self {
        let (tx, rx) = mpsc::channel(max_batch.max(1) * 4);
        let stats = Arc::new(BatchStats::default());
        tokio::spawn(run(raft, state, rx, max_batch.max(1), stats.clone()));
        Self {
            tx,
            stats,
            in_flight: Arc::default(),
        }
    }

    /// Count a proposal as in flight. Taken *before* a proposal checks whether the node is
    /// stepping down, so that a step-down that sees no proposal in flight after raising its
    /// flag knows every later one will see the flag.
    pub(crate) fn enter(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.in_flight.clone())
    }

    /// No proposal is in flight.
    pub(crate) fn idle(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
    }

    pub(crate) fn stats(&self) -> &BatchStats {
        &self.stats
    }

    pub(crate) async fn propose(&self, command: Command) -> Result<Outcome, ConsensusError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((command, reply))
            .await
            .map_err(|_| ConsensusError::Unavailable("the node is shutting down".into()))?;
        rx.await.unwrap_or_else(|_| {
            Err(ConsensusError::Indeterminate(
                "the node stopped while the write was in flight".into(),
            ))
        })
    }
}

async fn run(
    raft: Raft<TypeConfig>,
    state: StateHandle,
    mut rx: mpsc::Receiver<(Command, Reply)>,
    max_batch: usize,
    stats: Arc<BatchStats>,
) {
    let mut queued: Vec<(Command, Reply)> = Vec::with_capacity(max_batch);
    let mut clock = LeaderClock {
        term: 0,
        base_ms: 0,
        since: Instant::now(),
    };
    while let Some(first) = rx.recv().await {
        let mut bytes = command_bytes(&first.0);
        queued.push(first);
        // Take what queued up meanwhile, up to the count and byte caps.
        while queued.len() < max_batch && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(next) => {
                    bytes += command_bytes(&next.0);
                    queued.push(next);
                }
                Err(_) => break,
            }
        }
        let (mut commands, replies): (Vec<Command>, Vec<Reply>) = queued.drain(..).unzip();
        stats
            .commands
            .fetch_add(commands.len() as u64, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        // Time arrives inside the log: a clock stamp goes first whenever a command needs it.
        let stamped = commands.iter().any(Command::needs_clock);
        if stamped {
            let term = raft.metrics().borrow().current_term;
            commands.insert(0, clock.stamp(term, &state));
        }
        match raft.client_write(Batch { commands }).await {
            Ok(resp) => {
                let outcomes = resp.data.into_iter().skip(usize::from(stamped));
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                let err = map_write_error(e);
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}
