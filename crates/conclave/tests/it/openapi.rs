//! The OpenAPI document as served, and the membership guards schemathesis (run against it in
//! `.ci/run`, see `.ci/schemathesis`) showed were missing: a one-voter cluster promoted a
//! learner it had never heard from and lost its quorum; a learner could be added at another
//! member's RPC address.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cluster::{cluster_env, start_static};
use crate::support::{error_code, http};

#[tokio::test(flavor = "multi_thread")]
async fn the_document_is_served_with_every_route_group() {
    let tmp = tempfile::tempdir().unwrap();
    let nodes = start_static(tmp.path(), 1, &[], &cluster_env(&[])).await;
    let agent = &nodes[0].agent;
    let resp = http()
        .get(agent.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/v1/kv/{key}",
        "/v1/cluster/members/{id}/promote",
        "/v1/config/{kind}/{name}",
        "/v1/ipam/networks",
        "/api/v1/networks",
        "/v1/acl/tokens",
        "/v1/members/watch",
        "/metrics",
        "/ui",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
    let put = &doc["paths"]["/v1/kv/{key}"]["put"]["responses"];
    assert_eq!(
        put["409"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_learner_the_leader_never_heard_from_is_not_promoted() {
    let tmp = tempfile::tempdir().unwrap();
    let nodes = start_static(tmp.path(), 1, &[], &cluster_env(&[])).await;
    let agent = &nodes[0].agent;
    let client = http();
    // Nothing listens on port 1: the learner never answers.
    let added = client
        .post(agent.url("/v1/cluster/members"))
        .json(&json!({"node_id": 77, "rpc_addr": "127.0.0.1:1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::OK, "{:?}", added.text().await);

    for url in [
        "/v1/cluster/members/77/promote?dry_run=true",
        "/v1/cluster/members/77/promote",
    ] {
        let (status, code, body) =
            error_code(client.post(agent.url(url)).send().await.unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::CONFLICT, "unsafe_membership_change"),
            "{url}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("not in sync"), "{message}");
    }

    // A learner at the only voter's own address would be "replicated to" by talking to
    // the leader itself.
    let (status, code, body) = error_code(
        client
            .post(agent.url("/v1/cluster/members"))
            .json(&json!({"node_id": 78, "rpc_addr": agent.rpc.to_string()}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::CONFLICT, "conflict"),
        "{body}"
    );

    // Still one voter, still writing.
    let put = client
        .put(agent.url("/v1/kv/still-writing"))
        .body("yes")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let members: Value = client
        .get(agent.url("/v1/cluster/members"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let voters: Vec<&Value> = members
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "voter")
        .collect();
    assert_eq!(voters.len(), 1, "{members}");
    let removed = client
        .delete(agent.url("/v1/cluster/members/77"))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::OK);
}
