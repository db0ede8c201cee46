//! IP address management on the replicated store (the IPAM seed's job): networks, the
//! addresses allocated in them, and the rules that decide which address a request gets.
//!
//! Why in the state machine: an address must never be handed out twice, whatever fails.
//! Deciding it in `apply()` means every node decides the same address from the same log, a
//! retried request meets the allocation its first attempt made (by hostname or request id),
//! and no client-side compare-and-swap loop is needed.
//!
//! - [`Network`]: a CIDR (IPv4 or IPv6) with optional gateway, reserved ranges, allocation
//!   pools and a parent. Sibling networks never overlap; a network inside another is only
//!   accepted as its declared child, and the child's addresses leave the parent's pool.
//! - [`Allocation`]: one address of a network, with hostname, owner, labels and an optional
//!   lease on the cluster clock.
//! - [`free`]: a network's free addresses as disjoint ranges, so taking the lowest free
//!   address, a given one, or giving one back costs O(log n) whatever the size of the
//!   network, and memory grows with the allocations, never with the address space.
//! - [`IpamCommand`] / [`IpamAnswer`] / [`IpamRefusal`]: what is proposed and what applying
//!   it gave (`apply.rs` holds the rules).
//!
//! A snapshot stores networks and allocations only; the free ranges and the indexes are
//! rebuilt from them when it is read, so they can never disagree with what they index.

mod apply;
mod command;
pub mod free;
mod import;
pub mod samples;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use imbl::{OrdMap, OrdSet};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub(crate) use apply::audit_what;
pub use command::{
    AllocateRequest, ImportConflict, ImportRow, IpamAnswer, IpamCommand, IpamRefusal, NetworkSpec,
    NetworkUpdate, Selector, validate,
};
use free::FreeRanges;

/// The most addresses one request may allocate.
pub const MAX_BULK: u32 = 1024;
/// The most rows one import may carry (a longer list is imported in parts).
pub const MAX_IMPORT: usize = 5_000;
/// The most conflicts an import refusal lists (it counts them all).
pub const MAX_IMPORT_CONFLICTS: usize = 100;
/// The most reserved ranges, and the most pools, one network may declare.
pub const MAX_RANGES: usize = 64;
/// The most tags (networks) or labels (allocations) one object may carry.
pub const MAX_TAGS: usize = 64;
/// The longest id, hostname, owner, tag or label (key or value), in bytes.
pub const MAX_FIELD_BYTES: usize = 253;
/// The longest description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;
/// The shortest and longest lease of an allocation.
pub const MIN_LEASE_MS: u64 = 1_000;
pub const MAX_LEASE_MS: u64 = 365 * 24 * 3_600_000;

/// Watch key of a network: `_conclave/ipam/networks/<id>`.
pub fn network_watch_key(id: &str) -> String {
    format!("{}ipam/networks/{id}", crate::SYSTEM_PREFIX)
}
/// Watch key of an allocation: `_conclave/ipam/allocations/<id>`.
pub fn allocation_watch_key(id: &str) -> String {
    format!("{}ipam/allocations/{id}", crate::SYSTEM_PREFIX)
}

/// An inclusive range of addresses of one family.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct AddrRange {
    #[schema(value_type = String)]
    pub start: IpAddr,
    #[schema(value_type = String)]
    pub end: IpAddr,
}

impl AddrRange {
    fn bounds(&self) -> (u128, u128) {
        (to_u128(self.start), to_u128(self.end))
    }
}

/// A network: its CIDR and how its addresses are handed out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Network {
    pub id: String,
    #[schema(value_type = String, examples("10.0.0.0/24"))]
    pub cidr: IpNet,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Never allocated automatically.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub gateway: Option<IpAddr>,
    /// Addresses never allocated automatically (a request may still name one).
    #[serde(default)]
    pub reserved: Vec<AddrRange>,
    /// Where automatic allocation takes addresses from; empty = the whole CIDR.
    #[serde(default)]
    pub pools: Vec<AddrRange>,
    /// The network this one is carved out of.
    #[serde(default)]
    pub parent: Option<String>,
    pub created_revision: u64,
    pub updated_revision: u64,
    /// The cluster clock's wall time at creation (ms since the Unix epoch).
    pub created_wall_ms: u64,
}

/// An allocation's lease: released by the cluster when the cluster clock reaches
/// `expires_at_ms` unless renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Lease {
    pub ttl_ms: u64,
    pub expires_at_ms: u64,
}

