//! The node RPC server: accepts connections, runs the handshake, dispatches requests.
//!
//! What a connection may do depends on what the two sides are: Raft traffic needs both
//! nodes in the same cluster (a node that has not joined one adopts the cluster of the first
//! leader that replicates to it); a node that has not joined may only ask [`RpcRequest::Info`]
//! and send a join request.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::RaftNode;
use crate::admission::{self, RaftMessage};
use crate::rpc::{LeaderRequest, RpcRequest, RpcResponse};
use crate::transport::{self, Accepted, PeerKind, sealed};

/// Connections served at once; more are closed as they arrive.
const MAX_CONNECTIONS: usize = 1024;
/// Connections still in their handshake (not yet trusted) at once.
const MAX_HANDSHAKING: usize = 64;
/// How long a connection may take to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serve node RPC on `listener` until `shutdown` fires.
pub(crate) async fn serve(listener: TcpListener, node: RaftNode, shutdown: CancellationToken) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let handshaking = Arc::new(Semaphore::new(MAX_HANDSHAKING));
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
        let (Ok(connection), Ok(handshake)) = (
            connections.clone().try_acquire_owned(),
            handshaking.clone().try_acquire_owned(),
        ) else {
            node.inner
                .refusals
                .record(peer, "connect", &"too many node-RPC connections; closed");
            continue;
        };
        let node = node.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _connection = connection;
            tokio::select! {
                _ = shutdown.cancelled() => {}
                r = serve_conn(stream, node.clone(), handshake) => match r {
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                        node.inner.refusals.record(peer, "handshake", &e);
                    }
                    Err(e) if e.kind() != io::ErrorKind::UnexpectedEof => {
                        tracing::debug!(%peer, error = %e, "node RPC connection closed");
                    }
                    _ => {}
                },
            }
        });
    }
}

async fn serve_conn(
    stream: TcpStream,
    node: RaftNode,
    handshake: OwnedSemaphorePermit,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    let (mut r, mut w) = (BufReader::new(r), BufWriter::new(w));
    let accepted = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        transport::accept(&mut r, &mut w, node.credentials()),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the handshake took too long"))?;
    drop(handshake);
    let Some(mut peer) = accepted? else {
        return Ok(());
    };
    loop {
        let req: RpcRequest = sealed::read_opened(&mut r, &mut peer.channel.recv).await?;
        let resp = dispatch(&node, &peer, req).await;
        sealed::write_sealed(&mut w, &mut peer.channel.send, &resp).await?;
    }
}

async fn dispatch(node: &RaftNode, peer: &Accepted, req: RpcRequest) -> RpcResponse {
    let raft = node.raft();
    if peer.peer_kind == PeerKind::ClientAgent && !matches!(req, RpcRequest::Info) {
        let why = format!(
            "client agent {} may only ask what this node knows (Info) over node RPC",
            peer.peer_id
        );
        node.inner
            .refusals
            .record(peer.peer_id, "client-agent request", &why);
        return RpcResponse::NotAllowed(why);
    }
    if let Some(message) = raft_message(&req) {
        let Some(theirs) = &peer.peer_cluster else {
            return RpcResponse::NotAllowed(format!(
                "node {} has not joined a cluster; it cannot take part in Raft",
                peer.peer_id
            ));
        };
        if node.credentials().cluster_id().is_none()
            && let Err(e) = node.adopt_cluster(theirs)
        {
            return RpcResponse::NotAllowed(e.to_string());
        }
        // Read in place, not cloned: this runs for every append. The voters matter only
        // to a vote request.
        let admitted = {
            let metrics = raft.metrics();
            let m = metrics.borrow();
            let voters: std::collections::BTreeSet<_> = match message {
                RaftMessage::Vote { .. } => m.membership_config.membership().voter_ids().collect(),
                RaftMessage::Replicate { .. } => Default::default(),
            };
            let local = admission::Local {
                term: m.current_term,
                voters: &voters,
            };
            admission::admit(peer.peer_id, message, &local)
        };
        if let Err(why) = admitted {
            node.inner
                .refusals
                .record(peer.peer_id, message.name(), &why);
            return RpcResponse::NotAllowed(why.to_string());
        }
    }
    match req {
        RpcRequest::AppendEntries(rpc) => {
            node.heard_from_leader();
            RpcResponse::AppendEntries(raft.append_entries(rpc).await)
        }
        RpcRequest::Vote(rpc) => RpcResponse::Vote(raft.vote(rpc).await),
        RpcRequest::InstallSnapshot(rpc) => {
            RpcResponse::InstallSnapshot(raft.install_snapshot(rpc).await)
        }
        RpcRequest::Info => RpcResponse::Info(Box::new(node.report())),
        RpcRequest::Leader { req, hops } => {
            let joining = matches!(req, LeaderRequest::Join { .. });
            if peer.peer_cluster.is_none() && !joining {
                return RpcResponse::NotAllowed(format!(
                    "node {} has not joined a cluster; only a join request is accepted from it",
                    peer.peer_id
                ));
            }
            if node.credentials().cluster_id().is_none() {
                return RpcResponse::NotAllowed(
                    "this node has not joined a cluster yet; send the request to a member".into(),
                );
            }
            // A node joins and announces its address only for itself (a member may pass
            // another's request on).
            if let LeaderRequest::Join { node_id, .. }
            | LeaderRequest::SetInfo { node_id, .. }
            | LeaderRequest::SetName { node_id, .. } = &req
                && *node_id != peer.peer_id
                && !node.is_member(peer.peer_id)
            {
                let why = format!(
                    "node {} may not join or announce addresses for node {node_id}",
                    peer.peer_id
                );
                node.inner.refusals.record(peer.peer_id, "join", &why);
                return RpcResponse::NotAllowed(why);
            }
            RpcResponse::Leader(node.serve_peer_request(peer.peer_id, req, hops).await)
        }
        RpcRequest::Removed { .. } | RpcRequest::TakeLeadership { .. }
            if peer.peer_cluster.is_none()
                || peer.peer_cluster != node.credentials().cluster_id() =>
        {
            RpcResponse::NotAllowed("only a member can say that".into())
        }
        RpcRequest::Removed { by } => {
            // Never trusted as it stands: the members, asked at the addresses this node's
            // membership holds, must show a membership without this node.
            let (node, peer_id) = (node.clone(), peer.peer_id);
            tokio::spawn(async move {
                if !node.check_still_member(Some(by)).await {
                    node.inner.refusals.record(
                        peer_id,
                        "removed",
                        &"no member shows a membership without this node",
                    );
                }
            });
            RpcResponse::Ack
        }
        RpcRequest::TakeLeadership { term } => {
            node.campaign_for_transfer(term);
            RpcResponse::Ack
        }
    }
}

/// What admission needs of a Raft message; `None` for the other requests.
fn raft_message(req: &RpcRequest) -> Option<RaftMessage> {
    let vote = match req {
        RpcRequest::Vote(rpc) => {
            return Some(RaftMessage::Vote {
                candidate: rpc.vote.leader_id().node_id,
                term: rpc.vote.leader_id().term,
            });
        }
        RpcRequest::AppendEntries(rpc) => &rpc.vote,
        RpcRequest::InstallSnapshot(rpc) => &rpc.vote,
        _ => return None,
    };
    Some(RaftMessage::Replicate {
        leader: vote.leader_id().node_id,
        term: vote.leader_id().term,
    })
}
