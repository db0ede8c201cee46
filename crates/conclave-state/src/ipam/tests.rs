use std::collections::BTreeMap;
use std::net::IpAddr;

use super::*;
use crate::{Command, Outcome, State, snapshot};

mod import;
mod model;
mod snapshots;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn net(s: &str) -> IpNet {
    s.parse().expect("test cidr")
}

fn run(state: &mut State, c: IpamCommand) -> Result<IpamAnswer, IpamRefusal> {
    match state.apply(&Command::Ipam(c)) {
        Outcome::Ipam { result, .. } => *result,
        other => panic!("not an IPAM outcome: {other:?}"),
    }
}

fn clock(state: &mut State, term: u64, now_ms: u64) {
    state.apply(&Command::Clock {
        term,
        now_ms,
        wall_ms: 1_700_000_000_000 + now_ms,
    });
}

fn spec(id: &str, cidr: &str) -> NetworkSpec {
    NetworkSpec {
        id: Some(id.into()),
        cidr: net(cidr),
        description: String::new(),
        tags: BTreeMap::new(),
        gateway: None,
        reserved: Vec::new(),
        pools: Vec::new(),
        parent: None,
    }
}

fn create(state: &mut State, s: NetworkSpec) -> Network {
    match run(state, IpamCommand::CreateNetwork(s)) {
        Ok(IpamAnswer::Network { network, .. }) => network,
        other => panic!("create failed: {other:?}"),
    }
}

fn request(network: &str) -> AllocateRequest {
    AllocateRequest {
        network: network.into(),
        count: 1,
        ..AllocateRequest::default()
    }
}

fn alloc(state: &mut State, req: AllocateRequest) -> Result<Vec<Allocation>, IpamRefusal> {
    run(state, IpamCommand::Allocate(req)).map(|a| match a {
        IpamAnswer::Allocated { allocations, .. } => allocations,
        other => panic!("not an allocation: {other:?}"),
    })
}

fn one(state: &mut State, req: AllocateRequest) -> IpAddr {
    alloc(state, req).expect("allocation")[0].address
}

#[test]
fn an_ipv4_network_hands_out_its_hosts_lowest_first_and_never_network_or_broadcast() {
    let mut s = State::new();
    create(
        &mut s,
        NetworkSpec {
            gateway: Some(ip("10.0.0.1")),
            ..spec("lan", "10.0.0.0/29")
        },
    );
    let got: Vec<IpAddr> = (0..5).map(|_| one(&mut s, request("lan"))).collect();
    assert_eq!(
        got,
        ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"].map(ip)
    );
    let full = alloc(&mut s, request("lan")).unwrap_err();
    let IpamRefusal::NetworkFull { usage, .. } = full else {
        panic!("{full:?}")
    };
    assert_eq!(
        usage,
        Usage {
            total: 6,
            allocated: 5,
            reserved: 1,
            free: 0
        }
    );
    for (addr, what) in [("10.0.0.0", "network"), ("10.0.0.7", "broadcast")] {
        let refused = alloc(
            &mut s,
            AllocateRequest {
                address: Some(ip(addr)),
                ..request("lan")
            },
        );
        assert!(
            matches!(&refused, Err(IpamRefusal::AddressNotUsable { what: w, .. }) if w == what),
            "{refused:?}"
        );
    }
    // The gateway is reserved from automatic allocation, but may be asked for.
    let gw = one(
        &mut s,
        AllocateRequest {
            address: Some(ip("10.0.0.1")),
            hostname: Some("router".into()),
            ..request("lan")
        },
    );
    assert_eq!(gw, ip("10.0.0.1"));
    assert_eq!(s.ipam().usage("lan").map(|u| u.allocated), Some(6));
}

