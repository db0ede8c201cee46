//! Leader-bound roles on a real cluster: only eligible nodes hold them, planned handover,
//! failover after a kill, a frozen holder gives the role up when it wakes, and the OAuth2
//! client-credentials tokens are fetched on the holder without a secret ever leaving it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{cluster_env, eventually, get_json, get_text, signal, start_static_each};
use crate::support::{cli, http};

const SECRET: &str = "s3cr3t-client-credential-7f3a";
const TOKEN: &str = "issued-access-token-91c2";

/// A token endpoint: client credentials with the right secret get a token.
async fn token_server(hits: Arc<AtomicUsize>) -> String {
    use axum::routing::post;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/token",
        post(move |body: String| {
            let hits = hits.clone();
            async move {
                hits.fetch_add(1, Ordering::Relaxed);
                let form: Vec<(String, String)> = body
                    .split('&')
                    .filter_map(|p| p.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.replace("%2D", "-")))
                    .collect();
                let get = |k: &str| form.iter().find(|p| p.0 == k).map(|p| p.1.clone());
                if get("grant_type").as_deref() == Some("client_credentials")
                    && get("client_secret").as_deref() == Some(SECRET)
                {
                    (
                        axum::http::StatusCode::OK,
                        format!(r#"{{"access_token": "{TOKEN}", "token_type": "Bearer", "expires_in": 30}}"#),
                    )
                } else {
                    (
                        axum::http::StatusCode::UNAUTHORIZED,
                        r#"{"error": "invalid_client"}"#.to_string(),
                    )
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/token")
}

fn role_config(dir: &std::path::Path, i: usize, priority: i64, zone: &str) -> String {
    let log = dir.join(format!("hooks-{i}.log"));
    // The release hook takes a second, so that a shutdown that does not wait for it
    // would exit first (checked at the end of the test).
    let hook = |event: &str| {
        let pause = if event == "release" { "sleep 1; " } else { "" };
        format!(
            r#"{{ exec = ["sh", "-c", "{pause}echo {event} $CONCLAVE_ROLE_EPOCH >> {}"] }}"#,
            log.display()
        )
    };
    let text = format!(
        "[secrets]\nenv = [\"GW_*\"]\n\n[tags]\nzone = \"{zone}\"\n\n[[roles]]\nname = \"cloud-gateway\"\npriority = {priority}\nttl = \"3s\"\noauth2 = \"remote-peers/default\"\ntoken_hosts = [\"127.0.0.1\"]\neligible = {{ tags = {{ zone = \"lan\" }} }}\non_acquire = {}\non_release = {}\n",
        hook("acquire"),
        hook("release")
    );
    let path = dir.join(format!("agent-{i}.toml"));
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn hook_log(dir: &std::path::Path, i: usize) -> String {
    std::fs::read_to_string(dir.join(format!("hooks-{i}.log"))).unwrap_or_default()
}

async fn role(base: &str) -> Value {
    get_json(&format!("{base}/v1/roles/cloud-gateway"))
        .await
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_is_held_by_one_eligible_node_handed_over_failed_over_and_never_leaks_secrets() {
    let root = tempfile::tempdir().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let token_url = token_server(hits.clone()).await;
    // Nodes 1 and 2 are in the LAN zone (eligible), node 3 is not.
    let configs = [
        role_config(root.path(), 0, 1, "lan"),
        role_config(root.path(), 1, 5, "lan"),
        role_config(root.path(), 2, 10, "dmz"),
    ];
    let env = cluster_env(&[("GW_SECRET", SECRET)]);
    let per_node = configs
        .iter()
        .map(|c| vec!["-c".to_string(), c.clone()])
        .collect();
    let mut nodes = start_static_each(root.path(), per_node, &env).await;
    let bases: Vec<String> = nodes.iter().map(|n| n.agent.url("")).collect();
    let mut ids = Vec::new();
    for n in &nodes {
        ids.push(n.agent.status().await["node_id"].as_u64().unwrap());
    }
    let doc = format!(
        r#"{{"peers": [{{"node_id": "cloud-node-1", "address": "remote.example.com:9000", "type": "cloud",
            "oauth2": {{"token_url": "{token_url}", "client_id": "lan-cluster-client",
                        "client_secret": "${{GW_SECRET}}", "scope": "sync"}}}}]}}"#
    );
    let r = http()
        .put(format!("{}/v1/config/remote-peers/default", bases[0]))
        .body(doc)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // One eligible holder; its token for the cloud peer is fetched.
    eventually(
        "an eligible holder with a token",
        Duration::from_secs(30),
        || async {
            let r = role(&bases[2]).await;
            let holder = r["holder"].as_u64();
            holder.is_some_and(|h| h == ids[0] || h == ids[1]) && r["peers"][0]["status"] == "ok"
        },
    )
    .await;
    let r = role(&bases[2]).await;
    let first = r["holder"].as_u64().unwrap();
    let first_idx = ids.iter().position(|i| *i == first).unwrap();
    let first_epoch = r["epoch"].as_u64().unwrap();
    let ineligible = r["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["node_id"] == ids[2])
        .unwrap()["state"]
        .clone();
    assert_eq!(ineligible, "ineligible", "{r}");
    assert!(hits.load(Ordering::Relaxed) >= 1);
    assert!(hook_log(root.path(), first_idx).contains(&format!("acquire {first_epoch}")));

    // Validation against the live cluster asks the nodes that may hold a role whether each
    // secret reference resolves there.
    let check = |secret: &str| {
        let file = root.path().join(format!("check-{}.json", secret.len()));
        let doc = serde_json::json!({"kind": "remote-peers", "name": "default", "content": {"peers": [
            {"node_id": "cloud-node-1", "address": "remote.example.com:9000", "type": "cloud",
             "oauth2": {"token_url": token_url, "client_id": "c", "client_secret": secret}}]}});
        std::fs::write(&file, doc.to_string()).unwrap();
        cli(
            &[
                "config",
                "validate",
                "-f",
                file.to_str().unwrap(),
                "--addr",
                &nodes[2].agent.addr_flag(),
            ],
            None,
        )
    };
    let (code, out, err) = check("${GW_SECRET}");
    assert_eq!(code, 0, "{out}{err}");
    // Beyond the nodes' own [secrets] policy nothing resolves: not the cluster token, not
    // a file outside a secrets dir, not a FIFO or /dev/zero (which once froze the agent or
    // exhausted its memory), and the answers say only that.
    for reference in [
        "${CONCLAVE_CLUSTER_TOKEN}",
        "${HOME}",
        "file:/etc/passwd",
        "file:/dev/zero",
    ] {
        let (code, _, err) = check(reference);
        assert_eq!(code, 1, "{reference}: {err}");
        assert!(
            err.contains("not allowed on this node"),
            "{reference}: {err}"
        );
    }
    let (code, _, err) = check("${GW_NOT_SET_ANYWHERE}");
    assert_eq!(code, 1);
    assert_eq!(err.matches("does not resolve on node").count(), 2, "{err}");
    assert!(
        !err.contains(&ids[2].to_string()),
        "an ineligible node was asked: {err}"
    );

    // A planned handover goes to the other eligible node; the old holder releases.
    let other_idx = 1 - first_idx;
    let (code, out, err) = cli(
        &[
            "roles",
            "handover",
            "cloud-gateway",
            "--addr",
            &nodes[2].agent.addr_flag(),
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    let r = role(&bases[2]).await;
    assert_eq!(r["holder"], ids[other_idx], "{r}");
    let second_epoch = r["epoch"].as_u64().unwrap();
    assert!(second_epoch > first_epoch);
    eventually(
        "release and acquire hooks ran",
        Duration::from_secs(10),
        || async {
            hook_log(root.path(), first_idx).contains(&format!("release {first_epoch}"))
                && hook_log(root.path(), other_idx).contains(&format!("acquire {second_epoch}"))
        },
    )
    .await;
    // No preemption: the new holder keeps the role.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(role(&bases[2]).await["holder"], ids[other_idx]);

    // A holder frozen past its lease loses the role; when it wakes it releases at once.
    let frozen = nodes[other_idx].agent.pid().unwrap();
    signal(frozen, "STOP").await;
    eventually(
        "the other node took over",
        Duration::from_secs(20),
        || async { role(&bases[2]).await["holder"] == ids[first_idx] },
    )
    .await;
    let third_epoch = role(&bases[2]).await["epoch"].as_u64().unwrap();
    assert!(third_epoch > second_epoch);
    signal(frozen, "CONT").await;
    eventually(
        "the woken holder released",
        Duration::from_secs(15),
        || async { hook_log(root.path(), other_idx).contains(&format!("release {second_epoch}")) },
    )
    .await;
    eventually("one claimant again", Duration::from_secs(15), || async {
        let r = role(&bases[2]).await;
        r["claims"].as_array().is_some_and(|c| c.len() == 1) && r["split_brain"] == false
    })
    .await;

    // A killed holder is replaced once its lease ends.
    nodes[first_idx].agent.kill9();
    eventually("failover after a kill", Duration::from_secs(20), || async {
        let r = role(&bases[2]).await;
        r["holder"] == ids[other_idx] && r["epoch"].as_u64() > Some(third_epoch)
    })
    .await;

    // The secret and the token stay inside the holder: not in any answer or log line.
    // The exfiltration PUT: a document whose token_url points elsewhere, naming the
    // cluster token and then the real secret. The holder sends neither: the host is not on
    // the role's token_hosts, and CONCLAVE_* variables never resolve.
    let stolen = Arc::new(AtomicUsize::new(0));
    let attacker = {
        let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stolen = stolen.clone();
        let app = axum::Router::new().fallback(move || {
            stolen.fetch_add(1, Ordering::Relaxed);
            async { "" }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/token")
    };
    for secret in ["${CONCLAVE_CLUSTER_TOKEN}", "${GW_SECRET}"] {
        let doc = serde_json::json!({"peers": [{"node_id": "cloud-node-1", "address": "remote.example.com:9000",
            "type": "cloud", "oauth2": {"token_url": attacker, "client_id": "c", "client_secret": secret}}]});
        let r = http()
            .put(format!("{}/v1/config/remote-peers/default", bases[2]))
            .body(doc.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        eventually(
            "the holder refuses the new token host",
            Duration::from_secs(30),
            || async {
                role(&bases[2]).await["peers"][0]["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("not on this role's token_hosts"))
            },
        )
        .await;
    }
    assert_eq!(
        stolen.load(Ordering::Relaxed),
        0,
        "a secret was sent to a new host"
    );

    let mut seen = String::new();
    for (i, base) in bases.iter().enumerate() {
        if i == first_idx {
            continue;
        }
        for path in [
            "/v1/roles",
            "/v1/agent/roles",
            "/v1/members",
            "/v1/config/remote-peers/default",
            "/v1/config/status",
            "/v1/status",
        ] {
            if let Some(v) = get_json(&format!("{base}{path}")).await {
                seen.push_str(&v.to_string());
            }
        }
    }
    for (i, base) in bases.iter().enumerate() {
        if i != first_idx {
            let metrics = get_text(&format!("{base}/metrics")).await;
            assert!(metrics.contains("conclave_role_holder"), "{metrics}");
            assert!(
                metrics.contains("conclave_role_split_brain_alerts_total"),
                "the split-brain counter is exported (from 0): {metrics}"
            );
            seen.push_str(&metrics);
        }
    }
    for n in &nodes {
        seen.push_str(&n.agent.log_text());
    }
    assert!(
        seen.contains("cloud-node-1"),
        "the answers were not collected"
    );
    assert!(!seen.contains(SECRET), "the client secret leaked");
    assert!(!seen.contains(TOKEN), "the access token leaked");

    // A holder stopped with SIGTERM runs its on_release hook before it exits: shutdown
    // waits for the tracked background tasks.
    let held = role(&bases[2]).await["epoch"].as_u64().unwrap();
    assert_eq!(role(&bases[2]).await["holder"], ids[other_idx]);
    let status = nodes[other_idx]
        .agent
        .signal_and_wait("TERM", Duration::from_secs(30))
        .expect("the holder exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    let log = hook_log(root.path(), other_idx);
    assert!(
        log.contains(&format!("release {held}")),
        "on_release of epoch {held} had run when the process exited: {log}"
    );
}
