//! Which Raft messages a node takes from the peer that sent them: pure rules, checked by the
//! RPC server before openraft sees a message.
//!
//! - The sender speaks for itself: a vote request's candidate, and an append or snapshot's
//!   leader, is the node id the connection was opened as.
//! - Only a voter may ask for votes: once this node holds a membership, a candidate that is
//!   not a voter in it is refused (refusing a vote is always safe; the candidate can win
//!   with the others).
//! - No term runs absurdly ahead: a term more than [`MAX_TERM_LEAD`] above this node's is
//!   refused. Terms grow by one per election round, so an honest node that campaigned alone
//!   for decades stays far below; without the bound, one message with term `u64::MAX` is
//!   persisted and no election can ever succeed again.
//!
//! Appends and snapshots are not tied to the membership this node has applied: a follower
//! that missed the change which made the current leader a voter learns of it only from that
//! leader. Keeping strangers out of the log is the job of the authenticated node channel.

use std::collections::BTreeSet;

use conclave_storage::NodeId;

/// How far above this node's term a peer's term may be.
pub const MAX_TERM_LEAD: u64 = 1 << 32;

/// A Raft message, by what admission needs of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RaftMessage {
    /// A vote request from `candidate` for `term`.
    Vote { candidate: NodeId, term: u64 },
    /// An append or snapshot from `leader` in `term`.
    Replicate { leader: NodeId, term: u64 },
}

impl RaftMessage {
    pub(crate) fn name(self) -> &'static str {
        match self {
            RaftMessage::Vote { .. } => "vote",
            RaftMessage::Replicate { .. } => "append",
        }
    }
}

/// Why a Raft message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("node {peer} sent a message in the name of node {claimed}")]
    Impersonation { peer: NodeId, claimed: NodeId },
    #[error("node {candidate} asked for votes but is not a voter")]
    NotAVoter { candidate: NodeId },
    #[error("node {peer} sent term {term}, absurdly far above this node's term {ours}")]
    TermTooFarAhead { peer: NodeId, term: u64, ours: u64 },
}

/// This node's side of the decision.
pub(crate) struct Local<'a> {
    pub term: u64,
    /// The voters of the effective membership; empty while this node holds none (it has not
    /// joined yet, and takes its first membership from whoever replicates to it). Consulted
    /// only for vote requests, so a caller may leave it empty for the others.
    pub voters: &'a BTreeSet<NodeId>,
}

/// Admit `message`, sent by `peer` (the id its connection was opened as), or say why not.
pub(crate) fn admit(peer: NodeId, message: RaftMessage, local: &Local<'_>) -> Result<(), Refusal> {
    let (claimed, term) = match message {
        RaftMessage::Vote { candidate, term } => (candidate, term),
        RaftMessage::Replicate { leader, term } => (leader, term),
    };
    if claimed != peer {
        return Err(Refusal::Impersonation { peer, claimed });
    }
    if term > local.term.saturating_add(MAX_TERM_LEAD) {
        return Err(Refusal::TermTooFarAhead {
            peer,
            term,
            ours: local.term,
        });
    }
    if let RaftMessage::Vote { candidate, .. } = message
        && !local.voters.is_empty()
        && !local.voters.contains(&candidate)
    {
        return Err(Refusal::NotAVoter { candidate });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voters() -> BTreeSet<NodeId> {
        BTreeSet::from([1, 2, 3])
    }

    fn local(voters: &BTreeSet<NodeId>) -> Local<'_> {
        Local { term: 7, voters }
    }

    #[test]
    fn a_voter_may_ask_for_votes_in_a_later_term() {
        let v = voters();
        let vote = RaftMessage::Vote {
            candidate: 2,
            term: 8,
        };
        assert_eq!(admit(2, vote, &local(&v)), Ok(()));
    }

    #[test]
    fn a_stranger_may_not_ask_for_votes_even_with_a_sane_term() {
        let v = voters();
        let vote = RaftMessage::Vote {
            candidate: 99,
            term: 8,
        };
        assert_eq!(
            admit(99, vote, &local(&v)),
            Err(Refusal::NotAVoter { candidate: 99 })
        );
    }

    #[test]
    fn nobody_speaks_for_another_node() {
        let v = voters();
        for message in [
            RaftMessage::Vote {
                candidate: 1,
                term: 8,
            },
            RaftMessage::Replicate { leader: 1, term: 8 },
        ] {
            assert_eq!(
                admit(2, message, &local(&v)),
                Err(Refusal::Impersonation {
                    peer: 2,
                    claimed: 1
                })
            );
        }
    }

    #[test]
    fn a_term_near_the_end_of_u64_is_refused_from_anyone() {
        let v = voters();
        for message in [
            RaftMessage::Vote {
                candidate: 2,
                term: u64::MAX,
            },
            RaftMessage::Replicate {
                leader: 2,
                term: u64::MAX,
            },
        ] {
            assert!(matches!(
                admit(2, message, &local(&v)),
                Err(Refusal::TermTooFarAhead { .. })
            ));
        }
        let far = RaftMessage::Replicate {
            leader: 2,
            term: 7 + MAX_TERM_LEAD,
        };
        assert_eq!(
            admit(2, far, &local(&v)),
            Ok(()),
            "the bound itself is allowed"
        );
    }

    #[test]
    fn a_node_without_a_membership_takes_its_first_from_whoever_replicates() {
        let none = BTreeSet::new();
        let append = RaftMessage::Replicate {
            leader: 42,
            term: 3,
        };
        assert_eq!(admit(42, append, &local(&none)), Ok(()));
        let vote = RaftMessage::Vote {
            candidate: 42,
            term: 8,
        };
        assert_eq!(admit(42, vote, &local(&none)), Ok(()));
    }

    #[test]
    fn appends_from_a_leader_this_node_does_not_know_yet_are_taken() {
        // A follower that missed the change making node 4 a voter learns it from node 4.
        let v = voters();
        let append = RaftMessage::Replicate { leader: 4, term: 9 };
        assert_eq!(admit(4, append, &local(&v)), Ok(()));
    }
}
