//! Gossip datagrams, authenticated with the cluster token.
//!
//! chitchat's own UDP transport is plaintext and accepts anyone who knows the cluster name.
//! This one appends an HMAC-SHA256 tag (first 16 bytes) keyed by a key derived from the
//! cluster token to every datagram and drops datagrams whose tag does not verify, so a node
//! without the token can neither read itself into the member list nor inject state. The
//! token itself never leaves the node. Without a token the key is derived from the empty
//! string: the tag then only guards against stray or corrupted datagrams.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use chitchat::ChitchatEnvelope;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use ring::hmac;
use tokio_util::sync::CancellationToken;

const TAG_LEN: usize = 16;
/// Loopback address of the relay's internal sockets: 127.0.0.2 rather than 127.0.0.1, so
/// their ephemeral ports never take a port another local service binds on 127.0.0.1.
const STAND_IN_IP: ([u8; 4], u16) = ([127, 0, 0, 2], 0);
/// The largest UDP payload on IPv4.
const MAX_DATAGRAM: usize = 65_507;

/// Counters of the gossip transport, shown in `/v1/status`.
#[derive(Debug, Default)]
pub struct TransportStats {
    pub datagrams_sent: AtomicU64,
    pub datagrams_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    /// Datagrams dropped because their tag did not verify (wrong or missing token).
    pub rejected: AtomicU64,
}

pub(crate) struct AuthUdpTransport {
    key: hmac::Key,
    stats: Arc<TransportStats>,
    /// Stops the relay (and frees the public port).
    stop: CancellationToken,
}

impl AuthUdpTransport {
    pub(crate) fn new(
        token: Option<&str>,
        stats: Arc<TransportStats>,
        stop: CancellationToken,
    ) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, token.unwrap_or("").as_bytes());
        let derived = hmac::sign(&root, b"conclave gossip v1");
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            stats,
            stop,
        }
    }
}

// How it is built: chitchat 0.13 keeps its datagram codec private, so the tag cannot be added
// inside a `Socket`. Instead chitchat's own UDP socket is bound on loopback, and a relay
// stands between it and the public port: every remote peer R gets a loopback "stand-in"
// socket L(R). chitchat sends to R → the wrapper sends to L(R) → the relay tags the datagram
// and sends it from the public port to R. A tagged datagram from R on the public port is
// verified and handed to chitchat from L(R); the wrapper reports it as coming from R.

#[async_trait]
impl Transport for AuthUdpTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let public = tokio::net::UdpSocket::bind(listen_addr)
            .await
            .with_context(|| {
                format!("cannot bind {listen_addr}/udp for gossip; choose another --rpc-addr")
            })?;
        let inner = match chitchat::transport::UdpSocket::open(STAND_IN_IP.into()).await {
            Ok(s) => s,
            Err(_) => chitchat::transport::UdpSocket::open(([127, 0, 0, 1], 0).into()).await?,
        };
        let inner_addr = inner.local_addr()?;
        let relay = Arc::new(Relay {
            public: Arc::new(public),
            inner_addr,
            key: self.key.clone(),
            stats: self.stats.clone(),
            stand_ins: Mutex::new(HashMap::new()),
            remotes: Mutex::new(HashMap::new()),
            last_warning: Mutex::new(None),
            stop: self.stop.clone(),
            out_buf: Mutex::new(vec![0u8; MAX_DATAGRAM + 1]),
            started: Instant::now(),
        });
        tokio::spawn(relay.clone().inbound());
        tokio::spawn(relay.clone().sweep_loop());
        Ok(Box::new(AuthUdpSocket { inner, relay }))
    }
}

