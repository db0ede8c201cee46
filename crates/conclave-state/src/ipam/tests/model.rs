//! The allocator against a model: random workloads on a small network, checked step by
//! step against a plain map of held addresses.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use proptest::prelude::*;

use super::*;

/// One step of a random IPAM workload on a /27 with a reserved range.
#[derive(Debug, Clone)]
enum Step {
    Next,
    Given(u8),
    Hostname(u8),
    ReleaseAddress(u8),
    ReleaseHostname(u8),
    Bulk(u8),
    Leased(u8),
    Tick(u16),
    /// Rows of (address index, hostname index).
    Import(Vec<(u8, Option<u8>)>),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::Next),
        2 => (0u8..32).prop_map(Step::Given),
        2 => (0u8..8).prop_map(Step::Hostname),
        3 => (0u8..32).prop_map(Step::ReleaseAddress),
        1 => (0u8..8).prop_map(Step::ReleaseHostname),
        1 => (1u8..6).prop_map(Step::Bulk),
        1 => (1u8..4).prop_map(Step::Leased),
        1 => (0u16..3000).prop_map(Step::Tick),
        1 => proptest::collection::vec((0u8..32, proptest::option::of(0u8..8)), 1..5).prop_map(Step::Import),
    ]
}

proptest! {
    /// The allocator against a model: a set of held addresses, the lowest usable free one
    /// handed out first, never one address twice, and a snapshot at any point decides the
    /// same from there on.
    #[test]
    fn the_allocator_matches_a_set_model(steps in proptest::collection::vec(step(), 1..80)) {
        let base = u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0));
        let addr = |i: u8| IpAddr::V4(std::net::Ipv4Addr::from(base + u32::from(i)));
        let reserved: BTreeSet<u8> = (8..=11).collect();
        let mut s = State::new();
        let mut now = 1_000u64;
        clock(&mut s, 1, now);
        create(&mut s, NetworkSpec {
            reserved: vec![AddrRange { start: addr(8), end: addr(11) }],
            ..spec("n", "10.0.0.0/27")
        });
        // address index -> (hostname, lease deadline)
        let mut held: BTreeMap<u8, (Option<String>, Option<u64>)> = BTreeMap::new();
        for step in steps {
            let automatic: Vec<u8> = (1u8..31)
                .filter(|i| !reserved.contains(i) && !held.contains_key(i))
                .collect();
            match step {
                Step::Next | Step::Bulk(_) | Step::Leased(_) => {
                    let (count, ttl) = match step {
                        Step::Bulk(n) => (n, None),
                        Step::Leased(n) => (1, Some(u64::from(n) * 1000)),
                        _ => (1, None),
                    };
                    let got = alloc(&mut s, AllocateRequest { count: u32::from(count), ttl_ms: ttl, ..request("n") });
                    if automatic.len() < usize::from(count) {
                        prop_assert!(matches!(got, Err(IpamRefusal::NetworkFull { .. })), "{got:?}");
                    } else {
                        let got: Vec<IpAddr> = got.unwrap().iter().map(|a| a.address).collect();
                        let want: Vec<IpAddr> = automatic.iter().take(usize::from(count)).map(|i| addr(*i)).collect();
                        prop_assert_eq!(&got, &want);
                        for i in automatic.iter().take(usize::from(count)) {
                            held.insert(*i, (None, ttl.map(|t| now + t)));
                        }
                    }
                }
                Step::Given(i) => {
                    let got = alloc(&mut s, AllocateRequest { address: Some(addr(i)), ..request("n") });
                    if i == 0 || i == 31 {
                        prop_assert!(matches!(got, Err(IpamRefusal::AddressNotUsable { .. })), "{got:?}");
                    } else if let std::collections::btree_map::Entry::Vacant(free) = held.entry(i) {
                        prop_assert!(got.is_ok(), "{got:?}");
                        free.insert((None, None));
                    } else {
                        prop_assert!(matches!(got, Err(IpamRefusal::AddressTaken { .. })), "{got:?}");
                    }
                }
                Step::Hostname(h) => {
                    let name = format!("host-{h}");
                    let got = alloc(&mut s, AllocateRequest { hostname: Some(name.clone()), ..request("n") });
                    let existing = held.iter().find(|(_, (n, _))| n.as_deref() == Some(&name)).map(|(i, _)| *i);
                    match (existing, automatic.first()) {
                        (Some(i), _) => prop_assert_eq!(got.unwrap()[0].address, addr(i)),
                        (None, Some(&i)) => {
                            prop_assert_eq!(got.unwrap()[0].address, addr(i));
                            held.insert(i, (Some(name), None));
                        }
                        (None, None) => prop_assert!(matches!(got, Err(IpamRefusal::NetworkFull { .. })), "{:?}", got),
                    }
                }
                Step::ReleaseAddress(i) => {
                    let got = run(&mut s, IpamCommand::Release(Selector::Address { network: "n".into(), address: addr(i) }));
                    prop_assert_eq!(got.is_ok(), held.remove(&i).is_some());
                }
                Step::ReleaseHostname(h) => {
                    let name = format!("host-{h}");
                    let got = run(&mut s, IpamCommand::Release(Selector::Hostname { network: "n".into(), hostname: name.clone() }));
                    let existing = held.iter().find(|(_, (n, _))| n.as_deref() == Some(&name)).map(|(i, _)| *i);
                    prop_assert_eq!(got.is_ok(), existing.is_some());
                    if let Some(i) = existing { held.remove(&i); }
                }
                Step::Import(rows) => {
                    let host = |h: Option<u8>| h.map(|h| format!("host-{h}"));
                    let got = run(&mut s, IpamCommand::Import {
                        rows: rows.iter().map(|(i, h)| ImportRow {
                            network: "n".into(),
                            address: addr(*i),
                            hostname: host(*h),
                            owner: None,
                            labels: BTreeMap::new(),
                        }).collect(),
                    });
                    // The model's verdict on each row, in order.
                    let mut seen_addr = BTreeSet::new();
                    let mut seen_host = BTreeSet::new();
                    let mut new_rows = Vec::new();
                    let mut conflict = false;
                    for (i, h) in &rows {
                        let name = host(*h);
                        let repeated = !seen_addr.insert(*i) || name.as_ref().is_some_and(|n| !seen_host.insert(n.clone()));
                        let holder_of_name = name.as_ref().and_then(|n| held.iter().find(|(_, (x, _))| x.as_ref() == Some(n)).map(|(a, _)| *a));
                        match held.get(i) {
                            _ if repeated => conflict = true,
                            Some((x, _)) if *x == name => {}
                            Some(_) => conflict = true,
                            None if *i == 0 || *i == 31 || holder_of_name.is_some() => conflict = true,
                            None => new_rows.push((*i, name)),
                        }
                    }
                    if conflict {
                        prop_assert!(matches!(got, Err(IpamRefusal::ImportConflicts { .. })), "{got:?}");
                    } else {
                        let Ok(IpamAnswer::Imported { created, .. }) = got else {
                            return Err(TestCaseError::fail(format!("import refused: {got:?}")));
                        };
                        prop_assert_eq!(created.len(), new_rows.len());
                        for (i, name) in new_rows {
                            held.insert(i, (name, None));
                        }
                    }
                }
                Step::Tick(ms) => {
                    now += u64::from(ms);
                    clock(&mut s, 1, now);
                    s.apply(&Command::ExpireLeases);
                    held.retain(|_, (_, lease)| lease.is_none_or(|at| at > now));
                }
            }
            let usage = s.ipam().usage("n").unwrap();
            prop_assert_eq!(usage.allocated, held.len() as u64);
            let held_reserved = held.keys().filter(|i| reserved.contains(i)).count() as u128;
            prop_assert_eq!(usage.free, 30 - 4 - (held.len() as u128 - held_reserved));
            let listed: Vec<IpAddr> = s.ipam().allocations_in("n", None).map(|a| a.address).collect();
            let model: Vec<IpAddr> = held.keys().map(|i| addr(*i)).collect();
            prop_assert_eq!(listed, model);
        }
        let restored = snapshot::decode(&snapshot::encode(&s)).unwrap();
        prop_assert_eq!(restored.ipam().usage("n"), s.ipam().usage("n"));
        prop_assert_eq!(&restored, &s);
    }
}
