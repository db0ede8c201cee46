//! What an IPAM client proposes ([`IpamCommand`]), what applying it gave ([`IpamAnswer`])
//! or why it was refused ([`IpamRefusal`]), and [`validate`]: the shape rules every entry
//! point checks before proposing and `apply` checks again.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{
    AddrRange, Allocation, MAX_BULK, MAX_DESCRIPTION_BYTES, MAX_FIELD_BYTES, MAX_LEASE_MS,
    MAX_RANGES, MAX_TAGS, MIN_LEASE_MS, Network, Usage,
};

/// A network to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// `None`: the cluster names it `net-<revision>`.
    pub id: Option<String>,
    pub cidr: IpNet,
    pub description: String,
    pub tags: BTreeMap<String, String>,
    pub gateway: Option<IpAddr>,
    pub reserved: Vec<AddrRange>,
    pub pools: Vec<AddrRange>,
    pub parent: Option<String>,
}

/// What a network update changes (`None`: keep).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkUpdate {
    pub description: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
}

/// An allocation request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocateRequest {
    pub network: String,
    /// A given address; `None`: the lowest free one.
    pub address: Option<IpAddr>,
    /// Unique in the network: asking again for a hostname that holds an address returns it.
    pub hostname: Option<String>,
    pub owner: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Asking again with the same request id returns the same allocations.
    pub request_id: Option<String>,
    /// A lease on the cluster clock; `None`: held until released.
    pub ttl_ms: Option<u64>,
    /// How many addresses (bulk); 1 unless given. Several only without address or hostname.
    pub count: u32,
}

/// Which allocation a release means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Selector {
    Id(String),
    Address { network: String, address: IpAddr },
    Hostname { network: String, hostname: String },
}

/// A change to networks or allocations. (Variants are only ever appended: their index is
/// their encoding in the log.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpamCommand {
    CreateNetwork(NetworkSpec),
    UpdateNetwork {
        id: String,
        update: NetworkUpdate,
    },
    /// Refused while the network has children, or allocations unless `force`.
    DeleteNetwork {
        id: String,
        force: bool,
    },
    Allocate(AllocateRequest),
    Release(Selector),
    /// Extend a lease by its TTL (or a new `ttl_ms`) from now.
    Renew {
        id: String,
        ttl_ms: Option<u64>,
    },
    /// Take over an existing allocation list: every row, or none when any conflicts.
    Import {
        rows: Vec<ImportRow>,
    },
}

/// One allocation of a list being imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRow {
    pub network: String,
    pub address: IpAddr,
    pub hostname: Option<String>,
    pub owner: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// Why row `row` (0-based, in the order given; messages count from 1) of an import cannot
/// be taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportConflict {
    pub row: u32,
    pub refusal: IpamRefusal,
}

/// What an IPAM command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpamAnswer {
    /// A network as created or updated, with its usage right after.
    Network {
        network: Network,
        usage: Usage,
    },
    NetworkDeleted {
        id: String,
        /// Allocations released with it (`force`).
        released: u64,
    },
    /// `existing`: every allocation was there already (a repeated request); nothing changed.
    Allocated {
        allocations: Vec<Allocation>,
        existing: bool,
    },
    Released(Allocation),
    Renewed(Allocation),
    /// `created` in row order; `existing`: rows that were there already, unchanged.
    Imported {
        created: Vec<Allocation>,
        existing: u64,
    },
}

