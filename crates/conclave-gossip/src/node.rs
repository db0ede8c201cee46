//! One gossip agent, sans-IO: datagrams and timer events in, datagrams to send, timers to
//! set and membership events out. The caller owns the socket and the clock (the agent: a
//! UDP socket and tokio time; the simulation: an in-memory network and a virtual clock).
//!
//! Inside, foca runs SWIM (probes, indirect probes, suspicion, dissemination piggybacked on
//! probes), every datagram is sealed (`seal`), and each node's advert rides foca's custom
//! broadcasts, plus one direct push to every member a node sees come up, so a node that
//! joins late learns every advert without anyone resending the cluster's history.

use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use foca::{BroadcastHandler, Foca, Member, OwnedNotification, PostcardCodec, Runtime, Timer};
use rand_foca::SeedableRng;
use rand_foca::rngs::SmallRng;

use crate::Peer;
use crate::adverts::{Advert, AdvertKey, Adverts, BadAdvert};
use crate::seal::{Keyring, OpenError, Opener, Sealer};

mod sync;

/// Timings and sizes. [`GossipConfig::lan`] is what the agent uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipConfig {
    /// Each node probes one member this often.
    pub probe_period: Duration,
    /// How long a direct probe waits for its ack before asking others to probe.
    pub probe_rtt: Duration,
    /// A suspected member that does not refute it within this is declared down.
    pub suspect_to_down_after: Duration,
    /// A down member is forgotten after this.
    pub remove_down_after: Duration,
    /// Pending updates are pushed to `gossip_fanout` members this often.
    pub gossip_every: Duration,
    pub gossip_fanout: usize,
    /// Members asked to probe a member that did not answer a direct probe.
    pub indirect_probes: usize,
    /// Largest datagram payload before sealing.
    pub max_payload: usize,
}

impl GossipConfig {
    /// For agents on one network: a crashed agent is suspected within about a probe
    /// period and declared down a second later (the measurements are in ARCHITECTURE.md).
    pub fn lan() -> Self {
        Self {
            probe_period: Duration::from_millis(300),
            probe_rtt: Duration::from_millis(120),
            suspect_to_down_after: Duration::from_millis(800),
            remove_down_after: Duration::from_secs(24 * 3600),
            gossip_every: Duration::from_millis(100),
            gossip_fanout: 3,
            indirect_probes: 5,
            max_payload: 1_400 - crate::seal::OVERHEAD,
        }
    }

    fn foca(&self, cluster_size: usize) -> foca::Config {
        let n = u32::try_from(cluster_size.max(2)).unwrap_or(u32::MAX);
        // Updates are retransmitted 6·log10(n+1) times: at memberlist's 4·log10(n+1), 4 of 120
        // simulated crashes at 100 agents left a node no retransmission reached, which then
        // learned it only by probing the crashed node on its own turn (up to 30 s).
        let max_tx = (6.0 * f64::from(n + 1).log10()).ceil().clamp(3.0, 255.0) as u8;
        foca::Config {
            probe_period: self.probe_period,
            probe_rtt: self.probe_rtt,
            num_indirect_probes: NonZeroUsize::new(self.indirect_probes)
                .unwrap_or(NonZeroUsize::MIN),
            max_transmissions: NonZeroU8::new(max_tx).unwrap_or(NonZeroU8::MIN),
            suspect_to_down_after: self.suspect_to_down_after,
            remove_down_after: Some(self.remove_down_after),
            max_packet_size: NonZeroUsize::new(self.max_payload.max(512))
                .unwrap_or(NonZeroUsize::MIN),
            notify_down_members: true,
            periodic_announce: Some(foca::PeriodicParams {
                frequency: Duration::from_secs(10),
                num_members: NonZeroUsize::MIN,
            }),
            periodic_announce_to_down_members: Some(foca::PeriodicParams {
                frequency: Duration::from_secs(60),
                num_members: NonZeroUsize::MIN,
            }),
            periodic_gossip: Some(foca::PeriodicParams {
                frequency: self.gossip_every,
                num_members: NonZeroUsize::new(self.gossip_fanout).unwrap_or(NonZeroUsize::MIN),
            }),
        }
    }
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Send {
        to: SocketAddr,
        datagram: Vec<u8>,
    },
    /// Call [`Node::timer`] with `timer` after `after`.
    Schedule {
        after: Duration,
        timer: Timer<Peer>,
    },
}

