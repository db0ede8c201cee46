//! The IPAM rules, applied: which address a request gets, what may overlap, what a release
//! gives back. Every change of a network or allocation is one revision and one [`Change`]
//! at its watch key (the object as JSON, or a deletion).
//!
//! [`Change`]: crate::Change

use std::collections::BTreeMap;
use std::net::IpAddr;

use bytes::Bytes;
use ipnet::IpNet;

use super::{
    AllocateRequest, Allocation, IpamAnswer, IpamCommand, IpamRefusal, Lease, Network,
    NetworkEntry, NetworkSpec, NetworkUpdate, Selector, allocation_watch_key, from_u128,
    network_watch_key, span, to_u128, validate,
};
use crate::audit::{Ending, IpamAction, What};
use crate::{Outcome, State};

fn json<T: serde::Serialize>(value: &T) -> Bytes {
    // Structs of strings, integers, addresses and maps always serialize.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    let same_family = matches!(
        (a, b),
        (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_))
    );
    let (a_lo, a_hi) = span(a);
    let (b_lo, b_hi) = span(b);
    same_family && a_lo <= b_hi && b_lo <= a_hi
}

pub(super) type Answer = Result<IpamAnswer, IpamRefusal>;

impl State {
    pub(crate) fn apply_ipam(&mut self, command: &IpamCommand) -> Outcome {
        let result = validate(command).and_then(|()| match command {
            IpamCommand::CreateNetwork(spec) => self.create_network(spec),
            IpamCommand::UpdateNetwork { id, update } => self.update_network(id, update),
            IpamCommand::DeleteNetwork { id, force } => self.delete_network(id, *force),
            IpamCommand::Allocate(req) => self.allocate(req),
            IpamCommand::Release(selector) => self.release(selector),
            IpamCommand::Renew { id, ttl_ms } => self.renew(id, *ttl_ms),
            IpamCommand::Import { rows } => self.import(rows),
        });
        Outcome::Ipam {
            revision: self.revision,
            result: Box::new(result),
        }
    }

    fn create_network(&mut self, spec: &NetworkSpec) -> Answer {
        if let Some(id) = &spec.id
            && self.ipam.networks.contains_key(id)
        {
            return Err(IpamRefusal::NetworkExists { id: id.clone() });
        }
        let (lo, hi) = span(&spec.cidr);
        if let Some(p) = &spec.parent {
            let parent = self
                .ipam
                .network(p)
                .ok_or_else(|| IpamRefusal::NetworkNotFound { id: p.clone() })?;
            if !parent.cidr.contains(&spec.cidr)
                || parent.cidr.prefix_len() >= spec.cidr.prefix_len()
            {
                return Err(IpamRefusal::NotInsideParent {
                    cidr: spec.cidr,
                    parent: p.clone(),
                    parent_cidr: parent.cidr,
                });
            }
            let mut covered = self
                .ipam
                .by_address
                .range((p.clone(), lo)..=(p.clone(), hi));
            if let Some(((_, first), _)) = covered.next() {
                return Err(IpamRefusal::CoversAllocations {
                    cidr: spec.cidr,
                    parent: p.clone(),
                    count: 1 + covered.count() as u64,
                    first: from_u128(&spec.cidr, *first),
                });
            }
        }
        if let Some(other) = self
            .ipam
            .networks()
            .find(|n| n.parent == spec.parent && overlaps(&n.cidr, &spec.cidr))
        {
            return Err(IpamRefusal::Overlaps {
                cidr: spec.cidr,
                id: other.id.clone(),
                other: other.cidr,
            });
        }
        let revision = self.revision + 1;
        let id = spec.id.clone().unwrap_or_else(|| format!("net-{revision}"));
        if self.ipam.networks.contains_key(&id) {
            return Err(IpamRefusal::NetworkExists { id });
        }
        let network = Network {
            id: id.clone(),
            cidr: spec.cidr,
            description: spec.description.clone(),
            tags: spec.tags.clone(),
            gateway: spec.gateway,
            reserved: spec.reserved.clone(),
            pools: spec.pools.clone(),
            parent: spec.parent.clone(),
            created_revision: revision,
            updated_revision: revision,
            created_wall_ms: self.clock.wall_ms,
        };
        self.ipam.networks.insert(
            id.clone(),
            NetworkEntry {
                network: network.clone(),
                free: super::FreeRanges::new(),
                free_count: 0,
                total: 0,
                allocated: 0,
            },
        );
        self.ipam.recompute_free(&id);
        if let Some(parent) = spec
            .parent
            .as_ref()
            .and_then(|p| self.ipam.networks.get_mut(p))
        {
            let taken = parent.free.take_range(lo, hi);
            parent.free_count = parent.free_count.saturating_sub(taken);
        }
        self.record(network_watch_key(&id), Some(json(&network)));
        let usage = self.ipam.usage(&id).unwrap_or_default();
        Ok(IpamAnswer::Network { network, usage })
    }

