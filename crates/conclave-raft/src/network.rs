//! Node-to-node RPC: openraft's messages over persistent TCP connections.
//!
//! Why not HTTP: Raft traffic is a stream of small request/response pairs between a fixed set
//! of peers. A persistent connection per (peer, replication stream) with length-prefixed
//! postcard frames avoids per-request headers and connection setup.
//!
//! # Wire format
//! Every frame is `len u32 LE ‖ postcard(message)`, at most [`MAX_FRAME`] bytes. A connection
//! starts with a [`Hello`] from the client naming the cluster; the server answers with
//! [`RpcResponse::Welcome`] or [`RpcResponse::Refused`] and closes. Then the client sends one
//! [`RpcRequest`] at a time and reads one [`RpcResponse`].

use std::io;
use std::sync::Arc;
use std::time::Duration;

use conclave_storage::{NodeId, NodeInfo, TypeConfig};
use openraft::Raft;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Largest frame accepted (snapshot chunks are far smaller).
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// RPC protocol version; a peer speaking another one is refused.
pub const PROTOCOL_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    pub cluster_id: String,
    pub from: NodeId,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RpcRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RpcResponse {
    Welcome,
    Refused(String),
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
}

async fn write_frame<W: AsyncWriteExt + Unpin>(w: &mut W, msg: &impl Serialize) -> io::Result<()> {
    let bytes = postcard::to_stdvec(msg).map_err(io::Error::other)?;
    if bytes.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {} bytes exceeds {MAX_FRAME}", bytes.len()),
        ));
    }
    w.write_all(&(bytes.len() as u32).to_le_bytes()).await?;
    w.write_all(&bytes).await?;
    w.flush().await
}

async fn read_frame<R: AsyncReadExt + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {MAX_FRAME}"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    postcard::from_bytes(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

type Conn = (
    BufReader<tokio::net::tcp::OwnedReadHalf>,
    BufWriter<tokio::net::tcp::OwnedWriteHalf>,
);

/// Creates one [`PeerClient`] per replication stream; cheap to clone.
#[derive(Clone)]
pub struct NetworkFactory {
    pub(crate) cluster_id: Arc<str>,
    pub(crate) self_id: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> Self::Network {
        PeerClient {
            target,
            addr: node.rpc_addr.clone(),
            cluster_id: self.cluster_id.clone(),
            self_id: self.self_id,
            conn: None,
        }
    }
}

/// A lazily connected, persistent connection to one peer.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    cluster_id: Arc<str>,
    self_id: NodeId,
    conn: Option<Conn>,
}

enum CallError {
    Unreachable(io::Error),
    Network(io::Error),
    Refused(String),
}

impl PeerClient {
    async fn connect(&mut self) -> Result<&mut Conn, CallError> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(&self.addr)
                .await
                .map_err(CallError::Unreachable)?;
            stream.set_nodelay(true).map_err(CallError::Network)?;
            let (r, w) = stream.into_split();
            let mut conn = (BufReader::new(r), BufWriter::new(w));
            let hello = Hello {
                protocol: PROTOCOL_VERSION,
                cluster_id: self.cluster_id.to_string(),
                from: self.self_id,
            };
            write_frame(&mut conn.1, &hello)
                .await
                .map_err(CallError::Unreachable)?;
            match read_frame::<_, RpcResponse>(&mut conn.0)
                .await
                .map_err(CallError::Unreachable)?
            {
                RpcResponse::Welcome => {}
                RpcResponse::Refused(why) => return Err(CallError::Refused(why)),
                _ => {
                    return Err(CallError::Network(io::Error::other(
                        "unexpected handshake reply",
                    )));
                }
            }
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| CallError::Network(io::Error::other("no connection")))
    }

    async fn call(&mut self, req: RpcRequest, timeout: Duration) -> Result<RpcResponse, CallError> {
        let fut = async {
            let conn = self.connect().await?;
            write_frame(&mut conn.1, &req)
                .await
                .map_err(CallError::Network)?;
            read_frame::<_, RpcResponse>(&mut conn.0)
                .await
                .map_err(CallError::Network)
        };
        let result = match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Network(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no reply from node {} at {} within {timeout:?}",
                    self.target, self.addr
                ),
            ))),
        };
        if result.is_err() {
            // The stream may hold a half-read frame; start over on the next call.
            self.conn = None;
        }
        result
    }

    fn to_rpc_error<E: std::error::Error>(
        &self,
        e: CallError,
    ) -> RPCError<NodeId, NodeInfo, RaftError<NodeId, E>> {
        match e {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
            CallError::Refused(why) => {
                tracing::error!(target_node = self.target, addr = %self.addr, %why, "peer refused our connection");
                RPCError::Unreachable(Unreachable::new(&io::Error::other(why)))
            }
        }
    }
}

fn unexpected<E: std::error::Error>() -> RPCError<NodeId, NodeInfo, RaftError<NodeId, E>> {
    RPCError::Network(NetworkError::new(&io::Error::other(
        "peer answered with the wrong message type",
    )))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        match self
            .call(RpcRequest::AppendEntries(rpc), option.hard_ttl())
            .await
        {
            Ok(RpcResponse::AppendEntries(r)) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(unexpected()),
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
            Ok(_) => Err(unexpected()),
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
            Ok(_) => Err(unexpected()),
            Err(e) => Err(self.to_rpc_error(e)),
        }
    }
}

/// Serve node RPC on `listener` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    cluster_id: Arc<str>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "node RPC accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let raft = raft.clone();
        let cluster_id = cluster_id.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                r = serve_conn(stream, raft, cluster_id) => {
                    if let Err(e) = r
                        && e.kind() != io::ErrorKind::UnexpectedEof
                    {
                        tracing::debug!(%peer, error = %e, "node RPC connection closed");
                    }
                }
            }
        });
    }
}

async fn serve_conn(
    stream: TcpStream,
    raft: Raft<TypeConfig>,
    cluster_id: Arc<str>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    let (mut r, mut w) = (BufReader::new(r), BufWriter::new(w));
    let hello: Hello = read_frame(&mut r).await?;
    if hello.protocol != PROTOCOL_VERSION {
        let why = format!(
            "protocol version {} is not supported by this node (it speaks {PROTOCOL_VERSION}); run the same conclave release on every node",
            hello.protocol
        );
        write_frame(&mut w, &RpcResponse::Refused(why)).await?;
        return Ok(());
    }
    if *hello.cluster_id != *cluster_id {
        let why = format!(
            "node {} belongs to cluster {:?} but this node belongs to cluster {:?}; a node's data directory ties it to one cluster",
            hello.from, hello.cluster_id, cluster_id
        );
        tracing::warn!(from = hello.from, "{why}");
        write_frame(&mut w, &RpcResponse::Refused(why)).await?;
        return Ok(());
    }
    write_frame(&mut w, &RpcResponse::Welcome).await?;
    loop {
        let req: RpcRequest = read_frame(&mut r).await?;
        let resp = match req {
            RpcRequest::AppendEntries(rpc) => {
                RpcResponse::AppendEntries(raft.append_entries(rpc).await)
            }
            RpcRequest::Vote(rpc) => RpcResponse::Vote(raft.vote(rpc).await),
            RpcRequest::InstallSnapshot(rpc) => {
                RpcResponse::InstallSnapshot(raft.install_snapshot(rpc).await)
            }
        };
        write_frame(&mut w, &resp).await?;
    }
}
