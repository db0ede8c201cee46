//! A cluster of [`Node`]s in one process: an in-memory network with loss, delay and
//! partitions under control, and a virtual clock, so a thousand agents run in seconds and
//! every run with the same seed is the same run.
//!
//! Why in the library: the simulation is how this crate's figures are measured (detection
//! and propagation times, traffic per agent at 50 to 1,000 agents, false positives under
//! loss); the tests and the benchmark share it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};

use foca::Timer;
use rand_foca::rngs::SmallRng;
use rand_foca::{RngExt, SeedableRng};

use crate::Peer;
use crate::node::{Event, GossipConfig, Node, Output};
use crate::seal::Keyring;

/// The network's behaviour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Network {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// One-way delay, uniform in this range (ms).
    pub min_delay_ms: u64,
    pub max_delay_ms: u64,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            loss: 0.0,
            min_delay_ms: 1,
            max_delay_ms: 5,
        }
    }
}

enum Pending {
    Deliver {
        to: usize,
        datagram: Vec<u8>,
    },
    Timer {
        node: usize,
        life: u32,
        timer: Timer<Peer>,
    },
}

/// One event a node reported, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub at_ms: u64,
    pub node: usize,
    pub event: Event,
}

/// The simulated cluster.
pub struct Sim {
    config: GossipConfig,
    network: Network,
    nodes: Vec<Option<Node>>,
    /// Increases with each restart of a node, so timers of its previous life are dropped.
    lives: Vec<u32>,
    by_addr: HashMap<SocketAddr, usize>,
    /// Partition group of each node: datagrams cross only within a group.
    group: Vec<u32>,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    pending: HashMap<u64, Pending>,
    next_seq: u64,
    now_ms: u64,
    rng: SmallRng,
    keyring: Keyring,
    /// Down and advert events (ups are counted, not kept: a thousand nodes see a million).
    pub seen: Vec<Seen>,
    pub ups: u64,
}

/// A keyring holding the key a cluster with `secret` uses.
fn keyring_of(secret: &[u8]) -> Keyring {
    Keyring::new(&crate::seal::key_from_secret(secret))
        .unwrap_or_else(|_| unreachable!("a derived key is 32 bytes"))
}

/// The simulated address of node `i`.
pub fn addr_of(i: usize) -> SocketAddr {
    let i = i as u32 + 1;
    SocketAddr::from((Ipv4Addr::from(0x0a00_0000 | i), 7946))
}

impl Sim {
    /// `n` nodes, not yet started.
    pub fn new(n: usize, config: GossipConfig, network: Network, seed: u64) -> Self {
        let keyring = keyring_of(b"simulated cluster");
        Self {
            config,
            network,
            nodes: (0..n).map(|_| None).collect(),
            lives: vec![0; n],
            by_addr: (0..n).map(|i| (addr_of(i), i)).collect(),
            group: vec![0; n],
            queue: BinaryHeap::new(),
            pending: HashMap::new(),
            next_seq: 0,
            now_ms: 1_000_000,
            rng: SmallRng::seed_from_u64(seed),
            keyring,
            seen: Vec::new(),
            ups: 0,
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, i: usize) -> Option<&Node> {
        self.nodes[i].as_ref()
    }

    pub fn set_network(&mut self, network: Network) {
        self.network = network;
    }

    /// Put each node in a group; datagrams cross only within a group (`vec![0; n]` heals).
    pub fn partition(&mut self, groups: Vec<u32>) {
        self.group = groups;
    }

    /// Start node `i` with `advert` and have it join through node `via` (itself: alone).
    pub fn start(&mut self, i: usize, via: usize, advert: BTreeMap<String, String>) {
        let keyring = self.keyring.clone();
        self.start_with(i, via, advert, keyring);
    }

    /// Start node `i` under another cluster's key, joining through `via`.
    pub fn start_foreign(&mut self, i: usize, via: usize) {
        let keyring = keyring_of(b"another cluster");
        self.start_with(i, via, BTreeMap::new(), keyring);
    }

    fn start_with(
        &mut self,
        i: usize,
        via: usize,
        advert: BTreeMap<String, String>,
        keyring: Keyring,
    ) {
        self.lives[i] += 1;
        let me = Peer {
            node_id: i as u64 + 1,
            addr: addr_of(i),
            generation: self.now_ms,
        };
        let seed = self.rng.random::<u64>();
        let epoch = self.rng.random::<u64>();
        let mut node = Node::new(me, &self.config, keyring, seed, epoch, self.now_ms);
        node.set_advert(self.now_ms, advert);
        if via != i {
            node.join(self.now_ms, addr_of(via));
        }
        self.nodes[i] = Some(node);
        self.flush(i);
    }

    /// Start every node, each joining through node 0, `stagger_ms` apart.
    pub fn start_all(&mut self, stagger_ms: u64) {
        for i in 0..self.nodes.len() {
            self.start(i, 0, BTreeMap::from([("role".into(), "client".into())]));
            let until = self.now_ms + stagger_ms;
            self.run_until(until);
        }
    }

    /// Node `i` stops answering (a crash: no leave message).
    pub fn crash(&mut self, i: usize) {
        self.nodes[i] = None;
    }

    /// Node `i` leaves the cluster politely.
    pub fn leave(&mut self, i: usize) {
        if let Some(n) = self.nodes[i].as_mut() {
            n.leave(self.now_ms);
        }
        self.flush(i);
    }

    /// Node `i` advertises `advert` from now on.
    pub fn set_advert(&mut self, i: usize, advert: BTreeMap<String, String>) {
        let now = self.now_ms;
        if let Some(n) = self.nodes[i].as_mut() {
            n.set_advert(now, advert);
        }
        self.flush(i);
    }

    fn push(&mut self, at: u64, p: Pending) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.insert(seq, p);
        self.queue.push(Reverse((at, seq)));
    }

