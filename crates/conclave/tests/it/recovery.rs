//! Failures and recovery on a 3-node cluster: leader crashes and pauses, no lost
//! acknowledged write across kills, a node catching up from a snapshot, backups and
//! recovery after losing a quorum.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::{
    cluster_env, eventually, get_json, get_value, leader_of, put, signal, start_static,
};
use crate::support::{Agent, cli, free_addr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_9_fails_over_and_the_old_leader_catches_up() {
    let root = tempfile::tempdir().unwrap();
    let env = cluster_env(&[]);
    let mut nodes = start_static(root.path(), 3, &[], &env).await;
    let leader = leader_of(&nodes, &[0, 1, 2]).await;
    assert!(
        put(&nodes[leader].agent, "before", "1")
            .await
            .status()
            .is_success()
    );
    let (http_addr, rpc_addr) = (nodes[leader].agent.http, nodes[leader].agent.rpc);
    nodes[leader].agent.kill9();
    let live: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    // A write through a survivor succeeds once a new leader is elected (it waits it out).
    let r = put(&nodes[live[0]].agent, "after", "2").await;
    assert!(r.status().is_success(), "{:?}", r.text().await);
    let new_leader = leader_of(&nodes, &live).await;
    assert_ne!(new_leader, leader);
    for i in 0..50 {
        let r = put(&nodes[live[1]].agent, &format!("more/{i}"), "x").await;
        assert!(r.status().is_success());
    }
    // The old leader restarts on the same addresses, rejoins and catches up.
    let dir = nodes[leader].dir.clone();
    nodes[leader].agent = Agent::spawn_env(&dir, http_addr, rpc_addr, &[], &env);
    nodes[leader]
        .agent
        .wait_healthy(Duration::from_secs(30))
        .await;
    let old = &nodes[leader].agent;
    eventually("old leader caught up", Duration::from_secs(20), || async {
        get_value(old, "more/49", true).await.as_deref() == Some("x")
    })
    .await;
    assert_eq!(get_value(old, "after", false).await.as_deref(), Some("2"));
}

/// With election timeouts of 10–20 s (and openraft's leader lease of the maximum before
/// that), only the crash detector (`conclave-raft::failover`) can replace a killed leader
/// within seconds; a leader that is merely paused keeps its term. The bound on the failover
/// leaves room for a loaded 2-core machine (it usually takes about 1 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_leader_is_replaced_before_the_election_timeout_a_paused_one_is_not() {
    let root = tempfile::tempdir().unwrap();
    let env = cluster_env(&[
        ("CONCLAVE_RAFT__ELECTION_TIMEOUT_MIN_MS", "10000"),
        ("CONCLAVE_RAFT__ELECTION_TIMEOUT_MAX_MS", "20000"),
    ]);
    let mut nodes = start_static(root.path(), 3, &[], &env).await;
    let leader = leader_of(&nodes, &[0, 1, 2]).await;
    let term = |s: Value| s["term"].as_u64().expect("status has a term");
    let term_before = term(
        get_json(&nodes[leader].agent.url("/v1/status"))
            .await
            .unwrap(),
    );

    // Paused for 1.5 s: its RPC port still accepts connections, so nobody campaigns.
    let pid = nodes[leader].agent.pid().unwrap();
    signal(pid, "STOP").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal(pid, "CONT").await;
    assert!(
        put(&nodes[leader].agent, "k", "1")
            .await
            .status()
            .is_success()
    );
    let term_after = term(
        get_json(&nodes[leader].agent.url("/v1/status"))
            .await
            .unwrap(),
    );
    assert_eq!(
        term_before, term_after,
        "a paused leader must not be deposed"
    );

    // Killed: its port refuses connections, and a survivor campaigns at once.
    nodes[leader].agent.kill9();
    let killed = Instant::now();
    let live: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let r = put(&nodes[live[0]].agent, "k", "2").await;
    assert!(r.status().is_success(), "{:?}", r.text().await);
    let took = killed.elapsed();
    eprintln!("failover: a write was acknowledged {took:?} after the leader was killed");
    if took >= Duration::from_secs(8) {
        // Say why: the survivors' logs show whether they saw the refusal and campaigned.
        let logs: String = nodes
            .iter()
            .map(|n| {
                format!(
                    "--- {}\n{}",
                    n.agent.log.display(),
                    log_tail(&n.agent.log, 60)
                )
            })
            .collect();
        panic!(
            "a write was acknowledged {took:?} after the kill; the election timer alone needs 20 s or more\n{logs}"
        );
    }
    assert_ne!(leader_of(&nodes, &live).await, leader);
}