struct Relay {
    public: Arc<tokio::net::UdpSocket>,
    /// chitchat's own socket, on loopback.
    inner_addr: SocketAddr,
    key: hmac::Key,
    stats: Arc<TransportStats>,
    /// Remote peer → its loopback stand-in.
    stand_ins: Mutex<HashMap<SocketAddr, Arc<StandIn>>>,
    /// Stand-in address → remote peer.
    remotes: Mutex<HashMap<SocketAddr, SocketAddr>>,
    last_warning: Mutex<Option<Instant>>,
    stop: CancellationToken,
    /// The stand-ins' shared receive buffer.
    out_buf: Mutex<Vec<u8>>,
    /// Time base for `StandIn::last_used`.
    started: Instant,
}

/// A remote peer's loopback socket. Closed after `STAND_IN_IDLE` without traffic, so peers
/// that come and go (new pod IPs) do not accumulate sockets.
struct StandIn {
    sock: Arc<tokio::net::UdpSocket>,
    last_used_ms: AtomicU64,
    closed: CancellationToken,
}

const STAND_IN_IDLE: Duration = Duration::from_secs(600);

impl Relay {
    fn tag(&self, payload: &[u8]) -> [u8; TAG_LEN] {
        let full = hmac::sign(&self.key, payload);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full.as_ref()[..TAG_LEN]);
        tag
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The stand-in for `remote`, created (with its outbound pump) on first use.
    async fn stand_in(
        self: &Arc<Self>,
        remote: SocketAddr,
    ) -> anyhow::Result<Arc<tokio::net::UdpSocket>> {
        if let Some(s) = lock(&self.stand_ins).get(&remote) {
            s.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
            return Ok(s.sock.clone());
        }
        let ip = self.inner_addr.ip();
        let sock = Arc::new(tokio::net::UdpSocket::bind((ip, 0)).await?);
        let addr = sock.local_addr()?;
        let mut map = lock(&self.stand_ins);
        if let Some(s) = map.get(&remote) {
            return Ok(s.sock.clone());
        }
        let entry = Arc::new(StandIn {
            sock: sock.clone(),
            last_used_ms: AtomicU64::new(self.now_ms()),
            closed: CancellationToken::new(),
        });
        map.insert(remote, entry.clone());
        lock(&self.remotes).insert(addr, remote);
        tokio::spawn(self.clone().outbound(entry, remote));
        Ok(sock)
    }

    /// Close stand-ins idle for longer than `idle`; returns how many.
    fn sweep(&self, idle: Duration) -> usize {
        let now = self.now_ms();
        let mut map = lock(&self.stand_ins);
        let stale: Vec<SocketAddr> = map
            .iter()
            .filter(|(_, s)| {
                now.saturating_sub(s.last_used_ms.load(Ordering::Relaxed)) > idle.as_millis() as u64
            })
            .map(|(r, _)| *r)
            .collect();
        for remote in &stale {
            if let Some(s) = map.remove(remote) {
                s.closed.cancel();
                if let Ok(addr) = s.sock.local_addr() {
                    lock(&self.remotes).remove(&addr);
                }
            }
        }
        stale.len()
    }

