//! Leadership on request: a transfer to a chosen (or the best) voter, and the planned
//! step-down of a stopping leader that hands over without failing a write.

use std::time::{Duration, Instant};

use conclave_storage::{NodeId, NodeInfo};

use openraft::ServerState;

use crate::cluster::unexpected;
use crate::policy::{self, TransferTarget};
use crate::rpc::{LeaderReply, LeaderRequest, RpcRequest, RpcResponse, Transferred};
use crate::{ConsensusError, RaftNode};

/// This process's leadership of a term.
///
/// `log_floor`, the last log index when it began, is the lowest index a linearizable read
/// may use. openraft 0.9 restarts a node whose saved vote is a committed vote for itself as
/// leader of the same term, without an election and so without a new blank entry; its
/// commit index then starts from what was saved (written without fsync, possibly behind),
/// and openraft's read index (the commit index, or the term's first blank entry, long
/// committed) would let a read miss writes acknowledged before the restart. Entries up to
/// the floor may have been committed by the previous process; a read waits until they are
/// applied here. After an election the term's blank entry is above the floor anyway, so
/// this costs nothing then. (The power-loss test found it: reads right after a whole
/// cluster restarted missed up to 761 acknowledged writes, all still in the logs.)
#[derive(Debug, Clone, Copy)]
pub(crate) struct Leading {
    pub(crate) term: u64,
    pub(crate) at: Instant,
    pub(crate) log_floor: u64,
}

/// Raises a flag for as long as it lives (proposals wait while a handover runs).
struct Hold<'a>(&'a std::sync::atomic::AtomicBool);