#[test]
fn a_repeated_request_gets_the_same_address_by_hostname_or_request_id() {
    let mut s = State::new();
    create(&mut s, spec("lan", "192.168.1.0/24"));
    let web = AllocateRequest {
        hostname: Some("web-server".into()),
        ..request("lan")
    };
    let first = alloc(&mut s, web.clone()).unwrap();
    let again = run(&mut s, IpamCommand::Allocate(web)).unwrap();
    assert_eq!(
        again,
        IpamAnswer::Allocated {
            allocations: first.clone(),
            existing: true
        }
    );
    let bulk = AllocateRequest {
        request_id: Some("req-7".into()),
        count: 3,
        ..request("lan")
    };
    let made = alloc(&mut s, bulk.clone()).unwrap();
    assert_eq!(made.len(), 3);
    let revision = s.revision();
    assert_eq!(alloc(&mut s, bulk).unwrap(), made);
    assert_eq!(s.revision(), revision, "a repeat changes nothing");
    // The same request id for another network is a client bug, not a repeat.
    create(&mut s, spec("dmz", "192.168.2.0/24"));
    let reused = alloc(
        &mut s,
        AllocateRequest {
            request_id: Some("req-7".into()),
            ..request("dmz")
        },
    );
    assert!(matches!(reused, Err(IpamRefusal::RequestIdReused { .. })));
    // A hostname holding another address than the one asked for is a conflict.
    let moved = alloc(
        &mut s,
        AllocateRequest {
            hostname: Some("web-server".into()),
            address: Some(ip("192.168.1.200")),
            ..request("lan")
        },
    );
    assert!(
        matches!(&moved, Err(IpamRefusal::HostnameTaken { address, .. }) if *address == first[0].address),
        "{moved:?}"
    );
}

#[test]
fn a_taken_address_is_refused_with_its_holder_and_a_release_gives_it_back() {
    let mut s = State::new();
    create(&mut s, spec("lan", "10.1.0.0/24"));
    let db = one(
        &mut s,
        AllocateRequest {
            address: Some(ip("10.1.0.10")),
            hostname: Some("db".into()),
            ..request("lan")
        },
    );
    let taken = alloc(
        &mut s,
        AllocateRequest {
            address: Some(db),
            ..request("lan")
        },
    );
    assert!(
        matches!(&taken, Err(IpamRefusal::AddressTaken { hostname: Some(h), .. }) if h == "db"),
        "{taken:?}"
    );
    let outside = alloc(
        &mut s,
        AllocateRequest {
            address: Some(ip("10.2.0.1")),
            ..request("lan")
        },
    );
    assert!(matches!(outside, Err(IpamRefusal::AddressOutside { .. })));
    let released = run(
        &mut s,
        IpamCommand::Release(Selector::Hostname {
            network: "lan".into(),
            hostname: "db".into(),
        }),
    );
    assert!(matches!(released, Ok(IpamAnswer::Released(a)) if a.address == db));
    let again = run(
        &mut s,
        IpamCommand::Release(Selector::Address {
            network: "lan".into(),
            address: db,
        }),
    );
    assert!(matches!(again, Err(IpamRefusal::AllocationNotFound { .. })));
    assert_eq!(s.ipam().usage("lan").map(|u| u.free), Some(254));
}

#[test]
fn networks_never_overlap_unless_one_is_the_declared_child_of_the_other() {
    let mut s = State::new();
    create(&mut s, spec("corp", "10.0.0.0/16"));
    let overlap = run(
        &mut s,
        IpamCommand::CreateNetwork(spec("lab", "10.0.5.0/24")),
    );
    assert!(
        matches!(&overlap, Err(IpamRefusal::Overlaps { id, .. }) if id == "corp"),
        "{overlap:?}"
    );
    // A parent allocation inside the would-be child blocks it.
    one(
        &mut s,
        AllocateRequest {
            address: Some(ip("10.0.5.9")),
            ..request("corp")
        },
    );
    let child = NetworkSpec {
        parent: Some("corp".into()),
        ..spec("lab", "10.0.5.0/24")
    };
    let covered = run(&mut s, IpamCommand::CreateNetwork(child.clone()));
    assert!(matches!(
        covered,
        Err(IpamRefusal::CoversAllocations { count: 1, .. })
    ));
    run(
        &mut s,
        IpamCommand::Release(Selector::Address {
            network: "corp".into(),
            address: ip("10.0.5.9"),
        }),
    )
    .unwrap();
    let before = s.ipam().usage("corp").unwrap().free;
    create(&mut s, child);
    assert_eq!(s.ipam().usage("corp").unwrap().free, before - 256);
    let in_child = alloc(
        &mut s,
        AllocateRequest {
            address: Some(ip("10.0.5.20")),
            ..request("corp")
        },
    );
    assert!(matches!(in_child, Err(IpamRefusal::AddressInChild { child, .. }) if child == "lab"));
    let not_inside = run(
        &mut s,
        IpamCommand::CreateNetwork(NetworkSpec {
            parent: Some("corp".into()),
            ..spec("far", "10.9.0.0/24")
        }),
    );
    assert!(matches!(
        not_inside,
        Err(IpamRefusal::NotInsideParent { .. })
    ));
    let busy = run(
        &mut s,
        IpamCommand::DeleteNetwork {
            id: "corp".into(),
            force: true,
        },
    );
    assert!(matches!(busy, Err(IpamRefusal::HasChildren { .. })));
    one(&mut s, request("lab"));
    let held = run(
        &mut s,
        IpamCommand::DeleteNetwork {
            id: "lab".into(),
            force: false,
        },
    );
    assert!(matches!(
        held,
        Err(IpamRefusal::HasAllocations { count: 1, .. })
    ));
    let gone = run(
        &mut s,
        IpamCommand::DeleteNetwork {
            id: "lab".into(),
            force: true,
        },
    );
    assert!(matches!(
        gone,
        Ok(IpamAnswer::NetworkDeleted { released: 1, .. })
    ));
    assert_eq!(s.ipam().usage("corp").unwrap().free, before);
    // IPv4 and IPv6 never overlap.
    create(&mut s, spec("v6", "fd00::/64"));
}

