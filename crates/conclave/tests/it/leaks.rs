//! No secret leaks: after a run that uses the cluster token, TLS, ACL tokens (management,
//! minted, an agent's) and refused requests, none of those secrets (nor the TLS private key)
//! is in the agent's log, an API answer, `/metrics` or `--print-config`; a minted token's
//! secret appears once, in the answer that made it.

use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::support::{Agent, BIN, pki, tls_agent_flags, tls_client_config, tls_client_env};

const CLUSTER_TOKEN: &str = "leak-test-cluster-token-7d1f0e2a";
const MANAGEMENT: &str = "leak-test-management-token-5c9b3a1e8f7d6c5b4a39";

#[tokio::test]
async fn no_secret_reaches_a_log_an_answer_a_metric_or_the_printed_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("CONCLAVE_CLUSTER_TOKEN", CLUSTER_TOKEN),
        ("CONCLAVE_ACL__ENABLED", "true"),
        ("CONCLAVE_ACL__INITIAL_MANAGEMENT_TOKEN", MANAGEMENT),
        ("CONCLAVE_ACL__AGENT_TOKEN", MANAGEMENT),
    ];
    let flags = tls_agent_flags();
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let agent = Agent::spawn_env(
        dir.path(),
        crate::support::free_addr(),
        crate::support::free_addr(),
        &args,
        &env,
    );
    let url = |path: &str| format!("https://{}{path}", agent.http);
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls_client_config())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut answers = String::new();
    let send = |method: Method, path: &str, token: Option<String>, body: Option<&str>| {
        let mut req = client.request(method, url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        async move {
            let resp = req.send().await?;
            let status = resp.status();
            Ok::<_, reqwest::Error>((status, resp.text().await.unwrap_or_default()))
        }
    };
    // Up, and bootstrapped with the operator's token.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let up = send(
            Method::GET,
            "/v1/acl/token/self",
            Some(MANAGEMENT.into()),
            None,
        )
        .await;
        if matches!(up, Ok((StatusCode::OK, _))) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not up:\n{}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mgmt = || Some(MANAGEMENT.to_string());

    let (st, made) = send(
        Method::PUT,
        "/v1/acl/policies/app",
        mgmt(),
        Some(r#"{"rules":[{"resource":"kv","prefix":"app/","access":"write"}]}"#),
    )
    .await
    .expect("policy");
    assert_eq!(st, StatusCode::OK, "{made}");
    let (st, made) = send(
        Method::POST,
        "/v1/acl/tokens",
        mgmt(),
        Some(r#"{"policies":["app"]}"#),
    )
    .await
    .expect("token");
    assert_eq!(st, StatusCode::OK, "{made}");
    let minted: serde_json::Value = serde_json::from_str(&made).expect("json");
    let minted = minted["secret_id"].as_str().expect("secret").to_owned();
    let minted_secret = minted.split_once('.').expect("dotted").1.to_owned();

    for (method, path, token, body) in [
        (Method::PUT, "/v1/kv/app/x", Some(minted.clone()), Some("v")),
        (
            Method::PUT,
            "/v1/kv/other/x",
            Some(minted.clone()),
            Some("v"),
        ),
        (
            Method::GET,
            "/v1/kv/app/x",
            Some(format!("{minted}0")),
            None,
        ),
        (
            Method::GET,
            "/v1/kv/app/x",
            Some(format!("{MANAGEMENT}x")),
            None,
        ),
        (Method::GET, "/v1/kv/app/x", None, None),
        (Method::GET, "/v1/status", mgmt(), None),
        (Method::GET, "/v1/cluster/status", mgmt(), None),
        (Method::GET, "/v1/acl/tokens", mgmt(), None),
        (Method::GET, "/v1/acl/policies", mgmt(), None),
        (
            Method::GET,
            "/v1/acl/token/self",
            Some(minted.clone()),
            None,
        ),
        (Method::GET, "/v1/members", mgmt(), None),
        (Method::GET, "/v1/audit?limit=1000", mgmt(), None),
        (Method::GET, "/metrics", mgmt(), None),
        (
            Method::POST,
            "/v1/agent/secrets/check",
            mgmt(),
            Some(r#"{"references":["${CONCLAVE_CLUSTER_TOKEN}"]}"#),
        ),
    ] {
        let (_, text) = send(method, path, token, body).await.expect("request");
        answers.push_str(&text);
    }
    // A reload on SIGHUP logs the certificate, never the key.
    let pid = agent.pid().expect("pid").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    let printed = std::process::Command::new(BIN)
        .args(["agent", "--print-config"])
        .args(&args)
        .envs(env)
        .envs(tls_client_env())
        .output()
        .expect("print-config");
    let printed = String::from_utf8_lossy(&printed.stdout).into_owned()
        + &String::from_utf8_lossy(&printed.stderr);
    assert!(printed.contains("<redacted>"), "{printed}");

    let key = std::fs::read_to_string(pki().join("agent-key.pem")).expect("key");
    let key_body = key.lines().nth(1).expect("a line of key material");
    let log = agent.log_text();
    for (what, text) in [
        ("the agent's log", &log),
        ("an API answer", &answers),
        ("--print-config", &printed),
    ] {
        for (secret, name) in [
            (CLUSTER_TOKEN, "the cluster token"),
            (MANAGEMENT, "the management token"),
            (minted_secret.as_str(), "a minted token"),
            (key_body, "the TLS private key"),
        ] {
            assert!(!text.contains(secret), "{name} is in {what}");
        }
    }
    assert!(
        log.contains("TLS files reloaded"),
        "the run did reload:\n{log}"
    );
}
