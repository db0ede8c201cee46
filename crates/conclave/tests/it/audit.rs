//! The audit log of a scripted scenario on a 3-node cluster with ACLs: each change, with
//! the right actor, source, request id and outcome, read on any node (newest first, paged,
//! filtered), through the CLI, followed as a stream; never a secret in it.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::acl::{ACL_ON, bootstrap, call, token_with};
use crate::cluster::{cluster_env, start_static};
use crate::support::{anonymous_builder, cli};

/// The accessor of a secret id (`<accessor>.<secret>`), as `token/self` reports it.
async fn accessor(agent: &crate::support::Agent, secret: &str) -> String {
    let (st, me) = call(agent, Method::GET, "/v1/acl/token/self", Some(secret), None).await;
    assert_eq!(st, StatusCode::OK, "{me}");
    me["token"]["accessor_id"]
        .as_str()
        .expect("accessor")
        .to_owned()
}

/// Entries (newest first) from `GET path` with `token`.
async fn audit(agent: &crate::support::Agent, path: &str, token: &str) -> Vec<Value> {
    let (st, body) = call(agent, Method::GET, path, Some(token), None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body.as_array().expect("a list").clone()
}

/// The newest applied entry matching `kind`, `action` and `subject`.
fn find<'a>(entries: &'a [Value], kind: &str, action: &str, subject: &str) -> &'a Value {
    entries
        .iter()
        .find(|e| {
            e["kind"] == kind
                && e["action"] == action
                && e["subject"] == subject
                && e["outcome"] == "applied"
        })
        .unwrap_or_else(|| panic!("no {kind} {action} {subject} in {entries:#?}"))
}

