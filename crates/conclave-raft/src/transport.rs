//! Node-to-node connections: framing, the authenticated handshake, and a connection pool.
//!
//! Why hand-written: Raft traffic is a stream of small request/response pairs between a fixed
//! set of peers. A persistent TCP connection with length-prefixed postcard frames costs no
//! headers and no per-request setup, and the handshake below checks, once per connection,
//! everything two nodes must agree on before they exchange a single Raft message.
//!
//! # Wire format
//! Handshake frames are `len u32 LE ‖ postcard(message)`, at most 4 KiB (the peer is not
//! trusted yet). Every frame after it is sealed ([`sealed`]): `len u32 LE ‖
//! ChaCha20-Poly1305(postcard(message))` under this session's key for its direction, at
//! most [`MAX_FRAME`] bytes of message.
//!
//! # Handshake (mutual, the token never crosses the wire)
//! 1. client → [`Hello`]: protocol version, its cluster id (none while it has not joined one),
//!    node id, Raft timings (none from a client agent, which holds no log and may only ask
//!    [`crate::rpc::RpcRequest::Info`]), a random nonce.
//! 2. server → [`Challenge`]: its own nonce and `HMAC(token, "server" ‖ client nonce ‖
//!    server nonce)`. The client checks that proof and, if it fails, closes without sending
//!    a proof of its own: a server with another token (or a relay) learns nothing.
//! 3. client → [`Proof`]: `HMAC(token, "client" ‖ server nonce ‖ client nonce)`.
//! 4. server → [`Verdict`]: welcome (with its node id and cluster id) or refused with the
//!    reason, checked in this order: token, protocol version, cluster id, Raft timings.
//!
//! Both ends then derive the session keys from the token and both nonces; a relay that
//! passed the handshake on holds a connection it can neither read nor write. After that the
//! client sends one request at a time and reads one response. Without a token the same
//! steps run with an empty key: nothing is authenticated, which is why such a node serves
//! RPC only on loopback unless started with `--insecure`.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use conclave_storage::NodeId;
use rand::RngCore;
use ring::hmac;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Largest frame accepted. An append carries at most a few batches of about
/// [`crate::batcher::MAX_BATCH_BYTES`]; snapshots travel in chunks of a few MiB.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// RPC protocol version; a peer speaking another one is refused. 3: log entries may carry
/// clock stamps, configuration and election commands. 4: member and status replies of the
/// RPC layer's own shape (no skipped fields), typed refusals (`RejectReason`). 5: the
/// handshake binds both nonces and seals every later frame. 6: the state machine's own
/// refusal (`Outcome::Refused`, `RejectReason::Refused`). 7: a hello without Raft timings is
/// a client agent's ([`PeerKind::ClientAgent`]). 8: `Refusal::RevisionsExhausted`.
/// 9: `ConsensusError::NoQuorum`. 10: `Command::Acl` and `Outcome::Acl` (tokens and
/// policies). 11: `Command::Audited`, `Command::Note` and `Refusal::NotAuditable` (the
/// audit log). 12: `Command::Ipam` and `Outcome::Ipam` (networks and allocations).
pub const PROTOCOL_VERSION: u32 = 13;

/// Idle connections kept per peer address by a [`Pool`].
const MAX_IDLE_PER_PEER: usize = 64;

/// The Raft timings every member of a cluster must share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
}

