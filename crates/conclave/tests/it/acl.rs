//! Tokens and policies: every capability allowed with a token that holds it and refused
//! (403, naming it) with one that does not, anonymous callers refused (401) everywhere but
//! health; through the CLI, a follower and a client agent; bootstrap once; revocation.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::cluster::{cluster_env, eventually, start_static};
use crate::support::{
    Agent, TEST_TOKEN, anonymous_builder, cli, error_code, free_addr, secure_mode,
};

pub(crate) const ACL_ON: (&str, &str) = ("CONCLAVE_ACL__ENABLED", "true");

/// `conclave acl bootstrap -o json` against `agent`: the management secret. In secure mode
/// the agents bootstrapped themselves with the test token.
pub(crate) fn bootstrap(agent: &Agent) -> String {
    if secure_mode() {
        return TEST_TOKEN.to_owned();
    }
    let (code, out, err) = cli(
        &[
            "acl",
            "bootstrap",
            "-o",
            "json",
            "--addr",
            &agent.addr_flag(),
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("bootstrap JSON");
    assert!(v["accessor_id"].is_string(), "{v}");
    v["secret_id"].as_str().expect("secret_id").to_owned()
}

/// The part of a secret id that proves it (all of an operator-chosen one).
fn secret_part(secret_id: &str) -> &str {
    secret_id.split_once('.').map_or(secret_id, |(_, s)| s)
}

/// A request with `token` (none: anonymous); the status and body.
pub(crate) async fn call(
    agent: &Agent,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    // No default token: each call says which it sends.
    let client = anonymous_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut req = client.request(method, agent.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A token holding one policy made of `rules`, created with the management token.
pub(crate) async fn token_with(agent: &Agent, mgmt: &str, name: &str, rules: Value) -> String {
    let (st, body) = call(
        agent,
        Method::PUT,
        &format!("/v1/acl/policies/{name}"),
        Some(mgmt),
        Some(json!({ "rules": rules })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, body) = call(
        agent,
        Method::POST,
        "/v1/acl/tokens",
        Some(mgmt),
        Some(json!({ "policies": [name], "description": name })),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body["secret_id"].as_str().expect("secret").to_owned()
}

#[tokio::test]
async fn every_capability_is_granted_by_its_rule_and_refused_without_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Agent::start_env(dir.path(), &[], &[ACL_ON]).await;

    // Before bootstrap: health answers, everything else says how to start.
    let (st, _) = call(&a, Method::GET, "/v1/health", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let anonymous = anonymous_builder().build().expect("client");
    let resp = anonymous.get(a.url("/v1/kv/x")).send().await.expect("kv");
    let (st, code, body) = error_code(resp).await;
    assert_eq!((st.as_u16(), code.as_str()), (401, "unauthorized"));
    if !secure_mode() {
        assert!(body.to_string().contains("not bootstrapped"), "{body}");
    }

    let mgmt = bootstrap(&a);
    let (code, _, err) = cli(
        &[
            "acl",
            "bootstrap",
            "--addr",
            &a.addr_flag(),
            "--token",
            &mgmt,
        ],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("bootstrapped already"), "{err}");

    // One representative request per capability, with the rule that grants it.
    type Case = (Method, &'static str, Option<Value>, Value, &'static str);
    let cases: Vec<Case> = vec![
        (
            Method::PUT,
            "/v1/kv/app/color",
            None,
            json!([{"resource": "kv", "prefix": "app/", "access": "write"}]),
            "write on kv:app/color",
        ),
        (
            Method::GET,
            "/v1/kv?prefix=app/",
            None,
            json!([{"resource": "kv", "prefix": "app/", "access": "read"}]),
            "read on kv:app/",
        ),
        (
            Method::PUT,
            "/v1/config/remote-peers/default",
            Some(json!({"peers": []})),
            json!([{"resource": "config", "kind": "remote-peers", "access": "write"}]),
            "write on config:remote-peers",
        ),
        (
            Method::GET,
            "/v1/config",
            None,
            json!([{"resource": "config", "access": "read"}]),
            "read on config:*",
        ),
        (
            Method::POST,
            "/v1/elections/lock/campaign",
            Some(json!({"candidate": "c1", "ttl_ms": 5000})),
            json!([{"resource": "elections", "access": "write"}]),
            "write on elections",
        ),
        (
            Method::GET,
            "/v1/cluster/members",
            None,
            json!([{"resource": "cluster", "access": "read"}]),
            "read on cluster",
        ),
        (
            Method::GET,
            "/v1/snapshot",
            None,
            json!([{"resource": "snapshot", "access": "read"}]),
            "read on snapshot",
        ),
        (
            Method::GET,
            "/v1/acl/tokens",
            None,
            json!([{"resource": "acl", "access": "read"}]),
            "read on acl",
        ),
        (
            Method::POST,
            "/v1/agent/secrets/check",
            Some(json!({"references": ["${HOME}"]})),
            json!([{"resource": "cluster", "access": "admin"}]),
            "admin on cluster",
        ),
    ];
    // A token that can do nothing in particular (kv under another prefix).
    let nothing = token_with(
        &a,
        &mgmt,
        "elsewhere",
        json!([{"resource": "kv", "prefix": "zzz/", "access": "admin"}]),
    )
    .await;
    for (i, (method, path, body, rules, capability)) in cases.into_iter().enumerate() {
        let holder = token_with(&a, &mgmt, &format!("p{i}"), rules).await;
        let (st, got) = call(&a, method.clone(), path, Some(&holder), body.clone()).await;
        assert!(
            st.is_success(),
            "{method} {path} with its capability: {st} {got}"
        );
        let (st, got) = call(&a, method.clone(), path, Some(&nothing), body.clone()).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{method} {path}: {got}");
        assert_eq!(got["error"]["code"], "forbidden");
        let message = got["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(capability), "{method} {path}: {message}");
        assert!(
            !message.contains(&nothing),
            "a refusal never echoes the secret"
        );
        let (st, _) = call(&a, method.clone(), path, None, body).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{method} {path} anonymous");
    }

    // The CLI sends CONCLAVE_TOKEN; a write outside the token's prefix is refused by name.
    let writer = token_with(
        &a,
        &mgmt,
        "cli-writer",
        json!([{"resource": "kv", "prefix": "app/", "access": "write"}]),
    )
    .await;
    let with = |token: &str, args: &[&str]| {
        let mut full: Vec<&str> = args.to_vec();
        let addr = a.addr_flag();
        full.extend(["--addr", addr.as_str(), "--token", token]);
        let owned: Vec<String> = full.iter().map(|s| s.to_string()).collect();
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        cli(&refs, None)
    };
    let (code, out, err) = with(&writer, &["kv", "put", "app/size", "xl"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = with(&writer, &["kv", "put", "other/size", "xl"]);
    assert_eq!(code, 1);
    assert!(err.contains("lacks write on kv:other/size"), "{err}");
    let (code, out, _) = with(&writer, &["acl", "token", "self", "-o", "json"]);
    assert_eq!(code, 0);
    assert!(out.contains("cli-writer"), "{out}");

    // Revoked: refused at once, and the secret is never in the log.
    let accessor = writer.split('.').next().expect("accessor");
    let (code, out, err) = with(&mgmt, &["acl", "token", "delete", accessor]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = with(&writer, &["kv", "put", "app/size", "s"]);
    assert_eq!(code, 1);
    assert!(err.contains("not valid"), "{err}");
    let log = a.log_text();
    for secret in [&mgmt, &writer, &nothing] {
        assert!(
            !log.contains(secret_part(secret)),
            "a token secret is in the agent's log"
        );
    }
}

#[tokio::test]
async fn followers_and_client_agents_enforce_the_same_tokens() {
    let root = tempfile::tempdir().expect("tempdir");
    let env = cluster_env(&[ACL_ON]);
    let nodes = start_static(root.path(), 3, &[], &env).await;
    let mgmt = bootstrap(&nodes[0].agent);
    let reader = token_with(
        &nodes[0].agent,
        &mgmt,
        "reader",
        json!([
            {"resource": "kv", "prefix": "app/", "access": "read"},
            {"resource": "cluster", "access": "read"},
            {"resource": "config", "access": "read"},
            {"resource": "elections", "access": "read"}
        ]),
    )
    .await;
    let writer = token_with(
        &nodes[0].agent,
        &mgmt,
        "writer",
        json!([
            {"resource": "kv", "prefix": "app/", "access": "write"}
        ]),
    )
    .await;

    // Every node decides alike (the followers from their applied copy).
    for node in &nodes {
        let a = &node.agent;
        eventually(
            "the tokens reach every node",
            Duration::from_secs(10),
            || async {
                call(a, Method::PUT, "/v1/kv/app/k", Some(&writer), None)
                    .await
                    .0
                    .is_success()
            },
        )
        .await;
        let (st, body) = call(a, Method::PUT, "/v1/kv/app/k", Some(&reader), None).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
        let (st, _) = call(a, Method::GET, "/v1/kv/app/k", Some(&reader), None).await;
        assert_eq!(st, StatusCode::OK);
    }

    // A client agent: what it forwards is decided by the member, what it serves itself is
    // checked with a member; it calls members for itself with its agent token.
    let agent_token = token_with(
        &nodes[0].agent,
        &mgmt,
        "agent",
        json!([
            {"resource": "config", "access": "read"},
            {"resource": "elections", "access": "write"},
            {"resource": "cluster", "access": "read"}
        ]),
    )
    .await;
    let mut client_env = env.clone();
    let leaked: &'static str = Box::leak(agent_token.clone().into_boxed_str());
    client_env.push(("CONCLAVE_ACL__AGENT_TOKEN", leaked));
    let join = nodes[0].agent.rpc.to_string();
    let edge = Agent::spawn_env(
        &root.path().join("edge"),
        free_addr(),
        free_addr(),
        &["--role", "client", "--join", join.as_str()],
        &client_env,
    );
    edge.wait_healthy(Duration::from_secs(20)).await;
    let (st, _) = call(
        &edge,
        Method::PUT,
        "/v1/kv/app/via-edge",
        Some(&writer),
        None,
    )
    .await;
    assert!(st.is_success(), "{st}");
    let (st, body) = call(
        &edge,
        Method::PUT,
        "/v1/kv/app/via-edge",
        Some(&reader),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    let (st, _) = call(&edge, Method::GET, "/v1/members", None, None).await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "the client agent's own routes need a token"
    );
    let (st, body) = call(&edge, Method::GET, "/v1/members", Some(&writer), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("read on cluster")
    );
    let (st, _) = call(&edge, Method::GET, "/v1/members", Some(&reader), None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = call(&edge, Method::GET, "/v1/status", Some("junk.junk"), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = call(&edge, Method::GET, "/v1/health", None, None).await;
    assert_eq!(st, StatusCode::OK);

    // Revoked at one node, refused at every node within replication.
    let accessor = writer.split('.').next().expect("accessor").to_owned();
    let (st, body) = call(
        &nodes[1].agent,
        Method::DELETE,
        &format!("/v1/acl/tokens/{accessor}"),
        Some(&mgmt),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    for a in nodes.iter().map(|n| &n.agent).chain([&edge]) {
        eventually(
            "the revocation reaches every node",
            Duration::from_secs(5),
            || async {
                call(a, Method::PUT, "/v1/kv/app/k", Some(&writer), None)
                    .await
                    .0
                    == StatusCode::UNAUTHORIZED
            },
        )
        .await;
    }
    assert!(
        !edge
            .log_text()
            .contains(agent_token.split('.').nth(1).expect("secret"))
    );
}
