//! Why a request could not be served, in consensus terms.
//!
//! Nothing here knows HTTP: a refusal is a [`RejectReason`] that says what the cluster would
//! not do and the facts behind it; `conclave-api` maps each reason to a status, a stable code
//! and a hint in one table. Errors cross a forwarding hop unchanged (they are part of the
//! node-RPC contract, see [`crate::rpc`]).

use std::fmt;

use conclave_storage::{NodeId, NodeInfo};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid raft settings: {0}")]
    Config(String),
    #[error("raft failed to start: {0}")]
    Raft(String),
}

/// Why a request could not be served. Cloneable so one failure can answer many batched
/// callers; serializable so it crosses a forwarding hop unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ConsensusError {
    /// No leader could be reached in time; the leader is named when known.
    #[error("this node is not the leader{}", leader_hint(.leader_id))]
    NotLeader {
        leader_id: Option<NodeId>,
        leader: Option<NodeInfo>,
    },
    /// This node leads but has not heard from a majority of voters for longer than the
    /// followers' leader lease (`silent_ms`; `None`: never since it started): it may be
    /// partitioned from them, and another leader may serve the majority. Nothing was done.
    #[error(
        "node {leader_id} leads but {}; it may be cut off from the other voters, and a leader on their side may serve the request",
        no_quorum_text(.silent_ms)
    )]
    NoQuorum {
        leader_id: NodeId,
        silent_ms: Option<u64>,
    },
    /// The node is shutting down or Raft stopped; retry on another node.
    #[error("consensus is unavailable: {0}")]
    Unavailable(String),
    /// The request may or may not have been applied (e.g. leadership changed mid-flight).
    #[error("the outcome is unknown: {0}; retry, preferably with a compare-and-swap")]
    Indeterminate(String),
    /// The leader (or this node) refused the request; nothing changed.
    #[error("{0}")]
    Rejected(RejectReason),
}

impl From<RejectReason> for ConsensusError {
    fn from(r: RejectReason) -> Self {
        ConsensusError::Rejected(r)
    }
}

/// A voter leaving the voters: removed from the cluster or demoted to a learner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VoterExit {
    Remove,
    Demote,
}

impl fmt::Display for VoterExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VoterExit::Remove => "remove",
            VoterExit::Demote => "demote",
        })
    }
}

/// What the cluster refused to do, and the facts that made it refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum RejectReason {
    #[error("node {node_id} is not a member; the members are {members:?}")]
    NotAMember {
        node_id: NodeId,
        members: Vec<NodeId>,
    },
    #[error("node {node_id} is the last voter; a cluster cannot {action} its last voter")]
    LastVoter { action: VoterExit, node_id: NodeId },
    #[error(
        "to {action} node {node_id} would leave the voters {remaining:?}, of which only {healthy} are healthy; {needed} are needed for a quorum, so the cluster would stop accepting writes"
    )]
    UnsafeQuorum {
        action: VoterExit,
        node_id: NodeId,
        remaining: Vec<NodeId>,
        healthy: u64,
        needed: u64,
    },
    #[error("node {node_id} is already a member, at {rpc_addr}")]
    AlreadyMember { node_id: NodeId, rpc_addr: String },
    #[error("node {node_id} was added as a learner but has not caught up within {waited_ms} ms")]
    NotCaughtUp { node_id: NodeId, waited_ms: u64 },
    #[error("node {node_id} is not a voter")]
    NotAVoter { node_id: NodeId },
    #[error("node {node_id} is not healthy (unreachable or behind)")]
    Unhealthy { node_id: NodeId },
    #[error("there is no other healthy voter to hand leadership to")]
    NoHealthyVoter,
    /// openraft refused the change because another one is still in progress.
    #[error("{detail}")]
    MembershipChangeInProgress { detail: String },
    /// This node was removed from the cluster and serves no requests as a member.
    #[error("{why}")]
    Removed { why: String },
    /// A command a peer forwarded that its entry point should have refused, or that only the
    /// leader itself may propose.
    #[error("a peer may not propose this command: {reason}")]
    Inadmissible { reason: String },
    /// The state machine refused the command when applying it (it breaks a naming rule that
    /// every entry point checks before proposing).
    #[error("the state machine refused the command: {refusal}")]
    Refused { refusal: conclave_state::Refusal },
    /// A learner too far behind (or never heard from) to become a voter: as a voter it would
    /// count against the quorum from the moment it was added.
    #[error(
        "node {node_id} is not in sync with the leader ({}); a voter that cannot keep up would count against the quorum",
        match lag_entries { Some(n) => format!("{n} entries behind, more than {max_lag}"), None => "it has not answered the leader".to_owned() }
    )]
    NotInSync {
        node_id: NodeId,
        lag_entries: Option<u64>,
        max_lag: u64,
    },
    /// Another member already has this name.
    #[error(
        "the name {name:?} is taken by node {holder}, a member at {rpc_addr}; give this node another --node-name, or remove node {holder} first"
    )]
    NameTaken {
        name: String,
        holder: NodeId,
        rpc_addr: String,
    },
    /// Another member already has this RPC address.
    #[error("node {holder} is already a member at {rpc_addr}")]
    AddressInUse { rpc_addr: String, holder: NodeId },
}

/// How long no majority answered a leader, for messages.
pub(crate) fn no_quorum_text(silent_ms: &Option<u64>) -> String {
    match silent_ms {
        Some(ms) => format!("no majority of voters has answered it for {ms} ms"),
        None => "no majority of voters has answered it since it started".to_string(),
    }
}

fn leader_hint(leader: &Option<NodeId>) -> String {
    match leader {
        Some(id) => format!(" (leader is node {id})"),
        None => " and no leader is known".to_string(),
    }
}

/// Map openraft's write error to conclave's.
pub(crate) fn map_write_error(
    e: RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>,
) -> ConsensusError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ConsensusError::NotLeader {
            leader_id: f.leader_id,
            leader: f.leader_node,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            RejectReason::MembershipChangeInProgress {
                detail: e.to_string(),
            }
            .into()
        }
        // The write was handed to Raft; whether it was appended is unknown.
        RaftError::Fatal(f) => ConsensusError::Indeterminate(f.to_string()),
    }
}

pub(crate) fn map_check_leader_error(
    e: RaftError<NodeId, CheckIsLeaderError<NodeId, NodeInfo>>,
) -> ConsensusError {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => ConsensusError::NotLeader {
            leader_id: f.leader_id,
            leader: f.leader_node,
        },
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
            ConsensusError::Unavailable(format!("leadership could not be confirmed: {q}"))
        }
        RaftError::Fatal(f) => ConsensusError::Unavailable(f.to_string()),
    }
}
