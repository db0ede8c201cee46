//! Multi-node clusters of real agents on loopback: formation, membership, failover, catch-up,
//! moving addresses, refusals. Every agent is killed by PID when its test ends.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Agent, cli, error_code, free_addr, http};

pub const TOKEN: &str = "it-cluster-secret";

/// Faster than the defaults so tests stay short, slow enough for 2 busy cores.
pub fn cluster_env(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut env = vec![
        ("CONCLAVE_RAFT__HEARTBEAT_MS", "100"),
        ("CONCLAVE_RAFT__ELECTION_TIMEOUT_MIN_MS", "800"),
        ("CONCLAVE_RAFT__ELECTION_TIMEOUT_MAX_MS", "1600"),
        ("CONCLAVE_CLUSTER_TOKEN", TOKEN),
    ];
    env.extend_from_slice(extra);
    env
}

/// Poll `check` until it holds or `timeout` passes (then fail with `what`).
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The body of a GET that must succeed (e.g. `/metrics`).
pub async fn get_text(url: &str) -> String {
    crate::support::http()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub async fn get_json(url: &str) -> Option<Value> {
    let r = http().get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

pub async fn put(agent: &Agent, key: &str, value: &str) -> reqwest::Response {
    http()
        .put(agent.url(&format!("/v1/kv/{key}")))
        .body(value.to_string())
        .send()
        .await
        .expect("put request")
}

pub async fn get_value(agent: &Agent, key: &str, stale: bool) -> Option<String> {
    let q = if stale { "?consistency=stale" } else { "" };
    let r = http()
        .get(agent.url(&format!("/v1/kv/{key}{q}")))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok()
}

pub struct Node {
    pub dir: PathBuf,
    pub agent: Agent,
}

/// Start `n` nodes formed statically with `--initial-members`, and wait until all are healthy.
pub async fn start_static(
    root: &Path,
    n: usize,
    extra_args: &[&str],
    env: &[(&'static str, &'static str)],
) -> Vec<Node> {
    let per_node = vec![extra_args.iter().map(|a| a.to_string()).collect(); n];
    start_static_each(root, per_node, env).await
}

/// `--initial-members` for nodes 1..n at these (HTTP, RPC) addresses.
pub fn initial_members(addrs: &[(SocketAddr, SocketAddr)]) -> String {
    addrs
        .iter()
        .enumerate()
        .map(|(i, (_, rpc))| format!("{}={rpc}", i + 1))
        .collect::<Vec<_>>()
        .join(",")
}

/// [`start_static`] with each node's own extra flags.
pub async fn start_static_each(
    root: &Path,
    per_node: Vec<Vec<String>>,
    env: &[(&'static str, &'static str)],
) -> Vec<Node> {
    let n = per_node.len();
    let addrs: Vec<(SocketAddr, SocketAddr)> = (0..n).map(|_| (free_addr(), free_addr())).collect();
    let members = initial_members(&addrs);
    let mut nodes = Vec::new();
    for (i, (h, r)) in addrs.iter().enumerate() {
        let dir = root.join(format!("n{}", i + 1));
        let mut args = vec!["--initial-members", members.as_str()];
        args.extend(per_node[i].iter().map(String::as_str));
        let agent = Agent::spawn_env(&dir, *h, *r, &args, env);
        nodes.push(Node { dir, agent });
    }
    for node in &nodes {
        node.agent.wait_healthy(Duration::from_secs(30)).await;
    }
    nodes
}

pub async fn cluster_status(agent: &Agent) -> Option<Value> {
    get_json(&agent.url("/v1/cluster/status")).await
}

/// The index in `nodes` of the current leader, as the live nodes report it.
pub async fn leader_of(nodes: &[Node], live: &[usize]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut ids = Vec::new();
        let mut leader = None;
        for i in live {
            if let Some(s) = get_json(&nodes[*i].agent.url("/v1/status")).await {
                ids.push((s["node_id"].as_u64(), *i));
                leader = leader.or(s["leader_id"].as_u64());
            }
        }
        if let Some(l) = leader
            && let Some((_, i)) = ids.iter().find(|(id, _)| *id == Some(l))
        {
            return *i;
        }
        assert!(Instant::now() < deadline, "no leader among {live:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn node_id(a: &Agent) -> u64 {
    a.status().await["node_id"].as_u64().expect("node_id")
}

async fn members_of(a: &Agent) -> Vec<Value> {
    get_json(&a.url("/v1/cluster/members"))
        .await
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn role_of(members: &[Value], id: u64) -> Option<String> {
    members
        .iter()
        .find(|m| m["node_id"].as_u64() == Some(id))
        .and_then(|m| m["role"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_formation_forwarding_join_promotion_and_removal() {
    let root = tempfile::tempdir().unwrap();
    let env = cluster_env(&[]);
    let nodes = start_static(root.path(), 3, &["--voters", "4"], &env).await;
    let leader = leader_of(&nodes, &[0, 1, 2]).await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();

    // Writes on a follower are forwarded; linearizable reads work on every node.
    let r = put(&nodes[followers[0]].agent, "greeting", "hello").await;
    assert!(r.status().is_success(), "{:?}", r.text().await);
    for n in &nodes {
        assert_eq!(
            get_value(&n.agent, "greeting", false).await.as_deref(),
            Some("hello")
        );
    }
    let cid = nodes[0].agent.status().await["cluster_id"].clone();
    for n in &nodes {
        assert_eq!(n.agent.status().await["cluster_id"], cid);
    }
    // Static members start without API addresses; each announces its own.
    eventually(
        "every member announced its API address",
        Duration::from_secs(10),
        || async {
            cluster_status(&nodes[0].agent).await.is_some_and(|s| {
                s["members"]
                    .as_array()
                    .is_some_and(|ms| ms.iter().all(|m| m["api_addr"] != ""))
            })
        },
    )
    .await;
    let st = cluster_status(&nodes[followers[1]].agent)
        .await
        .expect("cluster status");
    assert_eq!(st["members"].as_array().unwrap().len(), 3);
    assert_eq!(st["quorum_healthy"], true);
    for m in st["members"].as_array().unwrap() {
        assert_eq!(m["role"], "voter");
        assert_eq!(m["healthy"], true, "{st}");
        assert!(
            !m["api_addr"].as_str().unwrap().is_empty(),
            "announced: {st}"
        );
    }

    // A 4th node joins through a follower, enters as a learner, and is promoted because
    // the cluster wants 4 voters.
    let d4 = root.path().join("n4");
    let join = nodes[followers[0]].agent.rpc.to_string();
    let n4 = Agent::spawn_env(&d4, free_addr(), free_addr(), &["--join", &join], &env);
    n4.wait_healthy(Duration::from_secs(30)).await;
    let id4 = node_id(&n4).await;
    eventually(
        "node 4 promoted to voter",
        Duration::from_secs(20),
        || async { role_of(&members_of(&nodes[0].agent).await, id4).as_deref() == Some("voter") },
    )
    .await;
    assert_eq!(
        get_value(&n4, "greeting", true).await.as_deref(),
        Some("hello")
    );

    // A 5th node with --role learner is recorded as learner-only (never auto-promoted).
    let d5 = root.path().join("n5");
    let mut n5 = Agent::spawn_env(
        &d5,
        free_addr(),
        free_addr(),
        &["--join", &join, "--role", "learner"],
        &env,
    );
    n5.wait_healthy(Duration::from_secs(30)).await;
    let id5 = node_id(&n5).await;
    eventually(
        "node 5 listed as a learner-only member",
        Duration::from_secs(10),
        || async {
            members_of(&nodes[0].agent)
                .await
                .iter()
                .any(|m| m["node_id"].as_u64() == Some(id5) && m["learner_only"] == true)
        },
    )
    .await;

    // Removing the learner through the CLI; the removed node says so, then exits non-zero
    // (a supervisor restarts it, and it refuses its data directory with the reason).
    let addr = nodes[followers[1]].agent.addr_flag();
    let (code, out, err) = cli(
        &["members", "remove", &id5.to_string(), "--addr", &addr],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains(&id5.to_string()), "{out}");
    let exit = n5
        .wait_exit(Duration::from_secs(20))
        .expect("the removed node exits");
    assert!(!exit.success(), "a removed node exits non-zero");
    let log = n5.log_text();
    assert!(
        log.contains("was removed from cluster") && log.contains("can no longer serve"),
        "{log}"
    );
    let (h5, r5) = (free_addr().to_string(), free_addr().to_string());
    let data5 = d5.join("data");
    let (code, _, err) = cli(
        &[
            "agent",
            "--data-dir",
            data5.to_str().unwrap(),
            "--http-addr",
            &h5,
            "--rpc-addr",
            &r5,
        ],
        None,
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("no longer belongs to a cluster member"),
        "{err}"
    );

    // Unsafe changes are refused with an explanation; the last-voter rule holds.
    let (code, _, err) = cli(&["members", "promote", "999", "--addr", &addr], None);
    assert_eq!(code, 1);
    assert!(err.contains("not a member"), "{err}");
    // Demote the 4th voter (safe: 3 healthy voters remain).
    let (code, out, err) = cli(
        &["members", "demote", &id4.to_string(), "--addr", &addr],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        role_of(&members_of(&nodes[0].agent).await, id4).as_deref(),
        Some("learner")
    );

    // Leadership transfer to a named voter.
    let target = node_id(&nodes[followers[0]].agent).await;
    let resp = http()
        .post(nodes[followers[1]].agent.url("/v1/cluster/leader/transfer"))
        .json(&serde_json::json!({ "to": target }))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["leader_id"].as_u64(), Some(target), "{body}");
    let r = put(&nodes[leader].agent, "after-transfer", "x").await;
    assert!(r.status().is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_expect_and_join_a_running_node_both_form_three_voters() {
    let root = tempfile::tempdir().unwrap();
    let env = cluster_env(&[]);
    // bootstrap-expect: three pristine nodes that know each other's addresses.
    let addrs: Vec<(SocketAddr, SocketAddr)> = (0..3).map(|_| (free_addr(), free_addr())).collect();
    let join = addrs
        .iter()
        .map(|(_, r)| r.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let nodes: Vec<Agent> = addrs
        .iter()
        .enumerate()
        .map(|(i, (h, r))| {
            Agent::spawn_env(
                &root.path().join(format!("b{i}")),
                *h,
                *r,
                &["--bootstrap-expect", "3", "--join", &join],
                &env,
            )
        })
        .collect();
    for n in &nodes {
        n.wait_healthy(Duration::from_secs(30)).await;
    }
    let cid = nodes[0].status().await["cluster_id"].clone();
    for n in &nodes {
        assert_eq!(n.status().await["cluster_id"], cid);
    }
    eventually("3 voters", Duration::from_secs(10), || async {
        let m = members_of(&nodes[1]).await;
        m.len() == 3 && m.iter().all(|m| m["role"] == "voter")
    })
    .await;
    // Restarting a bootstrapped node never re-bootstraps: same cluster, same members.
    drop(nodes);

    // join: one running node, two more join it and are promoted (3 voters wanted).
    let first = Agent::spawn_env(&root.path().join("j0"), free_addr(), free_addr(), &[], &env);
    first.wait_healthy(Duration::from_secs(20)).await;
    let put_r = put(&first, "k", "v").await;
    assert!(put_r.status().is_success());
    let target = first.rpc.to_string();
    let others: Vec<Agent> = (1..3)
        .map(|i| {
            Agent::spawn_env(
                &root.path().join(format!("j{i}")),
                free_addr(),
                free_addr(),
                &["--join", &target],
                &env,
            )
        })
        .collect();
    for o in &others {
        o.wait_healthy(Duration::from_secs(30)).await;
    }
    eventually(
        "joined nodes promoted to 3 voters",
        Duration::from_secs(20),
        || async {
            let m = members_of(&first).await;
            m.len() == 3
                && m.iter()
                    .all(|m| m["role"] == "voter" && m["healthy"] == true)
        },
    )
    .await;
    for o in &others {
        assert_eq!(get_value(o, "k", false).await.as_deref(), Some("v"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_moves_to_a_new_address_one_at_a_time() {
    let root = tempfile::tempdir().unwrap();
    let env = cluster_env(&[]);
    let mut nodes = start_static(root.path(), 3, &[], &env).await;
    for i in 0..3 {
        let id = node_id(&nodes[i].agent).await;
        let _ = nodes[i]
            .agent
            .signal_and_wait("TERM", Duration::from_secs(10));
        let (h, r) = (free_addr(), free_addr());
        let dir = nodes[i].dir.clone();
        nodes[i].agent = Agent::spawn_env(&dir, h, r, &[], &env);
        nodes[i].agent.wait_healthy(Duration::from_secs(30)).await;
        let other = &nodes[(i + 1) % 3].agent;
        let want = r.to_string();
        eventually(
            "the membership shows the new address",
            Duration::from_secs(20),
            || async {
                match cluster_status(other).await {
                    Some(s) => s["members"].as_array().is_some_and(|ms| {
                        ms.iter().all(|m| m["healthy"] == true)
                            && ms.iter().any(|m| {
                                m["node_id"].as_u64() == Some(id) && m["rpc_addr"] == want.as_str()
                            })
                    }),
                    None => false,
                }
            },
        )
        .await;
        let r = put(&nodes[i].agent, &format!("moved/{i}"), "ok").await;
        assert!(r.status().is_success(), "{:?}", r.text().await);
    }
    let members = members_of(&nodes[0].agent).await;
    for n in &nodes {
        let rpc = n.agent.rpc.to_string();
        assert!(
            members.iter().any(|m| m["rpc_addr"] == rpc.as_str()),
            "{rpc} missing from {members:?}"
        );
    }
    // Gossip re-forms too, though no node was given a seed on its new address: each seeks
    // the others at the addresses the Raft membership holds, and once it has joined its
    // health is no longer degraded (the join loop clears "not joined yet" on its next round).
    for n in &nodes {
        let url = n.agent.url("/v1/members");
        let health_url = n.agent.url("/v1/health");
        eventually(
            "gossip shows all three alive and health is ok",
            Duration::from_secs(30),
            || async {
                let alive = get_json(&url)
                    .await
                    .and_then(|v| v.as_array().cloned())
                    .is_some_and(|ms| ms.iter().filter(|m| m["state"] == "alive").count() == 3);
                alive
                    && get_json(&health_url)
                        .await
                        .is_some_and(|h| h["status"] == "ok")
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_foreign_data_dir_and_other_timings_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let env = cluster_env(&[]);
    let nodes = start_static(root.path(), 1, &[], &env).await;
    let member = &nodes[0].agent;
    let join = member.rpc.to_string();

    let mut wrong = Agent::spawn_env(
        &root.path().join("wrong-token"),
        free_addr(),
        free_addr(),
        &["--join", &join],
        &[("CONCLAVE_CLUSTER_TOKEN", "not-the-token")],
    );
    let st = wrong
        .wait_exit(Duration::from_secs(20))
        .expect("joiner exits");
    assert!(!st.success());
    assert!(
        wrong.log_text().contains("cluster token mismatch"),
        "{}",
        wrong.log_text()
    );
    assert!(
        !wrong.log_text().contains("not-the-token"),
        "the token leaked into the log"
    );
    assert!(
        member.log_text().contains("cluster token mismatch"),
        "member side logs it too"
    );

    let mut slow = Agent::spawn_env(
        &root.path().join("timings"),
        free_addr(),
        free_addr(),
        &["--join", &join],
        &cluster_env(&[("CONCLAVE_RAFT__HEARTBEAT_MS", "50")]),
    );
    let st = slow
        .wait_exit(Duration::from_secs(20))
        .expect("joiner exits");
    assert!(!st.success());
    assert!(
        slow.log_text().contains("raft.heartbeat_ms") && slow.log_text().contains("has 50"),
        "{}",
        slow.log_text()
    );

    // A node whose data dir belongs to another (single-node) cluster.
    let foreign_dir = root.path().join("foreign");
    let mut foreign = Agent::spawn_env(&foreign_dir, free_addr(), free_addr(), &[], &env);
    foreign.wait_healthy(Duration::from_secs(20)).await;
    foreign.signal_and_wait("TERM", Duration::from_secs(10));
    let mut foreign = Agent::spawn_env(
        &foreign_dir,
        free_addr(),
        free_addr(),
        &["--join", &join],
        &env,
    );
    let st = foreign
        .wait_exit(Duration::from_secs(20))
        .expect("foreign node exits");
    assert!(!st.success());
    assert!(
        foreign.log_text().contains("belongs to cluster"),
        "{}",
        foreign.log_text()
    );

    // Bad membership requests get JSON errors.
    let resp = http()
        .post(member.url("/v1/cluster/members"))
        .body("{\"node_id\": \"x\"}")
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(resp).await;
    assert_eq!((status.as_u16(), code.as_str()), (400, "bad_request"));
    let resp = http()
        .delete(member.url(&format!("/v1/cluster/members/{}", node_id(member).await)))
        .send()
        .await
        .unwrap();
    let (status, code, body) = error_code(resp).await;
    assert_eq!(
        (status.as_u16(), code.as_str()),
        (409, "unsafe_membership_change"),
        "{body}"
    );
}

pub async fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}