    /// Take node `i`'s outputs into the queue, and its events into [`Sim::seen`].
    fn flush(&mut self, i: usize) {
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        let (outputs, events) = node.drain();
        for event in events {
            match event {
                Event::Up(_) => self.ups += 1,
                event => self.seen.push(Seen {
                    at_ms: self.now_ms,
                    node: i,
                    event,
                }),
            }
        }
        for output in outputs {
            match output {
                Output::Send { to, datagram } => {
                    let Some(&j) = self.by_addr.get(&to) else {
                        continue;
                    };
                    if self.group[i] != self.group[j]
                        || self.rng.random::<f64>() < self.network.loss
                    {
                        continue;
                    }
                    let delay = self
                        .rng
                        .random_range(self.network.min_delay_ms..=self.network.max_delay_ms);
                    self.push(self.now_ms + delay, Pending::Deliver { to: j, datagram });
                }
                Output::Schedule { after, timer } => {
                    let at = self.now_ms + after.as_millis() as u64;
                    let life = self.lives[i];
                    self.push(
                        at,
                        Pending::Timer {
                            node: i,
                            life,
                            timer,
                        },
                    );
                }
            }
        }
    }

    /// Run every event due up to `until_ms`.
    pub fn run_until(&mut self, until_ms: u64) {
        while let Some(&Reverse((at, seq))) = self.queue.peek() {
            if at > until_ms {
                break;
            }
            self.queue.pop();
            self.now_ms = at;
            let Some(p) = self.pending.remove(&seq) else {
                continue;
            };
            let i = match p {
                Pending::Deliver { to, datagram } => {
                    let Some(n) = self.nodes[to].as_mut() else {
                        continue;
                    };
                    let _ = n.receive(at, &datagram);
                    to
                }
                Pending::Timer { node, life, timer } => {
                    if life != self.lives[node] {
                        continue;
                    }
                    let Some(n) = self.nodes[node].as_mut() else {
                        continue;
                    };
                    n.timer(at, timer);
                    node
                }
            };
            self.flush(i);
        }
        self.now_ms = self.now_ms.max(until_ms);
    }

    /// How many nodes run.
    pub fn converged_count(&self) -> usize {
        self.nodes.iter().flatten().count()
    }

    /// Every running node sees every other running node as a member.
    pub fn converged(&self) -> bool {
        let running = self.nodes.iter().flatten().count();
        self.nodes
            .iter()
            .flatten()
            .all(|n| n.num_members() + 1 == running)
    }

    /// The sum of every running node's traffic: (datagrams sent, bytes sent).
    pub fn traffic(&self) -> (u64, u64) {
        self.nodes
            .iter()
            .flatten()
            .map(|n| (n.counters().sent, n.counters().sent_bytes))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// Datagrams refused by any node (forged, replayed, unknown key, undecodable).
    pub fn refusals(&self) -> u64 {
        self.nodes
            .iter()
            .flatten()
            .map(|n| {
                let c = n.counters();
                c.refused_forged
                    + c.refused_replayed
                    + c.refused_unknown_key
                    + c.refused_other
                    + c.undecodable
            })
            .sum()
    }
}
