//! Membership for every node: who is in the cluster, alive and healthy, whatever its role.
//!
//! Raft holds a few voters; deployments have tens to hundreds of agents (voters, learners,
//! clients) that must all see the same peer list. This crate runs the gossip core
//! (`conclave-gossip`: SWIM with suspicion over sealed UDP datagrams on the RPC port, and
//! each node's advertised key/value state) in one task (`driver`), turns what it knows into
//! one member list (`view`) whenever it changes, keeps the gossip keyring (`keyring`), and
//! runs the node's health checks (`checks`), whose results travel in its advert.
//!
//! Gossip is advisory: discovery, health, publishing. Nothing authoritative (the KV store,
//! membership of Raft, fencing) depends on it.

pub mod checks;
pub mod discovery;
mod driver;
pub mod events;
pub mod keyring;
mod shared;
mod tuning;
pub mod view;

pub use tuning::GossipTuning;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use conclave_gossip::{Counters, Node, Peer};
use conclave_types::gossip_keys::{GossipKey, KeyOp};
use conclave_types::{GossipMember, MemberState};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::driver::{Command, Driver};
use crate::keyring::{KeyStore, KeyStoreError};
use crate::shared::{Shared, lock};
use crate::view::keys;

/// What this node is and says about itself.
#[derive(Debug, Clone)]
pub struct GossipOptions {
    pub node_id: u64,
    /// Its readable name (`--node-name`), advertised to every agent.
    pub name: String,
    /// `voter`, `learner` or `client`.
    pub role: String,
    /// UDP address to bind (the RPC port).
    pub listen: SocketAddr,
    /// Where others reach this node's gossip (the advertised RPC address).
    pub advertise: SocketAddr,
    pub api_addr: String,
    pub rpc_addr: String,
    /// host:port of nodes to gossip with first (names are re-resolved until one answers).
    pub seeds: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub version: String,
    pub cluster_id: Option<String>,
    /// The cluster secret the first gossip key derives from.
    pub token: Option<conclave_types::Secret>,
    /// Where the keyring is saved (`<data-dir>/gossip-keyring.json`); `None` keeps it in
    /// memory (tests).
    pub keyring_file: Option<PathBuf>,
    pub tuning: GossipTuning,
    /// DNS server for `srv:` seeds (default: /etc/resolv.conf).
    pub dns_server: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("cannot start gossip on {addr}/udp: {source}; choose another --rpc-addr")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Keyring(#[from] KeyStoreError),
    #[error("gossip has stopped (the agent is leaving)")]
    Stopped,
}

/// The member list as this node sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    pub self_id: u64,
    pub members: Vec<GossipMember>,
}

impl View {
    /// The same members, ignoring how long ago each was seen: what publishers compare.
    fn same_membership(&self, other: &View) -> bool {
        self.members.len() == other.members.len()
            && self.members.iter().zip(&other.members).all(|(a, b)| {
                let mut b = b.clone();
                b.last_seen_ms = a.last_seen_ms;
                *a == b
            })
    }

    /// Counts by state, for status and metrics.
    pub fn counts(&self) -> BTreeMap<MemberState, usize> {
        let mut c = BTreeMap::new();
        for m in &self.members {
            *c.entry(m.state).or_default() += 1;
        }
        c
    }

    /// The alive Raft members that advertise an API address, the leader first: where a
    /// client agent sends what it cannot answer itself.
    pub fn raft_members(&self) -> Vec<GossipMember> {
        let mut v: Vec<GossipMember> = self
            .members
            .iter()
            .filter(|m| {
                m.raft_role.is_some() && m.state == MemberState::Alive && !m.api_addr.is_empty()
            })
            .cloned()
            .collect();
        v.sort_by_key(|m| (m.raft_role.as_deref() != Some("leader"), m.id));
        v
    }
}

/// Counters of this agent's gossip, for `/v1/gossip/stats` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GossipCounters {
    /// The core's: datagrams and bytes each way, refusals by reason.
    pub core: Counters,
    /// Datagrams the socket would not send (no route, buffer full).
    pub send_errors: u64,
}