#[tokio::test]
async fn a_scripted_scenario_shows_each_change_with_its_actor() {
    let root = tempfile::tempdir().expect("tempdir");
    let env = cluster_env(&[ACL_ON, ("CONCLAVE_AUDIT__KV_PREFIXES", "[\"prod/\"]")]);
    let nodes = start_static(root.path(), 3, &[], &env).await;
    // Bootstrapped through any node (forwarded to the leader); then the leader, by token.
    let mgmt = bootstrap(&nodes[0].agent);
    let mut leader = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while leader.is_none() {
        assert!(std::time::Instant::now() < deadline, "no leader");
        let (_, s) = call(
            &nodes[0].agent,
            Method::GET,
            "/v1/status",
            Some(&mgmt),
            None,
        )
        .await;
        leader = s["leader_id"].as_u64().map(|id| id as usize - 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leader = leader.expect("a leader");
    let follower = (leader + 1) % 3;
    let (a, f) = (&nodes[leader].agent, &nodes[follower].agent);
    let mgmt_accessor = accessor(a, &mgmt).await;
    let ops = token_with(
        a,
        &mgmt,
        "ops",
        json!([
            {"resource": "config", "access": "write"},
            {"resource": "kv", "prefix": "", "access": "write"},
            {"resource": "cluster", "access": "write"},
            {"resource": "elections", "access": "write"},
            {"resource": "audit", "access": "read"}
        ]),
    )
    .await;
    let ops_accessor = accessor(a, &ops).await;
    let reader = token_with(
        a,
        &mgmt,
        "kv-reader",
        json!([{"resource": "kv", "prefix": "", "access": "read"}]),
    )
    .await;

    // Through a follower (forwarded to the leader), with the caller's request id.
    let client = anonymous_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let doc = json!({"peers": [{"node_id": "c1", "address": "10.0.0.1:7000", "type": "static"}]});
    let resp = client
        .put(f.url("/v1/config/remote-peers/main"))
        .bearer_auth(&ops)
        .header("content-type", "application/json")
        .header("x-request-id", "scenario-1")
        .body(doc.to_string())
        .send()
        .await
        .expect("put document");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-request-id"], "scenario-1", "echoed");
    // A request without an id gets one.
    let resp = client
        .put(f.url("/v1/kv/prod/db"))
        .bearer_auth(&ops)
        .body("postgres://secret-value")
        .send()
        .await
        .expect("put kv");
    assert_eq!(resp.status(), StatusCode::OK);
    let minted = resp.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    assert_eq!(minted.len(), 16, "{minted}");
    // Outside [audit] kv_prefixes: not recorded.
    let (st, _) = call(f, Method::PUT, "/v1/kv/dev/x", Some(&ops), Some(json!(1))).await;
    assert_eq!(st, StatusCode::OK);
    // A failed compare-and-swap is recorded as refused.
    let (st, _) = call(
        a,
        Method::PUT,
        "/v1/config/remote-peers/main?cas=999",
        Some(&ops),
        Some(doc.clone()),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, body) = call(
        f,
        Method::POST,
        "/v1/elections/lock/campaign",
        Some(&ops),
        Some(json!({"candidate": "c1", "ttl_ms": 5000})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    // Membership: demote a follower and promote it back.
    let third = nodes
        .iter()
        .enumerate()
        .find(|(i, _)| *i != leader && *i != follower)
        .map(|(i, _)| i + 1)
        .expect("a third node");
    for action in ["demote", "promote"] {
        let (st, body) = call(
            f,
            Method::POST,
            &format!("/v1/cluster/members/{third}/{action}"),
            Some(&ops),
            None,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{action}: {body}");
    }
    // A leadership transfer, credited as such by the new leader's entry.
    let (st, body) = call(
        f,
        Method::POST,
        "/v1/cluster/leader/transfer",
        Some(&ops),
        Some(json!({"to": follower as u64 + 1})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");

    let ops_actor = format!("token:{ops_accessor}");
    // Read on the third node: every node holds the whole log.
    let third_node = &nodes[third - 1].agent;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (st, body) = call(
            third_node,
            Method::GET,
            "/v1/audit?limit=100",
            Some(&ops),
            None,
        )
        .await;
        let done = st == StatusCode::OK
            && body.as_array().is_some_and(|es| {
                es.iter().any(|e| {
                    e["kind"] == "leadership"
                        && e["action"] == "elected"
                        && e["details"]["reason"] == "transfer"
                }) && es
                    .iter()
                    .filter(|e| e["actor"] == ops_actor.as_str())
                    .count()
                    >= 7
            });
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the scenario's entries did not all arrive: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let entries = audit(third_node, "/v1/audit?limit=100", &ops).await;
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );

    let put = find(&entries, "config", "put", "remote-peers/main");
    assert_eq!(put["actor"], ops_actor);
    assert_eq!(put["request_id"], "scenario-1");
    assert!(
        put["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("127.0.0.1:")),
        "{put}"
    );
    assert_eq!(put["outcome"], "applied");
    assert!(entries.iter().any(|e| {
        e["subject"] == "remote-peers/main"
            && e["outcome"] == "refused"
            && e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("compare-and-swap"))
    }));
    let kv = find(&entries, "kv", "put", "prod/db");
    assert_eq!(
        (&kv["actor"], &kv["request_id"]),
        (&json!(ops_actor), &json!(minted))
    );
    assert!(
        !entries.iter().any(|e| e["subject"] == "dev/x"),
        "outside kv_prefixes"
    );
    let elected = find(&entries, "election", "elected", "lock");
    assert_eq!(
        (&elected["actor"], &elected["details"]["holder"]),
        (&json!(ops_actor), &json!("c1"))
    );
    for action in ["demote", "promote"] {
        let e = find(&entries, "membership", action, &format!("node {third}"));
        assert_eq!(
            (&e["actor"], &e["outcome"]),
            (&json!(ops_actor), &json!("applied"))
        );
    }
    let asked = find(
        &entries,
        "leadership",
        "transfer_requested",
        &format!("node {}", follower + 1),
    );
    assert_eq!(asked["actor"], ops_actor);
    let new_leader = find(
        &entries,
        "leadership",
        "elected",
        &format!("node {}", follower + 1),
    );
    assert_eq!(new_leader["actor"], format!("node:{}", follower + 1));
    assert_eq!(new_leader["details"]["from"], (leader + 1).to_string());
    assert_eq!(new_leader["details"]["reason"], "transfer");
    let policy = find(&entries, "acl", "put", "policy ops");
    assert_eq!(policy["actor"], format!("token:{mgmt_accessor}"));
    let created = find(&entries, "acl", "create", &format!("token {ops_accessor}"));
    assert_eq!(created["details"]["policies"], "ops");
    // The document's history names its author.
    let (st, history) = call(
        f,
        Method::GET,
        "/v1/config/remote-peers/main/history",
        Some(&ops),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(history["versions"][0]["author"], ops_actor, "{history}");

    // Filters and paging, on the IPAM seed's path too.
    let acl_only = audit(f, "/v1/audit?kind=acl&limit=100", &ops).await;
    assert!(!acl_only.is_empty() && acl_only.iter().all(|e| e["kind"] == "acl"));
    let by_ops = audit(
        f,
        &format!("/v1/audit?actor={ops_accessor}&limit=100"),
        &ops,
    )
    .await;
    assert!(by_ops.iter().all(|e| e["actor"] == ops_actor) && by_ops.len() >= 7);
    let resp = client
        .get(f.url("/api/v1/audit?limit=2"))
        .bearer_auth(&ops)
        .send()
        .await
        .expect("page");
    let cursor = resp.headers()["x-conclave-audit-cursor"]
        .to_str()
        .expect("cursor")
        .to_owned();
    let page: Vec<Value> = resp.json().await.expect("page body");
    assert_eq!(page.len(), 2);
    let next = audit(f, &format!("/v1/audit?limit=2&cursor={cursor}"), &ops).await;
    assert!(next[0]["seq"].as_u64() < page[1]["seq"].as_u64());
    let future = audit(f, "/v1/audit?since=2999-01-01T00:00:00Z", &ops).await;
    assert!(future.is_empty());
    let (st, body) = call(f, Method::GET, "/v1/audit?kind=nope", Some(&ops), None).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");

    // Who may read it: anonymous 401, a token without audit:read 403 naming it.
    let (st, _) = call(f, Method::GET, "/v1/audit", None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, body) = call(f, Method::GET, "/api/v1/audit", Some(&reader), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(body.to_string().contains("audit"), "{body}");

    // The CLI, as an operator reads it.
    let (code, out, err) = cli(
        &[
            "audit",
            "--kind",
            "membership",
            "--addr",
            &f.addr_flag(),
            "--token",
            &ops,
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("demote") && out.contains(&ops_actor), "{out}");
    let (code, out, err) = cli(
        &[
            "audit",
            "--limit",
            "3",
            "-o",
            "json",
            "--addr",
            &f.addr_flag(),
            "--token",
            &ops,
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let listed: Vec<Value> = serde_json::from_str(&out).expect("JSON list");
    assert_eq!(listed.len(), 3);

    // Nothing secret in the whole log: no token secret, no value.
    let all = serde_json::to_string(&audit(f, "/v1/audit?limit=1000", &ops).await).unwrap();
    for secret in [&mgmt, &ops, &reader] {
        let proof = secret.split_once('.').map_or(secret.as_str(), |(_, s)| s);
        assert!(!all.contains(proof), "a token's secret is in the audit log");
    }
    assert!(!all.contains("secret-value"), "a value is in the audit log");
}

#[tokio::test]
async fn a_follower_of_the_log_sees_new_entries_as_they_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = crate::support::Agent::start_env(dir.path(), &[], &[ACL_ON]).await;
    let mgmt = bootstrap(&a);
    let client = anonymous_builder().build().expect("client");
    let mut stream = client
        .get(a.url("/v1/audit/watch?kind=config&heartbeat_ms=200"))
        .bearer_auth(&mgmt)
        .send()
        .await
        .expect("watch");
    assert_eq!(stream.status(), StatusCode::OK);
    for name in ["one", "two"] {
        let (st, body) = call(
            &a,
            Method::PUT,
            &format!("/v1/config/schema/{name}"),
            Some(&mgmt),
            Some(json!({"type": "object"})),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{body}");
    }
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(seen.contains("schema/one") && seen.contains("schema/two")) {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("entries within 10 s")
            .expect("stream")
            .expect("open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: entry"), "{seen}");
    assert!(
        seen.find("schema/one") < seen.find("schema/two"),
        "in order: {seen}"
    );
    // Resuming from a sequence number replays what followed it.
    let first_seq: u64 = seen
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .and_then(|s| s.trim().parse().ok())
        .expect("an id");
    let mut again = client
        .get(a.url(&format!("/v1/audit/watch?after={first_seq}&kind=config")))
        .bearer_auth(&mgmt)
        .send()
        .await
        .expect("resume");
    let chunk = tokio::time::timeout(Duration::from_secs(10), again.chunk())
        .await
        .expect("replayed")
        .expect("stream")
        .expect("open");
    let text = String::from_utf8_lossy(&chunk);
    assert!(
        text.contains("schema/two") && !text.contains("schema/one"),
        "{text}"
    );
}
