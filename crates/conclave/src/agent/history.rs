//! The agent's recent history for the dashboard's charts (`GET /v1/agent/samples`): one
//! sample every [`INTERVAL`] over the last 15 minutes, kept in memory.
//!
//! Why here and not from Prometheus: the dashboard must show the last minutes the moment it
//! opens, with nothing else deployed. A sample is cheap (a few atomics, the Raft metrics and,
//! on a member, one status call to the leader for the lag), so the ring is always on.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conclave_api::agent_view::Traffic;
use conclave_raft::RaftNode;
use conclave_types::dashboard::{NodeLag, Sample, Samples};
use tokio_util::sync::CancellationToken;

/// Time between samples.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// Samples kept: 15 minutes' worth.
pub const CAPACITY: usize = (15 * 60) / INTERVAL.as_secs() as usize;

/// Requests this process's API served, by kind, since it started (every agent in the
/// process shares them; a process runs one agent outside tests).
static READS: AtomicU64 = AtomicU64::new(0);
static WRITES: AtomicU64 = AtomicU64::new(0);

/// Count one served request (see [`conclave_api::agent_view::traffic`]).
pub fn count(kind: Traffic) {
    match kind {
        Traffic::Read => READS.fetch_add(1, Ordering::Relaxed),
        Traffic::Write => WRITES.fetch_add(1, Ordering::Relaxed),
    };
}

/// The ring of samples, shared by the sampler and the API.
#[derive(Clone)]
pub struct History {
    node_id: u64,
    ring: Arc<Mutex<VecDeque<Sample>>>,
}

impl History {
    pub fn new(node_id: u64) -> Self {
        Self {
            node_id,
            ring: Arc::new(Mutex::new(VecDeque::with_capacity(CAPACITY))),
        }
    }

    fn push(&self, sample: Sample) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == CAPACITY {
            ring.pop_front();
        }
        ring.push_back(sample);
    }

    /// The samples taken after `since_ms` (all with `None`), oldest first.
    pub fn samples(&self, since_ms: Option<u64>) -> Samples {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        Samples {
            node_id: self.node_id,
            interval_ms: INTERVAL.as_millis() as u64,
            samples: ring
                .iter()
                .filter(|s| since_ms.is_none_or(|t| s.at_ms > t))
                .cloned()
                .collect(),
        }
    }
}

/// Counters at one instant, to turn into rates.
#[derive(Clone, Copy)]
struct Reading {
    at: Instant,
    applied: u64,
    reads: u64,
    writes: u64,
}

/// Per-second rate of a counter between two readings (a counter that went back, as a
/// restored snapshot's applied index may, counts as zero).
fn rate(before: u64, now: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    now.saturating_sub(before) as f64 / secs
}

/// Sample every [`INTERVAL`] until `shutdown`. `node`: this agent's Raft node (`None` on a
/// client agent: no log, no lag).
pub async fn sample(history: History, node: Option<RaftNode>, shutdown: CancellationToken) {
    let read = |node: &Option<RaftNode>| Reading {
        at: Instant::now(),
        applied: node
            .as_ref()
            .and_then(|n| n.metrics().last_applied.map(|l| l.index))
            .unwrap_or(0),
        reads: READS.load(Ordering::Relaxed),
        writes: WRITES.load(Ordering::Relaxed),
    };
    let mut before = read(&node);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(INTERVAL) => {}
        }
        let now = read(&node);
        let elapsed = now.at - before.at;
        let (term, leader_id, lag) = match &node {
            Some(n) => {
                let m = n.metrics();
                (m.current_term, m.current_leader, lag_of(n).await)
            }
            None => (0, None, None),
        };
        history.push(Sample {
            at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            term,
            leader_id,
            applied_per_s: rate(before.applied, now.applied, elapsed),
            reads_per_s: rate(before.reads, now.reads, elapsed),
            writes_per_s: rate(before.writes, now.writes, elapsed),
            lag,
        });
        before = now;
    }
}

/// Each member's lag as the leader reports it (asked of the leader when this node follows);
/// `None` when no leader answered within one interval.
async fn lag_of(node: &RaftNode) -> Option<Vec<NodeLag>> {
    let report = match node.replication_report() {
        Some(r) => r,
        None => tokio::time::timeout(INTERVAL / 2, node.cluster_status())
            .await
            .ok()?
            .ok()?,
    };
    Some(
        report
            .members
            .iter()
            .map(|m| NodeLag {
                node_id: m.node_id,
                entries: m.lag_entries(),
                seconds: m.replication.as_ref().map_or(0.0, |r| r.lag_seconds),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_never_go_negative_and_survive_a_zero_interval() {
        assert_eq!(rate(10, 30, Duration::from_secs(2)), 10.0);
        assert_eq!(rate(30, 10, Duration::from_secs(2)), 0.0);
        assert_eq!(rate(0, 5, Duration::ZERO), 0.0);
    }

    fn at(ms: u64) -> Sample {
        Sample {
            at_ms: ms,
            term: 1,
            leader_id: Some(1),
            applied_per_s: 0.0,
            reads_per_s: 0.0,
            writes_per_s: 0.0,
            lag: None,
        }
    }

    #[test]
    fn the_ring_keeps_the_last_fifteen_minutes_and_answers_since() {
        let h = History::new(3);
        for i in 0..(CAPACITY as u64 + 10) {
            h.push(at(i));
        }
        let all = h.samples(None);
        assert_eq!(all.samples.len(), CAPACITY);
        assert_eq!(all.samples[0].at_ms, 10);
        assert_eq!(all.interval_ms, 2000);
        let newer = h.samples(Some(CAPACITY as u64 + 7));
        assert_eq!(
            newer.samples.iter().map(|s| s.at_ms).collect::<Vec<_>>(),
            vec![CAPACITY as u64 + 8, CAPACITY as u64 + 9]
        );
    }
}
