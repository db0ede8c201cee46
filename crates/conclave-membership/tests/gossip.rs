//! Real gossip on loopback UDP: members find each other through a seed, a node without the
//! token is kept out, a goodbye shows as `left`, and `remove-dead` forgets it everywhere.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use conclave_membership::{GossipOptions, GossipTuning, Membership};
use conclave_types::MemberState;
use tokio_util::sync::CancellationToken;

fn free_udp() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

async fn start(
    id: u64,
    seeds: &[SocketAddr],
    token: &str,
    stop: &CancellationToken,
) -> (Membership, SocketAddr) {
    let addr = free_udp();
    let m = Membership::start(
        GossipOptions {
            node_id: id,
            name: format!("agent-{id}"),
            role: if id == 1 {
                "voter".into()
            } else {
                "client".into()
            },
            listen: addr,
            advertise: addr,
            api_addr: format!("127.0.0.1:{}", 9000 + id),
            rpc_addr: addr.to_string(),
            seeds: seeds.iter().map(ToString::to_string).collect(),
            tags: BTreeMap::from([("zone".to_string(), format!("z{}", id % 2))]),
            version: "test".into(),
            cluster_id: Some("c1".into()),
            token: Some(conclave_types::Secret::new(token)),
            keyring_file: None,
            tuning: GossipTuning::default(),
            dns_server: None,
        },
        stop.clone(),
    )
    .await
    .unwrap();
    (m, addr)
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn state_of(m: &Membership, id: u64) -> Option<MemberState> {
    m.view()
        .members
        .iter()
        .find(|x| x.id == id)
        .map(|x| x.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_meet_outsiders_are_refused_leavers_leave_and_dead_are_removed() {
    let stop = CancellationToken::new();
    let (a, a_addr) = start(1, &[], "secret", &stop).await;
    let (b, _) = start(2, &[a_addr], "secret", &stop).await;
    let (c, _) = start(3, &[a_addr], "secret", &stop).await;
    let (outsider, _) = start(4, &[a_addr], "wrong", &stop).await;

    until("all three see each other", || {
        [&a, &b, &c].iter().all(|m| {
            let v = m.view();
            v.members.len() == 3 && v.members.iter().all(|x| x.state == MemberState::Alive)
        })
    })
    .await;
    let seen_by_c = c.view();
    let one = seen_by_c.members.iter().find(|m| m.id == 1).unwrap();
    assert_eq!(one.role, "voter");
    assert_eq!(one.name.as_deref(), Some("agent-1"));
    assert_eq!(one.tags.get("zone").map(String::as_str), Some("z1"));
    assert_eq!(one.cluster_id, "c1");
    assert!(one.healthy);

    // The outsider's datagrams are dropped: nobody lists it, and it lists only itself.
    until(
        "the outsider's datagrams refused: sealed under a key not held here",
        || a.counters().core.refused_unknown_key > 0,
    )
    .await;
    assert!(state_of(&a, 4).is_none());
    assert_eq!(outsider.view().members.len(), 1);

    // Health travels with gossip.
    b.set_health(&conclave_membership::checks::HealthSummary {
        failing: vec!["db".into()],
        pending: 0,
    })
    .await;
    until("b unhealthy on a", || {
        a.view()
            .members
            .iter()
            .any(|m| m.id == 2 && !m.healthy && m.failing_checks == ["db"])
    })
    .await;

    // A goodbye shows as left, then remove-dead forgets it on every node.
    c.leave().await;
    until("c left on a and b", || {
        state_of(&a, 3) == Some(MemberState::Left) && state_of(&b, 3) == Some(MemberState::Left)
    })
    .await;
    let removed = a.remove_dead().await;
    assert_eq!(removed, [3]);
    until("c forgotten on b", || state_of(&b, 3).is_none()).await;
    stop.cancel();
}

/// Every agent's keyring, changed in the three rotation steps.
async fn on_all(ms: &[&Membership], op: conclave_types::gossip_keys::KeyOp) {
    for m in ms {
        m.keys(Some(op.clone())).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_without_downtime_crashes_are_detected_and_a_restart_is_the_same_member() {
    use conclave_types::gossip_keys::KeyOp;
    let stop = CancellationToken::new();
    let (a, a_addr) = start(1, &[], "secret", &stop).await;
    let (b, _) = start(2, &[a_addr], "secret", &stop).await;
    let c_stop = stop.child_token();
    let (c, c_addr) = start(3, &[a_addr], "secret", &c_stop).await;
    let all_alive = |ms: &[&Membership], n: usize| {
        ms.iter().all(|m| {
            let v = m.view();
            v.members.len() == n && v.members.iter().all(|x| x.state == MemberState::Alive)
        })
    };
    until("three alive", || all_alive(&[&a, &b, &c], 3)).await;

    // Rotation: install everywhere, use everywhere, remove the old key everywhere.
    let old = a.keys(None).await.unwrap()[0].id.clone();
    let new = conclave_membership::keyring::generate();
    on_all(&[&a, &b, &c], KeyOp::Install { key: new.clone() }).await;
    on_all(&[&a, &b, &c], KeyOp::Use { key: new.clone() }).await;
    on_all(&[&a, &b, &c], KeyOp::Remove { key: old.clone() }).await;
    let keys = b.keys(None).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].primary && keys[0].id != old);
    // Still one cluster, well after a suspicion would have been declared.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(all_alive(&[&a, &b, &c], 3), "{:?}", a.view());
    // An agent that still has only the old key is refused.
    let (late, _) = start(4, &[a_addr], "secret", &stop).await;
    until("the old key refused", || {
        a.counters().core.refused_unknown_key > 0
    })
    .await;
    assert!(state_of(&a, 4).is_none());
    assert_eq!(late.view().members.len(), 1);

    // Tags change at runtime and reach the others.
    b.set_tags(&BTreeMap::from([("rack".to_string(), "r9".to_string())]))
        .await;
    until("b's new tags on a", || {
        a.view()
            .members
            .iter()
            .any(|m| m.id == 2 && m.tags == BTreeMap::from([("rack".into(), "r9".into())]))
    })
    .await;

    // A crash (no goodbye) is suspected, then declared dead.
    let c_generation = a
        .view()
        .members
        .iter()
        .find(|m| m.id == 3)
        .unwrap()
        .generation;
    c_stop.cancel();
    drop(c);
    let crashed = Instant::now();
    until("c dead on a and b", || {
        state_of(&a, 3) == Some(MemberState::Dead) && state_of(&b, 3) == Some(MemberState::Dead)
    })
    .await;
    assert!(
        crashed.elapsed() < Duration::from_secs(5),
        "{:?}",
        crashed.elapsed()
    );

    // Restarted on the same address with the same id (and the rotated key): the same
    // member, alive again, with a newer generation.
    let c_stop = stop.child_token();
    let c = Membership::start(
        GossipOptions {
            node_id: 3,
            name: "agent-3".into(),
            role: "client".into(),
            listen: c_addr,
            advertise: c_addr,
            api_addr: "127.0.0.1:9003".into(),
            rpc_addr: c_addr.to_string(),
            seeds: vec![a_addr.to_string()],
            tags: BTreeMap::new(),
            version: "test".into(),
            cluster_id: Some("c1".into()),
            token: Some(conclave_types::Secret::new("secret")),
            keyring_file: None,
            tuning: GossipTuning::default(),
            dns_server: None,
        },
        c_stop.clone(),
    )
    .await
    .unwrap();
    c.keys(Some(KeyOp::Install { key: new.clone() }))
        .await
        .unwrap();
    c.keys(Some(KeyOp::Use { key: new })).await.unwrap();
    until("c alive again, one entry", || {
        let v = a.view();
        v.members.iter().filter(|m| m.id == 3).count() == 1
            && v.members
                .iter()
                .any(|m| m.id == 3 && m.state == MemberState::Alive && m.generation > c_generation)
    })
    .await;
    stop.cancel();
}
