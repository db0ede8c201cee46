//! openraft's network traits over [`crate::transport`] connections.
//!
//! One [`PeerClient`] per replication stream keeps one persistent connection. Addresses are
//! looked up in the shared [`Peers`] book at connect time, which follows the committed
//! membership, so a member that moved is reached at its new address at once.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use conclave_storage::{NodeId, NodeInfo, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::rpc::{RpcRequest, RpcResponse};
use crate::transport::{CallError, Conn, Credentials};

/// Where each peer is and when it last answered this node.
#[derive(Default)]
pub struct Peers {
    inner: RwLock<HashMap<NodeId, PeerState>>,
}

#[derive(Debug, Clone, Default)]
pub struct PeerState {
    pub rpc_addr: String,
    pub last_ack: Option<Instant>,
}

impl Peers {
    pub fn addr(&self, id: NodeId) -> Option<String> {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        map.get(&id)
            .map(|p| p.rpc_addr.clone())
            .filter(|a| !a.is_empty())
    }

    /// Follow the membership: set every member's address, keep contact times.
    pub fn update<'a>(&self, members: impl Iterator<Item = (&'a NodeId, &'a NodeInfo)>) {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        for (id, info) in members {
            map.entry(*id).or_default().rpc_addr = info.rpc_addr.clone();
        }
    }

    fn acked(&self, id: NodeId) {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        map.entry(id).or_default().last_ack = Some(Instant::now());
    }

    /// Time since `id` last answered an RPC from this node.
    pub fn since_last_ack(&self, id: NodeId) -> Option<Duration> {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        map.get(&id).and_then(|p| p.last_ack).map(|t| t.elapsed())
    }
}

/// Creates one [`PeerClient`] per replication stream; cheap to clone.
#[derive(Clone)]
pub struct NetworkFactory {
    pub(crate) creds: Arc<Credentials>,
    pub(crate) peers: Arc<Peers>,
    /// Least time an append may take. openraft bounds appends by the heartbeat interval,
    /// too short for a catching-up follower that receives megabytes per request.
    pub(crate) min_append_timeout: Duration,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> Self::Network {
        PeerClient {
            target,
            fallback_addr: node.rpc_addr.clone(),
            creds: self.creds.clone(),
            peers: self.peers.clone(),
            conn: None,
            in_flight: false,
            min_append_timeout: self.min_append_timeout,
        }
    }
}

/// A lazily connected, persistent connection to one peer.
pub struct PeerClient {
    target: NodeId,
    fallback_addr: String,
    creds: Arc<Credentials>,
    peers: Arc<Peers>,
    conn: Option<Conn>,
    /// Set while a call is on the wire. openraft may cancel a call (its own timeout drops
    /// the future); a connection left mid-frame must not be reused.
    in_flight: bool,
    min_append_timeout: Duration,
}

impl PeerClient {
    fn addr(&self) -> String {
        self.peers
            .addr(self.target)
            .unwrap_or_else(|| self.fallback_addr.clone())
    }

    async fn call(&mut self, req: RpcRequest, timeout: Duration) -> Result<RpcResponse, CallError> {
        let addr = self.addr();
        if self.in_flight {
            // The previous call was cancelled mid-way.
            self.conn = None;
        }
        self.in_flight = true;
        let fut = async {
            if self.conn.is_none() {
                self.conn = Some(Conn::connect(&addr, &self.creds).await?);
            }
            match self.conn.as_mut() {
                Some(conn) => conn.call(&req).await,
                None => Err(CallError::Unreachable {
                    addr: addr.clone(),
                    source: io::Error::other("no connection"),
                }),
            }
        };
        let result = match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Lost {
                addr: addr.clone(),
                source: io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no reply from node {} within {timeout:?}", self.target),
                ),
            }),
        };
        self.in_flight = false;
        match &result {
            Ok(_) => self.peers.acked(self.target),
            // The stream may hold a half-read frame; start over on the next call.
            Err(_) => self.conn = None,
        }
        result
    }

    fn to_rpc_error<E: std::error::Error>(
        &self,
        e: CallError,
    ) -> RPCError<NodeId, NodeInfo, RaftError<NodeId, E>> {
        match e {
            CallError::Unreachable { source, .. } => {
                RPCError::Unreachable(Unreachable::new(&source))
            }
            CallError::Lost { source, .. } => RPCError::Network(NetworkError::new(&source)),
            CallError::ItsMe(addr) => RPCError::Unreachable(Unreachable::new(&io::Error::other(
                format!("{addr} is this node's own address"),
            ))),
            CallError::Refused(why) => {
                tracing::error!(target_node = self.target, "{why}");
                RPCError::Unreachable(Unreachable::new(&io::Error::other(why)))
            }
        }
    }
}

fn unexpected<E: std::error::Error>(
    resp: RpcResponse,
) -> RPCError<NodeId, NodeInfo, RaftError<NodeId, E>> {
    let why = match resp {
        RpcResponse::NotAllowed(why) => why,
        _ => "peer answered with the wrong message type".to_string(),
    };
    RPCError::Unreachable(Unreachable::new(&io::Error::other(why)))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        match self
            .call(
                RpcRequest::AppendEntries(rpc),
                option.hard_ttl().max(self.min_append_timeout),
            )
            .await
        {
            Ok(RpcResponse::AppendEntries(r)) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(self.to_rpc_error(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, NodeInfo, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self
            .call(RpcRequest::InstallSnapshot(rpc), option.hard_ttl())
            .await
        {
            Ok(RpcResponse::InstallSnapshot(r)) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(self.to_rpc_error(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        match self.call(RpcRequest::Vote(rpc), option.hard_ttl()).await {
            Ok(RpcResponse::Vote(r)) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(self.to_rpc_error(e)),
        }
    }
}
