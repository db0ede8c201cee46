//! Membership for every node: who is in the cluster, alive and healthy, whatever its role.
//!
//! Raft holds a few voters; deployments have tens to hundreds of agents (voters, learners,
//! clients) that must all see the same peer list. This crate runs gossip (chitchat's
//! Scuttlebutt anti-entropy with a phi-accrual failure detector) over UDP on the RPC port,
//! authenticated with the cluster token (`transport`), turns what gossip knows into one
//! member list (`view`), and runs the node's health checks (`checks`), whose results travel
//! with gossip.
//!
//! Gossip is advisory: discovery, health, publishing. Nothing authoritative (the KV store,
//! membership of Raft, fencing) depends on it.

pub mod checks;
pub mod discovery;
pub mod events;
pub mod transport;
mod tuning;
pub mod view;

pub use tuning::GossipTuning;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chitchat::{
    ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, ProtocolVersion,
    spawn_chitchat,
};
use conclave_types::{GossipMember, MemberState};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use crate::transport::TransportStats;
use crate::view::{Observed, keys};

/// What this node is and says about itself.
#[derive(Debug, Clone)]
pub struct GossipOptions {
    pub node_id: u64,
    /// `voter`, `learner` or `client`.
    pub role: String,
    /// UDP address to bind (the RPC port).
    pub listen: SocketAddr,
    /// Where others reach this node's gossip (the advertised RPC address).
    pub advertise: SocketAddr,
    pub api_addr: String,
    pub rpc_addr: String,
    /// host:port of nodes to gossip with first (names are re-resolved by chitchat).
    pub seeds: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub version: String,
    pub cluster_id: Option<String>,
    pub token: Option<conclave_types::Secret>,
    pub tuning: GossipTuning,
    /// DNS server for `srv:` seeds (default: /etc/resolv.conf).
    pub dns_server: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("cannot start gossip on {addr}/udp: {source}")]
    Start {
        addr: SocketAddr,
        source: anyhow::Error,
    },
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

/// A running gossip member. Cheap to clone.
#[derive(Clone)]
pub struct Membership {
    inner: Arc<Inner>,
}

struct Inner {
    handle: tokio::sync::Mutex<Option<ChitchatHandle>>,
    /// Stops the transport's relay.
    stop: CancellationToken,
    chitchat: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    view: watch::Sender<View>,
    latest: std::sync::RwLock<View>,
    stats: Arc<TransportStats>,
    tuning: GossipTuning,
    id: u64,
    /// Why the join loop has not met anyone yet, or lost everyone it met.
    join_problem: std::sync::RwLock<Option<String>>,
    /// Where else to look for gossip when no other member answers: the addresses of the
    /// Raft members (set by the agent from its applied membership) and the ones last seen
    /// alive in gossip. So a cluster whose every node moved re-forms its gossip view.
    known_addrs: std::sync::RwLock<KnownAddrs>,
    /// When each (node, generation)'s heartbeat last advanced here.
    beats: std::sync::Mutex<HashMap<ChitchatId, (u64, Instant)>>,
    /// The cluster this agent was started for, if it was told (a client agent learns it).
    configured_cluster: Option<String>,
    /// Gossip members of another cluster seen in the last refresh, and when that was last
    /// logged.
    foreign: std::sync::Mutex<(usize, Option<Instant>)>,
}

/// Addresses worth gossiping to beside the seeds.
#[derive(Debug, Default, Clone)]
struct KnownAddrs {
    raft_members: Vec<String>,
    last_seen: Vec<String>,
}

