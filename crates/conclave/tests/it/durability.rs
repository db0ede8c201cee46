//! Every acknowledged write survives kill -9, with the revision it was acknowledged with.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{Agent, http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Agent::start(dir.path(), &[]).await;
    let acked: Arc<Mutex<Vec<(String, u64, String)>>> = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..16 {
        let url = a.url("");
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let c = http();
            // Bounded by count; the kill below ends it much sooner.
            for i in 0..5000 {
                let key = format!("d/{t}/{i}");
                let value = format!("{t}-{i}-{}", "x".repeat(i % 200));
                let Ok(r) = c
                    .put(format!("{url}/v1/kv/{key}"))
                    .body(value.clone())
                    .send()
                    .await
                else {
                    return;
                };
                if !r.status().is_success() {
                    return;
                }
                let Ok(v) = r.json::<serde_json::Value>().await else {
                    return;
                };
                let rev = v["revision"].as_u64().expect("revision");
                acked.lock().unwrap().push((key, rev, value));
            }
        }));
    }
    // Let writes flow, then kill mid-stream.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while acked.lock().unwrap().len() < 1500 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.kill9();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 100,
        "too few writes acknowledged: {}",
        acked.len()
    );

    let b = Agent::spawn(dir.path(), a.http, a.rpc, &[]);
    b.wait_healthy(Duration::from_secs(20)).await;
    let c = http();
    let mut revisions: Vec<u64> = acked.iter().map(|(_, r, _)| *r).collect();
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(revisions.len(), acked.len(), "two acks share a revision");
    for (key, rev, value) in &acked {
        let r = c.get(b.url(&format!("/v1/kv/{key}"))).send().await.unwrap();
        assert_eq!(
            r.status(),
            200,
            "acknowledged key {key} (revision {rev}) lost"
        );
        assert_eq!(
            r.headers()["x-conclave-revision"].to_str().unwrap(),
            rev.to_string(),
            "{key}"
        );
        assert_eq!(&r.text().await.unwrap(), value, "{key} torn");
    }
    let s: serde_json::Value = b.status().await;
    assert!(s["revision"].as_u64().unwrap() >= *revisions.last().unwrap());
}
