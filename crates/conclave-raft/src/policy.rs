//! The leader's membership decisions as pure functions of what it knows: may this voter
//! leave, which learner to promote, where to hand leadership, whether it still has a
//! quorum, and what a failed forward means. No Raft, no network, no clock: each is unit-tested on plain values, and
//! `cluster` only gathers the facts and carries the decision out.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use conclave_storage::NodeId;

use crate::rpc::{MemberReport, MemberRole};
use crate::{RejectReason, VoterExit};

/// A learner at most this many entries behind may be promoted.
pub(crate) const PROMOTE_MAX_LAG: u64 = 100;

/// The voters a leaving voter leaves behind, and what they make of a quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VotersLeft {
    pub(crate) remaining: Vec<NodeId>,
    pub(crate) healthy: u64,
    pub(crate) needed: u64,
}

/// Voter `node_id` may stop voting (removed or demoted) unless it is the last voter, or,
/// unless `force`, the healthy voters left would be no quorum. Allowed, it answers with the
/// voters left.
pub(crate) fn voter_may_leave(
    action: VoterExit,
    node_id: NodeId,
    voters: &BTreeSet<NodeId>,
    healthy: &BTreeSet<NodeId>,
    force: bool,
) -> Result<VotersLeft, RejectReason> {
    let remaining: Vec<NodeId> = voters.iter().copied().filter(|v| *v != node_id).collect();
    if remaining.is_empty() {
        return Err(RejectReason::LastVoter { action, node_id });
    }
    let ok = remaining.iter().filter(|v| healthy.contains(v)).count() as u64;
    let needed = remaining.len() as u64 / 2 + 1;
    if ok < needed && !force {
        return Err(RejectReason::UnsafeQuorum {
            action,
            node_id,
            remaining,
            healthy: ok,
            needed,
        });
    }
    Ok(VotersLeft {
        remaining,
        healthy: ok,
        needed,
    })
}

/// The learner to promote next while the cluster has fewer voters than wanted: healthy, not
/// learner-only, caught up within [`PROMOTE_MAX_LAG`], the least behind (lowest id on a tie).
pub(crate) fn promotion_candidate(
    members: &[MemberReport],
    voters_wanted: usize,
) -> Option<NodeId> {
    let voters = members
        .iter()
        .filter(|m| m.role == MemberRole::Voter)
        .count();
    if voters >= voters_wanted {
        return None;
    }
    members
        .iter()
        .filter(|m| {
            m.role == MemberRole::Learner
                && !m.info.learner_only
                && m.healthy
                && m.lag_entries().is_some_and(|l| l <= PROMOTE_MAX_LAG)
        })
        .min_by_key(|m| (m.lag_entries(), m.node_id))
        .map(|m| m.node_id)
}

/// Learner `m` may become a voter only when the leader hears from it and it is within
/// [`PROMOTE_MAX_LAG`] entries: a voter that cannot keep up counts against the quorum from
/// the moment it is added (a one-voter cluster promoting an unreachable learner would stop).
/// etcd refuses the same ("can only promote a learner member which is in sync with leader").
pub(crate) fn learner_may_vote(m: &MemberReport) -> Result<(), RejectReason> {
    let lag = m.lag_entries();
    match lag {
        Some(l) if m.healthy && l <= PROMOTE_MAX_LAG => Ok(()),
        _ => Err(RejectReason::NotInSync {
            node_id: m.node_id,
            lag_entries: lag.filter(|_| m.healthy),
            max_lag: PROMOTE_MAX_LAG,
        }),
    }
}

/// A new member's RPC address must not be another member's: replication "to" it would
/// reach that member instead.
pub(crate) fn address_free(
    nodes: &BTreeMap<NodeId, conclave_storage::NodeInfo>,
    node_id: NodeId,
    rpc_addr: &str,
) -> Result<(), RejectReason> {
    match nodes
        .iter()
        .find(|(id, info)| **id != node_id && info.rpc_addr == rpc_addr)
    {
        Some((holder, _)) => Err(RejectReason::AddressInUse {
            rpc_addr: rpc_addr.to_owned(),
            holder: *holder,
        }),
        None => Ok(()),
    }
}

/// Where leadership should go.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TransferTarget {
    /// The request names this node, which already leads.
    AlreadyHere,
    To(MemberReport),
}

/// The voter to hand leadership to: `to` if it is a healthy voter, else (no `to`) the most
/// caught-up healthy voter other than `me`.
pub(crate) fn transfer_target(
    members: &[MemberReport],
    me: NodeId,
    to: Option<NodeId>,
) -> Result<TransferTarget, RejectReason> {
    match to {
        Some(t) if t == me => Ok(TransferTarget::AlreadyHere),
        Some(t) => match members
            .iter()
            .find(|m| m.node_id == t && m.role == MemberRole::Voter)
        {
            Some(m) if m.healthy => Ok(TransferTarget::To(m.clone())),
            Some(_) => Err(RejectReason::Unhealthy { node_id: t }),
            None => Err(RejectReason::NotAVoter { node_id: t }),
        },
        None => members
            .iter()
            .filter(|m| m.role == MemberRole::Voter && m.healthy && m.node_id != me)
            .min_by_key(|m| (m.lag_entries().unwrap_or(u64::MAX), m.node_id))
            .map(|m| TransferTarget::To(m.clone()))
            .ok_or(RejectReason::NoHealthyVoter),
    }
}