#[test]
fn bad_shapes_are_refused_before_anything_changes() {
    let mut s = State::new();
    let cases = [
        spec("x", "10.0.0.1/24"),
        spec("net-12", "10.0.0.0/24"),
        spec("has space", "10.0.0.0/24"),
        NetworkSpec {
            gateway: Some(ip("10.9.9.9")),
            ..spec("x", "10.0.0.0/24")
        },
        NetworkSpec {
            pools: vec![AddrRange {
                start: ip("10.0.0.20"),
                end: ip("10.0.0.10"),
            }],
            ..spec("x", "10.0.0.0/24")
        },
    ];
    for c in cases {
        let r = run(&mut s, IpamCommand::CreateNetwork(c.clone()));
        assert!(
            matches!(r, Err(IpamRefusal::Invalid { .. })),
            "{c:?}: {r:?}"
        );
    }
    assert_eq!(s.revision(), 0);
    create(&mut s, spec("lan", "10.0.0.0/24"));
    for req in [
        AllocateRequest {
            count: 0,
            ..request("lan")
        },
        AllocateRequest {
            count: MAX_BULK + 1,
            ..request("lan")
        },
        AllocateRequest {
            count: 2,
            hostname: Some("a".into()),
            ..request("lan")
        },
        AllocateRequest {
            ttl_ms: Some(5),
            ..request("lan")
        },
    ] {
        assert!(matches!(
            alloc(&mut s, req),
            Err(IpamRefusal::Invalid { .. })
        ));
    }
}

#[test]
fn pools_and_reservations_steer_automatic_allocation() {
    let mut s = State::new();
    create(
        &mut s,
        NetworkSpec {
            pools: vec![AddrRange {
                start: ip("172.16.0.100"),
                end: ip("172.16.0.104"),
            }],
            reserved: vec![AddrRange {
                start: ip("172.16.0.101"),
                end: ip("172.16.0.102"),
            }],
            ..spec("pool", "172.16.0.0/24")
        },
    );
    let got: Vec<IpAddr> = (0..3).map(|_| one(&mut s, request("pool"))).collect();
    assert_eq!(
        got,
        ["172.16.0.100", "172.16.0.103", "172.16.0.104"].map(ip)
    );
    assert!(matches!(
        alloc(&mut s, request("pool")),
        Err(IpamRefusal::NetworkFull { .. })
    ));
    // Outside the pool, by name, is allowed; releasing it does not grow the pool.
    one(
        &mut s,
        AllocateRequest {
            address: Some(ip("172.16.0.7")),
            ..request("pool")
        },
    );
    run(
        &mut s,
        IpamCommand::Release(Selector::Address {
            network: "pool".into(),
            address: ip("172.16.0.7"),
        }),
    )
    .unwrap();
    assert_eq!(s.ipam().usage("pool").unwrap().free, 0);
}

