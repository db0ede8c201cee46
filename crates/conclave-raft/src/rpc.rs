//! The messages nodes exchange after the handshake (see [`crate::transport`]).
//!
//! Three kinds: openraft's own RPCs; [`RpcRequest::Info`], which any authenticated node may
//! ask (joining and bootstrapping use it to find each other); and [`LeaderRequest`]s, which
//! only the leader can serve and which any member forwards to it, so a client or a joining
//! node can talk to whichever node it knows.
//!
//! # A contract of its own
//! These messages travel as postcard, which is positional: a field is never skipped, an
//! enum variant is its index. So the types here are owned by this crate and shaped for the
//! wire (no `serde(skip_*)`, no `untagged`, no `flatten`), not borrowed from the HTTP API,
//! whose JSON shapes may omit absent fields; `conclave-api` converts at its edge. Any change
//! to a message here bumps [`crate::transport::PROTOCOL_VERSION`]; `tests` round-trips every
//! variant with every optional field empty and full.

use conclave_state::{Command, Outcome};
use conclave_storage::{NodeId, NodeInfo, TypeConfig};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::ConsensusError;

#[derive(Debug, Serialize, Deserialize)]
pub enum RpcRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// What do you know? Answered by every node, joined or not.
    Info,
    /// Only the leader can do this; a follower forwards it (`hops` counts forwards).
    Leader {
        req: LeaderRequest,
        hops: u8,
    },
    /// The leader tells a node it has been removed from the cluster.
    Removed {
        by: NodeId,
    },
    /// The leader hands leadership to this node: campaign as soon as the followers let you.
    TakeLeadership {
        term: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RpcResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Info(Box<NodeReport>),
    Leader(Result<LeaderReply, ConsensusError>),
    Ack,
    /// The request is not allowed on this connection (e.g. Raft traffic before joining).
    NotAllowed(String),
}

/// What a node knows about itself and its cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    pub node_id: NodeId,
    pub cluster_id: Option<String>,
    /// `--cluster-name` of the node, when it has one.
    pub cluster_name: Option<String>,
    /// The node holds a membership: it belongs to a formed cluster.
    pub initialized: bool,
    /// `--bootstrap-expect` of a node waiting to form a cluster.
    pub bootstrap_expect: Option<u32>,
    pub info: NodeInfo,
    pub leader_id: Option<NodeId>,
    pub term: u64,
    pub last_log_index: u64,
    /// (id, info, is voter) of every member this node knows.
    pub members: Vec<(NodeId, NodeInfo, bool)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LeaderRequest {
    Propose(Command),
    /// Confirm leadership and return the index a linearizable read must wait for.
    ReadIndex,
    /// A new node asks to enter as a learner (or announces itself again).
    Join {
        node_id: NodeId,
        info: NodeInfo,
        /// Its readable name, unique among the members.
        name: String,
        /// The name was configured (`--node-name`), not made from the hostname: when a
        /// member holds it, the join is refused instead of the node taking a fallback name.
        name_given: bool,
    },
    /// An operator adds a node, optionally as a voter once it has caught up.
    AddMember {
        node_id: NodeId,
        info: NodeInfo,
        voter: bool,
    },
    /// A member announces its current addresses (it restarted on a new address).
    SetInfo {
        node_id: NodeId,
        info: NodeInfo,
    },
    Remove {
        node_id: NodeId,
        force: bool,
    },
    Promote {
        node_id: NodeId,
    },
    Demote {
        node_id: NodeId,
        force: bool,
    },
    TransferLeader {
        to: Option<NodeId>,
    },
    Status,
    /// A member announces its name (it restarted with another `--node-name`).
    SetName {
        node_id: NodeId,
        name: String,
        /// As in `Join`.
        name_given: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LeaderReply {
    Outcome(Outcome),
    ReadIndex(u64),
    Members(Vec<MemberReport>),
    Status(Box<ClusterReport>),
    Transferred(Transferred),
}

/// Whether a member votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberRole {
    Voter,
    Learner,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Voter => "voter",
            MemberRole::Learner => "learner",
        }
    }
}

/// One Raft member: who it is, where it lives, and (from the leader) how far behind it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberReport {
    pub node_id: NodeId,
    /// Its readable name, as the replicated state records it (`None`: not named yet).
    pub name: Option<String>,
    pub role: MemberRole,
    /// Its addresses and whether it is learner-only, as the membership records them.
    pub info: NodeInfo,
    pub is_leader: bool,
    /// The leader's view of its replication; `None` when no leader answered and this node
    /// reported what it alone knows.
    pub replication: Option<Replication>,
    /// Reachable and caught up (the leader is healthy by definition while it leads); false
    /// when nothing is known (`replication` is `None`).
    pub healthy: bool,
}

impl MemberReport {
    /// Entries behind the leader's log, when the leader knows.
    pub fn lag_entries(&self) -> Option<u64> {
        self.replication.as_ref().and_then(|r| r.lag_entries)
    }
}

/// How far a member is behind, as the leader tracks it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replication {
    /// Highest log index known to be replicated to it (`None`: nothing acknowledged yet).
    pub match_index: Option<u64>,
    /// Entries it is behind the leader's last log index.
    pub lag_entries: Option<u64>,
    /// How long it has been behind (0 when caught up).
    pub lag_seconds: f64,
    /// Milliseconds since the leader last heard from it (`None`: never).
    pub last_contact_ms: Option<u64>,
}

/// The cluster as the leader sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterReport {
    pub cluster_id: String,
    pub leader_id: Option<NodeId>,
    pub term: u64,
    pub commit_index: u64,
    pub last_log_index: u64,
    /// Voters the cluster promotes learners towards (`--voters`).
    pub voters_wanted: u64,
    /// Whether the voters that are healthy form a quorum.
    pub quorum_healthy: bool,
    /// Which node answered (the leader, normally).
    pub reported_by: NodeId,
    pub members: Vec<MemberReport>,
}

/// Leadership moved (or already was where it was asked to go).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transferred {
    pub previous_leader: NodeId,
    pub leader_id: NodeId,
    pub term: u64,
}

impl LeaderRequest {
    /// Requests that change nothing may be retried after an ambiguous failure.
    pub fn idempotent(&self) -> bool {
        matches!(
            self,
            LeaderRequest::ReadIndex | LeaderRequest::Status | LeaderRequest::SetInfo { .. }
        )
    }
}
