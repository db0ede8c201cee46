//! Request ids: every answer echoes `X-Request-Id` (the caller's, or a minted one), an error
//! body carries it, and every node the request crosses logs it — a client agent forwards it
//! to the voter that serves the request.

use std::time::Duration;

use serde_json::Value;

use crate::cluster::{cluster_env, eventually, start_static};
use crate::support::{Agent, free_addr, http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_is_echoed_put_in_error_bodies_and_logged_on_every_node_it_crosses() {
    let root = tempfile::tempdir().unwrap();
    let env = cluster_env(&[]);
    let voters = start_static(
        root.path(),
        1,
        &["--log-level", "info,conclave_api=debug"],
        &env,
    )
    .await;
    let voter = &voters[0].agent;

    // The caller's id: echoed, and in the error body.
    let r = http()
        .get(voter.url("/v1/kv/no-such-key"))
        .header("x-request-id", "trace-abc-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-request-id"], "trace-abc-1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], "trace-abc-1", "{body}");
    assert_eq!(body["error"]["code"], "key_not_found");

    // None given: one is minted, the same in the header and the body.
    let r = http()
        .get(voter.url("/v1/kv/no-such-key"))
        .send()
        .await
        .unwrap();
    let minted = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], minted.as_str());
    // An unusable one (a space) is replaced, not echoed.
    let r = http()
        .get(voter.url("/v1/kv/no-such-key"))
        .header("x-request-id", "two words")
        .send()
        .await
        .unwrap();
    assert_ne!(r.headers()["x-request-id"], "two words");

    // Through a client agent: it forwards the id; both nodes log it.
    let rpc = voter.rpc.to_string();
    let client = Agent::spawn_env(
        &root.path().join("client"),
        free_addr(),
        free_addr(),
        &[
            "--role",
            "client",
            "--join",
            &rpc,
            "--log-level",
            "info,conclave_api=debug",
        ],
        &env,
    );
    client.wait_healthy(Duration::from_secs(20)).await;
    let r = http()
        .get(client.url("/v1/kv/no-such-key"))
        .header("x-request-id", "trace-fwd-2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], "trace-fwd-2", "{body}");
    eventually(
        "both nodes logged the id",
        Duration::from_secs(5),
        || async {
            voter.log_text().contains("trace-fwd-2") && client.log_text().contains("trace-fwd-2")
        },
    )
    .await;
}
