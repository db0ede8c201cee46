//! Watches on real agents: every change exactly once, in order, across reconnects (resumed
//! with Last-Event-ID on another node) and a leader kill; 410 once history is compacted.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use crate::cluster::{cluster_env, eventually, get_json, leader_of, start_static};
use crate::support::{Agent, cli, error_code, http};

/// (id, event, data) of each complete event in `buf`, leaving the incomplete rest.
fn take_events(buf: &mut String) -> Vec<(Option<u64>, String, String)> {
    let mut out = Vec::new();
    while let Some(end) = buf.find("\n\n") {
        let raw: String = buf.drain(..end + 2).collect();
        let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
        for line in raw.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                id = v.parse().ok();
            } else if let Some(v) = line.strip_prefix("event: ") {
                event = v.to_owned();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = v.to_owned();
            }
        }
        if !data.is_empty() {
            out.push((id, event, data));
        }
    }
    out
}

/// Watch `prefix` through `bases` in turn: drop the connection every `per_connection`
/// events, or when it fails, and resume on the next node with Last-Event-ID.
async fn watcher(
    bases: Vec<String>,
    prefix: &str,
    per_connection: usize,
    seen: Arc<Mutex<Vec<(u64, String)>>>,
    stop: Arc<AtomicBool>,
) -> usize {
    let mut last: u64 = 0;
    let mut connections = 0;
    // No overall timeout: a watch stream lasts.
    let client = crate::support::http_builder().build().expect("client");
    for base in bases.iter().cycle() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let req = client
            .get(format!("{base}/v1/watch"))
            .query(&[("prefix", prefix)])
            .header("last-event-id", last.to_string());
        let Ok(resp) = req.send().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        assert_eq!(resp.status(), 200, "watch refused on {base}");
        connections += 1;
        let mut body = resp.bytes_stream();
        let (mut buf, mut got) = (String::new(), 0);
        'conn: loop {
            let next = tokio::time::timeout(Duration::from_millis(500), body.next()).await;
            match next {
                Ok(Some(Ok(chunk))) => buf.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(_) => break 'conn, // the node went away
                Err(_) if stop.load(Ordering::Relaxed) => break 'conn,
                Err(_) => continue,
            }
            for (id, event, data) in take_events(&mut buf) {
                assert_ne!(event, "error", "{data}");
                let v: Value = serde_json::from_str(&data).unwrap();
                let revision = id.expect("every change has an id");
                assert_eq!(v["revision"], revision);
                seen.lock()
                    .unwrap()
                    .push((revision, v["key"].as_str().unwrap().to_owned()));
                last = revision;
                got += 1;
                if got == per_connection {
                    break 'conn;
                }
            }
        }
    }
    connections
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_delivers_every_change_once_in_order_across_reconnects_and_a_leader_kill() {
    let root = tempfile::tempdir().unwrap();
    let env = cluster_env(&[]);
    let mut nodes = start_static(root.path(), 3, &[], &env).await;
    let bases: Vec<String> = nodes.iter().map(|n| n.agent.addr_flag()).collect();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let watch = tokio::spawn(watcher(bases.clone(), "w/", 37, seen.clone(), stop.clone()));
    let leader = leader_of(&nodes, &[0, 1, 2]).await;
    let mut live: Vec<usize> = vec![0, 1, 2];
    for i in 0..300 {
        if i == 120 {
            nodes[leader].agent.kill9();
            live.retain(|n| *n != leader);
        }
        for key in [format!("w/{i:03}"), format!("x/{i:03}")] {
            // cas=0 makes retries safe: a write that did land is not written twice.
            for attempt in 0.. {
                let node = live[(i + attempt) % live.len()];
                let r = http()
                    .put(nodes[node].agent.url(&format!("/v1/kv/{key}?cas=0")))
                    .body("v")
                    .send()
                    .await;
                match r.map(|r| r.status().as_u16()) {
                    Ok(200) | Ok(409) => break,
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
                assert!(attempt < 100, "cannot write {key}");
            }
        }
    }
    let listing = get_json(&nodes[live[0]].agent.url("/v1/kv?prefix=w/&limit=1000"))
        .await
        .unwrap();
    let written: Vec<(u64, String)> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["revision"].as_u64().unwrap(),
                i["key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(written.len(), 300);
    let newest = written.iter().map(|w| w.0).max().unwrap();
    eventually(
        "the watcher saw the last write",
        Duration::from_secs(20),
        || async { seen.lock().unwrap().last().is_some_and(|l| l.0 >= newest) },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let connections = watch.await.unwrap();
    assert!(connections >= 8, "only {connections} connections");
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "out of order or repeated"
    );
    let keys: BTreeSet<&String> = seen.iter().map(|s| &s.1).collect();
    assert_eq!(keys.len(), seen.len(), "a change was delivered twice");
    let mut expected = written.clone();
    expected.sort();
    assert_eq!(seen, expected, "the watch missed or invented changes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_compacted_history_gets_410_and_heartbeats_flow() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start_env(
        dir.path(),
        &[],
        &[("CONCLAVE_WATCH__HISTORY_CHANGES", "20")],
    )
    .await;
    for i in 0..50 {
        let r = http()
            .put(agent.url(&format!("/v1/kv/k{i}")))
            .body("v")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = http()
        .get(agent.url("/v1/watch?prefix=k&from_revision=5"))
        .send()
        .await
        .unwrap();
    let (status, code, body) = error_code(r).await;
    assert_eq!((status.as_u16(), code.as_str()), (410, "compacted"));
    assert_eq!(body["error"]["compacted_revision"], 30);
    // From the compacted revision on, the rest is there; heartbeats keep an idle stream
    // alive.
    let resp = http()
        .get(agent.url("/v1/watch?prefix=k&from_revision=30&heartbeat_ms=200"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !text.contains(": heartbeat") {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("no heartbeat within 5 s")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let events = take_events(&mut text);
    let ids: Vec<u64> = events.iter().filter_map(|e| e.0).collect();
    assert_eq!(ids, (31..=50).collect::<Vec<u64>>());

    // The CLI reads the same stream: one line per change, and the 410 as an error.
    let mut child = crate::support::command()
        .args(["watch", "k4", "--from-revision", "45", "--addr"])
        .arg(agent.addr_flag())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .take(5)
            .map(Result::unwrap)
            .collect::<Vec<String>>()
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !lines.is_finished() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let expected: Vec<String> = (45..50).map(|i| format!("{} put k{i} v", i + 1)).collect();
    assert_eq!(lines.join().unwrap(), expected);
    let (code, _, err) = cli(
        &[
            "watch",
            "k",
            "--from-revision",
            "5",
            "--addr",
            &agent.addr_flag(),
        ],
        None,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("30"), "{err}");
}
