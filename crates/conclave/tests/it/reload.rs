//! Changing a running agent: `conclave reload`, `POST /v1/agent/reload` and SIGHUP re-read
//! the config file and apply checks, publish sinks, tags and the log level live; other
//! settings are reported as needing a restart; an invalid file changes nothing.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{eventually, get_json};
use crate::support::{Agent, cli, http};

fn config(dir: &Path, zone: &str, level: &str, sink: &str, checks: &[(&str, &str)], raft: u64) {
    let mut body = format!(
        "log_level = {level:?}\ntags = {{ zone = {zone:?} }}\n\n[raft]\nheartbeat_ms = {raft}\n\n[[publish]]\npath = {:?}\nformat = \"json\"\nhealthy_only = false\ndebounce = \"100ms\"\n",
        dir.join(sink).display()
    );
    for (name, program) in checks {
        body.push_str(&format!(
            "\n[[check]]\nname = {name:?}\nexec = [{program:?}]\ninterval = \"200ms\"\nrise = 1\nfall = 1\n"
        ));
    }
    std::fs::write(dir.join("agent.toml"), body).unwrap();
}

async fn me(agent: &Agent) -> Value {
    let list = get_json(&agent.url("/v1/members"))
        .await
        .unwrap_or_default();
    list.as_array()
        .and_then(|l| l.first().cloned())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_reload_applies_live_settings_reports_the_rest_and_refuses_a_bad_file() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    config(dir, "a", "info", "peers-a.json", &[("ok", "true")], 100);
    let file = dir.join("agent.toml").display().to_string();
    let mut agent = Agent::start(dir, &["--config", &file]).await;
    let addr = agent.addr_flag();
    eventually("the first sink writes", Duration::from_secs(10), || async {
        dir.join("peers-a.json").exists()
    })
    .await;

    // Tags, sink, checks and log level change; raft's timing needs a restart.
    config(
        dir,
        "b",
        "debug",
        "peers-b.json",
        &[("ok", "true"), ("bad", "false")],
        80,
    );
    let (code, out, err) = cli(&["reload", "--addr", &addr, "-o", "json"], None);
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let applied: Vec<&str> = report["applied"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["setting"].as_str())
        .collect();
    for want in ["check", "publish", "tags", "log_level"] {
        assert!(applied.contains(&want), "{want} not applied: {report}");
    }
    assert_eq!(
        report["needs_restart"],
        serde_json::json!(["raft"]),
        "{report}"
    );
    let publish = report["applied"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["setting"] == "publish")
        .unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        publish.contains("started peers-b.json") && publish.contains("stopped peers-a.json"),
        "{publish}"
    );

    eventually("the new sink writes", Duration::from_secs(10), || async {
        dir.join("peers-b.json").exists()
    })
    .await;
    eventually(
        "the new tags and the failing check are gossiped",
        Duration::from_secs(10),
        || async {
            let m = me(&agent).await;
            m["tags"]["zone"] == "b" && m["failing_checks"] == serde_json::json!(["bad"])
        },
    )
    .await;
    let sinks = get_json(&agent.url("/v1/publish/status")).await.unwrap();
    assert_eq!(sinks.as_array().map(Vec::len), Some(1), "{sinks}");
    assert_eq!(sinks[0]["name"], "peers-b.json");
    eventually(
        "debug lines are logged",
        Duration::from_secs(10),
        || async { agent.log_text().contains("DEBUG") },
    )
    .await;

    // The human form says what applied and what waits.
    let (code, out, _) = cli(&["reload", "--addr", &addr], None);
    assert_eq!(code, 0);
    assert!(out.contains("restart needed for: raft"), "{out}");

    // A broken file: exit 1 naming the file and line, nothing changed, the agent serves on.
    std::fs::write(dir.join("agent.toml"), "log_level = \"info\"\ntags = 7\n").unwrap();
    let (code, out, err) = cli(&["reload", "--addr", &addr], None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("invalid config file") && err.contains("line 2"),
        "{err}"
    );
    let raw = http()
        .post(agent.url("/v1/agent/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 422);
    let body: Value = raw.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_config", "{body}");
    assert_eq!(me(&agent).await["tags"]["zone"], "b");
    assert!(dir.join("peers-b.json").exists());

    // SIGHUP applies a fixed file the same way, and the agent runs on.
    config(dir, "c", "info", "peers-b.json", &[("ok", "true")], 80);
    let pid = agent.pid().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    eventually(
        "SIGHUP applies the tags",
        Duration::from_secs(10),
        || async {
            let m = me(&agent).await;
            m["tags"]["zone"] == "c" && m["failing_checks"] == serde_json::json!([])
        },
    )
    .await;
    assert!(agent.log_text().contains("configuration reloaded"));
    // Nothing differs now but raft: an empty change, still reported.
    let report: Value = http()
        .post(agent.url("/v1/agent/reload"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        report["needs_restart"],
        serde_json::json!(["raft"]),
        "{report}"
    );
    let live: Vec<&str> = report["applied"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["setting"].as_str())
        .filter(|s| *s != "tls_files")
        .collect();
    assert!(live.is_empty(), "{report}");
    assert!(
        agent
            .signal_and_wait("TERM", Duration::from_secs(20))
            .is_some()
    );
}