    fn update_network(&mut self, id: &str, update: &NetworkUpdate) -> Answer {
        let revision = self.revision + 1;
        let Some(entry) = self.ipam.networks.get_mut(id) else {
            return Err(IpamRefusal::NetworkNotFound { id: id.to_owned() });
        };
        let n = &mut entry.network;
        if let Some(d) = &update.description {
            n.description = d.clone();
        }
        if let Some(t) = &update.tags {
            n.tags = t.clone();
        }
        n.updated_revision = revision;
        let network = n.clone();
        self.record(network_watch_key(id), Some(json(&network)));
        let usage = self.ipam.usage(id).unwrap_or_default();
        Ok(IpamAnswer::Network { network, usage })
    }

    fn delete_network(&mut self, id: &str, force: bool) -> Answer {
        let Some(entry) = self.ipam.networks.get(id) else {
            return Err(IpamRefusal::NetworkNotFound { id: id.to_owned() });
        };
        let parent = entry.network.parent.clone();
        let count = entry.allocated;
        let children: Vec<String> = self.ipam.children(id).map(|c| c.id.clone()).collect();
        if !children.is_empty() {
            return Err(IpamRefusal::HasChildren {
                id: id.to_owned(),
                children,
            });
        }
        if count > 0 && !force {
            return Err(IpamRefusal::HasAllocations {
                id: id.to_owned(),
                count,
            });
        }
        let held: Vec<String> = self
            .ipam
            .allocations_in(id, None)
            .map(|a| a.id.clone())
            .collect();
        for alloc in &held {
            self.remove_allocation(alloc);
        }
        self.ipam.networks.remove(id);
        if let Some(p) = parent {
            self.ipam.recompute_free(&p);
        }
        self.record(network_watch_key(id), None);
        Ok(IpamAnswer::NetworkDeleted {
            id: id.to_owned(),
            released: held.len() as u64,
        })
    }