/// A running gossip member. Cheap to clone.
#[derive(Clone)]
pub struct Membership {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    tuning: GossipTuning,
    /// This agent's gossip address (never a seed of its own).
    advertise: SocketAddr,
    /// Why the join loop has not met anyone yet, or lost everyone it met.
    join_problem: RwLock<Option<String>>,
    /// Where else to look for gossip when no other member answers: the addresses of the
    /// Raft members (set by the agent from its applied membership) and the ones last seen
    /// alive in gossip. So a cluster whose every node moved re-forms its gossip view.
    known_addrs: RwLock<KnownAddrs>,
}

/// Addresses worth gossiping to beside the seeds.
#[derive(Debug, Default, Clone)]
struct KnownAddrs {
    raft_members: Vec<String>,
    last_seen: Vec<String>,
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u64::from_le_bytes(b)
}

impl Membership {
    pub async fn start(
        opts: GossipOptions,
        shutdown: CancellationToken,
    ) -> Result<Self, GossipError> {
        let keys = KeyStore::open(
            opts.keyring_file.clone(),
            opts.token
                .as_ref()
                .map_or(&b""[..], |t| t.expose().as_bytes()),
        )?;
        let socket = tokio::net::UdpSocket::bind(opts.listen)
            .await
            .map_err(|source| GossipError::Bind {
                addr: opts.listen,
                source,
            })?;
        let now = driver::wall_ms();
        let me = Peer {
            node_id: opts.node_id,
            addr: opts.advertise,
            // A restarted agent wins over its previous life on the same address.
            generation: now,
        };
        // The advert's versions start at the clock, above any earlier run's.
        let mut node = Node::new(
            me,
            &opts.tuning.config(),
            keys.keyring(),
            random_u64(),
            random_u64(),
            now,
        );
        let mut advert = BTreeMap::from([
            (keys::NAME.to_string(), opts.name.clone()),
            (keys::ROLE.to_string(), opts.role.clone()),
            (keys::API.to_string(), opts.api_addr.clone()),
            (keys::RPC.to_string(), opts.rpc_addr.clone()),
            (keys::VERSION.to_string(), opts.version.clone()),
            // The owner sets the checks' summary right after start (`set_health`).
            (keys::HEALTH.to_string(), "pass".to_string()),
            (
                keys::CLUSTER.to_string(),
                opts.cluster_id.clone().unwrap_or_default(),
            ),
        ]);
        advert.extend(
            opts.tags
                .iter()
                .map(|(k, v)| (format!("{}{k}", keys::TAG_PREFIX), v.clone())),
        );
        node.set_advert(now, advert);
        let initial = View {
            self_id: opts.node_id,
            members: Vec::new(),
        };
        let shared = Arc::new(Shared {
            id: opts.node_id,
            view: watch::channel(initial.clone()).0,
            latest: RwLock::new(initial),
            counters: Mutex::default(),
            send_errors: AtomicU64::new(0),
            heard: Mutex::default(),
            configured_cluster: opts.cluster_id.clone().filter(|c| !c.is_empty()),
            foreign: Mutex::default(),
            last_warning: Mutex::default(),
        });
        let (commands, receiver) = mpsc::unbounded_channel();
        tokio::spawn(
            Driver {
                node,
                socket: Arc::new(socket),
                shared: shared.clone(),
                keys,
                commands: receiver,
                shutdown: shutdown.clone(),
            }
            .run(),
        );
        let inner = Arc::new(Inner {
            shared,
            commands,
            tuning: opts.tuning.clone(),
            advertise: opts.advertise,
            join_problem: RwLock::new(
                (!opts.seeds.is_empty()).then(|| "joining: no seed has answered yet".to_string()),
            ),
            known_addrs: Default::default(),
        });
        let membership = Membership { inner };
        let discovery = discovery::Discovery::new(opts.dns_server);
        tokio::spawn(join_loop(
            membership.clone(),
            opts.seeds,
            discovery,
            shutdown,
        ));
        Ok(membership)
    }

