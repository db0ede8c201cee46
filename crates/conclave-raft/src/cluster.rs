//! Membership: the leader's side of every membership request, with the safety checks an
//! operator expects, and the background duties every node runs.
//!
//! Every change goes through `change_membership`, so all nodes agree on who the members are
//! and where they live. The leader refuses a change that would leave the cluster without a
//! healthy quorum unless forced, and never removes or demotes the last voter.
//!
//! Background duties ([`maintain`]): keep the address book in step with the membership;
//! on the leader, track how far each member is behind and promote caught-up learners while
//! the cluster has fewer voters than wanted; on every node, announce its addresses when the
//! membership holds old ones (it restarted on a new address), and notice when it has been
//! removed while it was away.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use conclave_storage::{NodeId, NodeInfo, identity};
use openraft::{ChangeMembers, ServerState};
use tokio_util::sync::CancellationToken;

use crate::policy::{self, TransferTarget};
use crate::reachability::{PeerEvent, Reachability};
use crate::rpc::{
    ClusterReport, LeaderReply, LeaderRequest, MemberReport, MemberRole, Replication, RpcRequest,
    RpcResponse, Transferred,
};
use crate::{ConsensusError, RaftNode, RejectReason, VoterExit, map_write_error};

/// A member more entries behind than this is not healthy.
const MAX_HEALTHY_LAG: u64 = 1000;
/// How often the background duties run.
const TICK: Duration = Duration::from_millis(250);
/// How long a member may know no leader before it asks others whether it was removed.
const LEADERLESS_CHECK_AFTER: Duration = Duration::from_secs(5);

/// Since when each member has been behind the leader's last log index (leader only).
#[derive(Default)]
pub(crate) struct LagTracker {
    behind_since: Mutex<HashMap<NodeId, Instant>>,
}

impl LagTracker {
    fn sample(&self, matched: &BTreeMap<NodeId, u64>, last_index: u64) {
        let mut map = self.behind_since.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|id, _| matched.contains_key(id));
        for (id, m) in matched {
            if *m >= last_index {
                map.remove(id);
            } else {
                map.entry(*id).or_insert(now);
            }
        }
    }

    fn seconds_behind(&self, id: NodeId) -> f64 {
        let map = self.behind_since.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&id).map_or(0.0, |t| t.elapsed().as_secs_f64())
    }
}

fn not_a_member(id: NodeId, nodes: &BTreeMap<NodeId, NodeInfo>) -> ConsensusError {
    RejectReason::NotAMember {
        node_id: id,
        members: nodes.keys().copied().collect(),
    }
    .into()
}

fn unexpected(reply: LeaderReply) -> ConsensusError {
    ConsensusError::Unavailable(format!("unexpected reply from the leader: {reply:?}"))
}

impl RaftNode {
    /// The committed membership as this node knows it: every member and the voters.
    fn membership(&self) -> (BTreeMap<NodeId, NodeInfo>, BTreeSet<NodeId>) {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        (
            membership.nodes().map(|(id, n)| (*id, n.clone())).collect(),
            membership.voter_ids().collect(),
        )
    }

