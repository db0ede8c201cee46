//! The IO around the sans-IO gossip core: one task owns the [`Node`], the UDP socket and
//! foca's timers, and takes commands (advertise, join, keyring changes, leave) from the
//! [`Membership`](crate::Membership) handles.
//!
//! The member list is rebuilt only when the core reports a change (a member up or down, an
//! advert) or SWIM's suspicions change, never by copying every node's state on a timer:
//! a quiet cluster costs nothing here.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conclave_gossip::{Node, Output, Peer};
use conclave_types::gossip_keys::{GossipKey, KeyOp};
use foca::Timer;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::keyring::{KeyStore, KeyStoreError};
use crate::view::{self, Liveness, Observed};
use crate::{Shared, View};

/// The largest datagram on IPv4 (a large advert pushed whole may come near it).
const MAX_DATAGRAM: usize = 65_507;
/// How often SWIM's suspicions and forgotten members are looked at (they come without a
/// notification). A look is a pass over the member list, not a copy of anyone's state.
const LOOK_EVERY: Duration = Duration::from_millis(100);

pub(crate) enum Command {
    /// Set (`Some`) or delete (`None`) advertised keys; sent as one new advert version,
    /// answered once this agent's own view shows it.
    Advertise(Vec<(String, Option<String>)>, oneshot::Sender<()>),
    /// Ask the agent at this address to let this one in.
    Join(SocketAddr),
    Keys(
        Option<KeyOp>,
        oneshot::Sender<Result<Vec<GossipKey>, KeyStoreError>>,
    ),
    /// Say goodbye to the cluster, then stop.
    Leave(oneshot::Sender<()>),
}

/// A foca timer due at a time.
struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    pending: HashMap<u64, Timer<Peer>>,
    next: u64,
}

impl Timers {
    fn push(&mut self, at: Instant, timer: Timer<Peer>) {
        self.next += 1;
        self.heap.push(Reverse((at, self.next)));
        self.pending.insert(self.next, timer);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    fn pop_due(&mut self, now: Instant) -> Option<Timer<Peer>> {
        let Reverse((at, seq)) = *self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        self.pending.remove(&seq)
    }
}

pub(crate) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) struct Driver {
    pub node: Node,
    pub socket: Arc<UdpSocket>,
    pub shared: Arc<Shared>,
    pub keys: KeyStore,
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub shutdown: CancellationToken,
}

impl Driver {
    pub(crate) async fn run(mut self) {
        let mut timers = Timers {
            heap: BinaryHeap::new(),
            pending: HashMap::new(),
            next: 0,
        };
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let mut look = tokio::time::interval(LOOK_EVERY);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut looked = Looked::default();
        // This node's own advert is in the first view.
        self.rebuild();
        loop {
            let deadline = timers
                .next_deadline()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            let mut changed = false;
            let mut acks = Vec::new();
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                got = self.socket.recv_from(&mut buf) => match got {
                    Ok((n, from)) => {
                        match self.node.receive(wall_ms(), &buf[..n.min(MAX_DATAGRAM)]) {
                            Ok(sender) => self.shared.heard(sender),
                            Err(why) => self.shared.note_refusal(from, &why),
                        }
                    }
                    Err(e) => {
                        // ICMP errors of earlier sends surface here on some systems.
                        tracing::trace!(error = %e, "gossip receive error");
                    }
                },
                cmd = self.commands.recv() => match cmd {
                    None => return,
                    Some(Command::Leave(done)) => {
                        self.node.leave(wall_ms());
                        self.flush(&mut timers).await;
                        let _ = done.send(());
                        return;
                    }
                    Some(cmd) => {
                        let mut advert = None;
                        self.command(cmd, &mut advert, &mut acks);
                        // Everything queued meanwhile, in one advert version.
                        while let Ok(cmd) = self.commands.try_recv() {
                            if let Command::Leave(done) = cmd {
                                self.finish_advert(advert.take());
                                self.node.leave(wall_ms());
                                self.flush(&mut timers).await;
                                let _ = done.send(());
                                return;
                            }
                            self.command(cmd, &mut advert, &mut acks);
                        }
                        changed |= self.finish_advert(advert);
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let now = Instant::now();
                    while let Some(timer) = timers.pop_due(now) {
                        self.node.timer(wall_ms(), timer);
                    }
                }
                _ = look.tick() => {
                    changed |= looked.changed(&self.node);
                }
            }
            changed |= self.flush(&mut timers).await;
            if changed {
                self.rebuild();
            }
            for ack in acks {
                let _ = ack.send(());
            }
        }
    }

