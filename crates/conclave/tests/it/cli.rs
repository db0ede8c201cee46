//! The CLI against a real agent: commands, output formats and exit codes.

use crate::support::{Agent, cli};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_commands_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::start(dir.path(), &[]).await;
    let addr = a.addr_flag();
    let addr = addr.as_str();

    let (code, out, _) = cli(&["kv", "put", "app/color", "blue", "--addr", addr], None);
    assert_eq!((code, out.trim()), (0, "OK revision 1"));
    let (code, out, _) = cli(
        &["kv", "put", "app/file", "--addr", addr],
        Some(b"from stdin"),
    );
    assert_eq!((code, out.trim()), (0, "OK revision 2"));
    let (code, out, _) = cli(&["kv", "get", "app/file", "--addr", addr], None);
    assert_eq!((code, out.as_str()), (0, "from stdin"));
    let (code, out, _) = cli(
        &["kv", "get", "app/color", "-o", "json", "--addr", addr],
        None,
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["value"].as_str(), v["revision"].as_u64()),
        (Some("blue"), Some(1))
    );

    let (code, out, _) = cli(&["kv", "ls", "app/", "--addr", addr], None);
    assert_eq!(code, 0);
    assert!(
        out.contains("app/color\tblue") && out.contains("app/file"),
        "{out}"
    );

    // CAS conflict: exit 1 with the server's message and hint.
    let (code, _, err) = cli(
        &[
            "kv",
            "put",
            "app/color",
            "red",
            "--cas",
            "0",
            "--addr",
            addr,
        ],
        None,
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("compare-and-swap failed") && err.contains("hint:"),
        "{err}"
    );

    let (code, out, _) = cli(&["kv", "del", "app/color", "--addr", addr], None);
    assert_eq!(code, 0);
    assert!(out.contains("deleted"), "{out}");
    let (code, _, err) = cli(&["kv", "get", "app/color", "--addr", addr], None);
    assert_eq!(code, 1);
    assert!(err.contains("does not exist"), "{err}");

    let (code, out, _) = cli(&["status", "--addr", addr], None);
    assert_eq!(code, 0);
    assert!(out.contains("leader") && out.contains("NAME"), "{out}");
    let (code, out, _) = cli(&["status", "-o", "json", "--addr", addr], None);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["role"], "leader");

    // With no roles declared, `conclave roles` says so instead of printing nothing.
    let (code, out, _) = cli(&["roles", "--addr", addr], None);
    assert_eq!(code, 0);
    assert!(out.contains("no roles"), "{out}");
}

#[test]
fn usage_errors_exit_2_and_missing_agent_is_explained() {
    let (code, _, err) = cli(&["kv", "frobnicate"], None);
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = cli(&["kv", "put", "k", "v", "--cas", "notanumber"], None);
    assert_eq!(code, 2);

    let port = crate::support::free_addr().port();
    let addr = format!("http://127.0.0.1:{port}");
    let (code, _, err) = cli(&["kv", "get", "k", "--addr", &addr], None);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("no conclave agent at {addr}")) && err.contains("conclave agent"),
        "{err}"
    );

    // Every command documents an example.
    for cmd in [
        &["agent", "--help"][..],
        &["kv", "put", "--help"],
        &["kv", "get", "--help"],
        &["kv", "del", "--help"],
        &["kv", "ls", "--help"],
        &["status", "--help"],
    ] {
        let (code, out, _) = cli(cmd, None);
        assert_eq!(code, 0);
        assert!(out.contains("Examples:"), "{cmd:?}: {out}");
    }
}

#[test]
fn print_config_shows_the_layered_result() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "max_value_bytes = 1000\nlog_format = \"json\"\n").unwrap();
    let out = crate::support::command()
        .args([
            "agent",
            "--print-config",
            "--config",
            cfg.to_str().unwrap(),
            "--max-key-bytes",
            "77",
        ])
        .env("CONCLAVE_MAX_VALUE_BYTES", "2000")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("max_value_bytes = 2000"),
        "env beats file: {text}"
    );
    assert!(text.contains("max_key_bytes = 77"), "flag: {text}");
    assert!(text.contains("log_format = \"json\""), "file: {text}");
    assert!(
        text.contains("http_addr = \"127.0.0.1:7400\""),
        "default: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_into_a_closed_pipe_does_not_panic() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::start(dir.path(), &[]).await;
    let mut child = crate::support::command()
        .args(["status", "--addr", &a.addr_flag()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before the CLI writes, as `| head -0` would.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

/// `conclave tags`: set, show, unset while the agent runs; gossip shows the change; a bad
/// pair is a usage error and an unknown key names the known ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_change_at_runtime_and_gossip_shows_them() {
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::start(dir.path(), &["--tag", "role=db"]).await;
    let addr = a.addr_flag();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--addr", addr.as_str()]);
        cli(&all, None)
    };
    let (code, out, err) = run(&["tags"]);
    assert_eq!((code, out.trim()), (0, "role=db"), "{err}");
    let (code, out, err) = run(&["tags", "set", "zone=eu-1", "rack=r12"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "rack=r12\nrole=db\nzone=eu-1\n");
    let (code, out, err) = run(&["tags", "unset", "rack", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v, serde_json::json!({"role": "db", "zone": "eu-1"}));
    let (code, _, err) = run(&["tags", "unset", "nope"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no tag \"nope\"") && err.contains("role, zone"),
        "{err}"
    );
    let (code, _, err) = run(&["tags", "set", "novalue"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("KEY=VALUE"), "{err}");
    // The gossip view carries the change.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (code, out, _) = run(&["members", "--tag", "zone=eu-1", "-o", "json"]);
        assert_eq!(code, 0);
        if out.contains("eu-1") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{out}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
