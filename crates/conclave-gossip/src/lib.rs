//! conclave's gossip core: who is alive, and what each node advertises.
//!
//! Why this crate: membership and failure detection for hundreds of agents must cost each
//! agent the same whatever the cluster's size. SWIM does (each node probes one member per
//! period and piggybacks updates on the probes), where the anti-entropy gossip it replaces
//! sends digests of every node every round (traffic growing with n², see ARCHITECTURE.md).
//! foca implements SWIM with suspicion and infection-style dissemination, bytes in and bytes
//! out; this crate adds what conclave needs around it:
//! - [`seal`]: every datagram encrypted and authenticated under the cluster's keyring, with
//!   replays refused and every refusal counted;
//! - [`adverts`]: each node's advertised key/value state, versioned, spread as foca custom
//!   broadcasts and pushed directly to members as they come up;
//! - [`node`]: one agent, sans-IO (datagrams and timers in, datagrams, timers and events
//!   out), so the agent drives it with a UDP socket and tokio time and a test drives a
//!   thousand of them over an in-memory network with a virtual clock ([`sim`]).
//!
//! Gossip is advisory: nothing here feeds a Raft, key-value or fencing decision.

pub mod adverts;
pub mod node;
pub mod seal;
pub mod sim;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use node::{Counters, Event, GossipConfig, Node, Output};

/// A member as SWIM knows it. Identity is the gossip address (`foca::Identity::Addr`): a
/// restarted agent on the same address is the same member and wins over its previous life
/// by its higher `generation`; `node_id` names it for everything above gossip.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Peer {
    pub node_id: u64,
    pub addr: SocketAddr,
    /// Grows with each start (the agent passes its start time in ms) and each rejoin.
    pub generation: u64,
}

impl Peer {
    /// The stand-in for a seed known only by its address (node id 0 is never a node's).
    pub fn seed(addr: SocketAddr) -> Self {
        Self {
            node_id: 0,
            addr,
            generation: 0,
        }
    }
}

impl foca::Identity for Peer {
    type Addr = SocketAddr;

    /// A member declared down (wrongly: it is still running) rejoins with a newer identity.
    fn renew(&self) -> Option<Self> {
        Some(Self {
            generation: self.generation.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}