    fn allocate(&mut self, req: &AllocateRequest) -> Answer {
        let Some(entry) = self.ipam.networks.get(&req.network) else {
            return Err(IpamRefusal::NetworkNotFound {
                id: req.network.clone(),
            });
        };
        let cidr = entry.network.cidr;
        if let Some(rid) = &req.request_id
            && let Some(ids) = self.ipam.by_request.get(rid)
        {
            let held: Vec<Allocation> = ids
                .iter()
                .filter_map(|id| self.ipam.allocations.get(id).cloned())
                .collect();
            let same = held.iter().all(|a| {
                a.network == req.network
                    && (req.hostname.is_none() || a.hostname == req.hostname)
                    && req.address.is_none_or(|addr| addr == a.address)
            });
            if !same {
                return Err(IpamRefusal::RequestIdReused {
                    request_id: rid.clone(),
                });
            }
            return Ok(IpamAnswer::Allocated {
                allocations: held,
                existing: true,
            });
        }
        if let Some(h) = &req.hostname
            && let Some(a) = self.ipam.allocation_of(&req.network, h)
        {
            if req.address.is_none_or(|addr| addr == a.address) {
                return Ok(IpamAnswer::Allocated {
                    allocations: vec![a.clone()],
                    existing: true,
                });
            }
            return Err(IpamRefusal::HostnameTaken {
                hostname: h.clone(),
                network: req.network.clone(),
                address: a.address,
                holder: a.id.clone(),
            });
        }
        let addresses = match req.address {
            Some(addr) => vec![self.check_given(&req.network, &cidr, addr)?],
            None => {
                let wanted = u128::from(req.count.max(1));
                if entry.free_count < wanted {
                    return Err(IpamRefusal::NetworkFull {
                        id: req.network.clone(),
                        usage: self.ipam.usage(&req.network).unwrap_or_default(),
                    });
                }
                Vec::new()
            }
        };
        let mut made = Vec::new();
        if addresses.is_empty() {
            for _ in 0..req.count.max(1) {
                let Some(entry) = self.ipam.networks.get_mut(&req.network) else {
                    break;
                };
                let Some(n) = entry.free.take_lowest() else {
                    break;
                };
                entry.free_count = entry.free_count.saturating_sub(1);
                made.push(self.add_allocation(req, from_u128(&cidr, n)));
            }
        } else {
            for addr in addresses {
                if let Some(entry) = self.ipam.networks.get_mut(&req.network)
                    && entry.free.take(to_u128(addr))
                {
                    entry.free_count = entry.free_count.saturating_sub(1);
                }
                made.push(self.add_allocation(req, addr));
            }
        }
        Ok(IpamAnswer::Allocated {
            allocations: made,
            existing: false,
        })
    }

    /// `addr` if a request may have it in `network`.
    pub(super) fn check_given(
        &self,
        network: &str,
        cidr: &IpNet,
        addr: IpAddr,
    ) -> Result<IpAddr, IpamRefusal> {
        if !cidr.contains(&addr) {
            return Err(IpamRefusal::AddressOutside {
                address: addr,
                id: network.to_owned(),
                cidr: *cidr,
            });
        }
        let (first, last) = span(cidr);
        let n = to_u128(addr);
        if let IpNet::V4(v4) = cidr
            && v4.prefix_len() <= 30
            && (n == first || n == last)
        {
            return Err(IpamRefusal::AddressNotUsable {
                address: addr,
                what: if n == first { "network" } else { "broadcast" }.to_owned(),
                cidr: *cidr,
            });
        }
        if let Some(child) = self.ipam.child_holding(network, n) {
            return Err(IpamRefusal::AddressInChild {
                address: addr,
                child: child.id.clone(),
            });
        }
        if let Some(a) = self.ipam.allocation_at(network, addr) {
            return Err(IpamRefusal::AddressTaken {
                address: addr,
                holder: a.id.clone(),
                hostname: a.hostname.clone(),
            });
        }
        Ok(addr)
    }

    /// Record a new allocation of `address` (already taken from the free space).
    pub(super) fn add_allocation(&mut self, req: &AllocateRequest, address: IpAddr) -> Allocation {
        let revision = self.revision + 1;
        let a = Allocation {
            id: format!("alloc-{revision}"),
            network: req.network.clone(),
            address,
            hostname: req.hostname.clone(),
            owner: req.owner.clone(),
            labels: req.labels.clone(),
            request_id: req.request_id.clone(),
            created_revision: revision,
            updated_revision: revision,
            created_wall_ms: self.clock.wall_ms,
            lease: req.ttl_ms.map(|ttl_ms| Lease {
                ttl_ms,
                expires_at_ms: self.clock.now_ms.saturating_add(ttl_ms),
            }),
        };
        self.ipam.index(&a);
        self.ipam.allocations.insert(a.id.clone(), a.clone());
        self.record(allocation_watch_key(&a.id), Some(json(&a)));
        a
    }

