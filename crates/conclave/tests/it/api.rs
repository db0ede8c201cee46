//! The HTTP API contract of the fixed core.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{Agent, error_code, http};

#[tokio::test]
async fn kv_contract() {
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::start(dir.path(), &[]).await;
    let c = http();

    // PUT → revision; keys may contain '/' and percent-encoded bytes.
    let r = c
        .put(a.url("/v1/kv/app/db/url"))
        .body("pg://x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["revision"], 1);
    let r = c
        .put(a.url("/v1/kv/caf%C3%A9%2Fx"))
        .body("é")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["revision"], 2);

    // GET → raw value + headers; linearizable by default, stale on request.
    let r = c.get(a.url("/v1/kv/app/db/url")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-conclave-revision"], "1");
    assert_eq!(r.headers()["x-conclave-index"], "2");
    assert_eq!(r.text().await.unwrap(), "pg://x");
    let r = c
        .get(a.url("/v1/kv/caf%C3%A9/x?consistency=stale"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "é");

    // CAS: 0 = must not exist; R = mod revision; 409 carries the current revision.
    let r = c
        .put(a.url("/v1/kv/app/db/url?cas=0"))
        .body("y")
        .send()
        .await
        .unwrap();
    let (st, code, body) = error_code(r).await;
    assert_eq!((st, code.as_str()), (StatusCode::CONFLICT, "cas_conflict"));
    assert_eq!(body["error"]["current_revision"], 1);
    let r = c
        .put(a.url("/v1/kv/app/db/url?cas=1"))
        .body("pg://y")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["revision"], 3);
    let r = c
        .put(a.url("/v1/kv/new?cas=0"))
        .body("n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["revision"], 4);

    // Listing with prefix, limit and continuation.
    for i in 0..5 {
        c.put(a.url(&format!("/v1/kv/list/{i}")))
            .body(format!("v{i}"))
            .send()
            .await
            .unwrap();
    }
    let r = c
        .get(a.url("/v1/kv?prefix=list/&limit=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let next = r.headers()["x-conclave-next-after"]
        .to_str()
        .unwrap()
        .to_string();
    let items: Vec<Value> = r.json().await.unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["key"], "list/0");
    assert_eq!(items[0]["value"], "v0");
    assert!(items[0]["revision"].as_u64().unwrap() > 4);
    let r = c
        .get(a.url(&format!("/v1/kv?prefix=list/&limit=10&after={next}")))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("x-conclave-next-after").is_none());
    let items: Vec<Value> = r.json().await.unwrap();
    let keys: Vec<&str> = items.iter().map(|i| i["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["list/2", "list/3", "list/4"]);

    // Binary values list as base64.
    c.put(a.url("/v1/kv/bin"))
        .body(vec![0xffu8, 0, 1])
        .send()
        .await
        .unwrap();
    let items: Vec<Value> = c
        .get(a.url("/v1/kv?prefix=bin"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(items[0]["value_base64"], "/wAB");
    assert!(items[0].get("value").is_none());

    // DELETE, with and without CAS.
    let r = c.delete(a.url("/v1/kv/new?cas=99")).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let r = c.delete(a.url("/v1/kv/new")).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["deleted"], true);
    let rev = v["revision"].as_u64().unwrap();
    let v: Value = c
        .delete(a.url("/v1/kv/new"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["deleted"], false);
    assert_eq!(v["revision"].as_u64().unwrap(), rev);

    // Missing key → 404 JSON.
    let (st, code, _) = error_code(c.get(a.url("/v1/kv/new")).send().await.unwrap()).await;
    assert_eq!(
        (st, code.as_str()),
        (StatusCode::NOT_FOUND, "key_not_found")
    );
}

#[tokio::test]
async fn status_health_ready_and_route_errors() {
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::start(
        dir.path(),
        &["--node-id", "42", "--cluster-id", "test-cluster"],
    )
    .await;
    let c = http();
    c.put(a.url("/v1/kv/k")).body("v").send().await.unwrap();

    let s: Value = a.status().await;
    assert_eq!(s["node_id"], 42);
    assert_eq!(s["cluster_id"], "test-cluster");
    assert_eq!(s["leader_id"], 42);
    assert_eq!(s["role"], "leader");
    assert!(s["term"].as_u64().unwrap() >= 1);
    assert_eq!(s["revision"], 1);
    assert!(s["commit_index"].as_u64().unwrap() >= s["applied_index"].as_u64().unwrap());
    assert!(s["applied_index"].as_u64().unwrap() >= 2);
    assert_eq!(s["members"][0]["node_id"], 42);

    for path in ["/v1/health", "/v1/ready"] {
        let r = c.get(a.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");
    }

    let (st, code, _) = error_code(c.get(a.url("/v2/anything")).send().await.unwrap()).await;
    assert_eq!((st, code.as_str()), (StatusCode::NOT_FOUND, "not_found"));
    let (st, code, _) = error_code(c.post(a.url("/v1/kv/k")).send().await.unwrap()).await;
    assert_eq!(
        (st, code.as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    let (st, _, _) = error_code(c.delete(a.url("/v1/status")).send().await.unwrap()).await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn restart_keeps_identity_and_data_and_sigterm_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Agent::start(dir.path(), &[]).await;
    let c = http();
    for i in 0..50 {
        c.put(a.url(&format!("/v1/kv/r/{i}")))
            .body(format!("{i}"))
            .send()
            .await
            .unwrap();
    }
    let before: Value = a.status().await;
    let started = std::time::Instant::now();
    let st = a
        .signal_and_wait("TERM", std::time::Duration::from_secs(5))
        .expect("agent exits within 5 s of SIGTERM");
    assert!(st.success(), "exit status {st:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(a.log_text().contains("conclave agent stopped"));

    let b = Agent::spawn(dir.path(), a.http, a.rpc, &[]);
    b.wait_healthy(std::time::Duration::from_secs(20)).await;
    let after: Value = b.status().await;
    assert_eq!(before["node_id"], after["node_id"]);
    assert_eq!(before["cluster_id"], after["cluster_id"]);
    assert_eq!(after["revision"], 50);
    let r = c.get(b.url("/v1/kv/r/49")).send().await.unwrap();
    assert_eq!(r.headers()["x-conclave-revision"], "50");
    assert_eq!(r.text().await.unwrap(), "49");
}

#[tokio::test]
async fn snapshots_and_log_compaction_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[raft]\nsnapshot_threshold = 100\nlogs_kept_after_snapshot = 10\n",
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    let mut a = Agent::start(dir.path(), &["--config", &cfg]).await;
    let c = http();
    for i in 0..400 {
        c.put(a.url(&format!("/v1/kv/s/{}", i % 37)))
            .body(format!("{i}"))
            .send()
            .await
            .unwrap();
    }
    // Wait for a snapshot to be taken and the log purged behind it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let s: Value = a.status().await;
        if s["storage"]["snapshot_index"].as_u64().unwrap_or(0) >= 300
            && s["storage"]["log_first_index"].as_u64().unwrap() > 0
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot/purge: {s}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    a.kill9();
    let b = Agent::spawn(dir.path(), a.http, a.rpc, &["--config", &cfg]);
    b.wait_healthy(std::time::Duration::from_secs(20)).await;
    let s: Value = b.status().await;
    assert_eq!(s["revision"], 400);
    assert_eq!(s["storage"]["keys"], 37);
    let r = c.get(b.url("/v1/kv/s/3")).send().await.unwrap();
    // The last write to s/3 was i = 3 + 37 * 10.
    assert_eq!(r.text().await.unwrap(), "373");
}
