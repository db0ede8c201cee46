//! Every IPAM message shape, each optional field once empty and once full: what the
//! crates that carry these messages (the Raft log, node RPC) pin in their round-trip and
//! golden-bytes tests, so a new field or variant cannot slip past them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{
    AddrRange, AllocateRequest, Allocation, ImportConflict, ImportRow, IpamAnswer, IpamCommand,
    IpamRefusal, Lease, Network, NetworkSpec, NetworkUpdate, Selector, Usage,
};

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn v6() -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1))
}

fn map() -> BTreeMap<String, String> {
    BTreeMap::from([("k".to_owned(), "v".to_owned())])
}

/// Every command.
pub fn commands() -> Vec<IpamCommand> {
    let cidr = "10.0.0.0/24".parse().unwrap_or_default();
    let empty = NetworkSpec {
        id: None,
        cidr,
        description: String::new(),
        tags: BTreeMap::new(),
        gateway: None,
        reserved: Vec::new(),
        pools: Vec::new(),
        parent: None,
    };
    let full = NetworkSpec {
        id: Some("n".into()),
        cidr: "fd00::/64".parse().unwrap_or_default(),
        description: "d".into(),
        tags: map(),
        gateway: Some(v6()),
        reserved: vec![AddrRange {
            start: v6(),
            end: v6(),
        }],
        pools: vec![AddrRange {
            start: v4(1),
            end: v4(9),
        }],
        parent: Some("p".into()),
    };
    vec![
        IpamCommand::CreateNetwork(empty),
        IpamCommand::CreateNetwork(full),
        IpamCommand::UpdateNetwork {
            id: "n".into(),
            update: NetworkUpdate::default(),
        },
        IpamCommand::UpdateNetwork {
            id: "n".into(),
            update: NetworkUpdate {
                description: Some("d".into()),
                tags: Some(map()),
            },
        },
        IpamCommand::DeleteNetwork {
            id: "n".into(),
            force: true,
        },
        IpamCommand::Allocate(AllocateRequest {
            network: "n".into(),
            count: 1,
            ..AllocateRequest::default()
        }),
        IpamCommand::Allocate(AllocateRequest {
            network: "n".into(),
            address: Some(v4(7)),
            hostname: Some("h".into()),
            owner: Some("o".into()),
            labels: map(),
            request_id: Some("r".into()),
            ttl_ms: Some(60_000),
            count: 2,
        }),
        IpamCommand::Release(Selector::Id("alloc-1".into())),
        IpamCommand::Release(Selector::Address {
            network: "n".into(),
            address: v6(),
        }),
        IpamCommand::Release(Selector::Hostname {
            network: "n".into(),
            hostname: "h".into(),
        }),
        IpamCommand::Renew {
            id: "alloc-1".into(),
            ttl_ms: None,
        },
        IpamCommand::Renew {
            id: "alloc-1".into(),
            ttl_ms: Some(5_000),
        },
        IpamCommand::Import {
            rows: vec![
                ImportRow {
                    network: "n".into(),
                    address: v4(7),
                    hostname: None,
                    owner: None,
                    labels: BTreeMap::new(),
                },
                ImportRow {
                    network: "n".into(),
                    address: v6(),
                    hostname: Some("h".into()),
                    owner: Some("o".into()),
                    labels: map(),
                },
            ],
        },
    ]
}

fn allocation(full: bool) -> Allocation {
    Allocation {
        id: "alloc-2".into(),
        network: "n".into(),
        address: if full { v6() } else { v4(2) },
        hostname: full.then(|| "h".into()),
        owner: full.then(|| "o".into()),
        labels: if full { map() } else { BTreeMap::new() },
        request_id: full.then(|| "r".into()),
        created_revision: 2,
        updated_revision: 3,
        created_wall_ms: 1_700_000_000_000,
        lease: full.then_some(Lease {
            ttl_ms: 1_000,
            expires_at_ms: 9_000,
        }),
    }
}

