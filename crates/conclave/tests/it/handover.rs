//! Leadership handed over under a write load: every transfer takes one election (the term
//! moves by exactly one), lands on the voter asked for, and fails no write. Before the
//! leader held proposals until the target had its whole log, a transfer under load was
//! refused by the leader (the target's log was behind), timed out after several seconds
//! and elected through dozens of terms, failing writes meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{cluster_env, leader_of, start_static};
use crate::support::http;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_under_load_take_one_election_and_fail_no_write() {
    let root = tempfile::tempdir().unwrap();
    let nodes = start_static(root.path(), 3, &[], &cluster_env(&[])).await;
    let urls: Vec<String> = nodes.iter().map(|n| n.agent.url("")).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let base = urls[w % urls.len()].clone();
            let (stop, ok, failed, failures) =
                (stop.clone(), ok.clone(), failed.clone(), failures.clone());
            tokio::spawn(async move {
                let client = http();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let r = client
                        .put(format!("{base}/v1/kv/handover/{w}/{i}"))
                        .body("v")
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            let text =
                                format!("{}: {}", r.status(), r.text().await.unwrap_or_default());
                            failures.lock().unwrap().push(text);
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            failures.lock().unwrap().push(e.to_string());
                        }
                    }
                    i += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    for round in 0..5 {
        let leader = leader_of(&nodes, &[0, 1, 2]).await;
        let term = nodes[leader].agent.status().await["term"].as_u64().unwrap();
        let target_index = (leader + 1 + round % 2) % 3;
        let target = nodes[target_index].agent.status().await;
        let to = target["node_id"].as_u64().unwrap();
        // Asked through a third node, so the request is forwarded to the leader.
        let via = 3 - leader - target_index;
        let resp = http()
            .post(nodes[via].agent.url("/v1/cluster/leader/transfer"))
            .json(&serde_json::json!({ "to": to }))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "round {round}: {status} {body}");
        assert_eq!(
            body["leader_id"].as_u64(),
            Some(to),
            "round {round}: {body}"
        );
        assert_eq!(
            body["term"].as_u64(),
            Some(term + 1),
            "round {round}: the handover took more than one election: {body}"
        );
        // The next handover starts right away: the new leader waits out the lease openraft
        // gives its own vote (1.6 s here) before asking, rather than spend terms on it.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("{ok} writes acknowledged, {failed} failed across 5 handovers");
    assert!(ok > 100, "the load did not run: {ok} writes");
    assert_eq!(
        failed,
        0,
        "writes failed during handovers: {:?}",
        &failures.lock().unwrap()[..]
    );
}