impl Membership {
    pub async fn start(
        opts: GossipOptions,
        shutdown: CancellationToken,
    ) -> Result<Self, GossipError> {
        let generation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let interval = Duration::from_millis(opts.tuning.interval_ms);
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(opts.node_id.to_string(), generation, opts.advertise),
            cluster_id: "conclave".into(),
            gossip_interval: interval,
            listen_addr: opts.listen,
            // chitchat re-resolves plain names itself (once a minute); SRV seeds are ours.
            seed_nodes: opts
                .seeds
                .iter()
                .filter(|s| !discovery::Discovery::is_srv(s))
                .cloned()
                .collect(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: opts.tuning.phi_threshold,
                sampling_window_size: 100,
                max_interval: Duration::from_secs(10),
                initial_interval: interval,
                dead_node_grace_period: opts.tuning.reap_dead_after,
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: ProtocolVersion::V1,
        };
        let mut kvs = vec![
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
        ];
        kvs.extend(
            opts.tags
                .iter()
                .map(|(k, v)| (format!("{}{k}", keys::TAG_PREFIX), v.clone())),
        );
        let stats = Arc::new(TransportStats::default());
        let stop = CancellationToken::new();
        let transport = transport::AuthUdpTransport::new(
            opts.token.as_ref().map(conclave_types::Secret::expose),
            stats.clone(),
            stop.clone(),
        );
        let handle = spawn_chitchat(config, kvs, &transport)
            .await
            .map_err(|source| GossipError::Start {
                addr: opts.listen,
                source,
            })?;
        let chitchat = handle.chitchat();
        let initial = View {
            self_id: opts.node_id,
            members: Vec::new(),
        };
        let inner = Arc::new(Inner {
            handle: tokio::sync::Mutex::new(Some(handle)),
            stop,
            chitchat,
            view: watch::channel(initial.clone()).0,
            latest: std::sync::RwLock::new(initial),
            stats,
            tuning: opts.tuning.clone(),
            id: opts.node_id,
            beats: Default::default(),
            configured_cluster: opts.cluster_id.clone().filter(|c| !c.is_empty()),
            foreign: Default::default(),
            join_problem: std::sync::RwLock::new(
                (!opts.seeds.is_empty()).then(|| "joining: no seed has answered yet".to_string()),
            ),
            known_addrs: Default::default(),
        });
        let membership = Membership { inner };
        tokio::spawn(refresh_loop(membership.clone(), shutdown.clone()));
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
        self.inner.id
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

    /// The member list right now (last-seen times fresh to the refresh period).
    pub fn view(&self) -> View {
        self.inner
            .latest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Wakes when membership changes (a member appears, changes state, health, tags...).
    pub fn subscribe(&self) -> watch::Receiver<View> {
        self.inner.view.subscribe()
    }

    pub fn stats(&self) -> &TransportStats {
        &self.inner.stats
    }

    /// Advertise a key (no-op when unchanged).
    pub async fn set(&self, key: &str, value: &str) {
        let mut cc = self.inner.chitchat.lock().await;
        let me = cc.self_node_state();
        if me.get(key) != Some(value) {
            me.set(key, value);
        }
    }

    /// Advertise `tags` from now on instead of the current ones (tags not in it are
    /// deleted); every agent sees them within a few gossip rounds.
    pub async fn set_tags(&self, tags: &BTreeMap<String, String>) {
        let mut cc = self.inner.chitchat.lock().await;
        let me = cc.self_node_state();
        let stale: Vec<String> = me
            .key_values()
            .filter_map(|(k, _)| k.strip_prefix(keys::TAG_PREFIX))
            .filter(|k| !tags.contains_key(*k))
            .map(|k| format!("{}{k}", keys::TAG_PREFIX))
            .collect();
        for key in stale {
            me.delete(&key);
        }
        for (k, v) in tags {
            let key = format!("{}{k}", keys::TAG_PREFIX);
            if me.get(&key) != Some(v.as_str()) {
                me.set(key, v);
            }
        }
        drop(cc);
        // This agent's own view shows them at once.
        self.refresh().await;
    }

    pub async fn set_health(&self, summary: &checks::HealthSummary) {
        let health = if summary.passing() { "pass" } else { "fail" };
        self.set(keys::HEALTH, health).await;
        self.set(keys::FAILING, &summary.failing.join(",")).await;
    }

    /// Forget every dead or left member now, on every node (the decision travels with
    /// gossip). Returns the ids removed.
    pub async fn remove_dead(&self) -> Vec<u64> {
        let gone: Vec<(u64, u64)> = self
            .view()
            .members
            .iter()
            .filter(|m| matches!(m.state, MemberState::Dead | MemberState::Left))
            .map(|m| (m.id, m.generation))
            .collect();
        for (id, generation) in &gone {
            self.set(&format!("{}{id}.{generation}", keys::REAPED_PREFIX), "1")
                .await;
        }
        self.refresh().await;
        gone.into_iter().map(|(id, _)| id).collect()
    }

    /// Say goodbye: others show this node as `left`, not `dead`. Then stop gossiping.
    pub async fn leave(&self) {
        self.set(keys::LEFT, "1").await;
        // A few rounds carry the goodbye to the others.
        tokio::time::sleep(Duration::from_millis(self.inner.tuning.interval_ms * 4)).await;
        if let Some(handle) = self.inner.handle.lock().await.take() {
            let _ = handle.shutdown().await;
        }
        self.inner.stop.cancel();
    }

    async fn refresh(&self) {
        let observed = {
            let cc = self.inner.chitchat.lock().await;
            let live: std::collections::HashSet<&ChitchatId> = cc.live_nodes().collect();
            let me = cc.self_chitchat_id().clone();
            cc.node_states()
                .iter()
                .map(|(id, state)| {
                    (
                        id.clone(),
                        u64::from(state.heartbeat()),
                        state
                            .key_values()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect::<BTreeMap<_, _>>(),
                        *id == me || live.contains(id),
                    )
                })
                .collect::<Vec<_>>()
        };
        let now = Instant::now();
        let observed: Vec<Observed> = {
            let mut table = self.inner.beats.lock().unwrap_or_else(|p| p.into_inner());
            table.retain(|id, _| observed.iter().any(|o| o.0 == *id));
            observed
                .into_iter()
                .map(|(id, beat, keys, live)| {
                    let entry = table.entry(id.clone()).or_insert((beat, now));
                    if entry.0 != beat || id.node_id.as_ref() == self.inner.id.to_string() {
                        *entry = (beat, now);
                    }
                    Observed {
                        node_id: id.node_id.to_string(),
                        generation: id.generation_id,
                        keys,
                        live,
                        silent_for: now.duration_since(entry.1),
                    }
                })
                .collect()
        };
        let members = view::compute(
            &observed,
            Duration::from_millis(self.inner.tuning.suspect_after_ms),
        );
        let own = members
            .iter()
            .find(|m| m.id == self.inner.id)
            .map(|m| m.cluster_id.clone())
            .filter(|c| !c.is_empty())
            .or_else(|| self.inner.configured_cluster.clone());
        let cluster = view::cluster_of_view(own.as_deref(), &members);
        let (members, foreign) = view::keep_cluster(members, cluster.as_deref());
        self.note_foreign(foreign);
        let view = View {
            self_id: self.inner.id,
            members,
        };
        *self.inner.latest.write().unwrap_or_else(|p| p.into_inner()) = view.clone();
        self.inner.view.send_if_modified(|old| {
            if old.same_membership(&view) {
                false
            } else {
                *old = view;
                true
            }
        });
    }
}

impl Membership {
    /// Gossip members of another cluster left out of the view in the last refresh.
    pub fn foreign_members(&self) -> usize {
        self.inner
            .foreign
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
    }

    fn note_foreign(&self, n: usize) {
        let mut f = self.inner.foreign.lock().unwrap_or_else(|p| p.into_inner());
        f.0 = n;
        let now = Instant::now();
        if n > 0
            && f.1
                .is_none_or(|t| now.duration_since(t) > Duration::from_secs(60))
        {
            f.1 = Some(now);
            tracing::warn!(
                foreign = n,
                "gossip met members of another cluster; they are left out (two clusters share a seed or a client agent?)"
            );
        }
    }
}

/// Until another member answers: resolve every seed (DNS names give A and AAAA records, and
/// may resolve to nothing at first, e.g. a headless service before its pods are ready) and
/// gossip with each address, backing off from 0.5 s to 10 s. chitchat itself re-resolves
/// seed names only once a minute, which is too slow for a cluster that is starting up.
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
            .filter(|x| x.id != m.inner.id && x.state == MemberState::Alive)
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
                    for a in addrs {
                        if let Some(h) = m.inner.handle.lock().await.as_ref() {
                            let _ = h.gossip(a);
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

async fn refresh_loop(m: Membership, shutdown: CancellationToken) {
    let period = Duration::from_millis((m.inner.tuning.interval_ms / 2).max(20));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        m.refresh().await;
    }
}
