//! Elections on a real 3-node cluster: fencing epochs, leases across a leader kill and a
//! paused holder, and `conclave elect` stopping its command before anyone else starts one.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{cluster_env, eventually, get_json, leader_of, signal, start_static};
use crate::support::http;

const TTL: Duration = Duration::from_millis(1500);

/// One candidate's time as holder, by this process's monotonic clock.
#[derive(Debug, Clone)]
struct Tenure {
    candidate: usize,
    epoch: u64,
    /// When the grant's answer arrived.
    start: Instant,
    /// Until when the candidate may act: the send time of its last successful renewal
    /// (or of the grant) plus the TTL, or its resignation, whichever is earlier.
    end: Instant,
}

async fn post(urls: &[String], path: &str, body: &Value) -> Option<(u16, Value)> {
    // Try the candidate's own node first, then the others (its node may be down).
    for base in urls {
        if let Ok(r) = http()
            .post(format!("{base}{path}"))
            .json(body)
            .timeout(Duration::from_secs(3))
            .send()
            .await
        {
            let status = r.status().as_u16();
            if status == 503 {
                continue;
            }
            return Some((status, r.json().await.unwrap_or_default()));
        }
    }
    None
}

/// The Raft term the first node that answers reports.
async fn term(urls: &[String]) -> Option<u64> {
    for base in urls {
        if let Ok(r) = http()
            .get(format!("{base}/v1/status"))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            && let Ok(status) = r.json::<Value>().await
            && let Some(term) = status["term"].as_u64()
        {
            return Some(term);
        }
    }
    None
}

/// Campaign, hold, and let go — by resigning, or (when `pauses`) by going silent for twice
/// the TTL like a process stuck in a long pause, then finding out it lost.
async fn candidate(
    me: usize,
    urls: Vec<String>,
    pauses: bool,
    until: Instant,
    tenures: Arc<Mutex<Vec<Tenure>>>,
) {
    let name = format!("c{me}");
    while Instant::now() < until {
        let sent = Instant::now();
        // No server-side wait: the send time must stay a close lower bound of the grant.
        let body = json!({"candidate": name, "ttl_ms": TTL.as_millis() as u64});
        let Some((200, s)) = post(&urls, "/v1/elections/job/campaign", &body).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if s["elected"] != true {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let epoch = s["epoch"].as_u64().unwrap();
        let mut tenure = Tenure {
            candidate: me,
            epoch,
            start: Instant::now(),
            end: sent + TTL,
        };
        let lease = json!({"candidate": name, "epoch": epoch});
        let hold_until = Instant::now() + Duration::from_millis(900);
        while Instant::now() < hold_until.min(tenure.end) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let sent = Instant::now();
            match post(&urls, "/v1/elections/job/keepalive", &lease).await {
                Some((200, _)) => tenure.end = sent + TTL,
                Some((409, _)) => break,
                _ => {} // no answer: keep trying until the lease may have ended
            }
        }
        if pauses {
            let term_before = term(&urls).await;
            tokio::time::sleep(TTL * 2).await;
            let late = post(&urls, "/v1/elections/job/keepalive", &lease).await;
            // A new leader term extends every lease to a full TTL on the cluster clock, so
            // a pause that spans the leader's kill may rightly end with the lease alive.
            let same_term = term_before.is_some() && term(&urls).await == term_before;
            if let Some((status, body)) = &late
                && same_term
            {
                assert_eq!(
                    *status, 409,
                    "a renewal after the lease ended succeeded: {body}"
                );
            }
        } else if Instant::now() < tenure.end {
            let sent = Instant::now();
            if let Some((200, _)) = post(&urls, "/v1/elections/job/resign", &lease).await {
                tenure.end = tenure.end.min(sent);
            }
        }
        tenures.lock().unwrap().push(tenure);
        // Give the others a turn.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epochs_grow_and_holders_never_overlap_across_a_leader_kill_and_a_pause() {
    let root = tempfile::tempdir().unwrap();
    let env = cluster_env(&[]);
    let mut nodes = start_static(root.path(), 3, &[], &env).await;
    let urls: Vec<String> = nodes.iter().map(|n| n.agent.addr_flag()).collect();
    let tenures = Arc::new(Mutex::new(Vec::new()));
    let until = Instant::now() + Duration::from_secs(14);
    let mut tasks = Vec::new();
    for me in 0..3 {
        let mut mine = urls.clone();
        mine.rotate_left(me);
        tasks.push(tokio::spawn(candidate(
            me,
            mine,
            me == 2,
            until,
            tenures.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let leader = leader_of(&nodes, &[0, 1, 2]).await;
    let killed_at = Instant::now();
    nodes[leader].agent.kill9();
    for t in tasks {
        t.await.unwrap();
    }
    let mut all = tenures.lock().unwrap().clone();
    all.sort_by_key(|t| (t.epoch, t.start));
    // A holder whose resignation got no answer may campaign again and renew the same epoch:
    // that is one tenure.
    all.dedup_by(|later, earlier| {
        if later.epoch != earlier.epoch {
            return false;
        }
        assert_eq!(
            later.candidate, earlier.candidate,
            "two holders of epoch {}",
            later.epoch
        );
        earlier.end = earlier.end.max(later.end);
        true
    });
    assert!(all.len() >= 6, "too few tenures to judge: {all:?}");
    assert!(
        all.iter().any(|t| t.start > killed_at),
        "nobody was elected after the leader was killed: {all:?}"
    );
    assert!(
        all.iter().any(|t| t.candidate == 2),
        "the pausing candidate never held"
    );
    for pair in all.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(b.epoch > a.epoch, "epoch reused: {a:?} {b:?}");
        assert!(
            b.start >= a.end,
            "epoch {} (candidate {}) started {:?} before epoch {} (candidate {}) could have ended",
            b.epoch,
            b.candidate,
            a.end - b.start,
            a.epoch,
            a.candidate
        );
    }
}

/// A `conclave elect` child that records its start and stop with the epoch.
fn elect(addr: &str, candidate: &str, log: &std::path::Path) -> std::process::Child {
    let script = format!(
        "echo \"start $CONCLAVE_ELECTION_EPOCH $(date +%s%N) $$\" >> {log}; \
         trap 'echo \"stop $CONCLAVE_ELECTION_EPOCH $(date +%s%N) $$\" >> {log}; exit 0' TERM; \
         while :; do sleep 0.05; done",
        log = log.display()
    );
    crate::support::command()
        .args([
            "elect",
            "gw",
            "--candidate",
            candidate,
            "--ttl",
            "3s",
            "--grace",
            "1s",
            "--addr",
            addr,
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log.with_extension(format!("{candidate}.err"))).unwrap())
        .spawn()
        .expect("spawn conclave elect")
}

/// Lines `start|stop EPOCH NANOS PID` from the children's shared log.
fn events(log: &std::path::Path) -> Vec<(String, u64, u128, u32)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.to_string(),
                f.get(1)?.parse().ok()?,
                f.get(2)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
            ))
        })
        .collect()
}