/// What changed in this node's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Up(Peer),
    Down(Peer),
    /// A node's advert changed (or arrived).
    Advert(u64),
}

/// Traffic and refusals, for `/v1/gossip/stats` and the simulation's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub sent: u64,
    pub sent_bytes: u64,
    pub received: u64,
    pub received_bytes: u64,
    /// Datagrams refused, by reason (never silently dropped).
    pub refused_forged: u64,
    pub refused_replayed: u64,
    pub refused_unknown_key: u64,
    pub refused_other: u64,
    /// Opened but not understood (a foca or advert decoding error).
    pub undecodable: u64,
    /// Adverts too large to ride foca's broadcasts, pushed whole to every member instead.
    pub adverts_pushed: u64,
}

/// The most bytes one `Peer` takes in postcard (id, IPv6 address and port, generation).
const MAX_PEER_BYTES: usize = 10 + 1 + 16 + 3 + 10 + 4;

/// Direct messages to a member that failed a probe (see [`Node::carry_out`]).
const DIRECT_SUSPICIONS: usize = 4;

/// The payload kinds inside a sealed datagram.
const FRAME_FOCA: u8 = 0;
const FRAME_ADVERT: u8 = 1;
/// A joiner asks its seed for every member it knows (payload: the joiner's `Peer`).
const FRAME_SYNC_REQUEST: u8 = 2;
/// A part of the answer (payload: `Vec<Peer>`, as many as fit one datagram).
const FRAME_MEMBERS: u8 = 3;
/// Advert anti-entropy: the advert versions the sender holds (`Vec<(node id, version)>`,
/// version 0 for a member whose advert it lacks).
const FRAME_DIGEST: u8 = 4;
/// Adverts the receiver's digest showed it lacks (`Vec<Advert>`), relayed.
const FRAME_ADVERTS: u8 = 5;

/// A node compares advert versions with one random member this often at up to
/// [`SYNC_SCALE`] members, and proportionally less often beyond, so its share of the cost
/// stays flat with the cluster's size (a digest grows with n; its period grows with n too).
const SYNC_EVERY_MS: u64 = 5_000;
const SYNC_SCALE: usize = 100;
/// The most bytes of one digest entry in postcard (two varint u64).
const MAX_DIGEST_ENTRY: usize = 20;

/// The advert store, shared between foca's broadcast handler and the node.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Adverts>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Adverts> {
        // A panic while holding it cannot leave a half-applied advert (offer replaces
        // whole entries), so a poisoned lock is still consistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl BroadcastHandler<Peer> for Shared {
    type Key = AdvertKey;
    type Error = BadAdvert;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&Peer>,
    ) -> Result<Option<AdvertKey>, BadAdvert> {
        self.lock().receive_item(data, sender)
    }
}

/// What foca asked for during one call.
#[derive(Default)]
struct Collected {
    sends: Vec<(Peer, Vec<u8>)>,
    timers: Vec<(Timer<Peer>, Duration)>,
    notes: Vec<OwnedNotification<Peer>>,
}

impl Runtime<Peer> for Collected {
    fn notify(&mut self, notification: foca::Notification<'_, Peer>) {
        self.notes.push(notification.to_owned());
    }

    fn send_to(&mut self, to: Peer, data: &[u8]) {
        self.sends.push((to, data.to_vec()));
    }

    fn submit_after(&mut self, event: Timer<Peer>, after: Duration) {
        self.timers.push((event, after));
    }
}