/// One allocated address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Allocation {
    pub id: String,
    pub network: String,
    #[schema(value_type = String)]
    pub address: IpAddr,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The client's request id: repeating the request returns this allocation.
    #[serde(default)]
    pub request_id: Option<String>,
    pub created_revision: u64,
    pub updated_revision: u64,
    pub created_wall_ms: u64,
    #[serde(default)]
    pub lease: Option<Lease>,
}

/// How a network's addresses are used. `reserved` counts the gateway, reserved ranges and
/// children's addresses that are not allocated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Addresses automatic allocation may use, before reservations (pools, or the CIDR
    /// without an IPv4 network's network and broadcast address).
    pub total: u128,
    pub allocated: u64,
    pub reserved: u128,
    pub free: u128,
}

impl Usage {
    /// Allocated share of `total`, in percent.
    pub fn utilisation_percent(&self) -> f64 {
        if self.total == 0 {
            return 100.0;
        }
        (self.allocated as f64) * 100.0 / (self.total as f64)
    }
}

/// A network with what is derived from it (never stored).
#[derive(Debug, Clone)]
struct NetworkEntry {
    network: Network,
    free: FreeRanges,
    /// `free.count()`, kept so a request never walks the ranges.
    free_count: u128,
    /// Addresses of the pools (before reservations).
    total: u128,
    allocated: u64,
}

/// Every network and allocation, with the indexes that make each request O(log n).
#[derive(Debug, Clone, Default)]
pub struct Ipam {
    networks: OrdMap<String, NetworkEntry>,
    allocations: OrdMap<String, Allocation>,
    /// `(network, address) -> allocation id`.
    by_address: OrdMap<(String, u128), String>,
    /// `(network, hostname) -> allocation id`.
    by_hostname: OrdMap<(String, String), String>,
    /// `request id -> allocation ids` (a bulk request holds several).
    by_request: OrdMap<String, Vec<String>>,
    /// `(expires_at_ms, allocation id)` of every leased allocation.
    leases: OrdSet<(u64, String)>,
}

impl PartialEq for Ipam {
    fn eq(&self, other: &Self) -> bool {
        self.allocations == other.allocations
            && self.networks.len() == other.networks.len()
            && self
                .networks
                .iter()
                .zip(&other.networks)
                .all(|((a, x), (b, y))| a == b && x.network == y.network)
    }
}
impl Eq for Ipam {}

/// What a snapshot stores: the facts, not what is derived from them.
#[derive(Serialize)]
struct StoredRef<'a> {
    networks: Vec<&'a Network>,
    allocations: Vec<&'a Allocation>,
}
#[derive(Deserialize)]
struct Stored {
    networks: Vec<Network>,
    allocations: Vec<Allocation>,
}

impl Serialize for Ipam {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        StoredRef {
            networks: self.networks.values().map(|e| &e.network).collect(),
            allocations: self.allocations.values().collect(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Ipam {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let stored = Stored::deserialize(d)?;
        Ipam::rebuild(stored.networks, stored.allocations).map_err(serde::de::Error::custom)
    }
}

/// A stored IPAM state no command sequence makes (a corrupt snapshot).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Corrupt(String);

/// An address as a number (IPv4 as its 32-bit value).
pub fn to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address `n` of `cidr`'s family (`n` comes from that family's range).
pub fn from_u128(cidr: &IpNet, n: u128) -> IpAddr {
    match cidr {
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(u32::MAX))),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// The first and last address of `cidr`.
pub fn span(cidr: &IpNet) -> (u128, u128) {
    (to_u128(cidr.network()), to_u128(cidr.broadcast()))
}

/// The addresses of `cidr` a host may have: an IPv4 network of /30 or wider loses its
/// network and broadcast address (RFC 3021 point-to-point /31 and single /32 keep them).
pub fn host_span(cidr: &IpNet) -> (u128, u128) {
    let (first, last) = span(cidr);
    match cidr {
        IpNet::V4(n) if n.prefix_len() <= 30 => (first + 1, last - 1),
        _ => (first, last),
    }
}

impl Ipam {
    pub fn network(&self, id: &str) -> Option<&Network> {
        self.networks.get(id).map(|e| &e.network)
    }

    pub fn networks(&self) -> impl Iterator<Item = &Network> {
        self.networks.values().map(|e| &e.network)
    }

    pub fn network_count(&self) -> usize {
        self.networks.len()
    }

    pub fn allocation_count(&self) -> usize {
        self.allocations.len()
    }

