//! Node names: given with `--node-name` (or made from the hostname), recorded through the
//! leader, shown beside every id, and taken wherever a member is named — the API's member
//! paths and the CLI's `members remove|promote|demote`, `leader transfer --to`. A joiner
//! whose name a member holds is refused; a node restarted with another name is renamed.

use std::time::Duration;

use serde_json::Value;

use crate::cluster::{cluster_env, eventually, get_json, start_static_each};
use crate::support::{Agent, cli, free_addr, http};

/// `name → node id` of the members, as `GET /v1/cluster/members` shows them.
async fn names(agent: &Agent) -> Vec<(String, u64)> {
    let members = get_json(&agent.url("/v1/cluster/members"))
        .await
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    members
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or("").to_owned(),
                m["node_id"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

async fn role_of(agent: &Agent, name: &str) -> Option<String> {
    let members = get_json(&agent.url("/v1/cluster/members")).await?;
    members
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["role"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_go_by_unique_names_everywhere_an_id_is_taken() {
    let root = tempfile::tempdir().unwrap();
    let env = cluster_env(&[]);
    let per_node = (1..=3)
        .map(|i| vec!["--node-name".to_owned(), format!("db-{i}")])
        .collect();
    let mut nodes = start_static_each(root.path(), per_node, &env).await;
    let node3 = nodes.pop().expect("three nodes");
    let first = &nodes[0].agent;
    eventually("every member is named", Duration::from_secs(15), || async {
        let mut n: Vec<String> = names(first).await.into_iter().map(|(n, _)| n).collect();
        n.sort();
        n == ["db-1", "db-2", "db-3"]
    })
    .await;
    let status = first.status().await;
    assert_eq!(status["node_name"], "db-1");
    assert!(
        status["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "db-3"),
        "{status}"
    );
    let addr = first.addr_flag();

    // The CLI shows names, and takes them.
    let (code, out, err) = cli(&["members", "list", "--addr", &addr], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("NAME") && out.contains("db-2"), "{out}");
    let (code, out, _) = cli(&["status", "--addr", &addr], None);
    assert_eq!(code, 0);
    assert!(out.contains("node      db-1 (id "), "{out}");
    let (code, _, err) = cli(&["members", "demote", "db-3", "--addr", &addr], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(role_of(first, "db-3").await.as_deref(), Some("learner"));
    let (code, out, err) = cli(
        &["members", "promote", "db-3", "--dry-run", "--addr", &addr],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("would promote"), "{out}");
    eventually(
        "db-3 is back as a voter",
        Duration::from_secs(15),
        || async {
            let (code, _, _) = cli(&["members", "promote", "db-3", "--addr", &addr], None);
            code == 0 && role_of(first, "db-3").await.as_deref() == Some("voter")
        },
    )
    .await;
    let (code, _, err) = cli(
        &["leader", "transfer", "--to", "db-2", "--addr", &addr],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let db2 = names(first)
        .await
        .into_iter()
        .find(|(n, _)| n == "db-2")
        .unwrap()
        .1;
    eventually("db-2 leads", Duration::from_secs(10), || async {
        first.status().await["leader_id"].as_u64() == Some(db2)
    })
    .await;

    // An unknown name: 404 listing the names; neither an id nor a name: 400. The CLI says
    // the same before it changes anything.
    let r = http()
        .post(first.url("/v1/cluster/members/db-9/promote"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "member_not_found");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("db-9") && message.contains("db-2 ("),
        "{message}"
    );
    let r = http()
        .delete(first.url("/v1/cluster/members/not%20a%20name"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (code, _, err) = cli(
        &["leader", "transfer", "--to", "db-9", "--addr", &addr],
        None,
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("no member is named \"db-9\"") && err.contains("db-1 ("),
        "{err}"
    );

    // A joiner whose name a member holds is refused, and says why.
    let rpc = nodes[0].agent.rpc.to_string();
    let mut twin = Agent::spawn_env(
        &root.path().join("twin"),
        free_addr(),
        free_addr(),
        &["--join", &rpc, "--node-name", "db-2"],
        &env,
    );
    let exit = twin.wait_exit(Duration::from_secs(30));
    assert!(exit.is_some_and(|s| !s.success()), "{}", twin.log_text());
    assert!(
        twin.log_text()
            .contains("the name \"db-2\" is taken by node"),
        "{}",
        twin.log_text()
    );
    assert_eq!(
        names(first).await.len(),
        3,
        "the twin never became a member"
    );

    // Restarted with another name: renamed through the leader, and kept in its identity.
    let (dir3, mut agent3) = (node3.dir, node3.agent);
    let (http3, rpc3) = (agent3.http, agent3.rpc);
    agent3.signal_and_wait("TERM", Duration::from_secs(20));
    let members = crate::cluster::initial_members(&[
        (nodes[0].agent.http, nodes[0].agent.rpc),
        (nodes[1].agent.http, nodes[1].agent.rpc),
        (http3, rpc3),
    ]);
    let agent3 = Agent::spawn_env(
        &dir3,
        http3,
        rpc3,
        &["--initial-members", &members, "--node-name", "db-three"],
        &env,
    );
    agent3.wait_healthy(Duration::from_secs(30)).await;
    eventually("db-3 is now db-three", Duration::from_secs(15), || async {
        let n = names(first).await;
        n.iter().any(|(n, _)| n == "db-three") && !n.iter().any(|(n, _)| n == "db-3")
    })
    .await;
    let identity: Value =
        serde_json::from_slice(&std::fs::read(dir3.join("data/identity.json")).unwrap()).unwrap();
    assert_eq!(identity["name"], "db-three", "{identity}");

    // Removed by name: its name is free again.
    let (code, _, err) = cli(&["members", "remove", "db-three", "--addr", &addr], None);
    assert_eq!(code, 0, "{err}");
    eventually("db-three is gone", Duration::from_secs(10), || async {
        !names(first).await.iter().any(|(n, _)| n == "db-three")
    })
    .await;
    drop(agent3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unnamed_agent_is_named_after_its_host_and_port() {
    let root = tempfile::tempdir().unwrap();
    let agent = Agent::start(root.path(), &[]).await;
    let port = agent.http.port();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let expected = agent.status().await["node_name"]
        .as_str()
        .unwrap()
        .to_owned();
    // The hostname as it is when it makes a valid name (a CI host's usually does).
    assert!(expected.ends_with(&format!("-{port}")), "{expected}");
    let host = hostname.trim();
    if host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !host.chars().all(|c| c.is_ascii_digit())
        && host.len() < 50
    {
        assert!(expected.starts_with(host), "{expected} from {host}");
    }
    eventually(
        "the leader recorded the name",
        Duration::from_secs(10),
        || async { names(&agent).await.iter().any(|(n, _)| *n == expected) },
    )
    .await;
    // Gossip carries it too (every agent's view; peers files name peers by it).
    let gossip = get_json(&agent.url("/v1/members")).await.unwrap();
    assert_eq!(gossip[0]["name"], expected.as_str(), "{gossip}");

    // A default name is not a claim: a joiner whose default a member holds (hosts sharing
    // a hostname) joins under its fallback, the name with its id.
    let twin_dir = root.path().join("twin");
    std::fs::create_dir_all(twin_dir.join("data")).unwrap();
    let identity = serde_json::json!({"node_id": 777, "cluster_id": null, "name": expected});
    std::fs::write(twin_dir.join("data/identity.json"), identity.to_string()).unwrap();
    let rpc = agent.rpc.to_string();
    let twin = Agent::spawn(&twin_dir, free_addr(), free_addr(), &["--join", &rpc]);
    twin.wait_healthy(Duration::from_secs(30)).await;
    let fallback = format!("{expected}-777");
    eventually(
        "the twin goes by its fallback",
        Duration::from_secs(10),
        || async {
            names(&agent)
                .await
                .iter()
                .any(|(n, id)| *n == fallback && *id == 777)
        },
    )
    .await;
    assert_eq!(twin.status().await["node_name"], fallback.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_name_is_shown_and_a_node_meant_for_another_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let agent = Agent::start(&root.path().join("a"), &["--cluster-name", "prod"]).await;
    assert_eq!(agent.status().await["cluster_name"], "prod");
    let (code, out, err) = cli(&["status", "--addr", &agent.addr_flag()], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("cluster   prod ("), "{out}");
    eventually(
        "the cluster is in the metrics",
        Duration::from_secs(10),
        || async {
            crate::cluster::get_text(&agent.url("/metrics"))
                .await
                .contains("cluster_name=\"prod\"")
        },
    )
    .await;

    let rpc = agent.rpc.to_string();
    let mut stranger = Agent::spawn(
        &root.path().join("b"),
        free_addr(),
        free_addr(),
        &["--join", &rpc, "--cluster-name", "staging"],
    );
    let exit = stranger.wait_exit(Duration::from_secs(30));
    assert!(
        exit.is_some_and(|s| !s.success()),
        "{}",
        stranger.log_text()
    );
    assert!(
        stranger
            .log_text()
            .contains("this node is configured for cluster \"staging\", but"),
        "{}",
        stranger.log_text()
    );
    assert_eq!(names(&agent).await.len(), 1);
}
