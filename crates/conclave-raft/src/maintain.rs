//! The background duties every node runs ([`maintain`]): keep the address book in step with
//! the membership; on the leader, track how far each member is behind, report peers that
//! stop or start answering, and promote caught-up learners while the cluster has fewer
//! voters than wanted; on every node, announce its addresses when the membership holds old
//! ones, and notice when it has been removed while it was away.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use conclave_storage::{NodeId, NodeInfo};
use openraft::{ChangeMembers, ServerState};
use tokio_util::sync::CancellationToken;

use crate::RaftNode;
use crate::cluster::{LEADERLESS_CHECK_AFTER, TICK};
use crate::policy;
use crate::reachability::{PeerEvent, Reachability};
use crate::rpc::{LeaderRequest, MemberRole, RpcRequest, RpcResponse};

impl RaftNode {
    /// Leader: promote one caught-up learner while there are fewer voters than wanted.
    async fn promote_caught_up_learners(&self) {
        let status = self.leader_status();
        let voters = status
            .members
            .iter()
            .filter(|m| m.role == MemberRole::Voter)
            .count();
        let candidate = policy::promotion_candidate(&status.members, self.inner.voters_wanted);
        if let Some(id) = candidate {
            match self
                .change(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
                .await
            {
                Ok(()) => tracing::info!(
                    node_id = id,
                    voters = voters + 1,
                    wanted = self.inner.voters_wanted,
                    "promoted a caught-up learner to voter"
                ),
                Err(e) => tracing::debug!(node_id = id, error = %e, "promotion failed; will retry"),
            }
        }
    }

    /// A member whose recorded addresses are not its current ones tells the leader, through
    /// any member it can reach (the leader may not be able to reach it at the old address).
    async fn announce_if_moved(&self) {
        let (nodes, _) = self.membership();
        let me = self.info();
        let Some(recorded) = nodes.get(&self.id) else {
            return;
        };
        let wanted = NodeInfo {
            learner_only: recorded.learner_only,
            ..me
        };
        if *recorded == wanted {
            return;
        }
        let req = LeaderRequest::SetInfo {
            node_id: self.id,
            info: wanted.clone(),
        };
        if self.send_to_leader(req, "this node's new addresses").await {
            tracing::info!(info = %wanted, "announced this node's new addresses");
        }
    }

    /// Send a request about this node to the leader: served here when this node leads, else
    /// through any member it can reach, the leader first (the leader may not be able to
    /// reach this node at an old address). `what` names it in the log. True once served.
    pub(crate) async fn send_to_leader(&self, req: LeaderRequest, what: &str) -> bool {
        if self.metrics().current_leader == Some(self.id) {
            if let Err(e) = self.serve_membership(req).await {
                tracing::warn!(error = %e, "could not record {what}");
                return false;
            }
            return true;
        }
        let (nodes, _) = self.membership();
        let leader = self.metrics().current_leader;
        let mut targets: Vec<(NodeId, String)> = nodes
            .iter()
            .filter(|(id, _)| **id != self.id)
            .map(|(id, n)| (*id, n.rpc_addr.clone()))
            .collect();
        targets.sort_by_key(|(id, _)| Some(*id) != leader);
        for (id, addr) in targets {
            let rpc = RpcRequest::Leader {
                req: req.clone(),
                hops: 1,
            };
            match self
                .inner
                .pool
                .call::<_, RpcResponse>(&addr, &rpc, Duration::from_secs(3), true)
                .await
            {
                Ok(RpcResponse::Leader(Ok(_))) => return true,
                Ok(RpcResponse::Leader(Err(e))) => {
                    // A refusal (a name another member holds) will not change by retrying
                    // through another member.
                    tracing::warn!(via = id, error = %e, "the leader refused {what}");
                    return false;
                }
                Ok(other) => tracing::debug!(via = id, reply = ?other, "{what}: not accepted"),
                Err(e) => tracing::debug!(via = id, error = %e, "{what}: announcement failed"),
            }
        }
        false
    }

    /// Ask the members, at the addresses this node's membership records (never the sender of
    /// a message), whether this node was removed; `first` is asked first. Marks this node
    /// removed, and returns `true`, only when a member that knows a leader shows a
    /// membership without it. A member that knows no leader for a while asks this; so does
    /// a node told it was removed (the message alone is never trusted).
    pub(crate) async fn check_still_member(&self, first: Option<NodeId>) -> bool {
        let (nodes, _) = self.membership();
        let mut order: Vec<(&NodeId, &NodeInfo)> =
            nodes.iter().filter(|(id, _)| **id != self.id).collect();
        order.sort_by_key(|(id, _)| Some(**id) != first);
        for (id, info) in order {
            let resp = self
                .inner
                .pool
                .call::<_, RpcResponse>(
                    &info.rpc_addr,
                    &RpcRequest::Info,
                    Duration::from_secs(2),
                    true,
                )
                .await;
            if let Ok(RpcResponse::Info(report)) = resp
                && report.initialized
                && report.leader_id.is_some()
                && report.cluster_id == self.cluster_id()
                && !report.members.iter().any(|(m, _, _)| *m == self.id)
            {
                self.mark_removed(report.leader_id.unwrap_or(*id)).await;
                return true;
            }
        }
        false
    }
}
/// Log, once per change, which peers stopped or started answering this leader.
fn report_reachability<'a>(
    node: &RaftNode,
    reachability: &mut Reachability,
    leading_for: Duration,
    members: impl Iterator<Item = (&'a NodeId, &'a NodeInfo)>,
) {
    let mut addrs = BTreeMap::new();
    let silence: BTreeMap<NodeId, Option<Duration>> = members
        .filter(|(id, _)| **id != node.id)
        .map(|(id, info)| {
            addrs.insert(*id, info.rpc_addr.clone());
            (*id, node.inner.peers.since_last_ack(*id))
        })
        .collect();
    let limit = Duration::from_millis(node.inner.tuning.election_timeout_max_ms);
    let now = node.inner.started.elapsed();
    for event in reachability.observe(now, leading_for, &silence, limit) {
        match event {
            PeerEvent::Lost {
                node_id,
                silent_for,
            } => tracing::warn!(
                node_id,
                addr = addrs.get(&node_id).map(String::as_str).unwrap_or(""),
                silent_ms = silent_for.as_millis() as u64,
                "lost contact with a member; replication to it retries until it answers"
            ),
            PeerEvent::Recovered { node_id, down_for } => tracing::info!(
                node_id,
                down_ms = down_for.as_millis() as u64,
                "a member answers again"
            ),
            PeerEvent::StillDown { peers } => {
                let list: Vec<String> = peers
                    .iter()
                    .map(|(id, d)| format!("node {id} for {}s", d.as_secs()))
                    .collect();
                tracing::warn!(down = %list.join(", "), "members still unreachable");
            }
        }
    }
}