    /// Wait for this node's turn to change the membership: one change at a time, each after
    /// the previous one committed. openraft refuses (and logs an ERROR) otherwise, as when
    /// several nodes announce their addresses right after a cluster forms.
    async fn membership_turn(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, ConsensusError> {
        let turn = self.inner.membership_changes.lock().await;
        let committed = |m: &openraft::RaftMetrics<NodeId, NodeInfo>| {
            let at = m.membership_config.log_id().map_or(0, |l| l.index);
            m.last_applied.is_some_and(|l| l.index >= at)
        };
        self.raft()
            .wait(Some(self.request_timeout()))
            .metrics(committed, "the membership is committed")
            .await
            .map_err(|_| RejectReason::MembershipChangeInProgress {
                detail: "the previous membership change has not committed".into(),
            })?;
        Ok(turn)
    }

    async fn change(
        &self,
        change: ChangeMembers<NodeId, NodeInfo>,
        retain: bool,
    ) -> Result<(), ConsensusError> {
        let _turn = self.membership_turn().await?;
        self.raft()
            .change_membership(change, retain)
            .await
            .map(|_| ())
            .map_err(map_write_error)
    }

    /// Members as the leader sees them: replication progress, contact and health.
    fn leader_status(&self) -> ClusterReport {
        let m = self.metrics();
        let last = m.last_log_index.unwrap_or(0);
        let (nodes, voters) = self.membership();
        let matched: BTreeMap<NodeId, u64> = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, l)| (*id, l.as_ref().map_or(0, |l| l.index)))
                    .collect()
            })
            .unwrap_or_default();
        let contact_limit = Duration::from_millis(self.inner.tuning.election_timeout_max_ms);
        let members: Vec<MemberReport> = nodes
            .iter()
            .map(|(id, info)| {
                let me = *id == self.id;
                let match_index = if me {
                    Some(last)
                } else {
                    matched.get(id).copied()
                };
                let lag = match_index.map(|mi| last.saturating_sub(mi));
                let contact = if me {
                    Some(Duration::ZERO)
                } else {
                    self.inner.peers.since_last_ack(*id)
                };
                let healthy = me
                    || (contact.is_some_and(|c| c <= contact_limit)
                        && lag.is_some_and(|l| l <= MAX_HEALTHY_LAG));
                MemberReport {
                    node_id: *id,
                    role: role_of(*id, &voters),
                    info: info.clone(),
                    is_leader: me,
                    replication: Some(Replication {
                        match_index,
                        lag_entries: lag,
                        lag_seconds: if me {
                            0.0
                        } else {
                            self.inner.lag.seconds_behind(*id)
                        },
                        last_contact_ms: contact.map(|c| c.as_millis() as u64),
                    }),
                    healthy,
                }
            })
            .collect();
        let healthy_voters = members
            .iter()
            .filter(|mb| mb.role == MemberRole::Voter && mb.healthy)
            .count();
        ClusterReport {
            cluster_id: self.cluster_id().unwrap_or_default(),
            leader_id: m.current_leader,
            term: m.current_term,
            commit_index: self.committed_index().unwrap_or(0),
            last_log_index: last,
            voters_wanted: self.inner.voters_wanted as u64,
            quorum_healthy: healthy_voters > voters.len() / 2,
            reported_by: self.id,
            members,
        }
    }

    /// Members as this node alone knows them (no leader answered): roles and addresses.
    pub fn local_members(&self) -> Vec<MemberReport> {
        let m = self.metrics();
        let (nodes, voters) = self.membership();
        nodes
            .into_iter()
            .map(|(id, info)| MemberReport {
                node_id: id,
                role: role_of(id, &voters),
                info,
                is_leader: m.current_leader == Some(id),
                replication: None,
                healthy: false,
            })
            .collect()
    }

    fn healthy_members(&self) -> BTreeSet<NodeId> {
        self.leader_status()
            .members
            .into_iter()
            .filter(|m| m.healthy)
            .map(|m| m.node_id)
            .collect()
    }

    /// Voter `node_id` may stop voting (see [`policy::voter_may_leave`]).
    fn check_voter_can_leave(
        &self,
        action: VoterExit,
        node_id: NodeId,
        voters: &BTreeSet<NodeId>,
        force: bool,
    ) -> Result<(), ConsensusError> {
        let healthy = self.healthy_members();
        policy::voter_may_leave(action, node_id, voters, &healthy, force).map_err(Into::into)
    }

    /// Serve a membership request on the leader.
    pub(crate) async fn serve_membership(
        &self,
        req: LeaderRequest,
    ) -> Result<LeaderReply, ConsensusError> {
        let (nodes, voters) = self.membership();
        match req {
            LeaderRequest::Propose(_) | LeaderRequest::ReadIndex => Err(
                ConsensusError::Unavailable("not a membership request".into()),
            ),
            LeaderRequest::Status => Ok(LeaderReply::Status(Box::new(self.leader_status()))),
            LeaderRequest::Join { node_id, info } => {
                match nodes.get(&node_id) {
                    Some(known) if *known == info => {}
                    Some(_) => self.set_nodes(node_id, info).await?,
                    None => {
                        tracing::info!(node_id, %info, "adding a joining node as a learner");
                        let _turn = self.membership_turn().await?;
                        self.raft()
                            .add_learner(node_id, info, false)
                            .await
                            .map_err(map_write_error)?;
                    }
                }
                Ok(LeaderReply::Members(self.leader_status().members))
            }
            LeaderRequest::AddMember {
                node_id,
                info,
                voter,
            } => {
                match nodes.get(&node_id) {
                    Some(known) if known.rpc_addr == info.rpc_addr => {}
                    Some(known) => {
                        return Err(RejectReason::AlreadyMember {
                            node_id,
                            rpc_addr: known.rpc_addr.clone(),
                        }
                        .into());
                    }
                    None => {
                        let wait = self.request_timeout() * 4;
                        let _turn = self.membership_turn().await?;
                        match tokio::time::timeout(
                            wait,
                            self.raft().add_learner(node_id, info, voter),
                        )
                        .await
                        {
                            Ok(r) => {
                                r.map_err(map_write_error)?;
                            }
                            Err(_) => {
                                return Err(RejectReason::NotCaughtUp {
                                    node_id,
                                    waited_ms: wait.as_millis() as u64,
                                }
                                .into());
                            }
                        }
                    }
                }
                if voter && !voters.contains(&node_id) {
                    self.change(ChangeMembers::AddVoterIds(BTreeSet::from([node_id])), true)
                        .await?;
                }
                Ok(LeaderReply::Members(self.leader_status().members))
            }
            LeaderRequest::SetInfo { node_id, info } => {
                match nodes.get(&node_id) {
                    None => return Err(not_a_member(node_id, &nodes)),
                    Some(known) if *known == info => {}
                    Some(known) => {
                        tracing::info!(node_id, old = %known, new = %info, "a member announced new addresses");
                        self.set_nodes(node_id, info).await?;
                    }
                }
                Ok(LeaderReply::Members(self.leader_status().members))
            }
            LeaderRequest::Remove { node_id, force } => {
                if !nodes.contains_key(&node_id) {
                    return Err(not_a_member(node_id, &nodes));
                }
                if voters.contains(&node_id) {
                    self.check_voter_can_leave(VoterExit::Remove, node_id, &voters, force)?;
                    if node_id == self.id {
                        return self
                            .hand_over_then(LeaderRequest::Remove { node_id, force })
                            .await;
                    }
                    self.change(
                        ChangeMembers::RemoveVoters(BTreeSet::from([node_id])),
                        false,
                    )
                    .await?;
                } else {
                    self.change(ChangeMembers::RemoveNodes(BTreeSet::from([node_id])), false)
                        .await?;
                }
                tracing::info!(node_id, "removed a member");
                if let Some(info) = nodes.get(&node_id) {
                    self.tell_removed(info.rpc_addr.clone());
                }
                Ok(LeaderReply::Members(self.leader_status().members))
            }
            LeaderRequest::Promote { node_id } => {
                let Some(info) = nodes.get(&node_id) else {
                    return Err(not_a_member(node_id, &nodes));
                };
                if voters.contains(&node_id) {
                    return Ok(LeaderReply::Members(self.leader_status().members));
                }
                if info.learner_only {
                    let info = NodeInfo {
                        learner_only: false,
                        ..info.clone()
                    };
                    self.set_nodes(node_id, info).await?;
                }
                self.change(ChangeMembers::AddVoterIds(BTreeSet::from([node_id])), true)
                    .await?;
                tracing::info!(node_id, "promoted a learner to voter");
                Ok(LeaderReply::Members(self.leader_status().members))
            }
            LeaderRequest::Demote { node_id, force } => {
                let Some(info) = nodes.get(&node_id) else {
                    return Err(not_a_member(node_id, &nodes));
                };
                if !voters.contains(&node_id) {
                    return Ok(LeaderReply::Members(self.leader_status().members));
                }
                self.check_voter_can_leave(VoterExit::Demote, node_id, &voters, force)?;
                if node_id == self.id {
                    return self
                        .hand_over_then(LeaderRequest::Demote { node_id, force })
                        .await;
                }
                // Marked learner-only first, so the promoter does not undo the demotion.
                let info = NodeInfo {
                    learner_only: true,
                    ..info.clone()
                };
                self.set_nodes(node_id, info).await?;
                self.change(ChangeMembers::RemoveVoters(BTreeSet::from([node_id])), true)
                    .await?;
                tracing::info!(node_id, "demoted a voter to learner");
                Ok(LeaderReply::Members(self.leader_status().members))
            }
            LeaderRequest::TransferLeader { to } => self.transfer_leadership(to).await,
        }
    }

    async fn set_nodes(&self, node_id: NodeId, info: NodeInfo) -> Result<(), ConsensusError> {
        self.change(
            ChangeMembers::SetNodes(BTreeMap::from([(node_id, info)])),
            true,
        )
        .await
    }

    /// The leader cannot remove or demote itself in place: hand leadership over, then let
    /// the new leader do it. Boxed with an explicit `Send` bound because it recurses through
    /// `leader_call` back into `serve_membership`.
    fn hand_over_then(
        &self,
        req: LeaderRequest,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<LeaderReply, ConsensusError>> + Send>> {
        let node = self.clone();
        Box::pin(async move {
            node.transfer_leadership(None).await?;
            node.leader_call(req, 0).await
        })
    }

    fn tell_removed(&self, addr: String) {
        let node = self.clone();
        tokio::spawn(async move {
            let req = RpcRequest::Removed { by: node.id };
            if let Err(e) = node
                .inner
                .pool
                .call::<_, RpcResponse>(&addr, &req, Duration::from_secs(2), true)
                .await
            {
                tracing::info!(%addr, error = %e, "could not tell the removed node; it will find out when it asks");
            }
        });
    }

    /// Hand leadership to `to` (or the healthiest, most caught-up voter).
    ///
    /// openraft 0.9 has no transfer primitive, and followers refuse to vote while their
    /// leader's lease is valid. So the leader stops sending heartbeats, asks the target to
    /// campaign, and waits: the target campaigns as soon as the leases run out, ahead of
    /// every other follower's randomized election timer.
    async fn transfer_leadership(&self, to: Option<NodeId>) -> Result<LeaderReply, ConsensusError> {
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
        let raft = self.raft();
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
        let deadline = Instant::now() + self.request_timeout();
        while !self.inner.proposals.idle() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
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

    /// Asked by the leader to take over: campaign until elected or the attempt times out.
    pub(crate) fn campaign_for_transfer(&self, term: u64) {
        let node = self.clone();
        tokio::spawn(async move {
            let tuning = &node.inner.tuning;
            let deadline =
                Instant::now() + Duration::from_millis(tuning.election_timeout_max_ms * 4);
            let pause = Duration::from_millis(tuning.heartbeat_ms.max(50));
            while Instant::now() < deadline {
                let m = node.metrics();
                if m.state == ServerState::Leader {
                    tracing::info!(term = m.current_term, "took over leadership");
                    return;
                }
                if m.current_leader.is_some_and(|l| l != node.id) && m.current_term > term {
                    // Someone else won a newer term: the transfer is over either way.
                    return;
                }
                if node.raft().trigger().elect().await.is_err() {
                    return;
                }
                tokio::time::sleep(pause).await;
            }
        });
    }

    /// This node was removed from the cluster: remember it, stop Raft, and say so.
    pub(crate) async fn mark_removed(&self, by: NodeId) {
        if self.removed().is_some() {
            return;
        }
        let why = format!(
            "node {} was removed from cluster {} (by node {by})",
            self.id,
            self.cluster_id().unwrap_or_default()
        );
        tracing::error!(
            "{why}; it no longer serves as a member. To bring it back, wipe its data directory and start it with --join"
        );
        let dir = &self.inner.data_dir;
        match identity::load(dir) {
            Ok(Some(mut id)) => {
                id.removed = Some(why.clone());
                if let Err(e) = identity::save(dir, &id) {
                    tracing::warn!(error = %e, "could not record the removal");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not record the removal"),
        }
        self.inner.removed.send_replace(Some(why));
        let node = self.clone();
        tokio::spawn(async move { node.shutdown().await });
    }

    pub async fn cluster_status(&self) -> Result<ClusterReport, ConsensusError> {
        match self.leader_call(LeaderRequest::Status, 0).await? {
            LeaderReply::Status(s) => Ok(*s),
            other => Err(unexpected(other)),
        }
    }

    /// Run a membership request on the leader; returns the members afterwards.
    pub async fn change_members(
        &self,
        req: LeaderRequest,
    ) -> Result<Vec<MemberReport>, ConsensusError> {
        match self.leader_call(req, 0).await? {
            LeaderReply::Members(m) => Ok(m),
            other => Err(unexpected(other)),
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
        if self.metrics().current_leader == Some(self.id) {
            if let Err(e) = self.serve_membership(req).await {
                tracing::warn!(error = %e, "could not record this node's new addresses");
            }
            return;
        }
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
                Ok(RpcResponse::Leader(Ok(_))) => {
                    tracing::info!(via = id, info = %wanted, "announced this node's new addresses");
                    return;
                }
                Ok(other) => {
                    tracing::debug!(via = id, reply = ?other, "address announcement not accepted")
                }
                Err(e) => tracing::debug!(via = id, error = %e, "address announcement failed"),
            }
        }
    }

    /// A member that has known no leader for a while asks the others whether it was removed
    /// while it was away.
    async fn check_still_member(&self) {
        let (nodes, _) = self.membership();
        for (id, info) in nodes.iter().filter(|(id, _)| **id != self.id) {
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
                return;
            }
        }
    }
}

fn role_of(id: NodeId, voters: &BTreeSet<NodeId>) -> MemberRole {
    if voters.contains(&id) {
        MemberRole::Voter
    } else {
        MemberRole::Learner
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
        }
        if initialized && m.current_leader.is_none() {
            let since = *leaderless_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= LEADERLESS_CHECK_AFTER {
                leaderless_since = Some(Instant::now());
                node.check_still_member().await;
            }
        } else {
            leaderless_since = None;
        }
    }
}
