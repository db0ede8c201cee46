//! Membership: the leader's side of every membership request, with the safety checks an
//! operator expects, and the cluster's status as the leader sees it.
//!
//! Every change goes through `change_membership`, so all nodes agree on who the members are
//! and where they live. The leader refuses a change that would leave the cluster without a
//! healthy quorum unless forced, and never removes or demotes the last voter. Leadership
//! transfers are in `leadership`; the background duties in `maintain`.

use conclave_state::audit::{AuditMeta, Ending, Note};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use conclave_storage::{NodeId, NodeInfo, identity};
use openraft::{ChangeMembers, ServerState};

use crate::policy;
use crate::rpc::{
    ClusterReport, LeaderReply, LeaderRequest, MemberReport, MemberRole, Replication, RpcRequest,
    RpcResponse,
};
use crate::{ConsensusError, RaftNode, RejectReason, VoterExit, map_write_error};

/// A member more entries behind than this is not healthy.
const MAX_HEALTHY_LAG: u64 = 1000;
/// How often the background duties run.
pub(crate) const TICK: Duration = Duration::from_millis(250);
/// How long a member may know no leader before it asks others whether it was removed.
pub(crate) const LEADERLESS_CHECK_AFTER: Duration = Duration::from_secs(5);

/// Since when each member has been behind the leader's last log index (leader only).
#[derive(Default)]
pub(crate) struct LagTracker {
    behind_since: Mutex<HashMap<NodeId, Instant>>,
}

