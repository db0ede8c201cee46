//! Gossip keys rotated on every agent from one command, with the CLI and with curl's
//! requests: install, use, remove; gossip never stops meanwhile; bad keys are refused;
//! an agent that is down is named as missing the step and, restarted, keeps the rotated
//! keyring from its data directory.

use std::time::Duration;

use serde_json::Value;

use crate::cluster::{Node, cluster_env, eventually, get_json, start_static};
use crate::support::{Agent, cli, free_addr, http};

async fn alive_everywhere(agents: &[std::net::SocketAddr], n: usize) -> bool {
    for a in agents {
        let Some(list) = get_json(&format!("{}/v1/members", base(*a))).await else {
            return false;
        };
        let list = list.as_array().cloned().unwrap_or_default();
        if list.len() != n || list.iter().any(|m| m["state"] != "alive") {
            return false;
        }
    }
    true
}

fn base(addr: std::net::SocketAddr) -> String {
    let scheme = if crate::support::secure_mode() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{addr}")
}

fn keys(out: &str) -> Vec<String> {
    out.lines()
        .skip(1)
        .filter(|l| !l.starts_with("agent "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_on_every_agent_and_a_down_agent_is_named_and_keeps_its_keyring() {
    let root = tempfile::tempdir().unwrap();
    let env = cluster_env(&[]);
    let voters: Vec<Node> = start_static(root.path(), 3, &[], &env).await;
    let client_dir = root.path().join("client");
    let (ch, cr) = (free_addr(), free_addr());
    let join = voters[0].agent.rpc.to_string();
    let client_args = ["--role", "client", "--join", join.as_str()];
    let mut client = Agent::spawn_env(&client_dir, ch, cr, &client_args, &env);
    client.wait_healthy(Duration::from_secs(30)).await;
    let all: Vec<_> = voters
        .iter()
        .map(|v| v.agent.http)
        .chain([client.http])
        .collect();
    eventually("4 alive everywhere", Duration::from_secs(20), || {
        alive_everywhere(&all, 4)
    })
    .await;
    let at = voters[1].agent.addr_flag();

    // One key, held and used by all four.
    let (code, out, err) = cli(&["gossip", "keys", "list", "--addr", &at], None);
    assert_eq!(code, 0, "{out}{err}");
    let listed = keys(&out);
    assert_eq!(listed.len(), 1, "{out}");
    assert!(listed[0].contains("4/4          4/4"), "{out}");
    let old_id = listed[0].split_whitespace().next().unwrap().to_owned();

    // Rotation with the CLI: install, use (asked through the client agent), remove.
    let (code, new_key, _) = cli(&["gossip", "keys", "generate"], None);
    assert_eq!(code, 0);
    let new_key = new_key.trim().to_owned();
    let (code, out, err) = cli(
        &["gossip", "keys", "install", &new_key, "--addr", &at],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(keys(&out).len(), 2, "{out}");
    assert!(
        !out.contains(&new_key),
        "a key is never printed back: {out}"
    );
    let (code, out, err) = cli(
        &[
            "gossip",
            "keys",
            "use",
            &new_key,
            "--addr",
            &client.addr_flag(),
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        keys(&out)
            .iter()
            .any(|l| l.ends_with(" 4/4") && !l.starts_with(&old_id)),
        "{out}"
    );
    // The same step with a plain HTTP request: remove the old key by its id.
    let resp = http()
        .post(voters[2].agent.url("/v1/gossip/keys"))
        .json(&serde_json::json!({"op": "remove", "key": old_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["failed"], 0, "{answer}");
    assert_eq!(answer["nodes"].as_object().unwrap().len(), 4, "{answer}");
    for node in answer["nodes"].as_object().unwrap().values() {
        assert_eq!(node["keys"].as_array().unwrap().len(), 1, "{answer}");
    }
    // Gossip never stopped: still four alive, well past a suspicion period.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        alive_everywhere(&all, 4).await,
        "a member was lost in the rotation"
    );

    // Bad input: a 400 or 422 with a JSON error, nothing changed.
    let bad = http()
        .post(voters[0].agent.url("/v1/gossip/keys"))
        .body("{\"op\": \"install\"}")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.json::<Value>().await.unwrap()["error"]["message"].is_string());
    let (code, _, err) = cli(
        &["gossip", "keys", "install", "not-a-key", "--addr", &at],
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("base64"), "{err}");
    let (code, _, err) = cli(&["gossip", "keys", "remove", &new_key, "--addr", &at], None);
    assert_ne!(code, 0);
    assert!(err.contains("in use"), "{err}");

    // The client agent is down: the next step names it and exits 1; the others take it.
    // (Wait until the agent the CLI asks, voter 2, sees it dead: each agent's view is its
    // own, and a loaded machine can take a while to turn a suspect dead.)
    client.kill9();
    eventually(
        "the client dead on voter 2",
        Duration::from_secs(20),
        || async {
            let list = get_json(&voters[1].agent.url("/v1/members")).await;
            list.and_then(|l| l.as_array().cloned()).is_some_and(|l| {
                l.iter()
                    .any(|m| m["role"] == "client" && m["state"] == "dead")
            })
        },
    )
    .await;
    let (_, spare, _) = cli(&["gossip", "keys", "generate"], None);
    let (code, out, err) = cli(
        &["gossip", "keys", "install", spare.trim(), "--addr", &at],
        None,
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("dead in gossip, not asked"), "{out}");
    assert!(err.contains("1 of 4 agents did not install"), "{err}");

    // Restarted on its data directory, it seals and opens with the rotated key it saved.
    client = Agent::spawn_env(&client_dir, ch, cr, &client_args, &env);
    client.wait_healthy(Duration::from_secs(30)).await;
    eventually("4 alive again", Duration::from_secs(20), || {
        alive_everywhere(&all, 4)
    })
    .await;
    let file = client_dir.join("data/gossip-keyring.json");
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.contains(&new_key), "{saved}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let stats: Value = get_json(&voters[0].agent.url("/v1/gossip/stats"))
        .await
        .unwrap();
    assert!(stats["refused_forged"].as_u64().is_some(), "{stats}");
}
