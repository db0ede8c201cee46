//! The messages nodes exchange after the handshake (see [`crate::transport`]).
//!
//! Three kinds: openraft's own RPCs; [`RpcRequest::Info`], which any authenticated node may
//! ask (joining and bootstrapping use it to find each other); and [`LeaderRequest`]s, which
//! only the leader can serve and which any member forwards to it, so a client or a joining
//! node can talk to whichever node it knows.

use conclave_state::{Command, Outcome};
use conclave_storage::{NodeId, NodeInfo, TypeConfig};
use conclave_types::{ClusterMember, ClusterStatus, TransferResponse};
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeReport {
    pub node_id: NodeId,
    pub cluster_id: Option<String>,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderRequest {
    Propose(Command),
    /// Confirm leadership and return the index a linearizable read must wait for.
    ReadIndex,
    /// A new node asks to enter as a learner (or announces itself again).
    Join {
        node_id: NodeId,
        info: NodeInfo,
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderReply {
    Outcome(Outcome),
    ReadIndex(u64),
    Members(Vec<ClusterMember>),
    Status(Box<ClusterStatus>),
    Transferred(TransferResponse),
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