/// Why an IPAM command changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum IpamRefusal {
    #[error("{field} is invalid: {reason}")]
    Invalid { field: String, reason: String },
    #[error("network {id} already exists")]
    NetworkExists { id: String },
    #[error("there is no network {id}")]
    NetworkNotFound { id: String },
    #[error(
        "{cidr} overlaps network {id} ({other}); declare it as a child of {id} (parent) or pick a range outside it"
    )]
    Overlaps {
        cidr: IpNet,
        id: String,
        other: IpNet,
    },
    #[error("{cidr} is not inside its parent {parent} ({parent_cidr})")]
    NotInsideParent {
        cidr: IpNet,
        parent: String,
        parent_cidr: IpNet,
    },
    #[error(
        "{cidr} covers {count} address(es) allocated in {parent}, the first {first}; release them first"
    )]
    CoversAllocations {
        cidr: IpNet,
        parent: String,
        count: u64,
        first: IpAddr,
    },
    #[error("network {id} has child networks ({}); delete them first", children.join(", "))]
    HasChildren { id: String, children: Vec<String> },
    #[error("network {id} holds {count} allocation(s); release them or delete with force")]
    HasAllocations { id: String, count: u64 },
    #[error("network {id} is full: {} of {} addresses allocated, {} reserved", usage.allocated, usage.total, usage.reserved)]
    NetworkFull { id: String, usage: Usage },
    #[error("{address} is not in network {id} ({cidr})")]
    AddressOutside {
        address: IpAddr,
        id: String,
        cidr: IpNet,
    },
    #[error("{address} is the {what} address of {cidr} and is never allocated")]
    AddressNotUsable {
        address: IpAddr,
        what: String,
        cidr: IpNet,
    },
    #[error("{address} belongs to child network {child}; allocate it there")]
    AddressInChild { address: IpAddr, child: String },
    #[error("{address} is already allocated to {} ({holder})", hostname.as_deref().unwrap_or("no hostname"))]
    AddressTaken {
        address: IpAddr,
        holder: String,
        hostname: Option<String>,
    },
    #[error("hostname {hostname} already holds {address} in {network} ({holder})")]
    HostnameTaken {
        hostname: String,
        network: String,
        address: IpAddr,
        holder: String,
    },
    #[error("request id {request_id} was used for another request")]
    RequestIdReused { request_id: String },
    #[error("there is no allocation {what}")]
    AllocationNotFound { what: String },
    #[error("allocation {id} has no lease; give a ttl to lease it")]
    NoLease { id: String },
    #[error("{field} {value} is also in row {} of the import", earlier_row.saturating_add(1))]
    RepeatedInImport {
        field: String,
        value: String,
        /// 0-based, like [`ImportConflict::row`].
        earlier_row: u32,
    },
    #[error(
        "{total} row(s) of the import conflict, so none was imported; the first: row {}: {}",
        conflicts.first().map_or(0, |c| c.row.saturating_add(1)),
        conflicts.first().map_or_else(String::new, |c| c.refusal.to_string())
    )]
    ImportConflicts {
        /// The first [`MAX_IMPORT_CONFLICTS`](super::MAX_IMPORT_CONFLICTS) conflicts.
        conflicts: Vec<ImportConflict>,
        total: u64,
    },
}

