//! Real gossip on loopback UDP: members find each other through a seed, a node without the
//! token is kept out, a goodbye shows as `left`, and `remove-dead` forgets it everywhere.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
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
            tuning: GossipTuning {
                interval_ms: 50,
                suspect_after_ms: 300,
                ..GossipTuning::default()
            },
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
    assert_eq!(one.tags.get("zone").map(String::as_str), Some("z1"));
    assert_eq!(one.cluster_id, "c1");
    assert!(one.healthy);

    // The outsider's datagrams are dropped: nobody lists it, and it lists only itself.
    assert!(a.stats().rejected.load(Ordering::Relaxed) > 0);
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
