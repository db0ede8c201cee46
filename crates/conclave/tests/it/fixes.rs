//! Small things an operator trips over, each once found by trying conclave as a new user.

use std::time::Duration;

use reqwest::StatusCode;

use crate::cluster::eventually;
use crate::support::{Agent, cli, error_code, http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_and_its_cli_behave_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    // Variables that are not settings: one set by `conclave elect`, one of a user's, a typo.
    let a = Agent::start_env(
        dir.path(),
        &[],
        &[
            ("CONCLAVE_ELECTION_EPOCH", "3"),
            ("CONCLAVE_BIN", "/usr/bin/conclave"),
            ("CONCLAVE_CLUSTER_TOKNE", "oops"),
        ],
    )
    .await;
    let log = a.log_text();
    assert!(
        log.contains("ignoring CONCLAVE_ELECTION_EPOCH") && log.contains("ignoring CONCLAVE_BIN"),
        "{log}"
    );
    assert!(
        log.contains("did you mean CONCLAVE_CLUSTER_TOKEN?") && !log.contains("oops"),
        "{log}"
    );

    let c = http();
    // The IPAM seed's health URL.
    let r = c.get(a.url("/api/v1/health")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A wrong method is a JSON 405 on every router, the merged membership routes included.
    for (method, path) in [
        (reqwest::Method::POST, "/metrics"),
        (reqwest::Method::DELETE, "/v1/members"),
        (reqwest::Method::PUT, "/v1/gossip/stats"),
        (reqwest::Method::GET, "/v1/agent/secrets/check"),
        (reqwest::Method::POST, "/v1/status"),
    ] {
        let r = c.request(method.clone(), a.url(path)).send().await.unwrap();
        let (st, code, _) = error_code(r).await;
        assert_eq!(
            (st, code.as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            "{method} {path}"
        );
    }

    // healthy=false selects the unhealthy members, not everyone.
    eventually(
        "this agent reports healthy",
        Duration::from_secs(10),
        || async {
            let r = c
                .get(a.url("/v1/members?healthy=true"))
                .send()
                .await
                .unwrap();
            let v: serde_json::Value = r.json().await.unwrap();
            v.as_array().is_some_and(|m| m.len() == 1)
        },
    )
    .await;
    let r = c
        .get(a.url("/v1/members?healthy=false"))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v, serde_json::json!([]));
    let addr = a.addr_flag();
    let (code, out, _) = cli(
        &["members", "--unhealthy", "--addr", &addr, "-o", "json"],
        None,
    );
    assert_eq!((code, out.trim()), (0, "[]"));

    // kv ls says when more keys match, and continues with --after.
    for k in ["ls/a", "ls/b", "ls/c"] {
        let (code, _, err) = cli(&["kv", "put", k, "v", "--addr", &addr], None);
        assert_eq!(code, 0, "{err}");
    }
    let (code, out, err) = cli(&["kv", "ls", "ls/", "--limit", "2", "--addr", &addr], None);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(err.contains("--after ls/b"), "{err}");
    let (code, out, err) = cli(
        &[
            "kv", "ls", "ls/", "--limit", "2", "--after", "ls/b", "--addr", &addr,
        ],
        None,
    );
    assert_eq!(code, 0);
    assert!(
        out.starts_with("ls/c\t") && out.lines().count() == 1,
        "{out}"
    );
    assert!(err.is_empty(), "{err}");

    // A missing key's hint is a command, not an HTTP route.
    let (code, _, err) = cli(&["kv", "get", "nope", "--addr", &addr], None);
    assert_eq!(code, 1);
    assert!(
        err.contains("conclave kv ls") && !err.contains("/v1/"),
        "{err}"
    );

    // With -o json, an error is JSON on stdout too, in the API's shape.
    let (code, out, _) = cli(&["kv", "get", "nope", "--addr", &addr, "-o", "json"], None);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).expect("a JSON error");
    assert_eq!(v["error"]["code"], "key_not_found", "{v}");
    assert_eq!(v["error"]["status"], 404, "{v}");

    // A bad --addr is a usage error.
    let (code, _, err) = cli(&["kv", "get", "x", "--addr", "127.0.0.1:7400"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--addr must be a URL"), "{err}");

    // `snapshot save` with a bare file name, as in the README.
    let cwd = tempfile::tempdir().unwrap();
    let out = crate::support::command()
        .args(["snapshot", "save", "backup.snap", "--addr", &addr])
        .env_remove("CONCLAVE_ADDR")
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cwd.path().join("backup.snap").metadata().unwrap().len() > 0);
}