impl Timings {
    /// Each differing field as `name: <ours> X, <theirs> Y`; empty when equal.
    pub fn diff(&self, ours: &str, theirs_name: &str, theirs: &Timings) -> Vec<String> {
        let mut out = Vec::new();
        for (name, a, b) in [
            ("heartbeat_ms", self.heartbeat_ms, theirs.heartbeat_ms),
            (
                "election_timeout_min_ms",
                self.election_timeout_min_ms,
                theirs.election_timeout_min_ms,
            ),
            (
                "election_timeout_max_ms",
                self.election_timeout_max_ms,
                theirs.election_timeout_max_ms,
            ),
        ] {
            if a != b {
                out.push(format!(
                    "raft.{name}: {ours} has {a}, {theirs_name} has {b}"
                ));
            }
        }
        out
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    protocol: u32,
    cluster_id: Option<String>,
    from: NodeId,
    /// `None`: a client agent, which takes no part in Raft.
    timings: Option<Timings>,
    nonce: [u8; 32],
}

/// Who is on the other end of an accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    /// A node with a Raft log (a member, or one that is joining).
    Node,
    /// A client agent: it may ask [`crate::rpc::RpcRequest::Info`], nothing else.
    ClientAgent,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Challenge {
    nonce: [u8; 32],
    proof: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Proof {
    proof: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Verdict {
    Welcome {
        node_id: NodeId,
        cluster_id: Option<String>,
    },
    Refused(String),
    /// The client connected to itself (its join list names its own address).
    ItsYou,
}

/// This node's side of every handshake. The cluster id can be adopted later (joining).
pub struct Credentials {
    pub node_id: NodeId,
    cluster_id: RwLock<Option<String>>,
    key: hmac::Key,
    /// What every session's keys derive from (the token).
    session_key: ring::hkdf::Prk,
    has_token: bool,
    /// This node's Raft timings; `None` for a client agent.
    timings: Option<Timings>,
    /// Nonces of this node's own handshakes in progress: a hello carrying one of them is
    /// this node talking to itself, not a second node with the same id.
    own_nonces: std::sync::Mutex<std::collections::VecDeque<[u8; 32]>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never printed.
        f.debug_struct("Credentials")
            .field("node_id", &self.node_id)
            .field("cluster_id", &self.cluster_id())
            .field("has_token", &self.has_token)
            .finish()
    }
}

impl Credentials {
    pub fn new(
        node_id: NodeId,
        cluster_id: Option<String>,
        token: Option<&str>,
        timings: Timings,
    ) -> Self {
        Self::with_timings(node_id, cluster_id, token, Some(timings))
    }

    /// A client agent's credentials: it proves the token like a node, announces no Raft
    /// timings, and is served [`crate::rpc::RpcRequest::Info`] only.
    pub fn client_agent(node_id: NodeId, cluster_id: Option<String>, token: Option<&str>) -> Self {
        Self::with_timings(node_id, cluster_id, token, None)
    }

    fn with_timings(
        node_id: NodeId,
        cluster_id: Option<String>,
        token: Option<&str>,
        timings: Option<Timings>,
    ) -> Self {
        let token = token.unwrap_or("");
        Self {
            node_id,
            cluster_id: RwLock::new(cluster_id),
            key: hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes()),
            session_key: sealed::cluster_key(token.as_bytes()),
            has_token: !token.is_empty(),
            timings,
            own_nonces: std::sync::Mutex::new(std::collections::VecDeque::new()),
        }
    }

    fn remember_nonce(&self, n: [u8; 32]) {
        let mut q = self.own_nonces.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= 1024 {
            q.pop_front();
        }
        q.push_back(n);
    }

    fn forget_nonce(&self, n: &[u8; 32]) {
        let mut q = self.own_nonces.lock().unwrap_or_else(|p| p.into_inner());
        q.retain(|x| x != n);
    }

    fn is_own_nonce(&self, n: &[u8; 32]) -> bool {
        let q = self.own_nonces.lock().unwrap_or_else(|p| p.into_inner());
        q.contains(n)
    }

    pub fn cluster_id(&self) -> Option<String> {
        self.cluster_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_cluster_id(&self, id: String) {
        *self.cluster_id.write().unwrap_or_else(|p| p.into_inner()) = Some(id);
    }

    /// A proof of the token over both sides' nonces (the peer's first), so it is good for
    /// this one handshake only, in this direction only.
    fn sign(&self, role: &[u8], first: &[u8; 32], second: &[u8; 32]) -> Vec<u8> {
        hmac::sign(&self.key, &proof_message(role, first, second))
            .as_ref()
            .to_vec()
    }

    fn verify(&self, role: &[u8], first: &[u8; 32], second: &[u8; 32], proof: &[u8]) -> bool {
        hmac::verify(&self.key, &proof_message(role, first, second), proof).is_ok()
    }

    fn token_mismatch(&self, peer: &str) -> String {
        format!(
            "cluster token mismatch with {peer}: the two nodes do not share the same --cluster-token{}; set the same token (CONCLAVE_CLUSTER_TOKEN) on every node",
            if self.has_token {
                " (or the peer has none)"
            } else {
                " (this node has none)"
            }
        )
    }
}

fn proof_message(role: &[u8], first: &[u8; 32], second: &[u8; 32]) -> Vec<u8> {
    let mut msg = b"conclave/".to_vec();
    msg.extend_from_slice(role);
    msg.extend_from_slice(first);
    msg.extend_from_slice(second);
    msg
}

fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    rand::rng().fill_bytes(&mut n);
    n
}

pub(crate) async fn write_frame<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    msg: &impl Serialize,
) -> io::Result<()> {
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

/// Read one frame of at most `max` bytes.
async fn read_frame_up_to<R: AsyncReadExt + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
    max: usize,
) -> io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {max}"),
        ));
    }
    let buf = read_body(r, len).await?;
    postcard::from_bytes(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The `len` bytes of a frame's body. The buffer grows as bytes arrive, so a length prefix
/// alone makes no large allocation.
pub(crate) async fn read_body<R: AsyncReadExt + Unpin>(
    r: &mut R,
    len: usize,
) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len.min(64 * 1024));
    let read = (&mut *r).take(len as u64).read_to_end(&mut buf).await?;
    if read < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(buf)
}