/// One gossip agent.
pub struct Node {
    foca: Foca<Peer, PostcardCodec, SmallRng, Shared>,
    adverts: Shared,
    advert: Advert,
    keyring: Keyring,
    sealer: Sealer,
    opener: Opener,
    now_ms: u64,
    out: Vec<Output>,
    events: Vec<Event>,
    counters: Counters,
    config: GossipConfig,
    /// The cluster size foca's retransmissions were last set for.
    sized_for: usize,
    /// When this node next compares advert versions with a member.
    next_sync_ms: u64,
    /// Picks the member to compare with (foca's own RNG is foca's).
    rng: SmallRng,
}

impl Node {
    /// `seed` seeds foca's choices (random in the agent, fixed in the simulation); `epoch`
    /// is the sealer's (random per process); `advert_version` starts this node's advert
    /// versions (above any earlier process's: the agent passes the clock in ms).
    pub fn new(
        me: Peer,
        config: &GossipConfig,
        keyring: Keyring,
        seed: u64,
        epoch: u64,
        advert_version: u64,
    ) -> Self {
        let adverts = Shared::default();
        let foca = Foca::with_custom_broadcast(
            me.clone(),
            config.foca(2),
            SmallRng::seed_from_u64(seed),
            PostcardCodec,
            adverts.clone(),
        );
        Self {
            foca,
            adverts,
            advert: Advert {
                node_id: me.node_id,
                version: advert_version,
                entries: Default::default(),
            },
            sealer: Sealer::new(me.node_id, epoch),
            keyring,
            opener: Opener::default(),
            now_ms: 0,
            out: Vec::new(),
            events: Vec::new(),
            counters: Counters::default(),
            config: config.clone(),
            sized_for: 2,
            next_sync_ms: 0,
            rng: SmallRng::seed_from_u64(seed ^ 0x5eed_a77e_0000_0001),
        }
    }

    /// This node's current identity (renewed if it was ever wrongly declared down).
    pub fn me(&self) -> &Peer {
        self.foca.identity()
    }

    pub fn keyring_mut(&mut self) -> &mut Keyring {
        &mut self.keyring
    }

    /// Ask the agent at `addr` to let this node in (its identity is learnt from the answer).
    pub fn join(&mut self, now_ms: u64, addr: SocketAddr) {
        self.now_ms = now_ms;
        let mut rt = Collected::default();
        let _ = self.foca.announce(Peer::seed(addr), &mut rt);
        self.carry_out(rt);
        // And every member the seed knows, at once: SWIM alone would teach a joiner the
        // others one dissemination at a time, and when hundreds join together some pairs
        // would not meet for minutes.
        let me = postcard::to_stdvec(self.foca.identity()).unwrap_or_default();
        self.seal(FRAME_SYNC_REQUEST, addr, &me);
    }