    /// How `id`'s addresses are used.
    pub fn usage(&self, id: &str) -> Option<Usage> {
        let e = self.networks.get(id)?;
        let free = e.free_count;
        Some(Usage {
            total: e.total,
            allocated: e.allocated,
            reserved: e
                .total
                .saturating_sub(free.saturating_add(u128::from(e.allocated))),
            free,
        })
    }

    /// How many ranges hold `id`'s free space (what grows with fragmentation).
    pub fn free_fragments(&self, id: &str) -> Option<usize> {
        self.networks.get(id).map(|e| e.free.fragments())
    }

    pub fn allocation(&self, id: &str) -> Option<&Allocation> {
        self.allocations.get(id)
    }

    /// Every allocation in id order (ids grow with the revision that made them).
    pub fn allocations(&self) -> impl Iterator<Item = &Allocation> {
        self.allocations.values()
    }

    /// Every allocation in id order from `after` (exclusive) on.
    pub fn allocations_after<'a>(
        &'a self,
        after: Option<&str>,
    ) -> impl Iterator<Item = &'a Allocation> + 'a {
        use std::ops::Bound;
        let lower = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_owned()));
        let upper: Bound<String> = Bound::Unbounded;
        self.allocations.range((lower, upper)).map(|(_, a)| a)
    }

    /// The allocations of `network`, in address order, from `after` (exclusive) on.
    pub fn allocations_in<'a>(
        &'a self,
        network: &str,
        after: Option<IpAddr>,
    ) -> impl Iterator<Item = &'a Allocation> + 'a {
        let lower = after.map_or(0, |a| to_u128(a).saturating_add(1));
        self.by_address
            .range((network.to_owned(), lower)..=(network.to_owned(), u128::MAX))
            .filter_map(|(_, id)| self.allocations.get(id))
    }

    /// The allocation holding `address` in `network`.
    pub fn allocation_at(&self, network: &str, address: IpAddr) -> Option<&Allocation> {
        self.by_address
            .get(&(network.to_owned(), to_u128(address)))
            .and_then(|id| self.allocations.get(id))
    }

    /// The allocation of `hostname` in `network`.
    pub fn allocation_of(&self, network: &str, hostname: &str) -> Option<&Allocation> {
        self.by_hostname
            .get(&(network.to_owned(), hostname.to_owned()))
            .and_then(|id| self.allocations.get(id))
    }

    /// The earliest lease deadline of any allocation.
    pub fn next_lease_deadline(&self) -> Option<u64> {
        self.leases.get_min().map(|(at, _)| *at)
    }

    /// The children of `id`.
    fn children<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Network> + 'a {
        self.networks()
            .filter(move |n| n.parent.as_deref() == Some(id))
    }

    /// Why a decoded store could not have been made by commands up to `revision`: an
    /// object from a later revision, or an id a later command would generate (it would
    /// collide with that command's object).
    pub(crate) fn implausible(&self, revision: u64) -> Option<String> {
        let later = |id: &str, prefix: &str| {
            id.strip_prefix(prefix)
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n > revision)
        };
        for n in self.networks() {
            if n.updated_revision > revision
                || n.created_revision > n.updated_revision
                || later(&n.id, "net-")
            {
                return Some(format!(
                    "network {} has revisions beyond the store's {revision}",
                    n.id
                ));
            }
        }
        for a in self.allocations() {
            if a.updated_revision > revision
                || a.created_revision > a.updated_revision
                || later(&a.id, "alloc-")
            {
                return Some(format!(
                    "allocation {} has revisions beyond the store's {revision}",
                    a.id
                ));
            }
        }
        None
    }

    /// Build the derived parts from the facts, refusing facts no command sequence makes.
    fn rebuild(networks: Vec<Network>, allocations: Vec<Allocation>) -> Result<Ipam, Corrupt> {
        let mut ipam = Ipam::default();
        for n in networks {
            if ipam.networks.contains_key(&n.id) {
                return Err(Corrupt(format!("network {} appears twice", n.id)));
            }
            let entry = NetworkEntry {
                total: 0,
                allocated: 0,
                free: FreeRanges::new(),
                free_count: 0,
                network: n,
            };
            ipam.networks.insert(entry.network.id.clone(), entry);
        }
        for a in allocations {
            let Some(net) = ipam.networks.get(&a.network) else {
                return Err(Corrupt(format!(
                    "allocation {} is in network {}, which does not exist",
                    a.id, a.network
                )));
            };
            if !net.network.cidr.contains(&a.address) {
                return Err(Corrupt(format!(
                    "allocation {} holds {}, outside {}",
                    a.id, a.address, net.network.cidr
                )));
            }
            if ipam.allocations.contains_key(&a.id)
                || ipam
                    .by_address
                    .contains_key(&(a.network.clone(), to_u128(a.address)))
            {
                return Err(Corrupt(format!("address {} is allocated twice", a.address)));
            }
            ipam.index(&a);
            ipam.allocations.insert(a.id.clone(), a);
        }
        let ids: Vec<String> = ipam.networks.keys().cloned().collect();
        for id in ids {
            ipam.recompute_free(&id);
        }
        Ok(ipam)
    }

    /// Add `a` to the indexes (not to `allocations`).
    fn index(&mut self, a: &Allocation) {
        self.by_address
            .insert((a.network.clone(), to_u128(a.address)), a.id.clone());
        if let Some(h) = &a.hostname {
            self.by_hostname
                .insert((a.network.clone(), h.clone()), a.id.clone());
        }
        if let Some(r) = &a.request_id {
            self.by_request
                .entry(r.clone())
                .or_default()
                .push(a.id.clone());
        }
        if let Some(l) = a.lease {
            self.leases.insert((l.expires_at_ms, a.id.clone()));
        }
        if let Some(e) = self.networks.get_mut(&a.network) {
            e.allocated += 1;
        }
    }

    /// Remove `a` from the indexes.
    fn unindex(&mut self, a: &Allocation) {
        self.by_address
            .remove(&(a.network.clone(), to_u128(a.address)));
        if let Some(h) = &a.hostname {
            self.by_hostname.remove(&(a.network.clone(), h.clone()));
        }
        if let Some(r) = &a.request_id
            && let Some(ids) = self.by_request.get_mut(r)
        {
            ids.retain(|id| *id != a.id);
            if ids.is_empty() {
                self.by_request.remove(r);
            }
        }
        if let Some(l) = a.lease {
            self.leases.remove(&(l.expires_at_ms, a.id.clone()));
        }
        if let Some(e) = self.networks.get_mut(&a.network) {
            e.allocated = e.allocated.saturating_sub(1);
        }
    }

    /// Whether automatic allocation in `net` may hand out `addr`: inside a pool, not the
    /// gateway, not reserved, not in a child network.
    fn automatic(&self, net: &Network, addr: u128) -> bool {
        let in_pool = if net.pools.is_empty() {
            let (lo, hi) = host_span(&net.cidr);
            (lo..=hi).contains(&addr)
        } else {
            net.pools.iter().any(|p| {
                let (lo, hi) = p.bounds();
                (lo..=hi).contains(&addr)
            })
        };
        in_pool
            && net.gateway.map(to_u128) != Some(addr)
            && !net.reserved.iter().any(|r| {
                let (lo, hi) = r.bounds();
                (lo..=hi).contains(&addr)
            })
            && self.child_holding(&net.id, addr).is_none()
    }

    /// The child of `id` whose CIDR holds `addr`.
    fn child_holding<'a>(&'a self, id: &'a str, addr: u128) -> Option<&'a Network> {
        self.children(id).find(|c| {
            let (lo, hi) = span(&c.cidr);
            (lo..=hi).contains(&addr)
        })
    }

    /// Recompute `id`'s free space and total from its definition, children and
    /// allocations. O(allocations of the network · log); only for changes to a network's
    /// shape, never per allocation.
    fn recompute_free(&mut self, id: &str) {
        let Some(net) = self.networks.get(id).map(|e| e.network.clone()) else {
            return;
        };
        let mut free = FreeRanges::new();
        if net.pools.is_empty() {
            let (lo, hi) = host_span(&net.cidr);
            free.release_range(lo, hi);
        } else {
            for p in &net.pools {
                let (lo, hi) = p.bounds();
                free.release_range(lo, hi);
            }
        }
        let total = free.count();
        if let Some(g) = net.gateway {
            free.take(to_u128(g));
        }
        for r in &net.reserved {
            let (lo, hi) = r.bounds();
            free.take_range(lo, hi);
        }
        for c in self.children(id) {
            let (lo, hi) = span(&c.cidr);
            free.take_range(lo, hi);
        }
        for a in self.allocations_in(id, None) {
            free.take(to_u128(a.address));
        }
        if let Some(e) = self.networks.get_mut(id) {
            e.free_count = free.count();
            e.free = free;
            e.total = total;
        }
    }
}

#[cfg(test)]
mod tests;
