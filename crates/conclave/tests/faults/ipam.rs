//! No address twice, whatever fails: many clients allocate by hostname through every node
//! while the leader is killed and restarted and then another leader is partitioned from the
//! other voters. A client that gets no certain answer (a timeout, a 503) asks again for
//! the same hostname, at another node, until it gets one: the IPAM's idempotency by
//! hostname is what makes that retry safe. Afterwards, on every node: each address is held
//! once, every acknowledged allocation is there with the address its client was told, and
//! every repeated request got the same address as the first.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Cluster, http};

const CLIENTS: usize = 16;

#[derive(Default)]
struct Record {
    /// hostname → the address each certain answer gave (the first and every repeat).
    answers: BTreeMap<String, Vec<String>>,
    /// Requests without a certain answer (asked again).
    uncertain: u64,
}

/// What one allocation request came to: an address, or `None` for no certain answer.
async fn allocate(http: &reqwest::Client, api: &str, hostname: &str) -> Option<String> {
    let resp = http
        .post(format!("{api}/api/v1/allocations"))
        .json(&json!({"network_id": "pool", "hostname": hostname}))
        .send()
        .await
        .ok()?;
    let status = resp.status();
    let body: Value = resp.json().await.ok()?;
    if status.is_success() {
        return body["address"].as_str().map(str::to_owned);
    }
    // A refusal the request itself earned would be a bug here: every hostname is new and
    // the network has room for all.
    let code = body["error"]["code"].as_str().unwrap_or("");
    assert!(
        matches!(
            code,
            "no_leader" | "no_quorum" | "indeterminate" | "unavailable" | "not_ready"
        ),
        "allocation of {hostname} refused: {status} {body}"
    );
    None
}

async fn client(id: usize, apis: Vec<String>, stop: Arc<AtomicBool>, record: Arc<Mutex<Record>>) {
    let http = super::workload::http_client(Duration::from_secs(3));
    let mut node = id % apis.len();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let hostname = format!("host-{id}-{n}");
        // Until a certain answer, at the next node each time.
        let address = loop {
            if let Some(a) = allocate(&http, &apis[node], &hostname).await {
                break Some(a);
            }
            record.lock().unwrap().uncertain += 1;
            node = (node + 1) % apis.len();
            if stop.load(Ordering::Relaxed) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let Some(address) = address else { break };
        record
            .lock()
            .unwrap()
            .answers
            .entry(hostname.clone())
            .or_default()
            .push(address);
        // Every fourth hostname is asked for again, at another node: the same address.
        if n.is_multiple_of(4) {
            node = (node + 1) % apis.len();
            if let Some(again) = allocate(&http, &apis[node], &hostname).await {
                record
                    .lock()
                    .unwrap()
                    .answers
                    .entry(hostname)
                    .or_default()
                    .push(again);
            }
        }
        node = (node + 1) % apis.len();
    }
}

/// Every allocation of the network as `api` lists it (linearizable reads, paged).
async fn listing(api: &str) -> Vec<(String, String)> {
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let page: Value = http()
            .get(format!(
                "{api}/api/v1/allocations?network=pool&limit=1000&after={after}"
            ))
            .send()
            .await
            .expect("listing")
            .json()
            .await
            .expect("listing JSON");
        for a in page["allocations"].as_array().expect("allocations") {
            all.push((
                a["hostname"].as_str().unwrap_or("").to_owned(),
                a["address"].as_str().unwrap_or("").to_owned(),
            ));
        }
        match page["next_after"].as_str() {
            Some(next) => after = next.to_owned(),
            None => return all,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: network namespaces and iptables (run by .ci/run)"]
async fn no_address_is_handed_out_twice_through_a_leader_crash_and_a_partition() {
    let mut c = Cluster::start(3);
    for i in 0..3 {
        c.wait_healthy(i, Duration::from_secs(30)).await;
    }
    let all = [0, 1, 2];
    let l = c.leader(&all).await;
    let created = http()
        .post(format!("{}/api/v1/networks", c.api(l)))
        .json(&json!({"id": "pool", "cidr": "10.128.0.0/16"}))
        .send()
        .await
        .expect("create network");
    assert!(created.status().is_success(), "{:?}", created.text().await);
    let apis: Vec<String> = (0..3).map(|i| c.api(i)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let record = Arc::new(Mutex::new(Record::default()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| tokio::spawn(client(id, apis.clone(), stop.clone(), record.clone())))
        .collect();
    let sleep = |ms: u64| tokio::time::sleep(Duration::from_millis(ms));
    sleep(2_000).await;

    // The leader is killed mid-allocation and restarted 2 s later.
    let began = Instant::now();
    let l = c.leader(&all).await;
    c.proc(l).kill9();
    sleep(2_000).await;
    c.spawn(l);
    c.wait_healthy(l, Duration::from_secs(30)).await;
    sleep(2_000).await;
    // The new leader is cut off from the other voters for 5 s (clients still reach it).
    let l = c.leader(&all).await;
    c.net.isolate(l);
    sleep(5_000).await;
    c.net.heal();
    sleep(3_000).await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.expect("client task");
    }
    let faulted_for = began.elapsed();

    let record = std::mem::take(&mut *record.lock().unwrap());
    let acknowledged: BTreeMap<&String, &String> = record
        .answers
        .iter()
        .map(|(h, answers)| (h, &answers[0]))
        .collect();
    let repeats: usize = record.answers.values().map(|a| a.len() - 1).sum();
    for (hostname, answers) in &record.answers {
        assert!(
            answers.iter().all(|a| *a == answers[0]),
            "{hostname} was given different addresses: {answers:?}"
        );
    }
    for i in 0..3 {
        c.wait_healthy(i, Duration::from_secs(30)).await;
        let listed = listing(&c.api(i)).await;
        let addresses: BTreeSet<&String> = listed.iter().map(|(_, a)| a).collect();
        assert_eq!(
            addresses.len(),
            listed.len(),
            "node {}: an address is held twice",
            i + 1
        );
        let by_host: BTreeMap<&String, &String> = listed.iter().map(|(h, a)| (h, a)).collect();
        assert_eq!(
            by_host.len(),
            listed.len(),
            "node {}: a hostname twice",
            i + 1
        );
        for (hostname, address) in &acknowledged {
            assert_eq!(
                by_host.get(hostname),
                Some(address),
                "node {}: the acknowledged allocation of {hostname} is missing or moved",
                i + 1
            );
        }
        // Allocations beyond the acknowledged ones are requests whose answer was lost and
        // whose client stopped before asking again: at most one per client.
        assert!(
            listed.len() <= acknowledged.len() + CLIENTS,
            "node {}: {} listed, {} acknowledged",
            i + 1,
            listed.len(),
            acknowledged.len()
        );
    }
    println!(
        "ipam faults: {CLIENTS} clients, {} allocations acknowledged, {repeats} repeats (all the same address), {} requests without a certain answer asked again; leader kill -9 + restart, leader partitioned 5 s, over {} s; no address twice on any node",
        acknowledged.len(),
        record.uncertain,
        faulted_for.as_secs()
    );
    assert!(acknowledged.len() > 200, "too few allocations to judge");
}