/// The background duties; ends with `shutdown`.
pub(crate) async fn maintain(node: RaftNode, shutdown: CancellationToken) {
    let mut tick: u64 = 0;
    let mut leaderless_since: Option<Instant> = None;
    let mut leading_since: Option<Instant> = None;
    let mut reachability = Reachability::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        tick += 1;
        if node.removed().is_some() {
            continue;
        }
        let m = node.metrics();
        let membership = m.membership_config.membership();
        node.inner.peers.update(membership.nodes());
        let initialized = membership.nodes().next().is_some();
        if m.state == ServerState::Leader {
            let since = *leading_since.get_or_insert_with(Instant::now);
            report_reachability(
                &node,
                &mut reachability,
                since.elapsed(),
                membership.nodes(),
            );
            let last = m.last_log_index.unwrap_or(0);
            if let Some(r) = &m.replication {
                let matched: BTreeMap<NodeId, u64> = r
                    .iter()
                    .map(|(id, l)| (*id, l.as_ref().map_or(0, |l| l.index)))
                    .collect();
                node.inner.lag.sample(&matched, last);
            }
            if tick.is_multiple_of(4) {
                node.promote_caught_up_learners().await;
            }
        } else if leading_since.take().is_some() {
            reachability.reset();
        }
        if initialized && tick % 4 == 2 {
            node.announce_if_moved().await;
            node.announce_name_if_changed().await;
        }
        if initialized && m.current_leader.is_none() {
            let since = *leaderless_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= LEADERLESS_CHECK_AFTER {
                leaderless_since = Some(Instant::now());
                node.check_still_member(None).await;
            }
        } else {
            leaderless_since = None;
        }
    }
}