    /// Remove allocation `id`, give its address back to automatic allocation when it came
    /// from there, and record the deletion.
    fn remove_allocation(&mut self, id: &str) -> Option<Allocation> {
        let a = self.ipam.allocations.remove(id)?;
        self.ipam.unindex(&a);
        let n = to_u128(a.address);
        let automatic = self
            .ipam
            .network(&a.network)
            .is_some_and(|net| self.ipam.automatic(net, n));
        if automatic
            && let Some(entry) = self.ipam.networks.get_mut(&a.network)
            && entry.free.release(n)
        {
            entry.free_count = entry.free_count.saturating_add(1);
        }
        self.record(allocation_watch_key(id), None);
        Some(a)
    }

    fn release(&mut self, selector: &Selector) -> Answer {
        let (id, what) = match selector {
            Selector::Id(id) => (
                self.ipam.allocations.contains_key(id).then(|| id.clone()),
                id.clone(),
            ),
            Selector::Address { network, address } => (
                self.ipam
                    .allocation_at(network, *address)
                    .map(|a| a.id.clone()),
                format!("of {address} in {network}"),
            ),
            Selector::Hostname { network, hostname } => (
                self.ipam
                    .allocation_of(network, hostname)
                    .map(|a| a.id.clone()),
                format!("for hostname {hostname} in {network}"),
            ),
        };
        id.and_then(|id| self.remove_allocation(&id))
            .map(IpamAnswer::Released)
            .ok_or(IpamRefusal::AllocationNotFound { what })
    }

    fn renew(&mut self, id: &str, ttl_ms: Option<u64>) -> Answer {
        let revision = self.revision + 1;
        let now = self.clock.now_ms;
        let Some(a) = self.ipam.allocations.get(id).cloned() else {
            return Err(IpamRefusal::AllocationNotFound {
                what: id.to_owned(),
            });
        };
        let Some(ttl_ms) = ttl_ms.or(a.lease.map(|l| l.ttl_ms)) else {
            return Err(IpamRefusal::NoLease { id: id.to_owned() });
        };
        if let Some(old) = a.lease {
            self.ipam.leases.remove(&(old.expires_at_ms, id.to_owned()));
        }
        let lease = Lease {
            ttl_ms,
            expires_at_ms: now.saturating_add(ttl_ms),
        };
        self.ipam
            .leases
            .insert((lease.expires_at_ms, id.to_owned()));
        let renewed = Allocation {
            lease: Some(lease),
            updated_revision: revision,
            ..a
        };
        self.ipam.allocations.insert(id.to_owned(), renewed.clone());
        self.record(allocation_watch_key(id), Some(json(&renewed)));
        Ok(IpamAnswer::Renewed(renewed))
    }

    /// Release every allocation whose lease the cluster clock has reached; how many.
    pub(crate) fn expire_ipam_leases(&mut self) -> u32 {
        let now = self.clock.now_ms;
        let mut ended = 0;
        while let Some((at, id)) = self.ipam.leases.get_min().cloned() {
            if at > now {
                break;
            }
            self.ipam.leases.remove(&(at, id.clone()));
            if let Some(a) = self.remove_allocation(&id) {
                ended += 1;
                self.audit(ipam_what(IpamAction::Expire, &a), Ending::Applied);
            }
        }
        ended
    }

    /// A new leader's clock may run ahead of the old one's: every lease gets a full TTL
    /// from `now_ms` (leases only ever get longer across leader changes).
    pub(crate) fn extend_ipam_leases(&mut self, now_ms: u64) {
        if self.ipam.leases.is_empty() {
            return;
        }
        let ids: Vec<String> = self.ipam.leases.iter().map(|(_, id)| id.clone()).collect();
        self.ipam.leases.clear();
        for id in ids {
            if let Some(a) = self.ipam.allocations.get_mut(&id)
                && let Some(l) = a.lease.as_mut()
            {
                l.expires_at_ms = l.expires_at_ms.max(now_ms.saturating_add(l.ttl_ms));
                self.ipam.leases.insert((l.expires_at_ms, id));
            }
        }
    }

    pub fn ipam(&self) -> &super::Ipam {
        &self.ipam
    }
}