    fn command(
        &mut self,
        cmd: Command,
        advert: &mut Option<BTreeMap<String, String>>,
        acks: &mut Vec<oneshot::Sender<()>>,
    ) {
        match cmd {
            Command::Advertise(changes, ack) => {
                acks.push(ack);
                let entries = advert.get_or_insert_with(|| self.node.advert().entries.clone());
                for (k, v) in changes {
                    match v {
                        Some(v) => entries.insert(k, v),
                        None => entries.remove(&k),
                    };
                }
            }
            Command::Join(addr) => self.node.join(wall_ms(), addr),
            Command::Keys(op, reply) => {
                let result = match op {
                    None => Ok(()),
                    Some(op) => self.keys.apply(&op).inspect(|()| {
                        *self.node.keyring_mut() = self.keys.keyring();
                    }),
                };
                let _ = reply.send(result.map(|()| self.keys.list()));
            }
            Command::Leave(_) => {}
        }
    }

    /// Advertise `advert` if it differs from the current one; whether it did.
    fn finish_advert(&mut self, advert: Option<BTreeMap<String, String>>) -> bool {
        match advert {
            Some(entries) if entries != self.node.advert().entries => {
                self.node.set_advert(wall_ms(), entries);
                true
            }
            _ => false,
        }
    }

    /// Send what the core asked to send, set its timers; whether the membership changed.
    async fn flush(&mut self, timers: &mut Timers) -> bool {
        let (outputs, events) = self.node.drain();
        for out in outputs {
            match out {
                Output::Send { to, datagram } => {
                    if let Err(e) = self.socket.send_to(&datagram, to).await {
                        self.shared.note_send_error(to, &e);
                    }
                }
                Output::Schedule { after, timer } => timers.push(Instant::now() + after, timer),
            }
        }
        self.shared.set_counters(self.node.counters().clone());
        !events.is_empty()
    }

    /// The member list from the core's state, published if it changed.
    fn rebuild(&self) {
        let now = Instant::now();
        let heard = self.shared.heard_snapshot();
        let silent = |id: u64| heard.get(&id).map_or(Duration::ZERO, |t| now - *t);
        let observed: Vec<Observed> = self.node.with_adverts(|adverts| {
            let keys_of = |id: u64| adverts.get(id).map(|a| a.entries.clone());
            let me = self.node.me();
            let mut out = vec![Observed {
                node_id: me.node_id,
                generation: me.generation,
                keys: self.node.advert().entries.clone(),
                liveness: Liveness::Alive,
                silent_for: Duration::ZERO,
            }];
            for m in self.node.membership() {
                let peer = m.id();
                // A member is listed once its advert is here: until then its role and
                // addresses are unknown, and a join without them helps no one (the advert
                // is pushed to it as soon as SWIM reports it up, so this is milliseconds).
                let Some(keys) = keys_of(peer.node_id) else {
                    continue;
                };
                if peer.node_id == me.node_id {
                    continue;
                }
                out.push(Observed {
                    node_id: peer.node_id,
                    generation: peer.generation,
                    keys,
                    liveness: match m.state() {
                        foca::State::Alive => Liveness::Alive,
                        foca::State::Suspect => Liveness::Suspect,
                        foca::State::Down => Liveness::Down,
                    },
                    silent_for: silent(peer.node_id),
                });
            }
            out
        });
        self.shared.publish(view::compute(&observed));
    }
}

/// What the last look saw of what SWIM does not notify: suspicions and forgotten members.
#[derive(Default)]
struct Looked {
    suspects: Vec<u64>,
    known: usize,
}

impl Looked {
    fn changed(&mut self, node: &Node) -> bool {
        let known = node.membership().len();
        let mut suspects: Vec<u64> = node
            .members()
            .filter(|m| m.state() == foca::State::Suspect)
            .map(|m| m.id().node_id)
            .collect();
        suspects.sort_unstable();
        let changed = known != self.known || suspects != self.suspects;
        self.known = known;
        self.suspects = suspects;
        changed
    }
}

impl Shared {
    fn publish(&self, members: Vec<conclave_types::GossipMember>) {
        let own = members
            .iter()
            .find(|m| m.id == self.id)
            .map(|m| m.cluster_id.clone())
            .filter(|c| !c.is_empty())
            .or_else(|| self.configured_cluster.clone());
        let cluster = view::cluster_of_view(own.as_deref(), &members);
        let (members, foreign) = view::keep_cluster(members, cluster.as_deref());
        self.note_foreign(foreign);
        let view = View {
            self_id: self.id,
            members,
        };
        *self.latest.write().unwrap_or_else(|p| p.into_inner()) = view.clone();
        self.view.send_if_modified(|old| {
            if old.same_membership(&view) {
                false
            } else {
                *old = view;
                true
            }
        });
    }
}