    pub fn node_id(&self) -> u64 {
        self.inner.shared.id
    }

    /// The gossip addresses of the other Raft members, as this node's applied membership
    /// holds them: sought, like the seeds, whenever no other member answers.
    pub fn set_member_addresses(&self, addrs: Vec<String>) {
        self.inner
            .known_addrs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .raft_members = addrs;
    }

    /// Why this agent sees no other member although it knows where some should be (seeds,
    /// Raft members, members seen before): it has not joined yet, or it is cut off. `None`
    /// once another member is alive, or when there is no one to meet (a single node).
    pub fn join_problem(&self) -> Option<String> {
        self.inner
            .join_problem
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The member list right now, with how long ago each member was last heard.
    pub fn view(&self) -> View {
        let shared = &self.inner.shared;
        let mut view = shared
            .latest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let heard = lock(&shared.heard);
        let now = Instant::now();
        for m in &mut view.members {
            m.last_seen_ms = match heard.get(&m.id) {
                _ if m.id == view.self_id => 0,
                Some(t) => now.duration_since(*t).as_millis() as u64,
                None => m.last_seen_ms,
            };
        }
        view
    }

    /// Wakes when membership changes (a member appears, changes state, health, tags...).
    pub fn subscribe(&self) -> watch::Receiver<View> {
        self.inner.shared.view.subscribe()
    }

    /// Gossip members of another cluster left out of the current view.
    pub fn foreign_members(&self) -> usize {
        lock(&self.inner.shared.foreign).0
    }

    /// Traffic and refusals so far.
    pub fn counters(&self) -> GossipCounters {
        GossipCounters {
            core: lock(&self.inner.shared.counters).clone(),
            send_errors: self.inner.shared.send_errors.load(Ordering::Relaxed),
        }
    }

    /// Change advertised keys (`None` deletes one); returns once this agent's own view
    /// shows the change (others see it within a few gossip rounds).
    async fn advertise(&self, changes: Vec<(String, Option<String>)>) {
        let (done, wait) = oneshot::channel();
        if self
            .inner
            .commands
            .send(Command::Advertise(changes, done))
            .is_ok()
        {
            let _ = wait.await;
        }
    }

    /// Advertise a key (no-op when unchanged).
    pub async fn set(&self, key: &str, value: &str) {
        self.advertise(vec![(key.to_owned(), Some(value.to_owned()))])
            .await;
    }

    /// Advertise `tags` from now on instead of the current ones (tags not in it are
    /// deleted); every agent sees them within a few gossip rounds.
    pub async fn set_tags(&self, tags: &BTreeMap<String, String>) {
        let view = self.view();
        let current = view
            .members
            .iter()
            .find(|m| m.id == view.self_id)
            .map(|m| m.tags.clone())
            .unwrap_or_default();
        let mut changes: Vec<(String, Option<String>)> = current
            .keys()
            .filter(|k| !tags.contains_key(*k))
            .map(|k| (format!("{}{k}", keys::TAG_PREFIX), None))
            .collect();
        changes.extend(
            tags.iter()
                .map(|(k, v)| (format!("{}{k}", keys::TAG_PREFIX), Some(v.clone()))),
        );
        self.advertise(changes).await;
    }

    pub async fn set_health(&self, summary: &checks::HealthSummary) {
        let health = if summary.passing() { "pass" } else { "fail" };
        self.advertise(vec![
            (keys::HEALTH.to_owned(), Some(health.to_owned())),
            (keys::FAILING.to_owned(), Some(summary.failing.join(","))),
        ])
        .await;
    }

    /// Forget every dead or left member now, on every node (the decision travels with
    /// gossip). Returns the ids removed.
    pub async fn remove_dead(&self) -> Vec<u64> {
        let gone = self.reapable();
        self.advertise(
            gone.iter()
                .map(|(id, generation)| {
                    (
                        format!("{}{id}.{generation}", keys::REAPED_PREFIX),
                        Some("1".to_owned()),
                    )
                })
                .collect(),
        )
        .await;
        gone.into_iter().map(|(id, _)| id).collect()
    }

    /// The dead and left members `remove_dead` would reap, with their generations.
    pub fn reapable(&self) -> Vec<(u64, u64)> {
        self.view()
            .members
            .iter()
            .filter(|m| matches!(m.state, MemberState::Dead | MemberState::Left))
            .map(|m| (m.id, m.generation))
            .collect()
    }

    /// This agent's gossip keys, or the result of changing them (`op`), saved before the
    /// answer. Applied to this agent only: the API applies it to every agent.
    pub async fn keys(&self, op: Option<KeyOp>) -> Result<Vec<GossipKey>, GossipError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Keys(op, reply))
            .map_err(|_| GossipError::Stopped)?;
        Ok(answer.await.map_err(|_| GossipError::Stopped)??)
    }

    /// Say goodbye: others show this node as `left`, not `dead`. Then stop gossiping.
    pub async fn leave(&self) {
        self.set(keys::LEFT, "1").await;
        // A few rounds carry the goodbye to the others before the departure itself.
        tokio::time::sleep(Duration::from_millis(
            self.inner.tuning.gossip_interval_ms * 4,
        ))
        .await;
        let (done, wait) = oneshot::channel();
        if self.inner.commands.send(Command::Leave(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// Until another member answers: resolve every seed (DNS names give A and AAAA records, and
/// may resolve to nothing at first, e.g. a headless service before its pods are ready) and
/// ask each address to let this agent in, backing off from 0.5 s to 10 s. Once another
/// member is alive, SWIM keeps the membership; this loop only watches for it being lost.
async fn join_loop(
    m: Membership,
    seeds: Vec<String>,
    discovery: discovery::Discovery,
    shutdown: CancellationToken,
) {
    let mut pause = Duration::from_millis(500);
    let mut last_log: Option<Instant> = None;
    let mut ever_met = false;
    loop {
        let view = m.view();
        let others: Vec<String> = view
            .members
            .iter()
            .filter(|x| x.id != m.inner.shared.id && x.state == MemberState::Alive)
            .map(|x| x.rpc_addr.clone())
            .filter(|a| !a.is_empty())
            .collect();
        if !others.is_empty() {
            ever_met = true;
            *m.inner
                .join_problem
                .write()
                .unwrap_or_else(|p| p.into_inner()) = None;
            m.inner
                .known_addrs
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .last_seen = others;
            // Keep watching: if every other member vanishes, look for them again.
            pause = Duration::from_millis(500);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
            continue;
        }
        let known = m
            .inner
            .known_addrs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut targets: Vec<String> = seeds.clone();
        for a in known.raft_members.into_iter().chain(known.last_seen) {
            if !targets.contains(&a) {
                targets.push(a);
            }
        }
        if targets.is_empty() {
            // No one to meet: a single node, or a client without seeds.
            *m.inner
                .join_problem
                .write()
                .unwrap_or_else(|p| p.into_inner()) = None;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
            continue;
        }
        let mut outcomes = Vec::new();
        for seed in &targets {
            match discovery.expand(seed).await {
                Ok(addrs) => {
                    if addrs.is_empty() {
                        outcomes.push(format!("{seed}: resolves to no address yet"));
                    }
                    for a in addrs.into_iter().filter(|a| *a != m.inner.advertise) {
                        if m.inner.commands.send(Command::Join(a)).is_err() {
                            return;
                        }
                        outcomes.push(format!("{seed}: no answer from {a} yet"));
                    }
                }
                Err(e) => outcomes.push(format!("{seed} does not resolve yet ({e})")),
            }
        }
        let problem = if ever_met {
            format!(
                "cut off from gossip: no other member answers ({})",
                outcomes.join("; ")
            )
        } else {
            format!("not joined yet: {}", outcomes.join("; "))
        };
        if last_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            last_log = Some(Instant::now());
            tracing::warn!(
                "{problem}; retrying with backoff (check --join, the network and the cluster token)"
            );
        }
        *m.inner
            .join_problem
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(problem);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}