#[test]
fn leases_end_on_the_cluster_clock_unless_renewed_and_a_new_leader_extends_them() {
    let mut s = State::new();
    clock(&mut s, 1, 1_000);
    create(&mut s, spec("lan", "10.0.0.0/24"));
    let a = alloc(
        &mut s,
        AllocateRequest {
            ttl_ms: Some(10_000),
            hostname: Some("dhcp-1".into()),
            ..request("lan")
        },
    )
    .unwrap()
    .remove(0);
    assert_eq!(a.lease.map(|l| l.expires_at_ms), Some(11_000));
    assert_eq!(s.next_lease_deadline(), Some(11_000));
    clock(&mut s, 1, 9_000);
    let renewed = run(
        &mut s,
        IpamCommand::Renew {
            id: a.id.clone(),
            ttl_ms: None,
        },
    );
    assert!(
        matches!(&renewed, Ok(IpamAnswer::Renewed(r)) if r.lease.map(|l| l.expires_at_ms) == Some(19_000))
    );
    clock(&mut s, 1, 18_000);
    s.apply(&Command::ExpireLeases);
    assert!(s.ipam().allocation(&a.id).is_some());
    // A new term: every lease gets a full TTL from the new leader's now.
    clock(&mut s, 2, 18_500);
    assert_eq!(s.next_lease_deadline(), Some(28_500));
    clock(&mut s, 2, 28_500);
    let ended = s.apply(&Command::ExpireLeases);
    assert!(matches!(ended, Outcome::Expired { ended: 1, .. }));
    assert!(s.ipam().allocation(&a.id).is_none());
    assert_eq!(s.ipam().usage("lan").unwrap().allocated, 0);
    let no_lease = one(&mut s, request("lan"));
    let id = s.ipam().allocation_at("lan", no_lease).unwrap().id.clone();
    assert!(matches!(
        run(&mut s, IpamCommand::Renew { id, ttl_ms: None }),
        Err(IpamRefusal::NoLease { .. })
    ));
}

#[test]
fn an_ipv6_64_allocates_at_both_ends_and_counts_two_to_the_64() {
    let mut s = State::new();
    create(&mut s, spec("v6", "2001:db8:1::/64"));
    assert_eq!(one(&mut s, request("v6")), ip("2001:db8:1::"));
    let last = ip("2001:db8:1::ffff:ffff:ffff:ffff");
    one(
        &mut s,
        AllocateRequest {
            address: Some(last),
            ..request("v6")
        },
    );
    assert_eq!(one(&mut s, request("v6")), ip("2001:db8:1::1"));
    let u = s.ipam().usage("v6").unwrap();
    assert_eq!(u.total, 1u128 << 64);
    assert_eq!(u.free, (1u128 << 64) - 3);
    assert_eq!(s.ipam().free_fragments("v6"), Some(1));
}

#[test]
fn every_change_is_one_revision_at_its_watch_key() {
    let mut s = State::new();
    create(&mut s, spec("lan", "10.0.0.0/24"));
    let made = alloc(
        &mut s,
        AllocateRequest {
            count: 2,
            ..request("lan")
        },
    )
    .unwrap();
    run(
        &mut s,
        IpamCommand::Release(Selector::Id(made[0].id.clone())),
    )
    .unwrap();
    let changes = s.take_changes();
    let keys: Vec<(u64, &str, bool)> = changes
        .iter()
        .map(|c| (c.revision, c.key.as_str(), c.value.is_some()))
        .collect();
    assert_eq!(
        keys,
        [
            (1, "_conclave/ipam/networks/lan", true),
            (2, "_conclave/ipam/allocations/alloc-2", true),
            (3, "_conclave/ipam/allocations/alloc-3", true),
            (4, "_conclave/ipam/allocations/alloc-2", false),
        ]
    );
    let value: Allocation = serde_json::from_slice(changes[1].value.as_deref().unwrap()).unwrap();
    assert_eq!(value, made[0]);
}

#[test]
fn a_slash_8_with_a_hundred_thousand_allocations_stays_one_free_range() {
    let mut s = State::new();
    create(&mut s, spec("big", "10.0.0.0/8"));
    for _ in 0..100 {
        alloc(
            &mut s,
            AllocateRequest {
                count: 1000,
                ..request("big")
            },
        )
        .unwrap();
        s.take_changes();
    }
    assert_eq!(s.ipam().free_fragments("big"), Some(1));
    assert_eq!(one(&mut s, request("big")), ip("10.1.134.161"));
    let bytes = snapshot::encode(&s);
    // Proportional to the allocations (~100 bytes each), not to 2^24 addresses.
    assert!(bytes.len() < 100_001 * 120, "{} bytes", bytes.len());
}

#[test]
fn every_message_round_trips_in_the_log_and_rpc_encoding_and_in_json() {
    for c in samples::commands() {
        let bytes = postcard::to_stdvec(&Command::Ipam(c.clone())).unwrap();
        assert_eq!(
            postcard::from_bytes::<Command>(&bytes).unwrap(),
            Command::Ipam(c.clone())
        );
        let json = serde_json::to_vec(&c).unwrap();
        assert_eq!(serde_json::from_slice::<IpamCommand>(&json).unwrap(), c);
    }
    for result in samples::results() {
        let outcome = Outcome::Ipam {
            revision: 9,
            result: Box::new(result),
        };
        let bytes = postcard::to_stdvec(&outcome).unwrap();
        assert_eq!(postcard::from_bytes::<Outcome>(&bytes).unwrap(), outcome);
    }
}