fn ipam_what(action: IpamAction, a: &Allocation) -> What {
    let mut details = BTreeMap::from([
        ("network".to_owned(), a.network.clone()),
        ("address".to_owned(), a.address.to_string()),
    ]);
    if let Some(h) = &a.hostname {
        details.insert("hostname".into(), h.clone());
    }
    What::Ipam {
        action,
        subject: format!("allocation {}", a.id),
        details,
    }
}

/// The audit entry of an IPAM command (refused ones included: `outcome` says).
pub(crate) fn audit_what(command: &IpamCommand, outcome: &Outcome) -> What {
    let answer = match outcome {
        Outcome::Ipam { result, .. } => result.as_ref().as_ref().ok(),
        _ => None,
    };
    let network = |action, id: &str, details| What::Ipam {
        action,
        subject: format!("network {id}"),
        details,
    };
    match (command, answer) {
        (IpamCommand::CreateNetwork(spec), answer) => {
            let id = match answer {
                Some(IpamAnswer::Network { network, .. }) => network.id.clone(),
                _ => spec.id.clone().unwrap_or_else(|| "(new)".into()),
            };
            network(
                IpamAction::CreateNetwork,
                &id,
                BTreeMap::from([("cidr".to_owned(), spec.cidr.to_string())]),
            )
        }
        (IpamCommand::UpdateNetwork { id, .. }, _) => {
            network(IpamAction::UpdateNetwork, id, BTreeMap::new())
        }
        (IpamCommand::DeleteNetwork { id, force }, answer) => {
            let mut details = BTreeMap::from([("force".to_owned(), force.to_string())]);
            if let Some(IpamAnswer::NetworkDeleted { released, .. }) = answer {
                details.insert("released".into(), released.to_string());
            }
            network(IpamAction::DeleteNetwork, id, details)
        }
        (
            IpamCommand::Allocate(_),
            Some(IpamAnswer::Allocated {
                allocations,
                existing,
            }),
        ) if allocations.len() == 1 => {
            let mut what = ipam_what(IpamAction::Allocate, &allocations[0]);
            if *existing && let What::Ipam { details, .. } = &mut what {
                details.insert("existing".into(), "true".into());
            }
            what
        }
        (IpamCommand::Allocate(req), answer) => {
            let mut details = BTreeMap::from([("network".to_owned(), req.network.clone())]);
            if let Some(IpamAnswer::Allocated { allocations, .. }) = answer {
                details.insert("count".into(), allocations.len().to_string());
                if let (Some(first), Some(last)) = (allocations.first(), allocations.last()) {
                    details.insert(
                        "addresses".into(),
                        format!("{} to {}", first.address, last.address),
                    );
                }
            }
            for (k, v) in [("hostname", &req.hostname), ("request_id", &req.request_id)] {
                if let Some(v) = v {
                    details.insert(k.into(), v.clone());
                }
            }
            What::Ipam {
                action: IpamAction::Allocate,
                subject: format!("network {}", req.network),
                details,
            }
        }
        (IpamCommand::Release(_), Some(IpamAnswer::Released(a))) => {
            ipam_what(IpamAction::Release, a)
        }
        (IpamCommand::Renew { .. }, Some(IpamAnswer::Renewed(a))) => {
            ipam_what(IpamAction::Renew, a)
        }
        (IpamCommand::Release(sel), _) => What::Ipam {
            action: IpamAction::Release,
            subject: match sel {
                Selector::Id(id) => format!("allocation {id}"),
                Selector::Address { network, address } => format!("{address} in {network}"),
                Selector::Hostname { network, hostname } => format!("{hostname} in {network}"),
            },
            details: BTreeMap::new(),
        },
        (IpamCommand::Import { rows }, answer) => super::import::audit_what(rows, answer),
        (IpamCommand::Renew { id, .. }, _) => What::Ipam {
            action: IpamAction::Renew,
            subject: format!("allocation {id}"),
            details: BTreeMap::new(),
        },
    }
}