    async fn sweep_loop(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
            let closed = self.sweep(STAND_IN_IDLE);
            if closed > 0 {
                tracing::debug!(closed, "closed idle gossip stand-in sockets");
            }
        }
    }

    /// chitchat → stand-in → tag → public port → remote. Stand-ins share one receive buffer
    /// (a datagram may be 64 KiB; a buffer per peer would cost 64 KiB × peers of memory).
    async fn outbound(self: Arc<Self>, entry: Arc<StandIn>, remote: SocketAddr) {
        let sock = entry.sock.clone();
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = entry.closed.cancelled() => return,
                r = sock.readable() => if r.is_err() { continue },
            }
            let datagram = {
                let mut buf = lock(&self.out_buf);
                match sock.try_recv_from(&mut buf) {
                    Ok((n, from)) if from == self.inner_addr => {
                        if n + TAG_LEN > MAX_DATAGRAM {
                            // chitchat fills deltas up to the UDP limit; the tag does not fit.
                            // Skip: the next round (another peer, another digest) carries it.
                            tracing::debug!(len = n, %remote, "gossip datagram too large for the tag; skipped");
                            continue;
                        }
                        let mut d = Vec::with_capacity(n + TAG_LEN);
                        d.extend_from_slice(&buf[..n]);
                        d
                    }
                    _ => continue,
                }
            };
            entry.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
            let tag = self.tag(&datagram);
            let mut datagram = datagram;
            datagram.extend_from_slice(&tag);
            if let Ok(sent) = self.public.send_to(&datagram, remote).await {
                self.stats.datagrams_sent.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .bytes_sent
                    .fetch_add(sent as u64, Ordering::Relaxed);
            }
        }
    }

    /// remote → public port → verify → stand-in → chitchat.
    async fn inbound(self: Arc<Self>) {
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        loop {
            let got = tokio::select! {
                _ = self.stop.cancelled() => return,
                got = self.public.recv_from(&mut buf) => got,
            };
            let (n, from) = match got {
                Ok(r) => r,
                Err(e) => {
                    tracing::trace!(error = %e, "gossip receive error");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            };
            if !(TAG_LEN..=MAX_DATAGRAM).contains(&n) {
                self.reject(from, "it carries no valid tag");
                continue;
            }
            let (payload, tag) = buf[..n].split_at(n - TAG_LEN);
            let want = hmac::sign(&self.key, payload);
            if !constant_time_eq(&want.as_ref()[..TAG_LEN], tag) {
                self.reject(from, "its tag does not verify");
                continue;
            }
            self.stats
                .datagrams_received
                .fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes_received
                .fetch_add(n as u64, Ordering::Relaxed);
            match self.stand_in(from).await {
                Ok(sock) => {
                    let _ = sock.send_to(payload, self.inner_addr).await;
                }
                Err(e) => tracing::warn!(error = %e, "cannot open a loopback gossip socket"),
            }
        }
    }

    fn reject(&self, from: SocketAddr, why: &str) {
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        // One warning per 10 s is enough to point at a misconfigured node.
        let mut last = lock(&self.last_warning);
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(
                %from,
                "dropped a gossip datagram: {why}; a node without this cluster's token is gossiping here — give it the same CONCLAVE_CLUSTER_TOKEN"
            );
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct AuthUdpSocket {
    inner: chitchat::transport::UdpSocket,
    relay: Arc<Relay>,
}

#[async_trait]
impl Socket for AuthUdpSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.relay
            .public
            .local_addr()
            .context("gossip socket address")
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let stand_in = self.relay.stand_in(to).await?;
        self.inner.send(stand_in.local_addr()?, envelope).await
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            let mut got = self.inner.recv().await?;
            if let Some(remote) = lock(&self.relay.remotes).get(&got.from_addr) {
                got.from_addr = *remote;
                return Ok(got);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_stand_ins_are_closed_and_recreated_on_demand() {
        let transport = AuthUdpTransport::new(Some("t"), Arc::default(), CancellationToken::new());
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let peer_addr = peer.local_addr().unwrap();
        let public = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let relay = Arc::new(Relay {
            public: Arc::new(public),
            inner_addr: "127.0.0.1:9".parse().unwrap(),
            key: transport.key.clone(),
            stats: Arc::default(),
            stand_ins: Mutex::new(HashMap::new()),
            remotes: Mutex::new(HashMap::new()),
            last_warning: Mutex::new(None),
            stop: CancellationToken::new(),
            out_buf: Mutex::new(vec![0u8; 16]),
            started: Instant::now(),
        });
        let first = relay
            .stand_in(peer_addr)
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        assert_eq!(
            relay.sweep(Duration::from_secs(60)),
            0,
            "a fresh stand-in stays"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(relay.sweep(Duration::from_millis(10)), 1);
        assert!(lock(&relay.remotes).is_empty());
        let second = relay
            .stand_in(peer_addr)
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        assert_ne!(first, second, "a new stand-in replaces the closed one");
        relay.stop.cancel();
    }
}