    /// A datagram arrived: its sender's node id if it opened (whatever it then held), else
    /// why it was refused (counted either way).
    pub fn receive(&mut self, now_ms: u64, datagram: &[u8]) -> Result<u64, OpenError> {
        self.now_ms = now_ms;
        self.counters.received += 1;
        self.counters.received_bytes += datagram.len() as u64;
        let (sender, payload) = match self.opener.open(&self.keyring, now_ms, datagram) {
            Ok(opened) => opened,
            Err(e) => {
                match e {
                    OpenError::Forged => self.counters.refused_forged += 1,
                    OpenError::Replayed => self.counters.refused_replayed += 1,
                    OpenError::UnknownKey => self.counters.refused_unknown_key += 1,
                    _ => self.counters.refused_other += 1,
                }
                return Err(e);
            }
        };
        match payload.split_first() {
            Some((&FRAME_FOCA, msg)) => {
                let mut rt = Collected::default();
                if self.foca.handle_data(msg, &mut rt).is_err() {
                    self.counters.undecodable += 1;
                }
                self.carry_out(rt);
            }
            Some((&FRAME_ADVERT, body)) => match postcard::from_bytes::<(Peer, Advert)>(body) {
                // Only a node's own advert, from that node (the seal names the sender).
                Ok((peer, advert)) if peer.node_id == sender && advert.node_id == sender => {
                    self.adverts.lock().offer(advert);
                    // The pusher saw this node come up; if this node missed the pusher's
                    // join, it learns it here (anti-entropy at no extra datagram).
                    let mut rt = Collected::default();
                    let _ =
                        self.foca
                            .apply_many(std::iter::once(Member::alive(peer)), false, &mut rt);
                    self.carry_out(rt);
                }
                _ => self.counters.undecodable += 1,
            },
            Some((&FRAME_SYNC_REQUEST, body)) => match postcard::from_bytes::<Peer>(body) {
                Ok(joiner) if joiner.node_id == sender => self.send_members(joiner.addr),
                _ => self.counters.undecodable += 1,
            },
            Some((&FRAME_DIGEST, body)) => match postcard::from_bytes::<Vec<(u64, u64)>>(body) {
                Ok(digest) => self.answer_digest(sender, &digest),
                Err(_) => self.counters.undecodable += 1,
            },
            Some((&FRAME_ADVERTS, body)) => match postcard::from_bytes::<Vec<Advert>>(body) {
                Ok(adverts) => {
                    let mut store = self.adverts.lock();
                    for advert in adverts {
                        store.offer(advert);
                    }
                    drop(store);
                    self.collect_advert_events();
                }
                Err(_) => self.counters.undecodable += 1,
            },
            Some((&FRAME_MEMBERS, body)) => match postcard::from_bytes::<Vec<Peer>>(body) {
                Ok(peers) => {
                    let mut rt = Collected::default();
                    let alive = peers.into_iter().map(Member::alive);
                    let _ = self.foca.apply_many(alive, false, &mut rt);
                    self.carry_out(rt);
                }
                Err(_) => self.counters.undecodable += 1,
            },
            _ => self.counters.undecodable += 1,
        }
        Ok(sender)
    }

    /// Every active member and this node, to `to`, in as many datagrams as it takes.
    fn send_members(&mut self, to: SocketAddr) {
        let mut all: Vec<Peer> = self.foca.iter_members().map(|m| m.id().clone()).collect();
        all.push(self.foca.identity().clone());
        let per_datagram = (self.config.max_payload / MAX_PEER_BYTES).max(1);
        for chunk in all.chunks(per_datagram) {
            let body = postcard::to_stdvec(chunk).unwrap_or_default();
            self.seal(FRAME_MEMBERS, to, &body);
        }
    }

    /// A timer set by an [`Output::Schedule`] is due.
    pub fn timer(&mut self, now_ms: u64, timer: Timer<Peer>) {
        self.now_ms = now_ms;
        // The probe timer runs every probe period while there are members: the advert
        // anti-entropy rides it rather than adding a timer of its own to every caller.
        let probe = matches!(timer, Timer::ProbeRandomMember(_));
        let mut rt = Collected::default();
        let _ = self.foca.handle_timer(timer, &mut rt);
        self.carry_out(rt);
        if probe && now_ms >= self.next_sync_ms {
            self.sync_adverts();
        }
    }

    /// Advertise `entries` from now on (a new version, spread to every member).
    pub fn set_advert(&mut self, now_ms: u64, entries: std::collections::BTreeMap<String, String>) {
        self.now_ms = now_ms;
        self.advert.version += 1;
        self.advert.entries = entries;
        let encoded = self.advert.encode();
        // foca piggybacks broadcasts on its messages, so one must leave room for the
        // message; a larger advert (many tags or documents) is pushed whole to every member,
        // which costs n datagrams per change instead of about 4·log10(n) but spreads it all the
        // same. Counted, so an operator sees adverts grown past the piggyback size.
        if encoded.len() <= self.config.max_payload / 2 {
            let _ = self.foca.add_broadcast(&encoded);
        } else {
            self.adverts.lock().offer(self.advert.clone());
            self.counters.adverts_pushed += 1;
            let me = self.foca.identity().clone();
            let push = postcard::to_stdvec(&(&me, &self.advert)).unwrap_or_default();
            let to: Vec<SocketAddr> = self.foca.iter_members().map(|m| m.id().addr).collect();
            for addr in to {
                self.seal(FRAME_ADVERT, addr, &push);
            }
        }
        self.collect_advert_events();
    }

