//! What scripts and shells use: `conclave health` as an exit code, completion scripts and
//! man pages generated from the CLI's own definitions.

use crate::support::{Agent, cli, free_addr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_an_exit_code_and_completions_and_man_pages_cover_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(tmp.path(), &[]).await;
    let addr = agent.addr_flag();
    let (code, out, err) = cli(&["health", "--addr", &addr], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok (node "), "{out}");
    let (code, out, _) = cli(&["health", "--addr", &addr, "-o", "json"], None);
    assert_eq!(code, 0);
    let body: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(body["status"], "ok");
    // Nothing listening: exit 1 with the reason, promptly.
    let nowhere = format!("http://{}", free_addr());
    let started = std::time::Instant::now();
    let (code, _, err) = cli(&["health", "--addr", &nowhere, "--timeout", "2s"], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no conclave agent"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    let (code, _, err) = cli(&["health", "--timeout", "soon"], None);
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = cli(&["health", "--live", "--addr", &nowhere], None);
    assert_eq!(code, 1, "nothing answers: not alive either");
    // A voter waiting for its peers is alive (a liveness probe must not restart it) but not
    // serving (a readiness probe keeps clients away).
    let waiting_dir = tmp.path().join("waiting");
    let never = free_addr().to_string();
    let waiting = Agent::spawn(
        &waiting_dir,
        free_addr(),
        free_addr(),
        &["--bootstrap-expect", "3", "--join", &never],
    );
    let waiting_addr = waiting.addr_flag();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (code, out, err) = cli(&["health", "--live", "--addr", &waiting_addr], None);
        if code == 0 {
            assert!(out.contains("alive, not serving"), "{out}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{out}{err}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (code, _, err) = cli(&["health", "--addr", &waiting_addr], None);
    assert_eq!(code, 1, "not serving: {err}");
    assert!(err.contains("not formed or joined"), "{err}");
    drop(waiting);

    for (shell, marker) in [
        ("bash", "_conclave()"),
        ("zsh", "#compdef conclave"),
        ("fish", "complete -c conclave"),
    ] {
        let (code, out, err) = cli(&["completions", shell], None);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains(marker),
            "{shell}: {}",
            &out[..out.len().min(200)]
        );
        assert!(
            out.contains("ipam") && out.contains("remove-dead"),
            "{shell}"
        );
    }
    let (code, _, _) = cli(&["completions", "tcsh"], None);
    assert_eq!(code, 2);

    let dir = tmp.path().join("man1");
    let (code, out, err) = cli(&["man", "--dir", dir.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}{err}");
    for page in [
        "conclave.1",
        "conclave-ipam-import.1",
        "conclave-members-remove-dead.1",
        "conclave-health.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page} is not a man page");
    }
    let alloc = std::fs::read_to_string(dir.join("conclave-ipam-alloc.1")).unwrap();
    assert!(
        alloc.contains("conclave ipam alloc"),
        "the synopsis names the full command"
    );
}

/// Under systemd (`Type=notify`): READY once the API serves, WATCHDOG pings at half
/// `WatchdogSec`, STOPPING when SIGTERM starts the shutdown — to a socket that plays
/// systemd's `NOTIFY_SOCKET`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    use std::time::{Duration, Instant};

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut agent = Agent::start_env(
        &tmp.path().join("agent"),
        &[],
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    )
    .await;
    let heard = |until: &str, within: Duration| {
        let deadline = Instant::now() + within;
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = msg.lines().any(|l| l == until);
                all.push(msg);
                if done {
                    return all;
                }
            }
        }
        panic!("no {until} within {within:?}; heard {all:?}");
    };
    let first = heard("READY=1", Duration::from_secs(10));
    assert!(
        first.iter().any(|m| m.contains("STATUS=serving as node")),
        "{first:?}"
    );
    // A health answer right after READY: it was not said too early.
    let (code, out, err) = cli(&["health", "--addr", &agent.addr_flag()], None);
    assert_eq!(code, 0, "{out}{err}");
    let pings = heard("WATCHDOG=1", Duration::from_secs(2));
    assert!(!pings.is_empty());
    let status = agent.signal_and_wait("TERM", Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let rest = heard("STOPPING=1", Duration::from_millis(500));
    assert!(!rest.is_empty());
}

/// The shipped unit file is one systemd accepts without a warning (a misspelt directive is
/// only a warning to systemd, so any output fails), pointed at the binary under test.
#[test]
#[ignore = "needs systemd-analyze (run by .ci/run)"]
fn the_systemd_unit_verifies_cleanly() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let unit = std::fs::read_to_string(format!("{root}/deploy/systemd/conclave.service"))
        .expect("deploy/systemd/conclave.service");
    for needed in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "DynamicUser=yes",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(needed)), "{needed}");
    }
    // The man pages it names are not installed here; verify checks them.
    let local: String = unit
        .lines()
        .filter(|l| !l.starts_with("Documentation="))
        .map(|l| l.replace("/usr/local/bin/conclave", env!("CARGO_BIN_EXE_conclave")) + "\n")
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("conclave.service");
    std::fs::write(&path, local).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}