/// The largest handshake message: the handshake runs before the peer is trusted.
const MAX_HANDSHAKE_FRAME: usize = 4 * 1024;

async fn read_handshake<R: AsyncReadExt + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> io::Result<T> {
    read_frame_up_to(r, MAX_HANDSHAKE_FRAME).await
}

/// Why a call failed, as far as the caller can tell whether the request took effect.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nothing was sent: the peer could not be reached or the handshake failed on the wire.
    #[error("cannot reach {addr}: {source}")]
    Unreachable { addr: String, source: io::Error },
    /// One side refused the other during the handshake; nothing was sent.
    #[error("{0}")]
    Refused(String),
    /// The address is this node's own.
    #[error("{0} is this node's own address")]
    ItsMe(String),
    /// The request was (perhaps partly) sent but no reply came: it may have taken effect.
    #[error("no reply from {addr}: {source}")]
    Lost { addr: String, source: io::Error },
}

impl CallError {
    /// True when the request certainly did not reach the peer.
    pub fn not_sent(&self) -> bool {
        !matches!(self, CallError::Lost { .. })
    }
}

/// An authenticated connection to one peer.
pub struct Conn {
    addr: String,
    r: BufReader<OwnedReadHalf>,
    w: BufWriter<OwnedWriteHalf>,
    channel: sealed::Channel,
    /// The peer's node id and cluster id as it announced them.
    pub peer_id: NodeId,
    pub peer_cluster: Option<String>,
}

impl Conn {
    /// Connect to `addr` and run the client side of the handshake.
    pub async fn connect(addr: &str, creds: &Credentials) -> Result<Conn, CallError> {
        let unreachable = |source: io::Error| CallError::Unreachable {
            addr: addr.to_owned(),
            source,
        };
        let stream = TcpStream::connect(addr).await.map_err(unreachable)?;
        stream.set_nodelay(true).map_err(unreachable)?;
        let (r, w) = stream.into_split();
        let (r, w) = (BufReader::new(r), BufWriter::new(w));
        let my_nonce = nonce();
        creds.remember_nonce(my_nonce);
        let result = Self::handshake(addr, creds, my_nonce, r, w).await;
        creds.forget_nonce(&my_nonce);
        result
    }

    async fn handshake(
        addr: &str,
        creds: &Credentials,
        my_nonce: [u8; 32],
        mut r: BufReader<OwnedReadHalf>,
        mut w: BufWriter<OwnedWriteHalf>,
    ) -> Result<Conn, CallError> {
        let unreachable = |source: io::Error| CallError::Unreachable {
            addr: addr.to_owned(),
            source,
        };
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            cluster_id: creds.cluster_id(),
            from: creds.node_id,
            timings: creds.timings,
            nonce: my_nonce,
        };
        write_frame(&mut w, &hello).await.map_err(unreachable)?;
        let challenge: Challenge = read_handshake(&mut r).await.map_err(unreachable)?;
        // No proof goes to a server that has not proven itself first: a relay that makes
        // this node dial it gets nothing to replay elsewhere.
        if !creds.verify(b"server", &my_nonce, &challenge.nonce, &challenge.proof) {
            return Err(CallError::Refused(
                creds.token_mismatch(&format!("the node at {addr}")),
            ));
        }
        let proof = Proof {
            proof: creds.sign(b"client", &challenge.nonce, &my_nonce),
        };
        write_frame(&mut w, &proof).await.map_err(unreachable)?;
        let verdict = read_handshake::<_, Verdict>(&mut r)
            .await
            .map_err(unreachable)?;
        match verdict {
            Verdict::Welcome {
                node_id,
                cluster_id,
            } => Ok(Conn {
                addr: addr.to_owned(),
                r,
                w,
                channel: sealed::Channel::new(
                    &creds.session_key,
                    sealed::Side::Client,
                    &my_nonce,
                    &challenge.nonce,
                ),
                peer_id: node_id,
                peer_cluster: cluster_id,
            }),
            Verdict::ItsYou => Err(CallError::ItsMe(addr.to_owned())),
            Verdict::Refused(why) => Err(CallError::Refused(format!(
                "the node at {addr} refused this node: {why}"
            ))),
        }
    }

    /// An idle connection should have nothing to read: end-of-file means the peer closed it
    /// (it restarted), and stray bytes mean the stream is out of step. Checked before reuse so
    /// that a write is not sent into a dead connection and reported as "outcome unknown".
    fn looks_open(&self) -> bool {
        if !self.r.buffer().is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.r.get_ref().try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Send one request and read its reply.
    pub async fn call<Req: Serialize, Resp: for<'de> Deserialize<'de>>(
        &mut self,
        req: &Req,
    ) -> Result<Resp, CallError> {
        let lost = |source: io::Error| CallError::Lost {
            addr: self.addr.clone(),
            source,
        };
        sealed::write_sealed(&mut self.w, &mut self.channel.send, req)
            .await
            .map_err(lost)?;
        sealed::read_opened(&mut self.r, &mut self.channel.recv)
            .await
            .map_err(lost)
    }
}

