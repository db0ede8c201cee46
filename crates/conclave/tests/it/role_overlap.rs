//! A role's service runs on one node at a time: every node's hooks log `acquire` and
//! `release` with the epoch and a timestamp into one file, and no two nodes' acquire →
//! release intervals may overlap — through a token endpoint that answers only after twice
//! the ttl (then one that never answers, then one that fails), a planned handover whose on_release takes 3 s, SIGTERM of the holder five times
//! over, kill -9 of the holder (as a follower and as the Raft leader; its tenure ends when it
//! dies), and SIGSTOP of the holder past its ttl (the one overlap no agent can prevent: its
//! tenure counts as ended while it is frozen, and it must start releasing when it wakes).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::{cluster_env, eventually, get_json, get_text, initial_members};
use crate::support::{Agent, cli, free_addr, http};

const TTL: Duration = Duration::from_secs(4);
/// How long each on_release takes (the service stopping).
const RELEASE_SECS: u64 = 3;

/// One tenure as the hooks logged it: acquired, on_release started (`stopping`) and
/// finished (`released`), in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tenure {
    node: u64,
    acquired: u128,
    stopping: Option<u128>,
    released: Option<u128>,
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Every tenure in the hook log, by epoch. Lines: `<event> <epoch> <node> <ns>`.
fn tenures(log: &str) -> BTreeMap<u64, Tenure> {
    let mut out = BTreeMap::new();
    for line in log.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [event, epoch, node, at] = f[..] else {
            panic!("a hook log line of another shape: {line:?}");
        };
        let (epoch, node, at): (u64, u64, u128) = (
            epoch.parse().unwrap(),
            node.parse().unwrap(),
            at.parse().unwrap(),
        );
        match event {
            "acquire" => {
                out.insert(
                    epoch,
                    Tenure {
                        node,
                        acquired: at,
                        stopping: None,
                        released: None,
                    },
                );
            }
            "stopping" => {
                let t = out.get_mut(&epoch).expect("a release without an acquire");
                t.stopping = Some(at);
            }
            "release" => {
                let t = out.get_mut(&epoch).expect("a release without an acquire");
                assert_eq!(t.node, node, "epoch {epoch} released by another node");
                t.released = Some(at);
            }
            other => panic!("unknown hook event {other:?}"),
        }
    }
    out
}

/// Pairs of tenures whose intervals overlap. A tenure ends when it was released, or at the
/// time in `ended` (its agent was killed or frozen then); otherwise it lasts to the end.
fn overlaps(tenures: &BTreeMap<u64, Tenure>, ended: &BTreeMap<u64, u128>) -> Vec<(u64, u64)> {
    let end = |epoch: &u64, t: &Tenure| {
        ended
            .get(epoch)
            .copied()
            .or(t.released)
            .unwrap_or(u128::MAX)
    };
    let all: Vec<(u64, Tenure)> = tenures.iter().map(|(e, t)| (*e, *t)).collect();
    let mut found = Vec::new();
    for (i, (ea, a)) in all.iter().enumerate() {
        for (eb, b) in &all[i + 1..] {
            if a.acquired < end(eb, b) && b.acquired < end(ea, a) {
                found.push((*ea, *eb));
            }
        }
    }
    found
}

#[test]
fn the_overlap_check_finds_overlaps() {
    let none = BTreeMap::new();
    let log =
        "acquire 1 7 100\nrelease 1 7 200\nacquire 2 8 150\nrelease 2 8 300\nacquire 3 7 300\n";
    assert_eq!(overlaps(&tenures(log), &none), vec![(1, 2)]);
    let log = "acquire 1 7 100\nstopping 1 7 150\nrelease 1 7 200\nacquire 2 8 201\n";
    assert!(overlaps(&tenures(log), &none).is_empty());
    let log = "acquire 1 7 100\nacquire 2 8 201\n";
    assert_eq!(
        overlaps(&tenures(log), &none),
        vec![(1, 2)],
        "an unreleased tenure lasts"
    );
    let killed = BTreeMap::from([(1, 150)]);
    assert!(
        overlaps(&tenures(log), &killed).is_empty(),
        "a killed tenure ends"
    );
}