impl<'a> Hold<'a> {
    fn new(flag: &'a std::sync::atomic::AtomicBool) -> Self {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        Hold(flag)
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl RaftNode {
    /// Hand leadership to `to` (or the healthiest, most caught-up voter).
    ///
    /// openraft 0.9 has no transfer primitive, and followers refuse to vote while their
    /// leader's lease is valid; the leader itself is not bound by a lease. So, as etcd does,
    /// the leader holds new proposals until the target has its whole log, then asks it to
    /// campaign at once: with the leader's vote that is a majority of three in one vote
    /// round. In larger clusters the target needs a follower too; the leader stops its
    /// heartbeats so their leases run out, and the target campaigns again until they do.
    pub(crate) async fn transfer_leadership(
        &self,
        to: Option<NodeId>,
    ) -> Result<LeaderReply, ConsensusError> {
        let status = self.leader_status();
        let target = match policy::transfer_target(&status.members, self.id, to)? {
            TransferTarget::AlreadyHere => {
                return Ok(LeaderReply::Transferred(Transferred {
                    previous_leader: self.id,
                    leader_id: self.id,
                    term: status.term,
                }));
            }
            TransferTarget::To(m) => m,
        };
        let term = status.term;
        let raft = self.raft();
        // openraft gives a new leader's own vote a lease: until it runs out, this node
        // refuses the target its vote, and the target would campaign term after term.
        let lease = self.leader_lease();
        let leading = self.note_leadership(&raft.metrics().borrow());
        if let Some(leading) = leading {
            tokio::time::sleep(lease.saturating_sub(leading.at.elapsed())).await;
        }
        // While leadership moves, new proposals wait for the next leader (as during an
        // election): the target must hold everything this node has, or this node, the one
        // voter whose vote it can get at once, refuses it (its log would be behind).
        let _hold = Hold::new(&self.inner.handing_over);
        let deadline = Instant::now() + lease;
        self.until_proposals_idle(deadline).await;
        let to = target.node_id;
        let caught_up = raft
            .wait(Some(deadline.saturating_duration_since(Instant::now())))
            .metrics(
                |m| {
                    let matched = m
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(&to).copied().flatten());
                    m.last_log_index.is_some() && matched.map(|l| l.index) >= m.last_log_index
                },
                "the target holds the whole log",
            )
            .await;
        if caught_up.is_err() {
            return Err(ConsensusError::Unavailable(format!(
                "node {to} did not catch up with the leader's log within {lease:?}; node {} still leads",
                self.id
            )));
        }
        let req = RpcRequest::TakeLeadership { term };
        match self
            .inner
            .pool
            .call::<_, RpcResponse>(&target.info.rpc_addr, &req, Duration::from_secs(2), true)
            .await
        {
            Ok(RpcResponse::Ack) => {}
            Ok(other) => {
                return Err(ConsensusError::Unavailable(format!(
                    "node {} declined to take leadership: {other:?}",
                    target.node_id
                )));
            }
            Err(e) => return Err(ConsensusError::Unavailable(e.to_string())),
        }
        tracing::info!(to = target.node_id, "handing leadership over");
        raft.runtime_config().heartbeat(false);
        let deadline = Duration::from_millis(self.inner.tuning.election_timeout_max_ms * 4);
        let me = self.id;
        let waited = raft
            .wait(Some(deadline))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != me),
                "another node leads",
            )
            .await;
        raft.runtime_config().heartbeat(true);
        match waited {
            Ok(m) => Ok(LeaderReply::Transferred(Transferred {
                previous_leader: me,
                leader_id: m.current_leader.unwrap_or(target.node_id),
                term: m.current_term,
            })),
            Err(_) => Err(ConsensusError::Unavailable(format!(
                "leadership did not move to node {} within {deadline:?}; node {me} still leads",
                target.node_id
            ))),
        }
    }

    /// Before a planned stop: if this node leads and another healthy voter exists, stop
    /// taking proposals, let the ones in flight apply, and hand leadership to the most
    /// caught-up voter, so clients see an election's wait, never a failed write. Returns
    /// whom leadership went to (`None`: this node did not lead, or no one could take it).
    pub async fn step_down(&self) -> Option<NodeId> {
        // From here on this node takes no proposal, as leader or as a hop; it is stopping.
        self.inner
            .stepping_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if self.metrics().state != ServerState::Leader {
            return None;
        }
        let status = self.leader_status();
        if policy::transfer_target(&status.members, self.id, None).is_err() {
            return None;
        }
        // Every proposal taken before the flag was raised is answered before leadership
        // moves (a batch still being written when it moves would get no answer).
        self.until_proposals_idle(Instant::now() + self.request_timeout())
            .await;
        let all_applied = |m: &openraft::RaftMetrics<NodeId, NodeInfo>| {
            m.last_applied.map(|l| l.index) >= m.last_log_index
        };
        let _ = self
            .raft()
            .wait(Some(self.request_timeout()))
            .metrics(all_applied, "proposals in flight applied")
            .await;
        let moved = self.transfer_leadership(None).await;
        match moved {
            Ok(LeaderReply::Transferred(t)) => Some(t.leader_id),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "could not hand leadership over before stopping");
                None
            }
        }
    }

    /// Record when this node was first seen leading its current term (and its log then).
    pub(crate) fn note_leadership(
        &self,
        m: &openraft::RaftMetrics<NodeId, NodeInfo>,
    ) -> Option<Leading> {
        let mut since = self
            .inner
            .leading_since
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match (m.state == ServerState::Leader, *since) {
            (true, Some(l)) if l.term == m.current_term => {}
            (true, _) => {
                *since = Some(Leading {
                    term: m.current_term,
                    at: Instant::now(),
                    log_floor: m.last_log_index.unwrap_or(0),
                })
            }
            (false, _) => *since = None,
        }
        *since
    }

    /// Wait until every proposal this node took has been answered, or `deadline`.
    async fn until_proposals_idle(&self, deadline: Instant) {
        while !self.inner.proposals.idle() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub async fn transfer_leader(&self, to: Option<NodeId>) -> Result<Transferred, ConsensusError> {
        match self
            .leader_call(LeaderRequest::TransferLeader { to }, 0)
            .await?
        {
            LeaderReply::Transferred(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }
}
