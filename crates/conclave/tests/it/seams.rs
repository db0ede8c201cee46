//! Forwarded cluster calls while a member is down or not yet caught up: the node-RPC replies
//! carry members whose replication is unknown, and a follower must still decode them.

use std::time::{Duration, Instant};

use crate::cluster::{cluster_env, leader_of, start_static};
use crate::support::{cli, free_addr, http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_reports_status_and_changes_members_while_a_member_is_unreachable() {
    let root = tempfile::tempdir().unwrap();
    let nodes = start_static(root.path(), 3, &[], &cluster_env(&[])).await;
    let leader = leader_of(&nodes, &[0, 1, 2]).await;
    let follower = &nodes[(leader + 1) % 3].agent;
    // A member nothing listens for: the leader never hears from it.
    let dead_addr = free_addr().to_string();
    let r = http()
        .post(nodes[leader].agent.url("/v1/cluster/members"))
        .body(format!(r#"{{"node_id": 99, "rpc_addr": "{dead_addr}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let started = Instant::now();
    let r = http()
        .get(follower.url("/v1/cluster/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let status: serde_json::Value = r.json().await.unwrap();
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 4, "{status}");
    let down = members.iter().find(|m| m["node_id"] == 99).unwrap();
    assert_eq!(down["healthy"], false, "{down}");
    assert_eq!(down["role"], "learner");
    assert!(down.get("last_contact_ms").is_none(), "{down}");
    let healthy = members.iter().filter(|m| m["healthy"] == true).count();
    assert_eq!(healthy, 3, "the three running voters are healthy: {status}");

    // The CLI through the follower: the list shows real health, an add succeeds (exit 0).
    let addr = follower.addr_flag();
    let (code, out, err) = cli(&["members", "list", "--addr", &addr], None);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.matches("UNHEALTHY").count(), 1, "{out}");
    let other = free_addr().to_string();
    let (code, out, err) = cli(&["members", "add", "98", &other, "--addr", &addr], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("98"), "{out}");

    // Removing the learners through the follower works too.
    for id in ["98", "99"] {
        let (code, out, err) = cli(&["members", "remove", id, "--addr", &addr], None);
        assert_eq!(code, 0, "{out}{err}");
    }
    let (code, out, _) = cli(&["members", "list", "--addr", &addr, "-o", "json"], None);
    assert_eq!(code, 0);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
}

/// A healthy formation, a follower's crash and return, and a clean shutdown log no ERROR;
/// the leader reports the follower's loss and recovery once each, not every retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_say_a_peer_is_lost_and_back_once_and_nothing_at_error() {
    use crate::cluster::{eventually, put};
    use crate::support::Agent;
    let root = tempfile::tempdir().unwrap();
    let env = cluster_env(&[]);
    let mut nodes = start_static(root.path(), 3, &[], &env).await;
    let leader = leader_of(&nodes, &[0, 1, 2]).await;
    let f = (leader + 1) % 3;
    nodes[f].agent.kill9();
    let mut logs = vec![nodes[f].agent.log_text()];
    // Long enough for several of openraft's 500 ms retry rounds.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(put(&nodes[leader].agent, "k", "v").await.status(), 200);
    let (h, r) = (nodes[f].agent.http, nodes[f].agent.rpc);
    let dir = nodes[f].dir.clone();
    nodes[f].agent = Agent::spawn_env(&dir, h, r, &[], &env);
    nodes[f].agent.wait_healthy(Duration::from_secs(20)).await;
    let leader_log = || nodes[leader].agent.log_text();
    eventually(
        "the leader logs the recovery",
        Duration::from_secs(10),
        || {
            let log = leader_log();
            async move { log.contains("a member answers again") }
        },
    )
    .await;
    let log = leader_log();
    assert_eq!(
        log.matches("lost contact with a member").count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches("a member answers again").count(), 1, "{log}");
    assert!(!log.contains("openraft::replication"), "{log}");
    for node in &mut nodes {
        let status = node.agent.signal_and_wait("TERM", Duration::from_secs(15));
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
        logs.push(node.agent.log_text());
    }
    for log in &logs {
        let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
        assert!(errors.is_empty(), "ERROR lines: {errors:#?}");
    }
}

/// A planned stop of the leader (SIGTERM) fails no write of a client that retries on
/// `503 no_leader`: the leader drains, hands leadership over, then stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_the_leader_fails_no_write_of_a_retrying_client() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_static(root.path(), 3, &[], &cluster_env(&[])).await;
    let leader = leader_of(&nodes, &[0, 1, 2]).await;
    let followers: Vec<String> = (0..3)
        .filter(|i| *i != leader)
        .map(|i| nodes[i].agent.url(""))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (base, stop) = (followers[c % 2].clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let http = http();
            let (mut acked, mut retries, mut failures) = (Vec::new(), 0u32, Vec::new());
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w/{c}/{i}");
                // cas=0: a retry can never write twice.
                let r = http
                    .put(format!("{base}/v1/kv/{key}?cas=0"))
                    .body("v")
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        acked.push(key);
                        i += 1;
                    }
                    Ok(r) => {
                        let status = r.status();
                        let body: serde_json::Value = r.json().await.unwrap_or_default();
                        if status == 503 && body["error"]["code"] == "no_leader" {
                            retries += 1;
                        } else {
                            failures.push(format!("{key}: {status} {body}"));
                            i += 1;
                        }
                    }
                    Err(e) => {
                        failures.push(format!("{key}: {e}"));
                        i += 1;
                    }
                }
            }
            (acked, retries, failures)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = nodes[leader]
        .agent
        .signal_and_wait("TERM", Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for c in clients {
        let (a, retries, failures) = c.await.unwrap();
        assert!(
            failures.is_empty(),
            "failed writes: {failures:#?} (retries {retries})"
        );
        acked.extend(a);
    }
    assert!(acked.len() > 20, "only {} writes", acked.len());
    let log = nodes[leader].agent.log_text();
    assert!(log.contains("handed leadership over"), "{log}");
    // Every acknowledged write is there, read linearizably through a survivor.
    let r = http()
        .get(format!("{}/v1/kv?prefix=w/&limit=10000", followers[0]))
        .send()
        .await
        .unwrap();
    let listed: serde_json::Value = r.json().await.unwrap();
    let keys: std::collections::BTreeSet<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["key"].as_str())
        .collect();
    for k in &acked {
        assert!(keys.contains(k.as_str()), "acknowledged {k} is missing");
    }
}
