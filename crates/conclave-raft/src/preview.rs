//! What a membership change would do, decided from the leader's report without doing it:
//! the dashboard's confirmations and the API's `?dry_run=true`.
//!
//! The checks are the leader's own ([`policy::voter_may_leave`], [`policy::transfer_target`])
//! applied to the facts of a [`ClusterReport`], so a preview refuses what the change itself
//! would refuse, with the same [`RejectReason`]. It is a snapshot: the cluster may change
//! between the preview and the request, which the leader checks again.

use std::collections::BTreeSet;

use conclave_storage::NodeId;

use crate::policy::{self, TransferTarget};
use crate::rpc::{ClusterReport, MemberRole};
use crate::{RejectReason, VoterExit};

/// A membership change an operator may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Remove { node_id: NodeId, force: bool },
    Promote { node_id: NodeId },
    Demote { node_id: NodeId, force: bool },
    TransferLeader { to: Option<NodeId> },
}

/// What the change would do, in words, when the leader would accept it.
pub fn preview(report: &ClusterReport, change: Change) -> Result<String, RejectReason> {
    let voters: BTreeSet<NodeId> = report
        .members
        .iter()
        .filter(|m| m.role == MemberRole::Voter)
        .map(|m| m.node_id)
        .collect();
    let healthy: BTreeSet<NodeId> = report
        .members
        .iter()
        .filter(|m| m.healthy)
        .map(|m| m.node_id)
        .collect();
    let member = |node_id: NodeId| {
        report
            .members
            .iter()
            .find(|m| m.node_id == node_id)
            .ok_or_else(|| RejectReason::NotAMember {
                node_id,
                members: report.members.iter().map(|m| m.node_id).collect(),
            })
    };
    let leaves = |action: VoterExit, node_id: NodeId, force: bool| {
        let policy::VotersLeft {
            remaining,
            healthy: ok,
            needed,
        } = policy::voter_may_leave(action, node_id, &voters, &healthy, force)?;
        let handover = if report.leader_id == Some(node_id) {
            "; it leads, so leadership moves to another voter first"
        } else {
            ""
        };
        let risk = if ok < needed {
            " (forced: the cluster stops accepting writes until a quorum is back)"
        } else {
            ""
        };
        Ok::<_, RejectReason>(format!(
            "the voters become {remaining:?}, {ok} of them healthy, {needed} needed for a quorum{risk}{handover}"
        ))
    };
    match change {
        Change::Remove { node_id, force } => {
            let m = member(node_id)?;
            if m.role == MemberRole::Voter {
                Ok(format!(
                    "node {node_id} leaves the cluster: {}",
                    leaves(VoterExit::Remove, node_id, force)?
                ))
            } else {
                Ok(format!(
                    "learner {node_id} leaves the cluster; the voters are unchanged"
                ))
            }
        }
        Change::Demote { node_id, force } => {
            let m = member(node_id)?;
            if m.role != MemberRole::Voter {
                return Ok(format!(
                    "node {node_id} is already a learner: nothing changes"
                ));
            }
            Ok(format!(
                "node {node_id} becomes a learner that is never promoted automatically: {}",
                leaves(VoterExit::Demote, node_id, force)?
            ))
        }
        Change::Promote { node_id } => {
            let m = member(node_id)?;
            if m.role == MemberRole::Voter {
                return Ok(format!(
                    "node {node_id} is already a voter: nothing changes"
                ));
            }
            policy::learner_may_vote(m)?;
            let lag = match m.lag_entries() {
                Some(0) | None => "it is caught up".to_owned(),
                Some(n) => format!("it is {n} entries behind"),
            };
            let after = voters.len() + 1;
            Ok(format!(
                "node {node_id} becomes a voter ({after} voters, quorum {}); {lag}",
                after / 2 + 1
            ))
        }
        Change::TransferLeader { to } => {
            let me = report.leader_id.unwrap_or(report.reported_by);
            match policy::transfer_target(&report.members, me, to)? {
                TransferTarget::AlreadyHere => {
                    Ok(format!("node {me} already leads: nothing changes"))
                }
                TransferTarget::To(m) => Ok(format!(
                    "leadership moves from node {me} to node {} ({} entries behind); writes pause for about one election",
                    m.node_id,
                    m.lag_entries().map_or("?".to_owned(), |l| l.to_string())
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::{MemberReport, Replication};
    use conclave_storage::NodeInfo;

    fn member(node_id: NodeId, role: MemberRole, healthy: bool, lag: u64) -> MemberReport {
        MemberReport {
            name: None,
            node_id,
            role,
            info: NodeInfo {
                rpc_addr: format!("127.0.0.1:{}", 7400 + node_id),
                api_addr: String::new(),
                learner_only: false,
            },
            is_leader: node_id == 1,
            replication: Some(Replication {
                match_index: Some(100 - lag),
                lag_entries: Some(lag),
                lag_seconds: 0.0,
                last_contact_ms: Some(10),
            }),
            healthy,
        }
    }

    fn report(members: Vec<MemberReport>) -> ClusterReport {
        ClusterReport {
            cluster_id: "c".into(),
            leader_id: Some(1),
            term: 3,
            commit_index: 100,
            last_log_index: 100,
            voters_wanted: 3,
            quorum_healthy: true,
            reported_by: 1,
            members,
        }
    }

    fn three(healthy3: bool) -> ClusterReport {
        report(vec![
            member(1, MemberRole::Voter, true, 0),
            member(2, MemberRole::Voter, true, 0),
            member(3, MemberRole::Voter, healthy3, 0),
            member(4, MemberRole::Learner, true, 7),
        ])
    }

    #[test]
    fn removing_a_voter_says_what_quorum_is_left() {
        let said = preview(
            &three(true),
            Change::Remove {
                node_id: 3,
                force: false,
            },
        )
        .unwrap();
        assert!(
            said.contains("[1, 2], 2 of them healthy, 2 needed"),
            "{said}"
        );
        let said = preview(
            &three(true),
            Change::Remove {
                node_id: 1,
                force: false,
            },
        )
        .unwrap();
        assert!(said.contains("leadership moves"), "{said}");
        let said = preview(
            &three(true),
            Change::Remove {
                node_id: 4,
                force: false,
            },
        )
        .unwrap();
        assert!(said.contains("learner 4"), "{said}");
    }

    #[test]
    fn refuses_what_the_leader_refuses() {
        // With node 3 down, removing node 2 leaves [1, 3] with one healthy: no quorum.
        let refused = preview(
            &three(false),
            Change::Remove {
                node_id: 2,
                force: false,
            },
        );
        assert!(matches!(
            refused,
            Err(RejectReason::UnsafeQuorum {
                needed: 2,
                healthy: 1,
                ..
            })
        ));
        let refused = preview(
            &three(false),
            Change::Demote {
                node_id: 2,
                force: false,
            },
        );
        assert!(matches!(refused, Err(RejectReason::UnsafeQuorum { .. })));
        // Forced, it is allowed and says so.
        let said = preview(
            &three(false),
            Change::Remove {
                node_id: 2,
                force: true,
            },
        )
        .unwrap();
        assert!(said.contains("forced"), "{said}");
        assert!(matches!(
            preview(&three(true), Change::Promote { node_id: 9 }),
            Err(RejectReason::NotAMember { node_id: 9, .. })
        ));
        assert!(matches!(
            preview(&three(false), Change::TransferLeader { to: Some(3) }),
            Err(RejectReason::Unhealthy { node_id: 3 })
        ));
        assert!(matches!(
            preview(&three(true), Change::TransferLeader { to: Some(4) }),
            Err(RejectReason::NotAVoter { node_id: 4 })
        ));
        let alone = report(vec![member(1, MemberRole::Voter, true, 0)]);
        assert!(matches!(
            preview(
                &alone,
                Change::Demote {
                    node_id: 1,
                    force: true
                }
            ),
            Err(RejectReason::LastVoter { .. })
        ));
    }

    #[test]
    fn promotion_and_transfer_say_what_follows() {
        let said = preview(&three(true), Change::Promote { node_id: 4 }).unwrap();
        assert!(
            said.contains("4 voters, quorum 3") && said.contains("7 entries"),
            "{said}"
        );
        let said = preview(&three(true), Change::Promote { node_id: 2 }).unwrap();
        assert!(said.contains("already a voter"), "{said}");
        let said = preview(&three(true), Change::TransferLeader { to: None }).unwrap();
        assert!(said.contains("from node 1 to node 2"), "{said}");
        let said = preview(&three(true), Change::TransferLeader { to: Some(1) }).unwrap();
        assert!(said.contains("already leads"), "{said}");
        let said = preview(
            &three(true),
            Change::Demote {
                node_id: 4,
                force: false,
            },
        )
        .unwrap();
        assert!(said.contains("already a learner"), "{said}");
    }
}