/// Stops `conclave elect` processes (SIGTERM, so they stop their children) and any child
/// still running, by PID.
struct Reaper(Vec<std::process::Child>, std::path::PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .stderr(Stdio::null())
                .status();
        }
        std::thread::sleep(Duration::from_millis(1500));
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        for (_, _, _, pid) in events(&self.1) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null()) // most have ended already; that is the point
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conclave_elect_stops_its_command_before_the_next_holder_starts_one() {
    let root = tempfile::tempdir().unwrap();
    let env = cluster_env(&[]);
    let mut nodes = start_static(root.path(), 3, &[], &env).await;
    let log = root.path().join("children.log");
    let a = elect(&nodes[0].agent.addr_flag(), "a", &log);
    let mut reaper = Reaper(vec![a], log.clone());
    eventually("a's command started", Duration::from_secs(15), || async {
        events(&log).iter().any(|e| e.0 == "start")
    })
    .await;
    let b = elect(&nodes[1].agent.addr_flag(), "b", &log);
    reaper.0.push(b);
    let first = events(&log)[0].clone();
    // a loses its agent: it cannot renew, so it must stop its command before the lease can
    // end; b gets the election only after that, with a higher epoch.
    nodes[0].agent.kill9();
    eventually("b's command started", Duration::from_secs(20), || async {
        events(&log).iter().filter(|e| e.0 == "start").count() >= 2
    })
    .await;
    let all = events(&log);
    let stop_a = all
        .iter()
        .find(|e| e.0 == "stop" && e.1 == first.1)
        .unwrap_or_else(|| panic!("a's command was never stopped: {all:?}"));
    let start_b = all.iter().filter(|e| e.0 == "start").nth(1).unwrap();
    assert!(start_b.1 > first.1, "the epoch did not grow: {all:?}");
    assert!(
        stop_a.2 < start_b.2,
        "b started {} ms before a stopped: {all:?}",
        (stop_a.2 - start_b.2) / 1_000_000
    );
    // An observer sees the holder.
    let s = get_json(&nodes[1].agent.url("/v1/elections/gw"))
        .await
        .unwrap();
    assert_eq!(s["holder"], "b");
    assert_eq!(s["epoch"], start_b.1);
    // b's elect, told to stop, stops its command and resigns.
    let mut b = reaper.0.pop().unwrap();
    signal(b.id(), "TERM").await;
    let status = tokio::task::spawn_blocking(move || b.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(143));
    assert!(
        events(&log)
            .iter()
            .any(|e| e.0 == "stop" && e.1 == start_b.1)
    );
    // The resign is acknowledged before elect exits; any node shows it once it has applied
    // that entry.
    let url = nodes[1].agent.url("/v1/elections/gw");
    eventually("the election is free", Duration::from_secs(5), || async {
        get_json(&url)
            .await
            .map(|s| s["holder"] == Value::Null)
            .unwrap_or(false)
    })
    .await;
    drop(reaper);
}