/// What a forward to the leader that got no answer means for its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ForwardFailure {
    /// Certainly not applied (never sent), or safe to repeat: look for the leader again,
    /// and fail as `no_leader` if none answers in time.
    Retry,
    /// It may have been applied: the caller must be told the outcome is unknown.
    Indeterminate,
}

/// How long ago a majority of `voters` last answered this leader: the leader counts as
/// answering now, each other voter as `silence[v]` ago (`None`: never since this node
/// started, which is longer than any silence). With the voters' silences sorted, it is the
/// one a majority reaches. A leader whose quorum silence exceeds the followers' leader lease
/// may already have been replaced on the other side of a partition.
pub(crate) fn quorum_silence(
    me: NodeId,
    voters: &BTreeSet<NodeId>,
    silence: &BTreeMap<NodeId, Option<Duration>>,
) -> Duration {
    if voters.is_empty() {
        return Duration::ZERO;
    }
    let mut heard: Vec<Duration> = voters
        .iter()
        .map(|v| {
            if *v == me {
                Duration::ZERO
            } else {
                silence.get(v).copied().flatten().unwrap_or(Duration::MAX)
            }
        })
        .collect();
    heard.sort();
    heard[voters.len() / 2]
}

/// `sent`: the request left this node (a connect or handshake failure means it did not).
pub(crate) fn forward_failure(sent: bool, idempotent: bool) -> ForwardFailure {
    if !sent || idempotent {
        ForwardFailure::Retry
    } else {
        ForwardFailure::Indeterminate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::Replication;
    use conclave_storage::NodeInfo;

    fn member(id: NodeId, role: MemberRole, healthy: bool, lag: Option<u64>) -> MemberReport {
        MemberReport {
            name: None,
            node_id: id,
            role,
            info: NodeInfo::default(),
            is_leader: false,
            replication: Some(Replication {
                match_index: lag.map(|l| 1000 - l),
                lag_entries: lag,
                lag_seconds: 0.0,
                last_contact_ms: Some(10),
            }),
            healthy,
        }
    }

    fn ids(v: &[NodeId]) -> BTreeSet<NodeId> {
        v.iter().copied().collect()
    }

    #[test]
    fn the_last_voter_never_leaves_even_forced() {
        for force in [false, true] {
            assert_eq!(
                voter_may_leave(VoterExit::Remove, 1, &ids(&[1]), &ids(&[1]), force),
                Err(RejectReason::LastVoter {
                    action: VoterExit::Remove,
                    node_id: 1
                })
            );
        }
    }

    #[test]
    fn a_voter_may_leave_only_if_the_rest_keep_a_healthy_quorum() {
        let voters = ids(&[1, 2, 3]);
        // 2 and 3 remain; both healthy: fine.
        assert!(voter_may_leave(VoterExit::Demote, 1, &voters, &ids(&[1, 2, 3]), false).is_ok());
        // 2 and 3 remain, only 2 healthy: 1 of 2 needed.
        assert_eq!(
            voter_may_leave(VoterExit::Demote, 1, &voters, &ids(&[1, 2]), false),
            Err(RejectReason::UnsafeQuorum {
                action: VoterExit::Demote,
                node_id: 1,
                remaining: vec![2, 3],
                healthy: 1,
                needed: 2
            })
        );
        // Forced: the operator says 3 is gone for good.
        assert!(voter_may_leave(VoterExit::Remove, 1, &voters, &ids(&[2]), true).is_ok());
        // Removing the unhealthy one itself is safe.
        assert!(voter_may_leave(VoterExit::Remove, 3, &voters, &ids(&[1, 2]), false).is_ok());
    }

    #[test]
    fn the_least_behind_eligible_learner_is_promoted_while_voters_are_wanted() {
        let mut members = vec![
            member(1, MemberRole::Voter, true, Some(0)),
            member(4, MemberRole::Learner, true, Some(50)),
            member(5, MemberRole::Learner, true, Some(10)),
            member(6, MemberRole::Learner, false, Some(0)),
            member(7, MemberRole::Learner, true, Some(500)),
            member(8, MemberRole::Learner, true, None),
        ];
        members.push({
            let mut m = member(9, MemberRole::Learner, true, Some(0));
            m.info.learner_only = true;
            m
        });
        assert_eq!(promotion_candidate(&members, 3), Some(5));
        assert_eq!(promotion_candidate(&members, 1), None);
        members.retain(|m| m.node_id != 4 && m.node_id != 5);
        assert_eq!(promotion_candidate(&members, 3), None);
    }

    #[test]
    fn leadership_goes_to_a_named_healthy_voter_or_the_most_caught_up_one() {
        let members = [
            member(1, MemberRole::Voter, true, Some(0)),
            member(2, MemberRole::Voter, true, Some(5)),
            member(3, MemberRole::Voter, true, Some(1)),
            member(4, MemberRole::Voter, false, Some(0)),
            member(5, MemberRole::Learner, true, Some(0)),
        ];
        let target = |to| transfer_target(&members, 1, to);
        assert_eq!(target(Some(1)), Ok(TransferTarget::AlreadyHere));
        assert!(matches!(target(Some(2)), Ok(TransferTarget::To(m)) if m.node_id == 2));
        assert!(matches!(target(None), Ok(TransferTarget::To(m)) if m.node_id == 3));
        assert_eq!(target(Some(4)), Err(RejectReason::Unhealthy { node_id: 4 }));
        assert_eq!(target(Some(5)), Err(RejectReason::NotAVoter { node_id: 5 }));
        assert_eq!(target(Some(9)), Err(RejectReason::NotAVoter { node_id: 9 }));
        assert_eq!(
            transfer_target(&members[..1], 1, None),
            Err(RejectReason::NoHealthyVoter)
        );
    }

    #[test]
    fn only_a_sent_non_idempotent_request_is_indeterminate() {
        assert_eq!(forward_failure(false, false), ForwardFailure::Retry);
        assert_eq!(forward_failure(false, true), ForwardFailure::Retry);
        assert_eq!(forward_failure(true, true), ForwardFailure::Retry);
        assert_eq!(forward_failure(true, false), ForwardFailure::Indeterminate);
    }

    #[test]
    fn quorum_silence_is_what_a_majority_of_voters_reaches() {
        let ms = Duration::from_millis;
        let silence: BTreeMap<NodeId, Option<Duration>> = [
            (2, Some(ms(50))),
            (3, Some(ms(5_000))),
            (4, None),
            (5, Some(ms(900))),
        ]
        .into();
        // Alone, the leader is its own quorum.
        assert_eq!(quorum_silence(1, &ids(&[1]), &silence), Duration::ZERO);
        assert_eq!(quorum_silence(1, &ids(&[]), &silence), Duration::ZERO);
        // Three voters: the leader and node 2 are a majority.
        assert_eq!(quorum_silence(1, &ids(&[1, 2, 3]), &silence), ms(50));
        // Both followers silent: the nearer one decides.
        assert_eq!(quorum_silence(1, &ids(&[1, 3, 5]), &silence), ms(900));
        // A voter that never answered counts as silent forever.
        assert_eq!(quorum_silence(1, &ids(&[1, 3, 4]), &silence), ms(5_000));
        assert_eq!(quorum_silence(1, &ids(&[1, 4, 6]), &silence), Duration::MAX);
        // Five voters need three: the leader, node 2 and node 5.
        assert_eq!(quorum_silence(1, &ids(&[1, 2, 3, 4, 5]), &silence), ms(900));
        // Four voters need three as well.
        assert_eq!(quorum_silence(1, &ids(&[1, 2, 3, 5]), &silence), ms(900));
        // A leader that is no longer a voter (being removed) counts only the others.
        assert_eq!(quorum_silence(1, &ids(&[2, 3, 5]), &silence), ms(900));
    }

    #[test]
    fn only_a_learner_the_leader_hears_and_that_keeps_up_may_vote() {
        let ok = member(4, MemberRole::Learner, true, Some(PROMOTE_MAX_LAG));
        assert_eq!(learner_may_vote(&ok), Ok(()));
        let behind = member(4, MemberRole::Learner, true, Some(PROMOTE_MAX_LAG + 1));
        assert_eq!(
            learner_may_vote(&behind),
            Err(RejectReason::NotInSync {
                node_id: 4,
                lag_entries: Some(PROMOTE_MAX_LAG + 1),
                max_lag: PROMOTE_MAX_LAG
            })
        );
        // Never heard from (an address nobody answers at): unknown lag, refused.
        let silent = member(4, MemberRole::Learner, false, None);
        assert!(matches!(
            learner_may_vote(&silent),
            Err(RejectReason::NotInSync {
                lag_entries: None,
                ..
            })
        ));
        // A lag the leader last saw, from a learner it no longer hears: refused too.
        let gone = member(4, MemberRole::Learner, false, Some(0));
        assert!(learner_may_vote(&gone).is_err());
    }

    #[test]
    fn a_new_member_may_not_take_another_members_address() {
        let info = |addr: &str| NodeInfo {
            rpc_addr: addr.into(),
            ..NodeInfo::default()
        };
        let nodes = BTreeMap::from([(1, info("10.0.0.1:7401")), (2, info("10.0.0.2:7401"))]);
        assert_eq!(address_free(&nodes, 3, "10.0.0.3:7401"), Ok(()));
        assert_eq!(
            address_free(&nodes, 3, "10.0.0.1:7401"),
            Err(RejectReason::AddressInUse {
                rpc_addr: "10.0.0.1:7401".into(),
                holder: 1
            })
        );
        // Its own address, re-added with the same id, is its own.
        assert_eq!(address_free(&nodes, 2, "10.0.0.2:7401"), Ok(()));
    }
}