/// Every answer and refusal.
pub fn results() -> Vec<Result<IpamAnswer, IpamRefusal>> {
    let cidr = "10.0.0.0/24".parse().unwrap_or_default();
    let network = |full: bool| Network {
        id: "n".into(),
        cidr,
        description: if full { "d".into() } else { String::new() },
        tags: if full { map() } else { BTreeMap::new() },
        gateway: full.then(|| v4(1)),
        reserved: if full {
            vec![AddrRange {
                start: v4(2),
                end: v4(3),
            }]
        } else {
            Vec::new()
        },
        pools: Vec::new(),
        parent: full.then(|| "p".into()),
        created_revision: 1,
        updated_revision: 1,
        created_wall_ms: 5,
    };
    let usage = Usage {
        total: 1 << 64,
        allocated: 3,
        reserved: 1,
        free: (1 << 64) - 4,
    };
    vec![
        Ok(IpamAnswer::Network {
            network: network(false),
            usage: Usage::default(),
        }),
        Ok(IpamAnswer::Network {
            network: network(true),
            usage,
        }),
        Ok(IpamAnswer::NetworkDeleted {
            id: "n".into(),
            released: 3,
        }),
        Ok(IpamAnswer::Allocated {
            allocations: vec![allocation(false), allocation(true)],
            existing: false,
        }),
        Ok(IpamAnswer::Released(allocation(true))),
        Ok(IpamAnswer::Renewed(allocation(true))),
        Err(IpamRefusal::Invalid {
            field: "cidr".into(),
            reason: "r".into(),
        }),
        Err(IpamRefusal::NetworkExists { id: "n".into() }),
        Err(IpamRefusal::NetworkNotFound { id: "n".into() }),
        Err(IpamRefusal::Overlaps {
            cidr,
            id: "m".into(),
            other: cidr,
        }),
        Err(IpamRefusal::NotInsideParent {
            cidr,
            parent: "p".into(),
            parent_cidr: cidr,
        }),
        Err(IpamRefusal::CoversAllocations {
            cidr,
            parent: "p".into(),
            count: 2,
            first: v4(4),
        }),
        Err(IpamRefusal::HasChildren {
            id: "n".into(),
            children: vec!["c".into()],
        }),
        Err(IpamRefusal::HasAllocations {
            id: "n".into(),
            count: 4,
        }),
        Err(IpamRefusal::NetworkFull {
            id: "n".into(),
            usage,
        }),
        Err(IpamRefusal::AddressOutside {
            address: v6(),
            id: "n".into(),
            cidr,
        }),
        Err(IpamRefusal::AddressNotUsable {
            address: v4(0),
            what: "network".into(),
            cidr,
        }),
        Err(IpamRefusal::AddressInChild {
            address: v4(9),
            child: "c".into(),
        }),
        Err(IpamRefusal::AddressTaken {
            address: v4(9),
            holder: "alloc-1".into(),
            hostname: None,
        }),
        Err(IpamRefusal::AddressTaken {
            address: v4(9),
            holder: "alloc-1".into(),
            hostname: Some("h".into()),
        }),
        Err(IpamRefusal::HostnameTaken {
            hostname: "h".into(),
            network: "n".into(),
            address: v4(9),
            holder: "alloc-1".into(),
        }),
        Err(IpamRefusal::RequestIdReused {
            request_id: "r".into(),
        }),
        Err(IpamRefusal::AllocationNotFound { what: "x".into() }),
        Err(IpamRefusal::NoLease { id: "x".into() }),
        Ok(IpamAnswer::Imported {
            created: Vec::new(),
            existing: 0,
        }),
        Ok(IpamAnswer::Imported {
            created: vec![allocation(true)],
            existing: 2,
        }),
        Err(IpamRefusal::RepeatedInImport {
            field: "address".into(),
            value: "10.0.0.9 in n".into(),
            earlier_row: 1,
        }),
        Err(IpamRefusal::ImportConflicts {
            conflicts: Vec::new(),
            total: 0,
        }),
        Err(IpamRefusal::ImportConflicts {
            conflicts: vec![ImportConflict {
                row: 3,
                refusal: IpamRefusal::NetworkNotFound { id: "m".into() },
            }],
            total: 7,
        }),
    ]
}