/// What the server side of a handshake learned about the client.
pub struct Accepted {
    pub peer_id: NodeId,
    pub peer_cluster: Option<String>,
    pub peer_kind: PeerKind,
    /// This session's keys: every frame after the handshake is sealed with them.
    pub(crate) channel: sealed::Channel,
}

/// Run the server side of the handshake on a fresh connection. `Ok(None)` means the peer was
/// refused (and told why).
pub(crate) async fn accept<R, W>(
    r: &mut R,
    w: &mut W,
    creds: &Credentials,
) -> io::Result<Option<Accepted>>
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let hello: Hello = read_handshake(r).await?;
    let my_nonce = nonce();
    let challenge = Challenge {
        nonce: my_nonce,
        proof: creds.sign(b"server", &hello.nonce, &my_nonce),
    };
    write_frame(w, &challenge).await?;
    let proof: Proof = match read_handshake(r).await {
        Ok(p) => p,
        // A client that finds this node's proof wrong closes without sending its own.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                creds.token_mismatch(&format!("node {} (it left the handshake)", hello.from)),
            ));
        }
        Err(e) => return Err(e),
    };
    let mine = creds.cluster_id();
    if creds.is_own_nonce(&hello.nonce) {
        write_frame(w, &Verdict::ItsYou).await?;
        return Ok(None);
    }
    let refusal = if !creds.verify(b"client", &my_nonce, &hello.nonce, &proof.proof) {
        Some(creds.token_mismatch(&format!("node {}", hello.from)))
    } else if hello.protocol != PROTOCOL_VERSION {
        Some(format!(
            "node {} speaks RPC protocol {} but this node speaks {PROTOCOL_VERSION}; run the same conclave release on every node",
            hello.from, hello.protocol
        ))
    } else if let (Some(theirs), Some(ours)) = (&hello.cluster_id, &mine)
        && theirs != ours
    {
        Some(format!(
            "node {} belongs to cluster {theirs:?} but this node belongs to cluster {ours:?}; a data directory ties a node to one cluster — start the node with a fresh --data-dir to move it to this cluster",
            hello.from
        ))
    } else if hello.from == creds.node_id {
        Some(format!(
            "node id {} is this node's own id; two nodes share one id (a copied data directory?) — give one of them a fresh --data-dir",
            hello.from
        ))
    } else if let (Some(ours), Some(theirs)) = (&creds.timings, &hello.timings) {
        let diff = ours.diff(
            &format!("node {}", creds.node_id),
            &format!("node {}", hello.from),
            theirs,
        );
        (!diff.is_empty()).then(|| {
            format!(
                "Raft timings are a cluster invariant and differ: {}; start node {} with this cluster's timings",
                diff.join("; "),
                hello.from
            )
        })
    } else {
        None
    };
    if let Some(why) = refusal {
        tracing::warn!(from = hello.from, "refused a node RPC connection: {why}");
        write_frame(w, &Verdict::Refused(why)).await?;
        return Ok(None);
    }
    write_frame(
        w,
        &Verdict::Welcome {
            node_id: creds.node_id,
            cluster_id: mine,
        },
    )
    .await?;
    Ok(Some(Accepted {
        peer_id: hello.from,
        peer_cluster: hello.cluster_id,
        peer_kind: match hello.timings {
            Some(_) => PeerKind::Node,
            None => PeerKind::ClientAgent,
        },
        channel: sealed::Channel::new(
            &creds.session_key,
            sealed::Side::Server,
            &hello.nonce,
            &my_nonce,
        ),
    }))
}

mod pool;
pub(crate) mod sealed;
pub use pool::Pool;

#[cfg(test)]
mod tests;