    /// This node's advert as last set.
    pub fn advert(&self) -> &Advert {
        &self.advert
    }

    /// Tell the cluster this node leaves (members mark it down at once).
    pub fn leave(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        let mut rt = Collected::default();
        let _ = self.foca.leave_cluster(&mut rt);
        self.carry_out(rt);
    }

    /// Retransmit updates about 4·log10(n) times for the cluster's current size n, re-set
    /// when the size has moved by a quarter: a cluster that grows from one node to a
    /// thousand would otherwise spread its joins too few times to reach everyone.
    fn resize(&mut self) {
        let n = self.foca.num_members() + 1;
        if n * 4 < self.sized_for * 3 || n * 4 > self.sized_for * 5 {
            self.sized_for = n;
            let _ = self.foca.set_config(self.config.foca(n));
        }
    }

    /// What to do, and what changed, since the last call.
    pub fn drain(&mut self) -> (Vec<Output>, Vec<Event>) {
        (
            std::mem::take(&mut self.out),
            std::mem::take(&mut self.events),
        )
    }

    /// Active members (alive or suspect), this node excluded.
    pub fn members(&self) -> impl Iterator<Item = &Member<Peer>> {
        self.foca.iter_members()
    }

    /// Every member this node knows, down ones included (until they are forgotten).
    pub fn membership(&self) -> impl ExactSizeIterator<Item = &Member<Peer>> {
        self.foca.iter_membership_state()
    }

    pub fn num_members(&self) -> usize {
        self.foca.num_members()
    }

    /// `f` over the adverts this node knows.
    pub fn with_adverts<R>(&self, f: impl FnOnce(&Adverts) -> R) -> R {
        f(&self.adverts.lock())
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    fn seal(&mut self, frame: u8, to: SocketAddr, body: &[u8]) {
        let mut payload = Vec::with_capacity(body.len() + 1);
        payload.push(frame);
        payload.extend_from_slice(body);
        let datagram = self.sealer.seal(&self.keyring, self.now_ms, &payload);
        self.counters.sent += 1;
        self.counters.sent_bytes += datagram.len() as u64;
        self.out.push(Output::Send { to, datagram });
    }

    /// Turn what foca asked for into outputs and events.
    fn carry_out(&mut self, rt: Collected) {
        for (to, data) in rt.sends {
            self.seal(FRAME_FOCA, to.addr, &data);
        }
        for (timer, after) in rt.timers {
            self.out.push(Output::Schedule { after, timer });
        }
        let mut failed = Vec::new();
        for note in rt.notes {
            match note {
                OwnedNotification::ProbeFailed(_, peer) => failed.push(peer),
                OwnedNotification::MemberUp(peer) | OwnedNotification::Rename(_, peer) => {
                    // A member seen for the first time gets this node's advert directly.
                    // The current identity: a node wrongly declared down renewed its own.
                    let me = self.foca.identity();
                    let push = postcard::to_stdvec(&(me, &self.advert)).unwrap_or_default();
                    self.seal(FRAME_ADVERT, peer.addr, &push);
                    self.events.push(Event::Up(peer));
                }
                OwnedNotification::MemberDown(peer) => self.events.push(Event::Down(peer)),
                _ => {}
            }
        }
        self.collect_advert_events();
        self.resize();
        // A member that failed our probe hears of it at once: the announce carries our
        // suspicion, so a member that is alive (the probes were lost, not it) refutes it
        // in its answer, one round trip later instead of when gossip reaches it. Several
        // times, as any datagram may be lost. This is what keeps the suspicion period short
        // without false positives under loss (the figures are in ARCHITECTURE.md).
        for peer in failed {
            for _ in 0..DIRECT_SUSPICIONS {
                let mut rt = Collected::default();
                let _ = self.foca.announce(peer.clone(), &mut rt);
                self.carry_out(rt);
            }
        }
    }

    fn collect_advert_events(&mut self) {
        let changed = self.adverts.lock().take_changed();
        self.events.extend(changed.into_iter().map(Event::Advert));
    }
}
