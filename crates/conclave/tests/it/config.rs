//! The configuration registry on a real agent: validation (422 with paths, 404, 413),
//! history, `?revision=`, CAS, and `conclave apply` (dry run, diff, conflicts).

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use serde_json::{Value, json};

use crate::support::{Agent, cli, error_code, http};

const PEERS: &str = r#"{"peers": [{"node_id": "cloud-node-1", "address": "remote.example.com:9000",
    "type": "cloud", "oauth2": {"token_url": "https://id.example.com/token",
    "client_id": "lan-cluster-client", "client_secret": "${GW_SECRET}", "scope": "sync"}}]}"#;

async fn put_doc(agent: &Agent, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    http()
        .put(agent.url(&format!("/v1/config/{path}")))
        .body(body)
        .send()
        .await
        .expect("put request")
}

/// The JSON paths of a 422's violations, in order.
fn violation_paths(body: &Value) -> Vec<&str> {
    body["error"]["violations"]
        .as_array()
        .expect("a 422 lists its violations")
        .iter()
        .map(|v| v["path"].as_str().expect("each violation has a path"))
        .collect()
}

pub(crate) async fn get_doc(agent: &Agent, path: &str) -> reqwest::Response {
    http()
        .get(agent.url(&format!("/v1/config/{path}")))
        .send()
        .await
        .expect("get request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_validated_versioned_and_compare_and_swapped() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path(), &[]).await;

    let r = put_doc(&agent, "remote-peers/default?cas=0", PEERS).await;
    assert_eq!(r.status(), 200);
    let first: Value = r.json().await.unwrap();
    let rev1 = first["revision"].as_u64().unwrap();
    assert_eq!(first["hash"].as_str().unwrap().len(), 64);

    // A key twice in one object: JSON readers disagree on which counts, so it is refused.
    let twice = r#"{"peers": [{"node_id": "a", "address": "x.example:1", "type": "static",
        "address": "evil.example:1"}]}"#;
    let r = put_doc(&agent, "remote-peers/default", twice.to_string()).await;
    let (status, code, body) = error_code(r).await;
    assert_eq!((status.as_u16(), code.as_str()), (422, "invalid_document"));
    assert_eq!(violation_paths(&body), vec!["/peers/0/address"], "{body}");

    // Every bad field comes back with its JSON path; the inline secret is not echoed.
    let bad = json!({"peers": [
        {"node_id": "a", "address": "no-port", "oauth2": {"token_url": "ftp://x",
         "client_id": "c", "client_secret": "hunter2-inline-secret"}},
        {"node_id": "a", "address": "h:1", "type": "satellite"}
    ]});
    let r = put_doc(&agent, "remote-peers/default", bad.to_string()).await;
    let (status, code, body) = error_code(r).await;
    assert_eq!((status.as_u16(), code.as_str()), (422, "invalid_document"));
    let paths = violation_paths(&body);
    assert_eq!(
        paths,
        vec!["/peers/1/type"],
        "schema errors come first: {body}"
    );
    let bad = json!({"peers": [
        {"node_id": "a", "address": "no-port", "oauth2": {"token_url": "ftp://x",
         "client_id": "c", "client_secret": "hunter2-inline-secret"}},
        {"node_id": "a", "address": "h:1"}
    ]});
    let r = put_doc(&agent, "remote-peers/default", bad.to_string()).await;
    let (status, _, body) = error_code(r).await;
    assert_eq!(status, 422);
    let paths = violation_paths(&body);
    assert_eq!(
        paths,
        vec![
            "/peers/0/address",
            "/peers/0/oauth2/token_url",
            "/peers/0/oauth2/client_secret",
            "/peers/1/node_id"
        ]
    );
    assert!(!body.to_string().contains("hunter2"), "{body}");

    // Not JSON → 400; unknown kind → 404 with the way to register one; too big → 413.
    let r = put_doc(&agent, "remote-peers/default", "{not json").await;
    assert_eq!(error_code(r).await.1, "bad_request");
    let r = put_doc(&agent, "gateway-settings/default", r#"{"port": 1}"#).await;
    let (status, code, body) = error_code(r).await;
    assert_eq!((status.as_u16(), code.as_str()), (404, "unknown_kind"));
    assert!(
        body["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("/v1/config/schema/")
    );
    let big = format!(r#"{{"peers": [], "pad": "{}"}}"#, "x".repeat(1_100_000));
    let r = put_doc(&agent, "remote-peers/big", big).await;
    assert_eq!(error_code(r).await.0, 413);
    let r = get_doc(&agent, "remote-peers/missing").await;
    assert_eq!(error_code(r).await.1, "document_not_found");

    // A registered JSON Schema makes a kind.
    let schema = json!({"type": "object", "required": ["port"], "additionalProperties": false,
                        "properties": {"port": {"type": "integer", "maximum": 65535}}});
    let r = put_doc(&agent, "schema/gateway-settings", schema.to_string()).await;
    assert_eq!(r.status(), 200);
    let r = put_doc(
        &agent,
        "gateway-settings/default",
        r#"{"port": 70000, "x": 1}"#,
    )
    .await;
    let (status, _, body) = error_code(r).await;
    assert_eq!(status, 422);
    let paths = violation_paths(&body);
    assert!(paths.contains(&"/port") && paths.contains(&""), "{body}");
    assert_eq!(
        put_doc(&agent, "gateway-settings/default", r#"{"port": 9000}"#)
            .await
            .status(),
        200
    );

    // CAS: a stale revision is refused with the current one.
    let changed = PEERS.replace("remote.example.com:9000", "remote.example.com:9443");
    let r = put_doc(&agent, "remote-peers/default?cas=0", changed.clone()).await;
    let (status, code, body) = error_code(r).await;
    assert_eq!((status.as_u16(), code.as_str()), (409, "cas_conflict"));
    assert_eq!(body["error"]["current_revision"], rev1);
    let r = put_doc(&agent, &format!("remote-peers/default?cas={rev1}"), changed).await;
    assert_eq!(r.status(), 200);
    let rev2 = r.json::<Value>().await.unwrap()["revision"]
        .as_u64()
        .unwrap();

    // History, newest first, and any version by revision.
    let h: Value = get_doc(&agent, "remote-peers/default/history")
        .await
        .json()
        .await
        .unwrap();
    let revs: Vec<u64> = h["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(revs, vec![rev2, rev1]);
    let old: Value = get_doc(
        &agent,
        &format!("remote-peers/default?revision={}", rev2 - 1),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(old["revision"], rev1);
    assert_eq!(
        old["content"]["peers"][0]["address"],
        "remote.example.com:9000"
    );
    // A revision the store has not reached is refused, not answered with today's version.
    let future = get_doc(&agent, "remote-peers/default?revision=1000000").await;
    let (status, code, _) = error_code(future).await;
    assert_eq!((status.as_u16(), code.as_str()), (404, "future_revision"));
    let now: Value = get_doc(&agent, "remote-peers/default")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        now["content"]["peers"][0]["address"],
        "remote.example.com:9443"
    );
    assert_eq!(
        now["content"]["peers"][0]["oauth2"]["client_secret"],
        "${GW_SECRET}"
    );

    // The KV API does not reach into the registry's keys.
    let r = http()
        .put(agent.url("/v1/kv/_conclave/config/remote-peers/default"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.0, 400);
}

pub(crate) fn write_file(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_shows_diffs_honours_dry_run_and_reports_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path(), &[]).await;
    let addr = agent.addr_flag();
    let yaml = "kind: remote-peers\nname: default\ncontent:\n  peers:\n    - node_id: cloud-node-1\n      address: remote.example.com:9000\n---\nkind: schema\nname: gateway-settings\ncontent:\n  type: object\n  properties:\n    port: {type: integer}\n---\nkind: gateway-settings\nname: default\ncontent:\n  port: 9000\n";
    let file = write_file(dir.path(), "cluster.yaml", yaml);

    // Offline validation, then a dry run: diffs shown, nothing written.
    let (code, out, err) = cli(&["config", "validate", "-f", &file], None);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.matches(": valid").count(), 3, "{out}");
    let (code, out, err) = cli(&["apply", "-f", &file, "--dry-run", "--addr", &addr], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("+++ remote-peers/default (file)"), "{out}");
    assert!(out.contains("3 would change"), "{out}");
    let list = crate::cluster::get_json(&agent.url("/v1/config"))
        .await
        .unwrap();
    assert_eq!(list, json!([]), "a dry run wrote something");
    let status: Value = agent.status().await;
    assert_eq!(status["revision"], 0);

    // Apply, then apply again: nothing left to change.
    let (code, out, err) = cli(&["apply", "-f", &file, "--addr", &addr], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("3 changed"), "{out}");
    let (code, out, _) = cli(&["apply", "-f", &file, "--addr", &addr], None);
    assert_eq!(code, 0);
    assert!(out.contains("0 changed, 3 unchanged"), "{out}");

    // A change made between the diff and the write is reported, not overwritten.
    let changed = yaml.replace("port: 9000", "port: 9001");
    let file = write_file(dir.path(), "cluster.yaml", &changed);
    let mut apply = crate::support::command()
        .args(["apply", "-f", &file, "--confirm", "--addr", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(apply.stdout.take().unwrap());
    let mut seen = String::new();
    let mut buf = Vec::new();
    // Read up to the prompt (it has no newline).
    while !seen.contains("[y/N]") {
        buf.clear();
        let n = stdout.read_until(b']', &mut buf).unwrap();
        assert!(n > 0, "apply ended before asking: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf));
    }
    assert!(
        seen.contains("-  \"port\": 9000") && seen.contains("+  \"port\": 9001"),
        "{seen}"
    );
    let r = put_doc(&agent, "gateway-settings/default", r#"{"port": 7777}"#).await;
    assert_eq!(r.status(), 200);
    apply.stdin.take().unwrap().write_all(b"y\n").unwrap();
    let out = apply.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("gateway-settings/default: changed by someone else"),
        "{err}"
    );
    let now: Value = get_doc(&agent, "gateway-settings/default")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        now["content"]["port"], 7777,
        "the conflicting write was overwritten"
    );

    // Invalid files: every problem, nothing applied.
    let bad = write_file(
        dir.path(),
        "bad.json",
        r#"[{"kind": "remote-peers", "name": "x", "content": {"peers": [{"node_id": "a", "address": "a"}]}}]"#,
    );
    let (code, _, err) = cli(&["apply", "-f", &bad, "--addr", &addr], None);
    assert_eq!(code, 1);
    assert!(
        err.contains("nothing applied") && err.contains("/peers/0/address"),
        "{err}"
    );
    let (code, _, err) = cli(&["config", "validate", "-f", &bad], None);
    assert_eq!(code, 1);
    assert!(err.contains("/peers/0/address"), "{err}");

    // The CLI reads documents and their history.
    let (code, out, _) = cli(
        &["config", "get", "gateway-settings/default", "--addr", &addr],
        None,
    );
    assert_eq!(code, 0);
    assert!(out.contains("7777"), "{out}");
    let (code, out, _) = cli(
        &[
            "config",
            "history",
            "gateway-settings/default",
            "--addr",
            &addr,
        ],
        None,
    );
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 3, "{out}");
}

async fn node_statuses(base: &str, doc: &str) -> Vec<(u64, String, String)> {
    let Some(st) = crate::cluster::get_json(&format!("{base}/v1/config/status")).await else {
        return Vec::new();
    };
    st["documents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["name"].as_str().unwrap()
            ) == doc
        })
        .flat_map(|d| d["nodes"].as_array().unwrap().clone())
        .map(|n| {
            (
                n["node_id"].as_u64().unwrap(),
                n["status"].as_str().unwrap().to_owned(),
                n["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn node_id(agent: &Agent) -> u64 {
    agent.status().await["node_id"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_applies_documents_and_drift_is_reported_until_it_catches_up() {
    use crate::cluster::{cluster_env, eventually, start_static};
    use std::time::Duration;

    let root = tempfile::tempdir().unwrap();
    let env = cluster_env(&[
        ("CONCLAVE_CONFIG_SYNC__DRIFT_AFTER", "1s"),
        (
            "CONCLAVE_CONFIG_SYNC__MUST_MATCH",
            "raft.heartbeat_ms,max_value_bytes",
        ),
    ]);
    let mut nodes = start_static(root.path(), 3, &[], &env).await;
    let ids = [
        node_id(&nodes[0].agent).await,
        node_id(&nodes[1].agent).await,
        node_id(&nodes[2].agent).await,
    ];
    // A client agent (no Raft log) follows the registry through its forwarding API too.
    let join = nodes[0].agent.rpc.to_string();
    let client = Agent::spawn_env(
        &root.path().join("client"),
        crate::support::free_addr(),
        crate::support::free_addr(),
        &["--role", "client", "--join", join.as_str()],
        &env,
    );
    let client_url = client.url("/v1/status");
    eventually("the client answers", Duration::from_secs(20), || async {
        crate::cluster::get_json(&client_url).await.is_some()
    })
    .await;
    let client_id = crate::cluster::get_json(&client_url).await.unwrap()["node_id"]
        .as_u64()
        .unwrap();
    let base = nodes[0].agent.url("");
    let addr0 = nodes[0].agent.addr_flag();
    let put_at = |body: String| {
        let url = format!("{base}/v1/config/remote-peers/default");
        async move { http().put(url).body(body).send().await.unwrap().status() }
    };
    assert_eq!(put_at(PEERS.to_string()).await, 200);
    let all_in_sync = || async {
        let s = node_statuses(&base, "remote-peers/default").await;
        s.len() == 4 && s.iter().all(|n| n.1 == "in_sync")
    };
    eventually("all four applied", Duration::from_secs(20), all_in_sync).await;
    assert!(
        node_statuses(&base, "remote-peers/default")
            .await
            .iter()
            .any(|n| n.0 == client_id),
        "the client is not in the status"
    );
    let text = std::fs::read_to_string(
        root.path()
            .join("client/data/config/remote-peers/default.json"),
    )
    .unwrap();
    assert!(text.contains("remote.example.com:9000"), "{text}");
    for n in &nodes {
        let file = n.dir.join("data/config/remote-peers/default.json");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("remote.example.com:9000"), "{text}");
    }

    // Node 3 is down while the document changes: it drifts (and says so) until it is back.
    let (h3, r3) = (nodes[2].agent.http, nodes[2].agent.rpc);
    nodes[2].agent.kill9();
    let changed = PEERS.replace("remote.example.com:9000", "remote.example.com:9443");
    assert_eq!(put_at(changed).await, 200);
    eventually(
        "node 3 reported drifted",
        Duration::from_secs(20),
        || async {
            let s = node_statuses(&base, "remote-peers/default").await;
            s.iter().any(|n| n.0 == ids[2] && n.1 == "drifted")
                && s.iter().filter(|n| n.1 == "in_sync").count() == 3
        },
    )
    .await;
    let (code, out, _) = cli(
        &["config", "status", "--fail-on-drift", "--addr", &addr0],
        None,
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("drifted"), "{out}");
    // It comes back with a different max_value_bytes, a declared must-match setting.
    let dir3 = nodes[2].dir.clone();
    let mut env3 = env.clone();
    env3.push(("CONCLAVE_MAX_VALUE_BYTES", "2000000"));
    nodes[2].agent = Agent::spawn_env(&dir3, h3, r3, &[], &env3);
    eventually(
        "node 3 applied after its restart",
        Duration::from_secs(30),
        all_in_sync,
    )
    .await;
    let text = std::fs::read_to_string(dir3.join("data/config/remote-peers/default.json")).unwrap();
    assert!(text.contains("remote.example.com:9443"), "{text}");

    // A rendered file edited by hand is reported, and restored by the next revision.
    let file2 = nodes[1].dir.join("data/config/remote-peers/default.json");
    std::fs::write(&file2, "{\"peers\": []}\n").unwrap();
    eventually(
        "node 2 reported modified",
        Duration::from_secs(20),
        || async {
            node_statuses(&base, "remote-peers/default")
                .await
                .iter()
                .any(|n| n.0 == ids[1] && n.1 == "modified")
        },
    )
    .await;
    let (code, _, _) = cli(
        &["config", "status", "--fail-on-drift", "--addr", &addr0],
        None,
    );
    assert_eq!(code, 1);
    let again = PEERS.replace("remote.example.com:9000", "remote.example.com:9444");
    assert_eq!(put_at(again).await, 200);
    eventually("all in sync again", Duration::from_secs(20), all_in_sync).await;

    // Declared settings are compared: the heartbeat matches, max_value_bytes does not.
    let st = crate::cluster::get_json(&format!("{base}/v1/config/status"))
        .await
        .unwrap();
    assert_eq!(st["drifted"], 0, "{st}");
    let settings = st["settings"].as_array().unwrap();
    let mismatch = |name: &str| {
        settings
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} not compared: {st}"))["mismatch"]
            .clone()
    };
    assert_eq!(mismatch("raft.heartbeat_ms"), false);
    assert_eq!(mismatch("max_value_bytes"), true);
    let (code, out, err) = cli(
        &["config", "status", "--fail-on-drift", "--addr", &addr0],
        None,
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("settings differ") && out.contains("max_value_bytes"),
        "{out}{err}"
    );
}
