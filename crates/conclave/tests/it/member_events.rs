//! Membership events pushed, not polled: `GET /v1/members/watch` and `[[event_handler]]`
//! programs see a client agent join, change its tags at runtime (`PUT /v1/agent/tags`) and
//! die, with the member in the environment and on stdin.

use std::time::Duration;

use serde_json::Value;

use crate::cluster::{cluster_env, eventually, get_json};
use crate::support::{Agent, anonymous_builder, free_addr, http, run_token};

/// The gossip timings through the environment (the defaults, spelled out).
const GOSSIP: &[(&str, &str)] = &[
    ("CONCLAVE_GOSSIP__PROBE_INTERVAL_MS", "300"),
    ("CONCLAVE_GOSSIP__SUSPICION_MS", "800"),
];

/// Read `stream` until `text` has arrived (or 20 s pass); everything read so far.
async fn read_until(stream: &mut reqwest::Response, seen: &mut String, text: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.contains(text) {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {text:?} within 20 s; got: {seen}"))
            .expect("stream")
            .expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_a_tag_change_and_a_crash_are_pushed_to_watchers_and_handlers() {
    let root = tempfile::tempdir().unwrap();
    let env = cluster_env(GOSSIP);
    let events = root.path().join("events.txt");
    let stdin = root.path().join("stdin.jsonl");
    let config = root.path().join("a.toml");
    std::fs::write(
        &config,
        format!(
            "[[event_handler]]\nevents = [\"member-join\", \"member-update\", \"member-failed\"]\nexec = [\"/bin/sh\", \"-c\", \"echo \\\"$CONCLAVE_EVENT $CONCLAVE_MEMBER_ID $CONCLAVE_MEMBER_TAGS\\\" >> {}; cat >> {}; echo >> {}\"]\n",
            events.display(),
            stdin.display(),
            stdin.display()
        ),
    )
    .unwrap();
    let a = Agent::start_env(
        &root.path().join("a"),
        &["--config", config.to_str().unwrap()],
        &env,
    )
    .await;
    let client = anonymous_builder().build().expect("client");
    let mut req = client.get(a.url("/v1/members/watch?events=join,update,dead&heartbeat_ms=500"));
    if let Some(t) = run_token() {
        req = req.bearer_auth(t);
    }
    let mut watch = req.send().await.expect("watch");
    assert_eq!(watch.status(), 200);
    let mut seen = String::new();
    read_until(&mut watch, &mut seen, "event: snapshot").await;

    // The CLI follows the same stream; it says when it is watching, and B starts after.
    let mut cli_watch = crate::support::command()
        .args(["members", "watch", "--addr", &a.addr_flag()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("conclave members watch");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let cli_out = cli_watch.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(cli_out)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = lines
        .recv_timeout(Duration::from_secs(20))
        .expect("the CLI prints a line once it watches");
    assert!(first.starts_with("watching "), "{first}");

    let b = Agent::spawn_env(
        &root.path().join("b"),
        free_addr(),
        free_addr(),
        &["--role", "client", "--join", &a.rpc.to_string()],
        &env,
    );
    b.wait_healthy(Duration::from_secs(30)).await;
    let b_id = get_json(&b.url("/v1/status")).await.expect("status")["node_id"]
        .as_u64()
        .expect("id");
    // (A's own join may come first: the stream may open before A's view has A.)
    let b_joined = format!("\"kind\":\"join\",\"member\":{{\"id\":{b_id}");
    read_until(&mut watch, &mut seen, &b_joined).await;

    // Tags change while B runs, and reach A.
    let resp = http()
        .put(b.url("/v1/agent/tags"))
        .header("content-type", "application/json")
        .body(r#"{"zone": "b", "rack": "r12"}"#)
        .send()
        .await
        .expect("put tags");
    assert_eq!(resp.status(), 200);
    let bad = http()
        .put(b.url("/v1/agent/tags"))
        .header("content-type", "application/json")
        .body(r#"{"bad key": "x"}"#)
        .send()
        .await
        .expect("put bad tags");
    assert_eq!(bad.status(), 422);
    let tags: Value = get_json(&b.url("/v1/agent/tags")).await.expect("tags");
    assert_eq!(tags["zone"], "b");
    eventually("A sees B's new tags", Duration::from_secs(10), || async {
        get_json(&a.url(&format!("/v1/members/{b_id}")))
            .await
            .is_some_and(|m| m["tags"]["zone"] == "b" && m["tags"]["rack"] == "r12")
    })
    .await;
    // (B may have changed before: a client agent advertises the cluster id it learns.)
    read_until(
        &mut watch,
        &mut seen,
        "\"tags\":{\"rack\":\"r12\",\"zone\":\"b\"}",
    )
    .await;
    let b_updated = format!("\"kind\":\"update\",\"member\":{{\"id\":{b_id}");
    assert!(seen.contains(&b_updated), "{seen}");
    assert!(
        !seen.contains("\"kind\":\"dead\""),
        "no member died yet: {seen}"
    );

    // A crash: dead, pushed.
    let mut b = b;
    b.kill9();
    read_until(&mut watch, &mut seen, "event: dead").await;

    // The CLI printed B's join and death (it runs until stopped).
    let b_line = |kind: &str, line: &str| {
        let words: Vec<&str> = line.split_whitespace().collect();
        words.get(1..3) == Some(&[kind, b_id.to_string().as_str()][..])
    };
    let mut printed = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !printed.iter().any(|l: &String| b_line("dead", l)) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => printed.push(line),
            Err(_) => panic!("the CLI did not print B's death: {printed:?}"),
        }
    }
    assert!(printed.iter().any(|l| b_line("join", l)), "{printed:?}");
    let _ = cli_watch.kill();
    let _ = cli_watch.wait();
    reader.join().expect("reader");

    // The handler ran for each, with the member in its variables and on stdin.
    eventually(
        "the handler saw join, update and failed",
        Duration::from_secs(10),
        || {
            let events = events.clone();
            async move {
                let text = std::fs::read_to_string(&events).unwrap_or_default();
                text.contains(&format!("member-join {b_id}"))
                    && text.contains(&format!("member-update {b_id} rack=r12,zone=b"))
                    && text.contains(&format!("member-failed {b_id}"))
            }
        },
    )
    .await;
    let first: Value = std::fs::read_to_string(&stdin)
        .unwrap()
        .lines()
        .find(|l| l.contains(&format!("\"id\":{b_id}")))
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("an event on stdin");
    assert!(
        first["kind"].is_string() && first["seen_at"].is_string(),
        "{first}"
    );
}
