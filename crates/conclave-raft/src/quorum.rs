//! A leader that lost its quorum says so instead of waiting forever.
//!
//! openraft 0.9 has no check-quorum: a leader cut off from its voters stays leader, and a
//! write to it waits for a commit that cannot come. conclave watches the time since a
//! majority of voters last answered this leader ([`policy::quorum_silence`]); once it exceeds
//! the leader lease the followers honour, the majority may have elected another leader, so
//! this one takes nothing new (`NoQuorum`, 503 `no_quorum`) and ends what it was waiting on.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use conclave_storage::NodeId;

use crate::error::no_quorum_text;
use crate::{ConsensusError, RaftNode, policy};

impl RaftNode {
    /// How long this leader has gone without hearing from a majority of its voters, once
    /// that is longer than the leader lease its followers honour (`election_timeout_max_ms`).
    /// From then on the majority may already have elected another leader, so this one
    /// accepts nothing new and its health says `no_quorum`. `None` while it has a quorum or
    /// does not lead. During a joint membership change a commit needs a majority of each
    /// configuration, so the longest of their silences counts.
    pub fn quorum_lost(&self) -> Option<Duration> {
        // Every request asks; the answer is worked out at most every few milliseconds.
        let now = self.inner.started.elapsed();
        if let Some(answer) = self.inner.quorum.fresh(now) {
            return answer;
        }
        let answer = self.work_out_quorum_lost();
        self.inner.quorum.store(now, answer);
        answer
    }

    fn work_out_quorum_lost(&self) -> Option<Duration> {
        // Read in place, not cloned: this runs every few milliseconds under load.
        let (configs, leading_for) = {
            let m = self.inner.raft.metrics();
            let m = m.borrow();
            if m.state != openraft::ServerState::Leader {
                return None;
            }
            // A voter not heard from at all has been silent for as long as this process has
            // led (a node restarted as leader of its term has heard from no one yet, and is
            // not cut off for that).
            let leading_for = self.note_leadership(&m).map(|l| l.at.elapsed());
            let configs: Vec<BTreeSet<NodeId>> =
                m.membership_config.membership().get_joint_config().clone();
            (configs, leading_for)
        };
        let silence: BTreeMap<NodeId, Option<Duration>> = configs
            .iter()
            .flatten()
            .filter(|v| **v != self.id)
            .map(|v| (*v, self.inner.peers.since_last_ack(*v).or(leading_for)))
            .collect();
        let silent = configs
            .iter()
            .map(|voters| policy::quorum_silence(self.id, voters, &silence))
            .max()
            .unwrap_or(Duration::ZERO);
        (silent > self.leader_lease()).then_some(silent)
    }

    /// How long a follower that heard from its leader refuses to vote for anyone else
    /// (openraft 0.9's leader lease).
    pub(crate) fn leader_lease(&self) -> Duration {
        Duration::from_millis(self.inner.tuning.election_timeout_max_ms)
    }

    pub(crate) fn no_quorum(&self, silent: Duration) -> ConsensusError {
        ConsensusError::NoQuorum {
            leader_id: self.id,
            silent_ms: silent_ms(silent),
        }
    }

    /// `NoQuorum` when [`Self::quorum_lost`] says so.
    pub fn refuse_without_quorum(&self) -> Result<(), ConsensusError> {
        match self.quorum_lost() {
            Some(silent) => Err(self.no_quorum(silent)),
            None => Ok(()),
        }
    }

    /// Run `work`, or end it with `on_loss` as soon as this leader has lost its quorum
    /// (checked every heartbeat), so no request waits on a leader that cannot commit.
    pub(crate) async fn until_quorum_lost<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, ConsensusError>>,
        on_loss: impl FnOnce(Duration) -> ConsensusError,
    ) -> Result<T, ConsensusError> {
        let heartbeat = Duration::from_millis(self.inner.tuning.heartbeat_ms.max(10));
        let lost = async {
            loop {
                tokio::time::sleep(heartbeat).await;
                if let Some(silent) = self.quorum_lost() {
                    return silent;
                }
            }
        };
        tokio::select! {
            done = work => done,
            silent = lost => Err(on_loss(silent)),
        }
    }
}

/// A quorum silence in milliseconds; `None` when no majority ever answered this node.
fn silent_ms(silent: Duration) -> Option<u64> {
    (silent != Duration::MAX).then(|| silent.as_millis().min(u128::from(u64::MAX)) as u64)
}

/// What a request this leader was waiting on ends with when it loses its quorum: `what`
/// may have been appended, so its outcome is unknown; `then` says what to do.
pub(crate) fn lost_in_flight(what: &str, then: &str, silent: Duration) -> ConsensusError {
    ConsensusError::Indeterminate(format!(
        "the leader lost its quorum ({}) while {what} was in flight; {then}",
        no_quorum_text(&silent_ms(silent))
    ))
}

/// How long a worked-out answer of [`RaftNode::quorum_lost`] is reused: short against the
/// lease (600 ms by default), long against the time a request takes.
const REUSE_FOR: Duration = Duration::from_millis(5);

/// The last answer, in two atomics (a torn read mixes two answers at most 5 ms apart).
#[derive(Default)]
pub(crate) struct Cached {
    /// When it was worked out, milliseconds since the node started, plus one (0: never).
    at_ms: AtomicU64,
    /// The silence in milliseconds, `u64::MAX - 1` for "never answered"; `u64::MAX`: the
    /// quorum is not lost.
    silent_ms: AtomicU64,
}

impl Cached {
    fn fresh(&self, now: Duration) -> Option<Option<Duration>> {
        let at = self.at_ms.load(Ordering::Acquire);
        let now_ms = now.as_millis() as u64 + 1;
        if at == 0 || now_ms.saturating_sub(at) > REUSE_FOR.as_millis() as u64 {
            return None;
        }
        Some(match self.silent_ms.load(Ordering::Acquire) {
            u64::MAX => None,
            ms if ms == u64::MAX - 1 => Some(Duration::MAX),
            ms => Some(Duration::from_millis(ms)),
        })
    }

    fn store(&self, now: Duration, answer: Option<Duration>) {
        let silent = match answer {
            None => u64::MAX,
            Some(d) if d == Duration::MAX => u64::MAX - 1,
            Some(d) => (d.as_millis() as u64).min(u64::MAX - 2),
        };
        self.silent_ms.store(silent, Ordering::Release);
        self.at_ms
            .store(now.as_millis() as u64 + 1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_answer_is_reused_briefly_and_keeps_never_apart() {
        let c = Cached::default();
        let ms = Duration::from_millis;
        assert_eq!(c.fresh(ms(10)), None, "nothing worked out yet");
        c.store(ms(10), None);
        assert_eq!(c.fresh(ms(12)), Some(None));
        assert_eq!(c.fresh(ms(16)), None, "older than REUSE_FOR");
        c.store(ms(20), Some(ms(900)));
        assert_eq!(c.fresh(ms(21)), Some(Some(ms(900))));
        c.store(ms(30), Some(Duration::MAX));
        assert_eq!(c.fresh(ms(30)), Some(Some(Duration::MAX)));
    }
}
