//! Bad input gets a clear error and loses nothing.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{Agent, error_code, free_addr, http};

/// Status, code and message of a JSON error (shape checked by `error_code`).
async fn code_of(r: reqwest::Response) -> (StatusCode, String, String) {
    let (st, code, body) = error_code(r).await;
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (st, code, message)
}

#[tokio::test]
async fn bad_requests_get_json_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::start(dir.path(), &[]).await;
    let c = http();
    c.put(a.url("/v1/kv/keep"))
        .body("safe")
        .send()
        .await
        .unwrap();

    let big_key = "k".repeat(4097);
    let (st, code, msg) = code_of(
        c.put(a.url(&format!("/v1/kv/{big_key}")))
            .body("v")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, code.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
    );
    assert!(msg.contains("4097") && msg.contains("4096"), "{msg}");

    let big_value = vec![b'v'; 1024 * 1024 + 1];
    let (st, _, msg) = code_of(
        c.put(a.url("/v1/kv/big"))
            .body(big_value)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(msg.contains("1048576"), "{msg}");
    // Exactly at the limit is fine.
    let r = c
        .put(a.url("/v1/kv/big"))
        .body(vec![b'v'; 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    for (q, needle) in [
        ("cas=abc", "cas must be"),
        ("cas=-1", "cas must be"),
        ("cass=1", "unknown query parameter"),
    ] {
        let (st, code, msg) = code_of(
            c.put(a.url(&format!("/v1/kv/keep?{q}")))
                .body("x")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (st, code.as_str()),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{q}"
        );
        assert!(msg.contains(needle), "{q}: {msg}");
    }
    let (st, _, msg) = code_of(
        c.get(a.url("/v1/kv/keep?consistency=eventual"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(msg.contains("consistency"), "{msg}");
    let (st, _, msg) = code_of(c.get(a.url("/v1/kv?limit=0")).send().await.unwrap()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(msg.contains("limit"), "{msg}");

    let (st, _, msg) = code_of(
        c.put(a.url("/v1/kv/bad%FFkey"))
            .body("x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(msg.contains("UTF-8"), "{msg}");
    let (st, _, _) = code_of(c.put(a.url("/v1/kv/")).body("x").send().await.unwrap()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Nothing was changed or lost.
    let r = c.get(a.url("/v1/kv/keep")).send().await.unwrap();
    assert_eq!(r.headers()["x-conclave-revision"], "1");
    assert_eq!(r.text().await.unwrap(), "safe");
    let s: Value = a.status().await;
    assert_eq!(s["revision"], 2);
}

fn run_agent(args: &[&str]) -> (i32, String) {
    let out = crate::support::command()
        .arg("agent")
        .args(args)
        .output()
        .expect("run agent");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_type_error_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("broken.toml");
    std::fs::write(
        &cfg,
        "# settings\nhttp_addr = \"127.0.0.1:0\"\nmax_value_bytes = \"lots\"\n",
    )
    .unwrap();
    let (code, err) = run_agent(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("broken.toml") && err.contains("line 3") && err.contains("max_value_bytes"),
        "{err}"
    );
    let (code, err) = run_agent(&[
        "--config",
        dir.path().join("missing.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn unwritable_data_dir_is_named() {
    let dir = tempfile::tempdir().unwrap();
    // A data dir below a regular file cannot be created, even by root.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let data = file.join("data");
    let (code, err) = run_agent(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--http-addr",
        &free_addr().to_string(),
        "--rpc-addr",
        &free_addr().to_string(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(data.to_str().unwrap()) && err.contains("--data-dir"),
        "{err}"
    );
}

#[tokio::test]
async fn port_in_use_names_the_address_and_touches_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::start(dir.path(), &[]).await;
    let other = tempfile::tempdir().unwrap();
    let data = other.path().join("data");
    let (code, err) = run_agent(&[
        "--data-dir",
        data.to_str().unwrap(),
        "--http-addr",
        &a.http.to_string(),
        "--rpc-addr",
        &free_addr().to_string(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&a.http.to_string()) && err.contains("--http-addr"),
        "{err}"
    );
    assert!(
        !data.exists(),
        "a failed start must not create the data dir"
    );
    // The running agent is unaffected.
    assert_eq!(
        http()
            .get(a.url("/v1/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn bad_coordination_requests_get_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::start(dir.path(), &[]).await;
    let c = http();
    let post = |path: &str, body: &'static str| c.post(a.url(path)).body(body).send();
    let cases: Vec<(reqwest::Response, StatusCode, &str)> = vec![
        (
            post("/v1/elections/e/campaign", "{not json").await.unwrap(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            post(
                "/v1/elections/e/campaign",
                r#"{"candidate": "a", "ttl_ms": 5}"#,
            )
            .await
            .unwrap(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            post(
                "/v1/elections/e/campaign",
                r#"{"candidate": "a", "ttl_ms": 2000, "x": 1}"#,
            )
            .await
            .unwrap(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            post(
                "/v1/elections/e/keepalive",
                r#"{"candidate": "a", "epoch": 9}"#,
            )
            .await
            .unwrap(),
            StatusCode::CONFLICT,
            "not_holder",
        ),
        (
            c.get(a.url("/v1/elections/nobody")).send().await.unwrap(),
            StatusCode::NOT_FOUND,
            "election_not_found",
        ),
        (
            c.get(a.url("/v1/watch?from_revision=abc"))
                .send()
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            c.get(a.url("/v1/watch?prefix=a&heartbeat_ms=1"))
                .send()
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            c.get(a.url("/v1/watch"))
                .header("last-event-id", "yesterday")
                .send()
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            c.put(a.url("/v1/config/Bad%20Kind/x"))
                .body("{}")
                .send()
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            c.get(a.url("/v1/config/remote-peers/x?revision=-1"))
                .send()
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            c.get(a.url("/v1/roles/none")).send().await.unwrap(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            post("/v1/roles/none/handover", "").await.unwrap(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            post("/v1/agent/secrets/check", r#"{"references": 5}"#)
                .await
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ];
    for (resp, status, code) in cases {
        let url = resp.url().to_string();
        let (st, got, msg) = code_of(resp).await;
        assert_eq!((st, got.as_str()), (status, code), "{url}: {msg}");
    }
    // Nothing was written by any of them.
    let s: Value = a.status().await;
    assert_eq!(s["revision"], 0, "{s}");
}

/// What a web page could make a browser send is refused, and nothing changes: a cross-site
/// write (CSRF) and a DNS-rebound request (the page's own name in `Host`). The CLI and curl,
/// which send no browser headers, are not affected.
#[tokio::test]
async fn browser_requests_from_elsewhere_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::start(dir.path(), &[]).await;
    let c = http();
    let addr = a.http.to_string();

    let csrf = c
        .put(a.url("/v1/kv/csrf"))
        .header("origin", "https://evil.example")
        .header("content-type", "text/plain")
        .body("pwned")
        .send()
        .await
        .unwrap();
    let (st, code, _) = code_of(csrf).await;
    assert_eq!((st, code.as_str()), (StatusCode::FORBIDDEN, "forbidden"));

    let rebound = c
        .get(a.url("/v1/snapshot"))
        .header("host", "evil.example:7400")
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    let (st, code, msg) = code_of(rebound).await;
    assert_eq!(
        (st, code.as_str()),
        (StatusCode::FORBIDDEN, "forbidden"),
        "{msg}"
    );

    // The agent's own origin (a page it would serve) may write.
    let own = c
        .put(a.url("/v1/kv/own"))
        .header("origin", format!("{}://{addr}", crate::support::scheme()))
        .body("ok")
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::OK);

    for key in ["csrf"] {
        let r = c.get(a.url(&format!("/v1/kv/{key}"))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{key} was written");
    }
}

/// Slow clients hold nothing for long: hundreds of connections that send half a request's
/// headers and stop (slowloris) do not keep a normal request from being answered, and each
/// is closed once the header timeout passes.
#[tokio::test]
async fn slow_clients_neither_block_others_nor_keep_their_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::start_env(dir.path(), &[], &[("CONCLAVE_HTTP_HEADER_TIMEOUT", "1s")]).await;
    let addr = a.http;
    // Half a request's headers; over TLS, half a handshake (a record header that promises
    // 255 bytes which never come).
    let partial: &[u8] = if crate::support::secure_mode() {
        &[0x16, 0x03, 0x01, 0x00, 0xff, 0x01]
    } else {
        b"GET /v1/health HTTP/1.1\r\nhost: x\r\nx-slow: "
    };
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(partial).await.unwrap();
        slow.push(s);
    }
    let started = std::time::Instant::now();
    let r = http().get(a.url("/v1/health")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(1),
        "a normal request took {took:?}"
    );

    // Every slow connection is closed by the agent (an answer or end of stream), not left open.
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        for mut s in slow {
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf).await;
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "slow connections were still open 10 s later"
    );
}
