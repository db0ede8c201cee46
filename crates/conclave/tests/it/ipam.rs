//! IPAM over HTTP on a 3-node cluster: the seed's paths and conclave's, through every node
//! (followers forward), every refusal as a JSON error, and no address handed out twice
//! while the leader is killed.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cluster::{cluster_env, leader_of, start_static};
use crate::support::{error_code, http};

async fn post(url: String, body: Value) -> reqwest::Response {
    http().post(url).json(&body).send().await.expect("request")
}

async fn get(url: String) -> Value {
    let resp = http().get(url).send().await.expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_and_allocations_through_every_node_never_hand_out_an_address_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = start_static(tmp.path(), 3, &[], &cluster_env(&[])).await;
    let leader = leader_of(&nodes, &[0, 1, 2]).await;
    let follower = (leader + 1) % 3;
    let bases: Vec<String> = nodes.iter().map(|n| n.agent.url("")).collect();
    let url = |i: usize, path: &str| format!("{}{path}", bases[i]);

    // The seed's request shape, sent to a follower.
    let created = post(
        url(follower, "/api/v1/networks"),
        json!({"cidr": "10.20.0.0/28", "description": "lab", "gateway": "10.20.0.1"}),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let net: Value = created.json().await.unwrap();
    let id = net["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("net-"), "{net}");
    assert_eq!(net["usage"]["total"], 14);
    assert_eq!(net["usage"]["reserved"], 1);

    // The seed's own cluster requests: health, status, node add and remove, audit.
    let health = http()
        .get(url(follower, "/api/v1/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let dead = crate::support::free_addr().to_string();
    let added = post(
        url(follower, "/api/v1/cluster/nodes"),
        json!({"node_id": 4, "addr": dead}),
    )
    .await;
    assert_eq!(added.status(), StatusCode::OK, "{:?}", added.text().await);
    let status = get(url(0, "/api/v1/cluster/status")).await;
    assert_eq!(status["members"].as_array().unwrap().len(), 4, "{status}");
    let removed = http()
        .delete(url(follower, "/api/v1/cluster/nodes/4"))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::OK);
    let status = get(url(2, "/api/v1/cluster/status")).await;
    assert_eq!(status["members"].as_array().unwrap().len(), 3, "{status}");

    // By hostname, through each node; a repeat gets the same address with 200.
    let mut seen = BTreeSet::new();
    for i in 0..3 {
        let body = json!({"network_id": id, "hostname": format!("web-{i}")});
        let first = post(url(i, "/api/v1/allocations"), body.clone()).await;
        assert_eq!(first.status(), StatusCode::CREATED);
        let first: Value = first.json().await.unwrap();
        let again = post(url((i + 1) % 3, "/v1/ipam/allocations"), body).await;
        assert_eq!(again.status(), StatusCode::OK);
        let again: Value = again.json().await.unwrap();
        assert_eq!(first["address"], again["address"]);
        assert!(seen.insert(first["address"].as_str().unwrap().to_owned()));
    }
    assert_eq!(
        seen,
        BTreeSet::from(["10.20.0.2", "10.20.0.3", "10.20.0.4"].map(String::from))
    );

    // Every refusal is a JSON error with its own code.
    let taken = post(
        url(0, "/api/v1/allocations"),
        json!({"network_id": id, "ip": "10.20.0.2"}),
    )
    .await;
    let (st, code, body) = error_code(taken).await;
    assert_eq!((st, code.as_str()), (StatusCode::CONFLICT, "address_taken"));
    assert!(
        body["error"]["message"].as_str().unwrap().contains("web-0"),
        "{body}"
    );
    assert_eq!(body["error"]["holder"]["hostname"], "web-0", "{body}");
    assert_eq!(body["error"]["holder"]["address"], "10.20.0.2", "{body}");
    assert!(
        body["error"]["holder"]["allocation_id"].is_string(),
        "{body}"
    );
    for (body, status, want) in [
        (
            json!({"cidr": "10.0.0.0/33"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            json!({"cidr": "10.20.0.0/24"}),
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            json!({"cidr": "10.99.0.0/24", "colour": "red"}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ] {
        let (st, code, _) = error_code(post(url(1, "/api/v1/networks"), body).await).await;
        assert_eq!((st, code.as_str()), (status, want));
    }
    let (st, code, _) =
        error_code(post(url(2, "/api/v1/allocations"), json!({"network_id": "nope"})).await).await;
    assert_eq!(
        (st, code.as_str()),
        (StatusCode::NOT_FOUND, "network_not_found")
    );
    let resp = http()
        .get(url(0, "/api/v1/allocations/alloc-999999"))
        .send()
        .await
        .unwrap();
    let (st, code, _) = error_code(resp).await;
    assert_eq!(
        (st, code.as_str()),
        (StatusCode::NOT_FOUND, "allocation_not_found")
    );

    // Kill the leader; the others keep allocating, by request id so a retry is safe.
    nodes[leader].agent.kill9();
    let live: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let mut n = 0;
    loop {
        let i = live[n % 2];
        let resp = post(
            url(i, "/api/v1/allocations"),
            json!({"network_id": id, "request_id": format!("r-{n}")}),
        )
        .await;
        match resp.status() {
            StatusCode::CREATED | StatusCode::OK => {
                let a: Value = resp.json().await.unwrap();
                seen.insert(a["address"].as_str().unwrap().to_owned());
                n += 1;
            }
            StatusCode::CONFLICT => {
                let (_, code, body) = error_code(resp).await;
                assert_eq!(code, "network_full", "{body}");
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("13 of 14"),
                    "{body}"
                );
                assert_eq!(body["error"]["usage"]["free"], 0, "{body}");
                assert_eq!(body["error"]["usage"]["allocated"], 13, "{body}");
                break;
            }
            // No leader yet, or an indeterminate answer: the same request id again.
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(n, 10, "13 usable addresses minus the 3 held");
    let audit = get(url(live[0], "/api/v1/audit?kind=ipam")).await;
    assert!(
        audit.to_string().contains(&format!("network {id}")),
        "the allocations are in the audit log: {audit}"
    );
    assert_eq!(seen.len(), 13);

    // The listing agrees with what was handed out, on every live node.
    for i in &live {
        let listed = get(url(*i, &format!("/api/v1/allocations?network={id}"))).await;
        let addrs: BTreeSet<String> = listed["allocations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["address"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(addrs, seen);
    }
    let page = get(url(live[0], "/v1/ipam/allocations?limit=5")).await;
    assert_eq!(page["allocations"].as_array().unwrap().len(), 5);
    assert_eq!(page["more"], true);

    // Release by id gives the address back; delete refuses while allocations exist.
    let first = page["allocations"][0].clone();
    let gone = http()
        .delete(url(
            live[0],
            &format!("/api/v1/allocations/{}", first["id"].as_str().unwrap()),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::OK);
    let net = get(url(live[1], &format!("/api/v1/networks/{id}"))).await;
    assert_eq!(net["usage"]["free"], 1);
    let busy = http()
        .delete(url(live[1], &format!("/api/v1/networks/{id}")))
        .send()
        .await
        .unwrap();
    let (st, code, _) = error_code(busy).await;
    assert_eq!((st, code.as_str()), (StatusCode::CONFLICT, "conflict"));
    let forced = http()
        .delete(url(live[1], &format!("/api/v1/networks/{id}?force=true")))
        .send()
        .await
        .unwrap();
    assert_eq!(forced.status(), StatusCode::OK);
    let body: Value = forced.json().await.unwrap();
    assert_eq!(body["released"], 12);
}

async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = req.send().await.expect("request");
    let status = resp.status();
    (status, resp.json().await.expect("json"))
}

/// An existing list imports whole or not at all, by CSV or JSON; what a host holds is
/// released by hostname or address; a network pages in address order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allocation_list_imports_whole_or_not_at_all_and_releases_by_hostname() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = crate::support::Agent::start(tmp.path(), &[]).await;
    let url = |path: &str| agent.url(path);
    let (st, _) = send(
        http()
            .post(url("/api/v1/networks"))
            .json(&json!({"id": "lan", "cidr": "10.30.0.0/24"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let csv = "network,address,hostname\nlan,10.30.0.10,db-1\nlan,10.30.0.11,db-2\n# a comment\nlan,10.30.0.12,\n";
    let import = |body: &'static str, content_type: &'static str| {
        http()
            .post(url("/api/v1/allocations/import"))
            .header("content-type", content_type)
            .body(body)
    };
    let (st, report) = send(import(csv, "text/csv")).await;
    assert_eq!(st, StatusCode::CREATED, "{report}");
    assert_eq!(
        (report["created"].clone(), report["existing"].clone()),
        (json!(3), json!(0))
    );
    // Again: nothing new, 200.
    let (st, report) = send(import(csv, "text/csv")).await;
    assert_eq!(st, StatusCode::OK, "{report}");
    assert_eq!(report["existing"], 3);
    // One conflicting row refuses the whole list and every conflict is named.
    let conflicting = r#"{"allocations": [
        {"network_id": "lan", "address": "10.30.0.20", "hostname": "new-1"},
        {"network_id": "lan", "address": "10.30.0.10", "hostname": "someone-else"},
        {"network_id": "nope", "address": "10.30.0.21"}
    ]}"#;
    let (st, body) = send(import(conflicting, "application/json")).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    let conflicts = body["error"]["conflicts"].as_array().expect("conflicts");
    assert_eq!(conflicts.len(), 2, "{body}");
    assert_eq!(conflicts[0]["row"], 2);
    assert_eq!(conflicts[0]["code"], "address_taken");
    assert_eq!(conflicts[0]["holder"]["hostname"], "db-1");
    assert_eq!(conflicts[1]["row"], 3);
    assert_eq!(conflicts[1]["code"], "network_not_found");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the first: row 2:"),
        "rows count from 1 in the message as in conflicts: {body}"
    );
    let listed = get(url("/api/v1/allocations?network=lan&prefix=10.30.0.20")).await;
    assert_eq!(
        listed["allocations"],
        json!([]),
        "nothing of it was imported"
    );
    // Malformed rows are 400s naming the row; a bad header names the column.
    for (body, content_type, says) in [
        ("network,address\nlan,10.30.0.300\n", "text/csv", "row 1"),
        ("network,addr\nlan,10.30.0.30\n", "text/csv", "addr"),
        (r#"{"allocations": []}"#, "application/json", "empty"),
        (r#"[{"network_id": "lan"}]"#, "application/json", "address"),
    ] {
        let (st, body) = send(import(body, content_type)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(says),
            "{says}: {body}"
        );
    }
    // Release by hostname, then by address, without knowing the ids.
    let (st, body) =
        send(http().delete(url("/api/v1/allocations?network=lan&hostname=db-2"))).await;
    assert_eq!(
        (st, body["released"]["address"].clone()),
        (StatusCode::OK, json!("10.30.0.11"))
    );
    let (st, body) =
        send(http().delete(url("/v1/ipam/allocations?network=lan&address=10.30.0.12"))).await;
    assert_eq!(
        (st, body["released"]["hostname"].clone()),
        (StatusCode::OK, Value::Null)
    );
    let (st, body) =
        send(http().delete(url("/api/v1/allocations?network=lan&hostname=db-2"))).await;
    assert_eq!(
        (st, body["error"]["code"].clone()),
        (StatusCode::NOT_FOUND, json!("allocation_not_found"))
    );
    let (st, _) = send(http().delete(url("/api/v1/allocations?network=lan"))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // A network pages in address order, the cursor an address.
    let (st, _) = send(
        http()
            .post(url("/api/v1/allocations"))
            .json(&json!({"network_id": "lan", "count": 5})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let mut after = String::new();
    let mut addresses = Vec::new();
    loop {
        let page = get(url(&format!(
            "/api/v1/allocations?network=lan&limit=2&after={after}"
        )))
        .await;
        for a in page["allocations"].as_array().unwrap() {
            addresses.push(a["address"].as_str().unwrap().to_owned());
        }
        match page["next_after"].as_str() {
            Some(next) => after = next.to_owned(),
            None => break,
        }
        if after.is_empty() {
            break;
        }
    }
    assert_eq!(
        addresses,
        [
            "10.30.0.1",
            "10.30.0.2",
            "10.30.0.3",
            "10.30.0.4",
            "10.30.0.5",
            "10.30.0.10"
        ]
    );

    // Metrics: usage per network from the state, and what the requests did.
    let (st, _) = send(
        http()
            .post(url("/api/v1/networks"))
            .json(&json!({"id": "tiny", "cidr": "10.31.0.0/30"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let one = json!({"network_id": "tiny", "count": 2});
    let (st, _) = send(http().post(url("/api/v1/allocations")).json(&one)).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, body) = send(
        http()
            .post(url("/api/v1/allocations"))
            .json(&json!({"network_id": "tiny"})),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("network_full"))
    );
    let want = [
        r#"conclave_ipam_addresses{network="lan",state="allocated"} 6"#,
        r#"conclave_ipam_addresses{network="tiny",state="free"} 0"#,
        r#"conclave_ipam_allocations_total{network="lan"} 8"#,
        r#"conclave_ipam_releases_total{network="lan"} 2"#,
        r#"conclave_ipam_exhausted_total{network="tiny"} 1"#,
        "conclave_ipam_networks 2",
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = crate::cluster::get_text(&url("/metrics")).await;
        let missing: Vec<_> = want
            .iter()
            .filter(|w| !text.lines().any(|l| l == **w))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "missing {missing:?} in\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The CLI, as the README shows it: create, allocate (twice: same address), list, usage,
/// release, and a refusal as a non-zero exit with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_allocates_lists_and_releases() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = crate::support::Agent::start(tmp.path(), &[]).await;
    let addr = agent.url("");
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--addr", addr.as_str()]);
        crate::support::cli(&all, None)
    };
    let (code, out, err) = run(&[
        "ipam",
        "network",
        "create",
        "10.9.0.0/29",
        "--id",
        "lab",
        "--gateway",
        "10.9.0.1",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("lab") && out.contains("10.9.0.0/29"), "{out}");
    let alloc = |host: &str| {
        let (code, out, err) = run(&[
            "ipam",
            "alloc",
            "--network",
            "lab",
            "--hostname",
            host,
            "-o",
            "json",
        ]);
        assert_eq!(code, 0, "{out}{err}");
        serde_json::from_str::<Value>(&out).expect("json")["address"].clone()
    };
    assert_eq!(alloc("db"), "10.9.0.2");
    assert_eq!(alloc("db"), "10.9.0.2");
    assert_eq!(alloc("web"), "10.9.0.3");
    let (code, out, _) = run(&["ipam", "list", "--network", "lab"]);
    assert_eq!(code, 0);
    assert!(out.contains("10.9.0.2") && out.contains("web"), "{out}");
    let (code, out, _) = run(&["ipam", "usage"]);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("lab") && l.contains(" 6 ") && l.contains(" 2 ")),
        "{out}"
    );
    let (code, out, err) = run(&["ipam", "release", "--network", "lab", "--hostname", "db"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("10.9.0.2"), "{out}");
    let (code, _, err) = run(&["ipam", "alloc", "--network", "lab", "--ip", "10.9.0.3"]);
    assert_ne!(code, 0);
    assert!(err.contains("already allocated to web"), "{err}");
    // An import: a list with a taken address imports nothing and names the row.
    let list = tmp.path().join("allocations.csv");
    std::fs::write(
        &list,
        "network,ip,hostname\nlab,10.9.0.5,cache\nlab,10.9.0.3,other\n",
    )
    .unwrap();
    let (code, _, err) = run(&["ipam", "import", list.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("row 2") && err.contains("already allocated to web"),
        "{err}"
    );
    std::fs::write(&list, "network,ip,hostname\nlab,10.9.0.5,cache\n").unwrap();
    let (code, out, err) = run(&["ipam", "import", list.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("imported 1 allocation"), "{out}");
    let (code, _, err) = run(&["ipam", "release", "--network", "lab"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&["ipam", "network", "delete", "lab"]);
    assert_ne!(code, 0);
    assert!(err.contains("force"), "{err}");
    let (code, out, _) = run(&["ipam", "network", "delete", "lab", "--force"]);
    assert_eq!(code, 0);
    assert!(out.contains("2 allocations released"), "{out}");
}
