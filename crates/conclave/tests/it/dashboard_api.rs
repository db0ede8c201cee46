//! What the dashboard reads and asks, over plain HTTP(S) without a browser (the browser test,
//! `dashboard.rs`, needs Chromium and runs in `.ci/run`): the embedded page open to anyone,
//! the agent's samples and settings, and `?dry_run=true` previews that change nothing and
//! refuse exactly what the change itself refuses.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::cluster::{TOKEN, cluster_env, eventually, get_json, leader_of, start_static};
use crate::support::{anonymous_builder, cli, error_code, http};

async fn post(url: &str) -> reqwest::Response {
    http().post(url).send().await.expect("request")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_samples_settings_and_previews_serve_the_dashboard() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = start_static(tmp.path(), 3, &[], &cluster_env(&[])).await;
    let leader = leader_of(&nodes, &[0, 1, 2]).await;
    let lead = &nodes[leader].agent;

    // The page and its files: open to a caller without a token, with a strict policy.
    let anonymous = anonymous_builder().build().unwrap();
    let page = anonymous.get(lead.url("/ui")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let policy = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(page.text().await.unwrap().contains("/ui/app.js"));
    let script = anonymous.get(lead.url("/ui/app.js")).send().await.unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    let (status, code, _) = error_code(
        anonymous
            .get(lead.url("/ui/missing.js"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let no_redirects = anonymous_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let moved = no_redirects
        .get(lead.url("/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(moved.headers()["location"], "/ui");

    // Samples: every interval, with each member's lag (a follower asks the leader).
    let follower = (0..3).find(|i| *i != leader).unwrap();
    for node in [leader, follower] {
        let url = nodes[node].agent.url("/v1/agent/samples");
        eventually("two samples with lag", Duration::from_secs(15), || async {
            get_json(&url).await.is_some_and(|s| {
                let samples = s["samples"].as_array().cloned().unwrap_or_default();
                samples.len() >= 2
                    && samples.iter().all(|x| x["applied_per_s"].is_number())
                    && samples.last().unwrap()["lag"]
                        .as_array()
                        .is_some_and(|l| l.len() == 3)
            })
        })
        .await;
    }
    let all = get_json(&lead.url("/v1/agent/samples")).await.unwrap();
    let last = all["samples"].as_array().unwrap().last().unwrap()["at_ms"]
        .as_u64()
        .unwrap();
    let newer = get_json(&lead.url(&format!("/v1/agent/samples?since={last}")))
        .await
        .unwrap();
    assert!(
        newer["samples"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["at_ms"].as_u64() > Some(last))
    );
    let (status, code, _) = error_code(
        http()
            .get(lead.url("/v1/agent/samples?since=yesterday"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "bad_request")
    );

    // Settings: live or restart, and no secret.
    let text = http()
        .get(lead.url("/v1/agent/settings"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains(TOKEN), "the cluster token is shown: {text}");
    let settings: Value = serde_json::from_str(&text).unwrap();
    let live = |key: &str| {
        settings["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .map(|s| s["live"].clone())
    };
    assert_eq!(live("raft"), Some(Value::Bool(false)));
    assert_eq!(live("check"), Some(Value::Bool(true)));

    // Previews change nothing.
    let fid = nodes[follower].agent.status().await["node_id"]
        .as_u64()
        .unwrap();
    let members_url = nodes[leader].agent.url("/v1/cluster/members");
    let roles = || async {
        get_json(&members_url)
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let before = roles().await;
    for (path, effect) in [
        (
            format!("/v1/cluster/members/{fid}/demote?dry_run=true"),
            "becomes a learner",
        ),
        (
            format!("/v1/cluster/members/{fid}/promote?dry_run=true"),
            "already a voter",
        ),
        (
            format!("/v1/cluster/leader/transfer?to={fid}&dry_run=true"),
            "leadership moves",
        ),
    ] {
        let r = post(&lead.url(&path)).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["dry_run"], true);
        assert!(
            body["effect"].as_str().unwrap().contains(effect),
            "{path}: {body}"
        );
    }
    let removal = http()
        .delete(lead.url(&format!("/v1/cluster/members/{fid}?dry_run=true")))
        .send()
        .await
        .unwrap();
    assert_eq!(removal.status(), StatusCode::OK);
    assert_eq!(roles().await, before, "a preview changed the membership");
    let (status, code, _) = error_code(
        post(&lead.url(&format!("/v1/cluster/members/{fid}/demote?dry_run=maybe"))).await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "bad_request")
    );
    let (status, code, _) =
        error_code(post(&lead.url("/v1/cluster/members/99/promote?dry_run=true")).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{code}");

    // With a voter down, demoting another is refused by the preview as by the change.
    let down = (0..3).find(|i| *i != leader && *i != follower).unwrap();
    let nodes_down_id = nodes[down].agent.status().await["node_id"]
        .as_u64()
        .unwrap();
    nodes[down].agent.kill9();
    let lead = &nodes[leader].agent;
    let status_url = nodes[leader].agent.url("/v1/cluster/status");
    eventually(
        "the leader sees the node down",
        Duration::from_secs(20),
        || async {
            get_json(&status_url).await.is_some_and(|s| {
                s["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|m| m["healthy"] == true)
                    .count()
                    == 2
            })
        },
    )
    .await;
    let preview = post(&lead.url(&format!("/v1/cluster/members/{fid}/demote?dry_run=true"))).await;
    let (p_status, p_code, p_body) = error_code(preview).await;
    let real = post(&lead.url(&format!("/v1/cluster/members/{fid}/demote"))).await;
    let (r_status, r_code, _) = error_code(real).await;
    assert_eq!(
        (p_status, p_code.as_str()),
        (StatusCode::CONFLICT, "unsafe_membership_change")
    );
    assert_eq!((r_status, r_code), (p_status, p_code), "{p_body}");
    // The same previews from the CLI: a refusal exits non-zero with the leader's reason.
    let addr = lead.addr_flag();
    let fid_s = fid.to_string();
    let (code, out, err) = cli(
        &["members", "demote", &fid_s, "--dry-run", "--addr", &addr],
        None,
    );
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("needed for a quorum"), "{err}");
    let down_id = nodes_down_id.to_string();
    let (code, out, err) = cli(
        &["members", "remove", &down_id, "--dry-run", "--addr", &addr],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("would remove") && out.contains("leaves the cluster"),
        "{out}"
    );
    let (code, out, err) = cli(&["leader", "transfer", "--dry-run", "--addr", &addr], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("would transfer: leadership moves"), "{out}");
    let (code, out, err) = cli(
        &["members", "remove-dead", "--dry-run", "--addr", &addr],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        roles().await.len(),
        3,
        "a dry run changed the membership: {out}"
    );
    let reap = post(&lead.url("/v1/members/remove-dead?dry_run=true")).await;
    assert_eq!(reap.status(), StatusCode::OK);
    assert_eq!(reap.json::<Value>().await.unwrap()["dry_run"], true);
}
