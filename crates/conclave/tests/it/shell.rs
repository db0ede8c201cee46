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