/// Outcome counts of the CAS-increment clients.
#[derive(Default)]
struct Tally {
    acked: Vec<u64>,
    ambiguous: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_counter_loses_no_acknowledged_increment_across_leader_kills_and_a_pause() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let root = tempfile::tempdir().unwrap();
    let env = cluster_env(&[]);
    let mut nodes = start_static(root.path(), 3, &[], &env).await;
    let urls: Arc<Mutex<Vec<String>>> =
        Arc::new(Mutex::new(nodes.iter().map(|n| n.agent.url("")).collect()));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut clients = Vec::new();
    for c in 0..8usize {
        let (urls, stop, tally) = (urls.clone(), stop.clone(), tally.clone());
        clients.push(tokio::spawn(async move {
            let client = crate::support::http_builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap();
            let mut target = c;
            while !stop.load(Ordering::Relaxed) {
                let base = {
                    let u = urls.lock().unwrap();
                    u[target % u.len()].clone()
                };
                target += 1;
                let Ok(r) = client.get(format!("{base}/v1/kv/counter")).send().await else {
                    continue;
                };
                let (current, rev) = match r.status().as_u16() {
                    200 => {
                        let rev: u64 = r.headers()["x-conclave-revision"]
                            .to_str()
                            .unwrap()
                            .parse()
                            .unwrap();
                        let v: u64 = r.text().await.unwrap().parse().unwrap();
                        (v, rev)
                    }
                    404 => (0, 0),
                    _ => continue,
                };
                let next = current + 1;
                let r = client
                    .put(format!("{base}/v1/kv/counter?cas={rev}"))
                    .body(next.to_string())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => tally.lock().unwrap().acked.push(next),
                    Ok(r) if r.status() == 409 => {}
                    Ok(r) => {
                        let body = r.text().await.unwrap_or_default();
                        if body.contains("indeterminate") {
                            tally.lock().unwrap().ambiguous += 1;
                        }
                    }
                    // The request may have reached the node before it died.
                    Err(_) => tally.lock().unwrap().ambiguous += 1,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Kill the leader twice (restarting it in between), then pause a follower.
    for _ in 0..2 {
        let l = leader_of(&nodes, &[0, 1, 2]).await;
        let (h, r) = (nodes[l].agent.http, nodes[l].agent.rpc);
        nodes[l].agent.kill9();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let dir = nodes[l].dir.clone();
        nodes[l].agent = Agent::spawn_env(&dir, h, r, &[], &env);
        nodes[l].agent.wait_healthy(Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let l = leader_of(&nodes, &[0, 1, 2]).await;
    let f = (l + 1) % 3;
    let pid = nodes[f].agent.pid().expect("running");
    signal(pid, "STOP").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal(pid, "CONT").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }

    let (mut acked, ambiguous) = {
        let t = tally.lock().unwrap();
        (t.acked.clone(), t.ambiguous)
    };
    acked.sort_unstable();
    let n = acked.len();
    acked.dedup();
    assert_eq!(
        acked.len(),
        n,
        "two clients were told they set the same value: a lost write"
    );
    assert!(n > 20, "too few increments to mean anything: {n}");
    // Every node agrees on the final value once it has caught up.
    let mut finals = Vec::new();
    for node in &nodes {
        let deadline = Instant::now() + Duration::from_secs(20);
        let value: u64 = loop {
            let lin = get_value(&node.agent, "counter", false).await;
            let stale = get_value(&node.agent, "counter", true).await;
            if let (Some(a), Some(b)) = (lin, stale)
                && a == b
            {
                break a.parse().unwrap();
            }
            assert!(Instant::now() < deadline, "node did not converge");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        finals.push(value);
    }
    assert!(
        finals.iter().all(|v| *v == finals[0]),
        "nodes disagree: {finals:?}"
    );
    let last = finals[0];
    eprintln!(
        "counter {last}: {n} acknowledged increments, {} ambiguous",
        ambiguous
    );
    assert!(
        last >= n as u64 && last <= n as u64 + ambiguous,
        "counter {last}, acknowledged {n}, ambiguous {}",
        ambiguous
    );
    if ambiguous == 0 {
        assert_eq!(
            last, n as u64,
            "counter must equal the acknowledged increments"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_during_compaction_catches_up_from_a_50mb_snapshot() {
    let root = tempfile::tempdir().unwrap();
    // openraft 0.9 gives every append one heartbeat interval; megabyte entries in a debug
    // build on two busy cores need a longer one than the other tests use.
    let env = cluster_env(&[
        ("CONCLAVE_RAFT__SNAPSHOT_THRESHOLD", "20"),
        ("CONCLAVE_RAFT__LOGS_KEPT_AFTER_SNAPSHOT", "5"),
        ("CONCLAVE_RAFT__HEARTBEAT_MS", "500"),
        ("CONCLAVE_RAFT__ELECTION_TIMEOUT_MIN_MS", "3000"),
        ("CONCLAVE_RAFT__ELECTION_TIMEOUT_MAX_MS", "6000"),
    ]);
    let mut nodes = start_static(root.path(), 3, &[], &env).await;
    let leader = leader_of(&nodes, &[0, 1, 2]).await;
    let down = (leader + 1) % 3;
    let (h, r) = (nodes[down].agent.http, nodes[down].agent.rpc);
    nodes[down].agent.kill9();
    // 52 values of 1 MiB: a state over 50 MB, snapshotted and the log purged meanwhile.
    let blob = "x".repeat(1024 * 1024);
    for i in 0..52 {
        let r = put(&nodes[leader].agent, &format!("big/{i:02}"), &blob).await;
        assert!(r.status().is_success(), "{:?}", r.text().await);
    }
    let st = nodes[leader].agent.status().await;
    assert!(
        st["storage"]["log_first_index"].as_u64().unwrap_or(0) > 10,
        "the leader compacted its log: {st}"
    );
    let dir = nodes[down].dir.clone();
    nodes[down].agent = Agent::spawn_env(&dir, h, r, &[], &env);
    let back = &nodes[down].agent;
    back.wait_healthy(Duration::from_secs(60)).await;
    eventually(
        "caught up from a snapshot",
        Duration::from_secs(60),
        || async {
            get_value(back, "big/51", true)
                .await
                .is_some_and(|v| v.len() == blob.len())
        },
    )
    .await;
    let st = back.status().await;
    assert!(st["storage"]["snapshot_index"].as_u64().is_some(), "{st}");
    assert_eq!(st["storage"]["keys"].as_u64(), Some(52), "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_save_restore_and_recover_after_losing_two_of_three() {
    let root = tempfile::tempdir().unwrap();
    let env = cluster_env(&[]);
    let mut nodes = start_static(root.path(), 3, &[], &env).await;
    for i in 0..30 {
        let r = put(
            &nodes[i % 3].agent,
            &format!("data/{i:02}"),
            &format!("v{i}"),
        )
        .await;
        assert!(r.status().is_success());
    }

    // save → restore into a fresh data dir → identical data.
    let file = root.path().join("backup.snap");
    let addr = nodes[1].agent.addr_flag();
    let (code, out, err) = cli(
        &["snapshot", "save", file.to_str().unwrap(), "--addr", &addr],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("30 keys"), "{out}");
    let restored_dir = root.path().join("restored");
    let (h, r) = (free_addr(), free_addr());
    let (code, out, err) = cli(
        &[
            "snapshot",
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            restored_dir.join("data").to_str().unwrap(),
            "--rpc-addr",
            &r.to_string(),
            "--http-addr",
            &h.to_string(),
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    let restored = Agent::spawn_env(&restored_dir, h, r, &[], &env);
    restored.wait_healthy(Duration::from_secs(30)).await;
    for i in 0..30 {
        assert_eq!(
            get_value(&restored, &format!("data/{i:02}"), false).await,
            Some(format!("v{i}"))
        );
    }
    // The restore is in the restored cluster's audit log, by the operator.
    let restores = get_json(&restored.url("/v1/audit?kind=snapshot"))
        .await
        .expect("audit");
    assert_eq!(restores[0]["action"], "restore", "{restores}");
    assert_eq!(restores[0]["actor"], "operator");
    // A damaged file is refused with the reason.
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let (code, _, err) = cli(
        &[
            "snapshot",
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            root.path().join("x").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("checksum"), "{err}");

    // Quorum loss: two of three die for good; the survivor is recovered.
    let leader = leader_of(&nodes, &[0, 1, 2]).await;
    let survivor = (leader + 1) % 3;
    for (i, node) in nodes.iter_mut().enumerate() {
        if i != survivor {
            node.agent.kill9();
        }
    }
    let (h, r) = (nodes[survivor].agent.http, nodes[survivor].agent.rpc);
    nodes[survivor]
        .agent
        .signal_and_wait("TERM", Duration::from_secs(10));
    let data = nodes[survivor].dir.join("data");
    let (code, out, err) = cli(
        &["recover", "--data-dir", data.to_str().unwrap()],
        Some(b"no\n"),
    );
    assert_eq!(
        code, 1,
        "unconfirmed recovery must change nothing: {out}{err}"
    );
    let (code, out, err) = cli(
        &["recover", "--data-dir", data.to_str().unwrap()],
        Some(b"recover\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("last log"), "{out}");
    let dir = nodes[survivor].dir.clone();
    nodes[survivor].agent = Agent::spawn_env(&dir, h, r, &[], &env);
    let back = &nodes[survivor].agent;
    back.wait_healthy(Duration::from_secs(30)).await;
    for i in 0..30 {
        assert_eq!(
            get_value(back, &format!("data/{i:02}"), false).await,
            Some(format!("v{i}"))
        );
    }
    assert!(
        put(back, "after-recovery", "yes")
            .await
            .status()
            .is_success()
    );
    let recovered = get_json(&back.url("/v1/audit?kind=recovery"))
        .await
        .expect("audit");
    assert_eq!(recovered[0]["actor"], "operator", "{recovered}");
    assert_eq!(
        recovered[0]["details"]["voters_before"]
            .as_str()
            .map(|v| v.split(',').count()),
        Some(3),
        "{recovered}"
    );
    // A fresh node re-joins the recovered cluster.
    let rejoin = Agent::spawn_env(
        &root.path().join("rejoin"),
        free_addr(),
        free_addr(),
        &["--join", &r.to_string()],
        &env,
    );
    rejoin.wait_healthy(Duration::from_secs(30)).await;
    assert_eq!(
        get_value(&rejoin, "after-recovery", false).await.as_deref(),
        Some("yes")
    );
    // Its join is noted, by the joining node itself.
    let joined = rejoin.status().await["node_id"].as_u64().expect("node id");
    eventually(
        "the join is in the audit log",
        Duration::from_secs(10),
        || async {
            get_json(&back.url("/v1/audit?kind=membership"))
                .await
                .and_then(|es| es.as_array().cloned())
                .is_some_and(|es| {
                    es.iter().any(|e| {
                        e["action"] == "join" && e["actor"] == format!("node:{joined}").as_str()
                    })
                })
        },
    )
    .await;
}

/// The last `lines` lines of an agent's log.
fn log_tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Unmounts on drop, also when the test fails.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: mounts a 4 MiB tmpfs as the data directory (run by .ci/run)"]
async fn a_full_disk_stops_the_agent_with_the_reason_and_keeps_every_acknowledged_write() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("n");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mount = |size: &str| {
        std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&data)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    assert!(mount("4m"), "mounting a tmpfs needs root");
    let _unmount = Mounted(data.clone());
    let mut agent = Agent::spawn(&dir, free_addr(), free_addr(), &[]);
    agent.wait_healthy(Duration::from_secs(20)).await;
    let value = "x".repeat(200_000);
    let mut acked = Vec::new();
    for i in 0..40 {
        let sent = crate::support::http()
            .put(agent.url(&format!("/v1/kv/k{i}")))
            .body(value.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == 200 => acked.push(i),
            _ => break,
        }
    }
    assert!(
        !acked.is_empty() && acked.len() < 40,
        "the disk never filled: {} writes acknowledged",
        acked.len()
    );
    let exit = agent
        .wait_exit(Duration::from_secs(20))
        .expect("an agent with a full disk exits");
    assert!(!exit.success(), "it exits non-zero");
    let log = agent.log_text();
    assert!(
        log.contains("No space left on device") && log.contains("can no longer serve"),
        "{log}"
    );
    // With room again, every acknowledged write is there.
    let remounted = std::process::Command::new("mount")
        .args(["-o", "remount,size=32m"])
        .arg(&data)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(remounted);
    let again = Agent::spawn(&dir, free_addr(), free_addr(), &[]);
    again.wait_healthy(Duration::from_secs(20)).await;
    for i in acked {
        assert_eq!(
            get_value(&again, &format!("k{i}"), false).await.as_deref(),
            Some(value.as_str()),
            "acknowledged write k{i} was lost"
        );
    }
}
