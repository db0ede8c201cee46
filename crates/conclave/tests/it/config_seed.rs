//! `--config-seed`: each node's seed file, imported when the nodes agree.

use serde_json::Value;

use crate::config::{get_doc, write_file};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_seeds_import_what_nodes_agree_on_and_report_conflicts() {
    use crate::cluster::{cluster_env, eventually, get_json, start_static_each};
    use std::time::Duration;

    let root = tempfile::tempdir().unwrap();
    // Nodes 1 and 2 bring the sync database's own appsettings.json; node 3 a different list
    // and one more document.
    let appsettings = r#"{"EntglDb": {"Node": {"NodeId": "node-1", "TcpPort": 9000},
        "RemotePeers": [{"nodeId": "cloud-node-1", "address": "remote.entgldb.com:9000",
          "type": "CloudRemote", "oAuth2": {"authority": "https://identity.example.com",
          "clientId": "lan-cluster-client", "clientSecret": "${SECRET_FROM_ENV}",
          "scopes": ["entgldb:sync"]}}]}}"#;
    let seed_a = write_file(root.path(), "appsettings.json", appsettings);
    let seed_b = write_file(
        root.path(),
        "seed3.yaml",
        "kind: remote-peers\nname: default\ncontent:\n  peers:\n    - {node_id: cloud-node-9, address: 'other.example.com:9000'}\n---\nkind: remote-peers\nname: lan\ncontent:\n  peers:\n    - {node_id: lan-2, address: '10.0.0.2:9000'}\n",
    );
    let env = cluster_env(&[]);
    let seeds = [&seed_a, &seed_a, &seed_b];
    let per_node = seeds
        .iter()
        .map(|s| vec!["--config-seed".to_string(), s.to_string()])
        .collect();
    let nodes = start_static_each(root.path(), per_node, &env).await;
    let base = nodes[0].agent.url("");
    // The document only node 3 has is imported; the one they disagree on is not.
    eventually(
        "remote-peers/lan imported",
        Duration::from_secs(30),
        || async {
            get_json(&format!("{base}/v1/config/remote-peers/lan"))
                .await
                .is_some()
        },
    )
    .await;
    let conflict_of = || async {
        let st = get_json(&format!("{base}/v1/config/status"))
            .await
            .unwrap_or_default();
        st["seed_conflicts"]["remote-peers/default"].clone()
    };
    eventually(
        "the conflict is reported",
        Duration::from_secs(20),
        || async {
            conflict_of()
                .await
                .as_object()
                .is_some_and(|o| o.len() == 2)
        },
    )
    .await;
    let conflict = conflict_of().await;
    let mut holders: Vec<usize> = conflict
        .as_object()
        .unwrap()
        .values()
        .map(|ids| ids.as_array().unwrap().len())
        .collect();
    holders.sort();
    assert_eq!(holders, vec![1, 2], "{conflict}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = get_doc(&nodes[0].agent, "remote-peers/default").await;
    assert_eq!(r.status(), 404, "a conflicting seed was imported");
    let logs: String = nodes.iter().map(|n| n.agent.log_text()).collect();
    assert!(logs.contains("configuration seed conflict"), "{logs}");
    let (code, out, _) = cli(
        &["config", "status", "--addr", &nodes[0].agent.addr_flag()],
        None,
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("seed conflict for remote-peers/default"),
        "{out}"
    );

    // The operator picks one: the conflict is over, and the seeds no longer matter.
    let chosen = write_file(
        root.path(),
        "chosen.json",
        &format!(
            r#"{{"kind": "remote-peers", "name": "default", "content": {}}}"#,
            serde_json::to_string(&converted_appsettings()).unwrap()
        ),
    );
    let (code, out, err) = cli(
        &[
            "apply",
            "-f",
            &chosen,
            "--addr",
            &nodes[1].agent.addr_flag(),
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    let st = get_json(&format!("{base}/v1/config/status")).await.unwrap();
    assert_eq!(st["seed_conflicts"], serde_json::json!({}), "{st}");
    let doc: Value = get_doc(&nodes[2].agent, "remote-peers/default")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["content"]["peers"][0]["oauth2"]["token_url"],
        "https://identity.example.com/connect/token"
    );
    assert_eq!(
        doc["content"]["peers"][0]["oauth2"]["client_secret"],
        "${SECRET_FROM_ENV}"
    );
}

/// The seed's appsettings.json as `conclave` converts it.
pub fn converted_appsettings() -> Value {
    serde_json::json!({"peers": [{"node_id": "cloud-node-1", "address": "remote.entgldb.com:9000",
        "type": "cloud", "oauth2": {"token_url": "https://identity.example.com/connect/token",
        "client_id": "lan-cluster-client", "client_secret": "${SECRET_FROM_ENV}", "scope": "entgldb:sync"}}]})
}
