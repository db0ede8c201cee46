//! A snapshot stores the facts; what is derived is rebuilt, and forged facts are refused.

use super::*;

#[test]
fn a_snapshot_holds_the_facts_and_the_restored_state_decides_the_same() {
    let mut s = State::new();
    clock(&mut s, 1, 1_000);
    create(
        &mut s,
        NetworkSpec {
            gateway: Some(ip("10.0.0.1")),
            ..spec("lan", "10.0.0.0/24")
        },
    );
    create(
        &mut s,
        NetworkSpec {
            parent: Some("lan".into()),
            ..spec("sub", "10.0.0.128/25")
        },
    );
    for i in 0..20 {
        one(
            &mut s,
            AllocateRequest {
                hostname: Some(format!("h{i}")),
                ttl_ms: (i % 3 == 0).then_some(60_000),
                ..request(if i % 2 == 0 { "lan" } else { "sub" })
            },
        );
    }
    for i in (0..20).step_by(4) {
        run(
            &mut s,
            IpamCommand::Release(Selector::Hostname {
                network: if i % 2 == 0 { "lan" } else { "sub" }.into(),
                hostname: format!("h{i}"),
            }),
        )
        .unwrap();
    }
    s.take_changes();
    let mut restored = snapshot::decode(&snapshot::encode(&s)).unwrap();
    assert_eq!(restored, s);
    for net in ["lan", "sub"] {
        assert_eq!(restored.ipam().usage(net), s.ipam().usage(net));
        assert_eq!(one(&mut restored, request(net)), one(&mut s, request(net)));
    }
    assert_eq!(restored.next_lease_deadline(), s.next_lease_deadline());
}

#[test]
fn a_snapshot_naming_a_future_allocation_id_is_refused() {
    let mut s = State::new();
    create(&mut s, spec("lan", "10.0.0.0/24"));
    one(&mut s, request("lan"));
    let bytes = snapshot::encode(&s);
    // Rewrite the allocation's id `alloc-2` to `alloc-9`: a later command would make it.
    // (IPAM state is the last part of a snapshot, after the audit log that names it too.)
    let needle = b"alloc-2";
    let at = bytes
        .windows(needle.len())
        .rposition(|w| w == needle)
        .unwrap();
    let mut forged = bytes.clone();
    forged[at + 6] = b'9';
    let decoded = snapshot::decode(&forged);
    assert!(
        matches!(decoded, Err(snapshot::SnapshotError::Implausible(_))),
        "{decoded:?}"
    );
}