impl LagTracker {
    pub(crate) fn sample(&self, matched: &BTreeMap<NodeId, u64>, last_index: u64) {
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

    pub(crate) fn seconds_behind(&self, id: NodeId) -> f64 {
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

pub(crate) fn unexpected(reply: LeaderReply) -> ConsensusError {
    ConsensusError::Unavailable(format!("unexpected reply from the leader: {reply:?}"))
}

impl RaftNode {
    /// The committed membership as this node knows it: every member and the voters.
    pub(crate) fn membership(&self) -> (BTreeMap<NodeId, NodeInfo>, BTreeSet<NodeId>) {
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
    pub(crate) async fn membership_turn(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, ()>, ConsensusError> {
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

    pub(crate) async fn change(
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
    pub(crate) fn leader_status(&self) -> ClusterReport {
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
        let names = self.node_names();
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
                    name: names.name_of(*id).map(str::to_owned),
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

    /// The leader's view of the members (replication progress, contact, health), when this
    /// node leads; `None` elsewhere.
    pub fn replication_report(&self) -> Option<ClusterReport> {
        (self.metrics().current_leader == Some(self.id)).then(|| self.leader_status())
    }

    /// Members as this node alone knows them (no leader answered): roles and addresses.
    pub fn local_members(&self) -> Vec<MemberReport> {
        let m = self.metrics();
        let (nodes, voters) = self.membership();
        let names = self.node_names();
        nodes
            .into_iter()
            .map(|(id, info)| MemberReport {
                node_id: id,
                name: names.name_of(id).map(str::to_owned),
                role: role_of(id, &voters),
                info,
                is_leader: m.current_leader == Some(id),
                replication: None,
                healthy: false,
            })
            .collect()
    }

    pub(crate) fn healthy_members(&self) -> BTreeSet<NodeId> {
        self.leader_status()
            .members
            .into_iter()
            .filter(|m| m.healthy)
            .map(|m| m.node_id)
            .collect()
    }

    /// Voter `node_id` may stop voting (see [`policy::voter_may_leave`]).
    pub(crate) fn check_voter_can_leave(
        &self,
        action: VoterExit,
        node_id: NodeId,
        voters: &BTreeSet<NodeId>,
        force: bool,
    ) -> Result<(), ConsensusError> {
        let healthy = self.healthy_members();
        policy::voter_may_leave(action, node_id, voters, &healthy, force)
            .map(|_| ())
            .map_err(Into::into)
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
            LeaderRequest::Join {
                node_id,
                info,
                name,
                name_given,
            } => {
                // Before the membership: a joiner whose name a member holds stays out.
                self.claim_name(node_id, &name, name_given, &nodes).await?;
                match nodes.get(&node_id) {
                    Some(known) if *known == info => {}
                    // A join never moves a member: a moved member announces itself
                    // (`SetInfo`); a second node with a member's id is refused.
                    Some(known) => {
                        return Err(RejectReason::AlreadyMember {
                            node_id,
                            rpc_addr: known.rpc_addr.clone(),
                        }
                        .into());
                    }
                    None => {
                        tracing::info!(node_id, name, %info, "adding a joining node as a learner");
                        let rpc_addr = info.rpc_addr.clone();
                        let _turn = self.membership_turn().await?;
                        self.raft()
                            .add_learner(node_id, info, false)
                            .await
                            .map_err(map_write_error)?;
                        self.note(
                            AuditMeta::node(node_id),
                            Note::Join { node_id, rpc_addr },
                            Ending::Applied,
                        );
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
                        policy::address_free(&nodes, node_id, &info.rpc_addr)?;
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
                    // Like a promotion: only a learner the leader hears and that keeps up
                    // (a learner added before, or one openraft stopped waiting for).
                    let status = self.leader_status();
                    if let Some(m) = status.members.iter().find(|m| m.node_id == node_id) {
                        policy::learner_may_vote(m)?;
                    }
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
                        let moved =
                            (known.rpc_addr != info.rpc_addr).then(|| info.rpc_addr.clone());
                        self.set_nodes(node_id, info).await?;
                        // A new RPC address is a move; filling in the API address a node
                        // announces once it serves is not worth an entry.
                        if let Some(rpc_addr) = moved {
                            self.note(
                                AuditMeta::node(node_id),
                                Note::Move { node_id, rpc_addr },
                                Ending::Applied,
                            );
                        }
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
                let name = self.name_of(node_id);
                tracing::info!(node_id, name, "removed a member");
                if let Some(info) = nodes.get(&node_id) {
                    self.tell_removed(info.rpc_addr.clone());
                }
                self.forget_name(node_id).await;
                Ok(LeaderReply::Members(self.leader_status().members))
            }
            LeaderRequest::Promote { node_id } => {
                let Some(info) = nodes.get(&node_id) else {
                    return Err(not_a_member(node_id, &nodes));
                };
                if voters.contains(&node_id) {
                    return Ok(LeaderReply::Members(self.leader_status().members));
                }
                let status = self.leader_status();
                if let Some(m) = status.members.iter().find(|m| m.node_id == node_id) {
                    policy::learner_may_vote(m)?;
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
            LeaderRequest::SetName {
                node_id,
                name,
                name_given,
            } => {
                if !nodes.contains_key(&node_id) {
                    return Err(not_a_member(node_id, &nodes));
                }
                self.claim_name(node_id, &name, name_given, &nodes).await?;
                Ok(LeaderReply::Members(self.leader_status().members))
            }
        }
    }

    pub(crate) async fn set_nodes(
        &self,
        node_id: NodeId,
        info: NodeInfo,
    ) -> Result<(), ConsensusError> {
        self.change(
            ChangeMembers::SetNodes(BTreeMap::from([(node_id, info)])),
            true,
        )
        .await
    }

    /// The leader cannot remove or demote itself in place: hand leadership over, then let
    /// the new leader do it. Boxed with an explicit `Send` bound because it recurses through
    /// `leader_call` back into `serve_membership`.
    pub(crate) fn hand_over_then(
        &self,
        req: LeaderRequest,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<LeaderReply, ConsensusError>> + Send>> {
        let node = self.clone();
        Box::pin(async move {
            node.transfer_leadership(None).await?;
            node.leader_call(req, 0).await
        })
    }

    pub(crate) fn tell_removed(&self, addr: String) {
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
}

fn role_of(id: NodeId, voters: &BTreeSet<NodeId>) -> MemberRole {
    if voters.contains(&id) {
        MemberRole::Voter
    } else {
        MemberRole::Learner
    }
}
