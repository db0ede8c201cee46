//! The ConfigMap publisher on a real 3-voter cluster against the in-test Kubernetes API
//! server (`fake_kube`): one agent (the election's holder) writes the seed's keys, keeps the
//! keys that are not its own, retries conflicting writes, reports 401/403 and recovers, rides
//! out slow answers, and hands the writing over when it dies.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{Node, cluster_env, eventually, get_json, start_static_each};
use crate::fake_kube::{self, FakeKube};
use crate::support::http;

const KEY: &str = "test/peers";

fn sink_config(kube: &FakeKube, dir: &std::path::Path, i: usize) -> String {
    let kubeconfig = kube.kubeconfig(dir, &format!("agent-{i}"));
    let hook_log = dir.join(format!("hook-{i}.log"));
    let path = dir.join(format!("agent-{i}.toml"));
    std::fs::write(
        &path,
        format!(
            "[[publish]]\nkind = \"configmap\"\nnamespace = \"test\"\nconfigmap = \"peers\"\nkubeconfig = {:?}\nroles = [\"voter\"]\ndebounce = \"200ms\"\nfields = {{ role = \"nodeType\", peer_string = \"peerString\" }}\nhook = {{ exec = [\"sh\", \"-c\", \"echo $CONCLAVE_PEERS_COUNT $CONCLAVE_PEERS_FILE >> {}\"], attempts = 1 }}\n",
            kubeconfig.display(),
            hook_log.display()
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// The tokens of the successful writes so far.
fn writers(kube: &FakeKube) -> Vec<String> {
    kube.writes()
        .into_iter()
        .filter(|w| w.status < 300)
        .map(|w| w.token)
        .collect()
}

fn peers_json(kube: &FakeKube) -> Vec<Value> {
    kube.data(KEY)
        .and_then(|d| d.get("peers.json").cloned())
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default()
}

fn zone_published(kube: &FakeKube, zone: &str) -> bool {
    peers_json(kube).iter().any(|p| p["tags"]["zone"] == zone)
}

async fn set_zone(node: &Node, zone: &str) {
    let r = http()
        .put(node.agent.url("/v1/agent/tags"))
        .body(format!("{{\"zone\": \"{zone}\"}}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
}

async fn held(node: &Node) -> String {
    get_json(&node.agent.url("/v1/publish/status"))
        .await
        .and_then(|s| s[0]["held"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agent_writes_the_configmap_through_conflicts_refusals_slowness_and_its_death() {
    let kube = fake_kube::start().await;
    // The ConfigMap exists (as deploy/kubernetes creates it) with a key of someone else's.
    kube.state.lock().unwrap().objects.insert(
        KEY.into(),
        (1, [("extra".to_string(), "keep".to_string())].into()),
    );
    let root = tempfile::tempdir().unwrap();
    let per_node: Vec<Vec<String>> = (0..3)
        .map(|i| vec!["--config".into(), sink_config(&kube, root.path(), i)])
        .collect();
    let mut nodes = start_static_each(root.path(), per_node, &cluster_env(&[])).await;

    eventually(
        "the ConfigMap lists 3 voters",
        Duration::from_secs(30),
        || async {
            kube.data(KEY)
                .is_some_and(|d| d.get("peer_count").is_some_and(|c| c.trim() == "3"))
        },
    )
    .await;
    let data = kube.data(KEY).unwrap();
    assert_eq!(data["extra"], "keep", "another key is kept: {data:?}");
    assert_eq!(data["peers.txt"].lines().count(), 3);
    let json = peers_json(&kube);
    assert!(
        json.iter()
            .all(|p| p["nodeType"] == "voter" && p["peerString"].is_string()),
        "{json:?}"
    );
    let first: BTreeSet<String> = writers(&kube).into_iter().collect();
    assert_eq!(first.len(), 1, "one writer: {first:?}");
    let writer_token = first.into_iter().next().unwrap();
    let w: usize = writer_token.trim_start_matches("agent-").parse().unwrap();
    let others: Vec<usize> = (0..3).filter(|&i| i != w).collect();
    // Every agent's hook runs (the writer's after its write, the others' once they see the
    // ConfigMap hold their list), but only the writer wrote.
    for (i, node) in nodes.iter().enumerate() {
        let hook = root.path().join(format!("hook-{i}.log"));
        eventually(
            &format!("node {i}'s hook ran"),
            Duration::from_secs(15),
            || async {
                std::fs::read_to_string(&hook).is_ok_and(|t| t.contains("3 configmap:test/peers"))
            },
        )
        .await;
        let status = get_json(&node.agent.url("/v1/publish/status"))
            .await
            .unwrap();
        let writes = status[0]["writes"].as_u64().unwrap();
        assert_eq!(writes > 0, i == w, "node {i} (writer {w}): {status}");
        assert_eq!(status[0]["published_count"], 3, "{status}");
    }

    // Two conflicting writes in a row: read again, write again.
    kube.state.lock().unwrap().faults.conflicts = 2;
    set_zone(&nodes[others[0]], "b").await;
    eventually(
        "published through 2 conflicts",
        Duration::from_secs(20),
        || async { zone_published(&kube, "b") },
    )
    .await;
    let conflicts = kube
        .writes()
        .iter()
        .filter(|w| w.status == 409 && w.method == "PUT")
        .count();
    assert_eq!(conflicts, 2);

    // 403 (a Role that does not cover the object) and 401 (a rotated token): reported, held,
    // and written once the API lets it.
    for (fault, code, zone) in [("forbidden", "403", "c"), ("unauthorized", "401", "d")] {
        {
            let mut s = kube.state.lock().unwrap();
            s.faults.forbidden = fault == "forbidden";
            s.faults.unauthorized = fault == "unauthorized";
        }
        set_zone(&nodes[others[0]], zone).await;
        eventually(
            &format!("{code} is reported"),
            Duration::from_secs(20),
            || async { held(&nodes[w]).await.contains(code) },
        )
        .await;
        assert!(!zone_published(&kube, zone));
        {
            let mut s = kube.state.lock().unwrap();
            s.faults.forbidden = false;
            s.faults.unauthorized = false;
        }
        eventually(
            &format!("written after {code}"),
            Duration::from_secs(20),
            || async { zone_published(&kube, zone) },
        )
        .await;
    }

    // A slow API server (1.5 s an answer): still written.
    kube.state.lock().unwrap().faults.delay = Duration::from_millis(1500);
    set_zone(&nodes[others[0]], "e").await;
    eventually(
        "written through a slow API",
        Duration::from_secs(30),
        || async { zone_published(&kube, "e") },
    )
    .await;
    kube.state.lock().unwrap().faults.delay = Duration::ZERO;
    let so_far: BTreeSet<String> = writers(&kube).into_iter().collect();
    assert_eq!(so_far.len(), 1, "still one writer: {so_far:?}");

    // The writer dies: another agent takes the election and publishes the two left.
    let before = writers(&kube).len();
    nodes[w].agent.kill9();
    eventually(
        "another agent writes 2 peers",
        Duration::from_secs(40),
        || async {
            kube.data(KEY)
                .is_some_and(|d| d.get("peer_count").is_some_and(|c| c.trim() == "2"))
        },
    )
    .await;
    let after: BTreeSet<String> = writers(&kube)[before..].iter().cloned().collect();
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(!after.contains(&writer_token));
    assert_eq!(kube.data(KEY).unwrap()["extra"], "keep");
}