/// A token endpoint that answers only after twice the ttl.
async fn slow_token_endpoint() -> String {
    use axum::routing::post;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/token",
        post(|| async {
            tokio::time::sleep(TTL * 2).await;
            r#"{"access_token": "late", "expires_in": 60}"#
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/token")
}

/// A token endpoint that accepts connections and never answers.
async fn black_hole_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{addr}/token")
}

/// A token endpoint that fails every request.
async fn failing_endpoint() -> String {
    use axum::routing::post;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/token",
        post(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down") }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/token")
}

/// Point the cloud peer's OAuth2 settings at `token_url`.
async fn put_peers(agent: &Agent, token_url: &str) {
    let doc = format!(
        r#"{{"peers": [{{"node_id": "cloud-1", "address": "cloud.example.com:9000", "type": "cloud",
            "oauth2": {{"token_url": "{token_url}", "client_id": "c", "client_secret": "${{GW_SECRET}}"}}}}]}}"#
    );
    let r = http()
        .put(agent.url("/v1/config/remote-peers/default"))
        .body(doc)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn config_file(root: &Path, log: &Path) -> PathBuf {
    let line = |event: &str| {
        format!(
            "echo {event} $CONCLAVE_ROLE_EPOCH $CONCLAVE_NODE_ID $(date +%s%N) >> {}",
            log.display()
        )
    };
    let hook = |script: String| format!(r#"{{ exec = ["sh", "-c", "{script}"] }}"#);
    let text = format!(
        "[secrets]\nenv = [\"GW_SECRET\"]\n\n[[roles]]\nname = \"gateway\"\nttl = \"{}s\"\noauth2 = \"remote-peers/default\"\ntoken_hosts = [\"127.0.0.1\"]\non_acquire = {}\non_release = {}\n",
        TTL.as_secs(),
        hook(line("acquire")),
        hook(format!(
            "{}; sleep {RELEASE_SECS}; {}",
            line("stopping"),
            line("release")
        ))
    );
    let path = root.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

struct Cluster {
    agents: Vec<Agent>,
    addrs: Vec<(SocketAddr, SocketAddr)>,
    args: Vec<String>,
    root: PathBuf,
    env: Vec<(&'static str, &'static str)>,
}

impl Cluster {
    fn spawn(&self, i: usize) -> Agent {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let (h, r) = self.addrs[i];
        Agent::spawn_env(&self.root.join(format!("n{i}")), h, r, &args, &self.env)
    }

    async fn role(&self, i: usize) -> Value {
        get_json(&self.agents[i].url("/v1/roles/gateway"))
            .await
            .unwrap_or_default()
    }

    /// The holder's index and epoch as node 0 sees it, once there is one.
    async fn wait_holder(&self, ids: &[u64]) -> (usize, u64) {
        eventually("a holder", Duration::from_secs(20), || async {
            self.holder(0, ids).await.is_some()
        })
        .await;
        self.holder(0, ids).await.expect("a holder")
    }

    /// Wait (up to `timeout`) until node `via` sees a holder with an epoch after `epoch`.
    async fn wait_newer_holder(
        &self,
        what: &str,
        timeout: Duration,
        via: usize,
        epoch: u64,
        ids: &[u64],
    ) {
        eventually(what, timeout, || async {
            self.holder(via, ids).await.is_some_and(|(_, e)| e > epoch)
        })
        .await;
    }

    /// Start node `i` again on its data directory and addresses, and wait until it serves.
    async fn restart(&mut self, i: usize) {
        let agent = self.spawn(i);
        agent.wait_healthy(Duration::from_secs(30)).await;
        self.agents[i] = agent;
    }

    /// The holder's index and epoch, as node `via` sees it.
    async fn holder(&self, via: usize, ids: &[u64]) -> Option<(usize, u64)> {
        let r = self.role(via).await;
        let holder = r["holder"].as_u64()?;
        Some((ids.iter().position(|i| *i == holder)?, r["epoch"].as_u64()?))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_never_runs_on_two_nodes_through_slow_tokens_handovers_sigterm_kills_and_freezes() {
    let root = tempfile::tempdir().unwrap();
    let log = root.path().join("hooks.log");
    let config = config_file(root.path(), &log);
    let addrs: Vec<_> = (0..3).map(|_| (free_addr(), free_addr())).collect();
    let members = initial_members(&addrs);
    let mut cluster = Cluster {
        agents: Vec::new(),
        addrs,
        args: vec![
            "--initial-members".into(),
            members,
            "-c".into(),
            config.display().to_string(),
        ],
        root: root.path().to_owned(),
        env: cluster_env(&[("GW_SECRET", "s")]),
    };
    for i in 0..3 {
        let agent = cluster.spawn(i);
        cluster.agents.push(agent);
    }
    let mut ids = Vec::new();
    for a in &cluster.agents {
        a.wait_healthy(Duration::from_secs(30)).await;
        ids.push(a.status().await["node_id"].as_u64().unwrap());
    }
    // Alert rules see the split-brain counter from the start, at 0.
    let metrics = get_text(&cluster.agents[0].url("/metrics")).await;
    assert!(
        metrics.contains("conclave_role_split_brain_alerts_total{role=\"gateway\"} 0"),
        "{metrics}"
    );

    // A token endpoint that answers after 2 × ttl, one that never answers, one that fails:
    // each costs nothing but a peer status; one tenure throughout.
    let (_, first_epoch) = cluster.wait_holder(&ids).await;
    for (url, watch, says) in [
        (
            slow_token_endpoint().await,
            TTL * 3,
            "did not answer within",
        ),
        (
            black_hole_endpoint().await,
            TTL * 2,
            "did not answer within",
        ),
        (failing_endpoint().await, TTL * 2, "answered 503"),
    ] {
        put_peers(&cluster.agents[0], &url).await;
        tokio::time::sleep(watch).await;
        let r = cluster.role(0).await;
        assert_eq!(
            r["epoch"].as_u64(),
            Some(first_epoch),
            "the role moved: {r}"
        );
        let detail = r["peers"][0]["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(says), "{says:?}: {r}");
    }

    // A planned handover: the old holder's 3 s on_release ends before the target starts.
    let (code, out, err) = cli(
        &[
            "roles",
            "handover",
            "gateway",
            "--addr",
            &cluster.agents[0].addr_flag(),
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");

    // SIGTERM of the holder, five times: each releases (on_release, then the resign)
    // before it exits, and the next holder starts after that.
    for round in 0..5 {
        let (idx, epoch) = cluster.wait_holder(&ids).await;
        let via = (idx + 1) % 3;
        let status = cluster.agents[idx]
            .signal_and_wait("TERM", Duration::from_secs(30))
            .expect("the holder exits after SIGTERM");
        assert!(status.success(), "round {round}: {status:?}");
        let released = tenures(&std::fs::read_to_string(&log).unwrap())
            .get(&epoch)
            .and_then(|t| t.released);
        assert!(
            released.is_some(),
            "round {round}: epoch {epoch} exited unreleased"
        );
        let since = Instant::now();
        cluster
            .wait_newer_holder("a new holder", Duration::from_secs(20), via, epoch, &ids)
            .await;
        eprintln!(
            "round {round}: a new holder {:?} after SIGTERM",
            since.elapsed()
        );
        cluster.restart(idx).await;
    }

    // kill -9 of the holder, first as a follower, then as the Raft leader: its tenure ends
    // with the process, and the next holder starts only after its lease.
    let mut ended = BTreeMap::new();
    for as_leader in [false, true] {
        let (idx, epoch) = cluster.wait_holder(&ids).await;
        if as_leader {
            let to = ids[idx].to_string();
            let via = cluster.agents[(idx + 1) % 3].addr_flag();
            let (code, out, err) = cli(&["leader", "transfer", "--to", &to, "--addr", &via], None);
            assert_eq!(code, 0, "{out}{err}");
        }
        cluster.agents[idx].kill9();
        ended.insert(epoch, now_ns());
        let via = (idx + 1) % 3;
        cluster
            .wait_newer_holder(
                "a holder after the kill",
                Duration::from_secs(30),
                via,
                epoch,
                &ids,
            )
            .await;
        cluster.restart(idx).await;
    }

    // SIGSTOP of the holder past its ttl: another node takes over meanwhile (the frozen one
    // cannot act); woken, it starts on_release at once.
    let (idx, epoch) = cluster.wait_holder(&ids).await;
    let pid = cluster.agents[idx].pid().unwrap();
    crate::cluster::signal(pid, "STOP").await;
    ended.insert(epoch, now_ns());
    let via = (idx + 1) % 3;
    cluster
        .wait_newer_holder(
            "a holder while frozen",
            Duration::from_secs(30),
            via,
            epoch,
            &ids,
        )
        .await;
    let woken = now_ns();
    crate::cluster::signal(pid, "CONT").await;
    let stopping = || {
        tenures(&std::fs::read_to_string(&log).unwrap_or_default())
            .get(&epoch)
            .and_then(|t| t.stopping)
    };
    eventually(
        "the woken holder releases",
        Duration::from_secs(10),
        || async { stopping().is_some() },
    )
    .await;
    let after_wake = Duration::from_nanos((stopping().unwrap() - woken) as u64);
    eprintln!("the woken holder started on_release {after_wake:?} after SIGCONT");
    assert!(
        after_wake < Duration::from_secs(1),
        "the woken holder took {after_wake:?} to start releasing"
    );

    // Let the last hooks write, then check every tenure against every other.
    tokio::time::sleep(Duration::from_secs(RELEASE_SECS + 1)).await;
    let all = tenures(&std::fs::read_to_string(&log).unwrap());
    assert!(all.len() >= 10, "{all:?}");
    assert_eq!(
        overlaps(&all, &ended),
        vec![],
        "tenures that overlap: {all:#?}"
    );
}