impl IpamRefusal {
    fn invalid(field: &str, reason: impl Into<String>) -> Self {
        IpamRefusal::Invalid {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

fn check_text(field: &str, value: &str, limit: usize) -> Result<(), IpamRefusal> {
    if value.len() > limit {
        return Err(IpamRefusal::invalid(
            field,
            format!("{} bytes, over the limit of {limit}", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(IpamRefusal::invalid(field, "it holds a control character"));
    }
    Ok(())
}

/// An id: 1 to 253 bytes of letters, digits, `.`, `_` and `-`.
fn check_id(field: &str, id: &str) -> Result<(), IpamRefusal> {
    if id.is_empty() {
        return Err(IpamRefusal::invalid(field, "it is empty"));
    }
    check_text(field, id, MAX_FIELD_BYTES)?;
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(IpamRefusal::invalid(
            field,
            "use letters, digits, '.', '_' and '-' only",
        ));
    }
    Ok(())
}

/// Tags or labels.
type Pairs = BTreeMap<String, String>;

fn check_map(field: &str, map: &Pairs) -> Result<(), IpamRefusal> {
    if map.len() > MAX_TAGS {
        return Err(IpamRefusal::invalid(
            field,
            format!("{} entries, over the limit of {MAX_TAGS}", map.len()),
        ));
    }
    for (k, v) in map {
        check_id(field, k)?;
        check_text(field, v, MAX_FIELD_BYTES)?;
    }
    Ok(())
}

fn check_ranges(field: &str, cidr: &IpNet, ranges: &[AddrRange]) -> Result<(), IpamRefusal> {
    if ranges.len() > MAX_RANGES {
        return Err(IpamRefusal::invalid(
            field,
            format!("{} ranges, over the limit of {MAX_RANGES}", ranges.len()),
        ));
    }
    for r in ranges {
        if !cidr.contains(&r.start) || !cidr.contains(&r.end) {
            return Err(IpamRefusal::invalid(
                field,
                format!("{}-{} is not inside {cidr}", r.start, r.end),
            ));
        }
        if super::to_u128(r.start) > super::to_u128(r.end) {
            return Err(IpamRefusal::invalid(
                field,
                format!("{}-{} ends before it starts", r.start, r.end),
            ));
        }
    }
    Ok(())
}

fn check_ttl(ttl_ms: Option<u64>) -> Result<(), IpamRefusal> {
    match ttl_ms {
        Some(t) if !(MIN_LEASE_MS..=MAX_LEASE_MS).contains(&t) => Err(IpamRefusal::invalid(
            "ttl",
            format!("{t} ms is outside {MIN_LEASE_MS} ms to {MAX_LEASE_MS} ms"),
        )),
        _ => Ok(()),
    }
}

/// Whether `id` has the shape the cluster gives its own ids (`net-<digits>`), which a
/// caller may not take: a later generated id could collide with it.
fn generated_shape(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
}

/// The shape rules of `command`: what the HTTP handler refuses with a 400 and `apply`
/// refuses again (so a faulty proposer cannot store what no entry point accepts).
pub fn validate(command: &IpamCommand) -> Result<(), IpamRefusal> {
    match command {
        IpamCommand::CreateNetwork(spec) => {
            if let Some(id) = &spec.id {
                check_id("id", id)?;
                if generated_shape(id, "net-") {
                    return Err(IpamRefusal::invalid(
                        "id",
                        "ids of the form net-<number> are given by the cluster; omit the id or pick another",
                    ));
                }
            }
            let cidr = &spec.cidr;
            if cidr.addr() != cidr.network() {
                return Err(IpamRefusal::invalid(
                    "cidr",
                    format!("{cidr} has host bits set; the network is {}", cidr.trunc()),
                ));
            }
            check_text("description", &spec.description, MAX_DESCRIPTION_BYTES)?;
            check_map("tags", &spec.tags)?;
            if let Some(g) = spec.gateway
                && !cidr.contains(&g)
            {
                return Err(IpamRefusal::invalid(
                    "gateway",
                    format!("{g} is not inside {cidr}"),
                ));
            }
            check_ranges("reserved", cidr, &spec.reserved)?;
            check_ranges("pools", cidr, &spec.pools)?;
            if let Some(p) = &spec.parent {
                check_id("parent", p)?;
            }
            Ok(())
        }
        IpamCommand::UpdateNetwork { id, update } => {
            check_id("id", id)?;
            if let Some(d) = &update.description {
                check_text("description", d, MAX_DESCRIPTION_BYTES)?;
            }
            if let Some(t) = &update.tags {
                check_map("tags", t)?;
            }
            Ok(())
        }
        IpamCommand::DeleteNetwork { id, .. } => check_id("id", id),
        IpamCommand::Allocate(req) => {
            check_id("network_id", &req.network)?;
            if let Some(h) = &req.hostname {
                check_id("hostname", h)?;
            }
            if let Some(o) = &req.owner {
                check_text("owner", o, MAX_FIELD_BYTES)?;
            }
            check_map("labels", &req.labels)?;
            if let Some(r) = &req.request_id {
                check_id("request_id", r)?;
            }
            check_ttl(req.ttl_ms)?;
            if req.count == 0 || req.count > MAX_BULK {
                return Err(IpamRefusal::invalid(
                    "count",
                    format!("{} is outside 1 to {MAX_BULK}", req.count),
                ));
            }
            if req.count > 1 && (req.address.is_some() || req.hostname.is_some()) {
                return Err(IpamRefusal::invalid(
                    "count",
                    "several addresses are allocated without a given address or hostname",
                ));
            }
            Ok(())
        }
        IpamCommand::Release(sel) => match sel {
            Selector::Id(id) => check_id("id", id),
            Selector::Address { network, .. } => check_id("network_id", network),
            Selector::Hostname { network, hostname } => {
                check_id("network_id", network)?;
                check_id("hostname", hostname)
            }
        },
        IpamCommand::Renew { id, ttl_ms } => {
            check_id("id", id)?;
            check_ttl(*ttl_ms)
        }
        IpamCommand::Import { rows } => {
            if rows.is_empty() || rows.len() > super::MAX_IMPORT {
                return Err(IpamRefusal::invalid(
                    "rows",
                    format!(
                        "{} rows, outside 1 to {}; split the list",
                        rows.len(),
                        super::MAX_IMPORT
                    ),
                ));
            }
            for (i, row) in rows.iter().enumerate() {
                let at = |e: IpamRefusal| match e {
                    IpamRefusal::Invalid { field, reason } => IpamRefusal::Invalid {
                        field: format!("row {i}: {field}"),
                        reason,
                    },
                    other => other,
                };
                check_id("network_id", &row.network).map_err(at)?;
                if let Some(h) = &row.hostname {
                    check_id("hostname", h).map_err(at)?;
                }
                if let Some(o) = &row.owner {
                    check_text("owner", o, MAX_FIELD_BYTES).map_err(at)?;
                }
                check_map("labels", &row.labels).map_err(at)?;
            }
            Ok(())
        }
    }
}
