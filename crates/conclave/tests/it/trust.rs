//! Node RPC as a stranger speaks it: a process that reaches the RPC port with nothing but
//! the framing and the handshake, claiming node ids it does not own. Every message that
//! could brick, stall or corrupt the cluster is refused; afterwards the cluster has the same
//! leader and term, every node serves, and the canary key is intact.

use std::time::Duration;

use conclave_raft::rpc::{LeaderRequest, RpcRequest, RpcResponse};
use conclave_raft::transport::{Conn, Credentials};
use conclave_raft::{ConsensusError, RaftTuning, RejectReason};
use conclave_state::Command;
use openraft::Vote;
use openraft::raft::VoteRequest;

use crate::cluster::{cluster_env, cluster_status, get_value, leader_of, put, start_static};

/// The Raft timings of `cluster_env` (the handshake refuses other timings).
fn timings() -> conclave_raft::Timings {
    RaftTuning {
        heartbeat_ms: 100,
        election_timeout_min_ms: 800,
        election_timeout_max_ms: 1600,
        ..RaftTuning::default()
    }
    .timings()
}

fn credentials(claimed: u64, cluster: &str, token: Option<&str>) -> Credentials {
    Credentials::new(claimed, Some(cluster.to_owned()), token, timings())
}

/// A connection opened as `claimed` (any id the stranger likes) to `addr`.
async fn stranger(addr: &str, claimed: u64, cluster: &str, token: Option<&str>) -> Conn {
    Conn::connect(addr, &credentials(claimed, cluster, token))
        .await
        .expect("the handshake")
}

async fn send(conn: &mut Conn, req: RpcRequest) -> RpcResponse {
    conn.call::<_, RpcResponse>(&req).await.expect("an answer")
}

fn vote(candidate: u64, term: u64) -> RpcRequest {
    RpcRequest::Vote(VoteRequest::new(Vote::new(term, candidate), None))
}

fn propose(command: Command) -> RpcRequest {
    RpcRequest::Leader {
        req: LeaderRequest::Propose(command),
        hops: 1,
    }
}

fn assert_inadmissible(resp: RpcResponse, what: &str) {
    match resp {
        RpcResponse::Leader(Err(ConsensusError::Rejected(RejectReason::Inadmissible {
            ..
        }))) => {}
        other => panic!("{what} was not refused as inadmissible: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_a_stranger_can_neither_brick_stall_nor_corrupt_the_cluster() {
    let root = tempfile::tempdir().unwrap();
    let env: Vec<_> = cluster_env(&[])
        .into_iter()
        .filter(|(k, _)| *k != "CONCLAVE_CLUSTER_TOKEN")
        .collect();
    let nodes = start_static(root.path(), 3, &[], &env).await;
    attack(&nodes, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_a_stranger_is_refused_and_even_a_token_holder_cannot_brick_the_cluster() {
    let root = tempfile::tempdir().unwrap();
    let nodes = start_static(root.path(), 3, &[], &cluster_env(&[])).await;
    let cluster = cluster_status(&nodes[0].agent).await.unwrap()["cluster_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = Conn::connect(
        &nodes[0].agent.rpc.to_string(),
        &credentials(99, &cluster, None),
    )
    .await;
    assert!(
        refused.is_err(),
        "a stranger without the token got a session"
    );
    attack(&nodes, Some(crate::cluster::TOKEN)).await;
    client_agents_learn_the_members_and_nothing_more(&nodes, &cluster).await;
}

/// A client agent proves the token like a node but brings no Raft timings: it may ask what
/// a member knows, nothing else, and forwards only to the members a member reported.
async fn client_agents_learn_the_members_and_nothing_more(
    nodes: &[crate::cluster::Node],
    cluster: &str,
) {
    use conclave_coord::{Candidate, VerifiedMembers, VerifyError};

    let token = Some(crate::cluster::TOKEN);
    let rpc = nodes[0].agent.rpc.to_string();
    let client = Credentials::client_agent(77, Some(cluster.to_owned()), token);
    let mut c = Conn::connect(&rpc, &client)
        .await
        .expect("a client agent's handshake");
    assert!(matches!(
        send(&mut c, RpcRequest::Info).await,
        RpcResponse::Info(_)
    ));
    for (req, what) in [
        (vote(77, u64::MAX), "a vote request"),
        (propose(Command::ExpireLeases), "a proposal"),
    ] {
        assert!(
            matches!(send(&mut c, req).await, RpcResponse::NotAllowed(_)),
            "{what} from a client agent was served"
        );
    }

    let node0 = nodes[0].agent.status().await["node_id"].as_u64().unwrap();
    let verified = VerifiedMembers::new(Credentials::client_agent(77, None, token));
    let wrong = Candidate {
        id: node0 + 1000,
        rpc_addr: rpc.clone(),
    };
    assert!(matches!(
        verified.refresh(&[wrong], Some(cluster)).await,
        Err(VerifyError::WrongNode { .. })
    ));
    assert!(
        verified.targets(crate::support::scheme()).is_empty(),
        "a misnamed member became a target"
    );
    let right = Candidate {
        id: node0,
        rpc_addr: rpc.clone(),
    };
    assert!(matches!(
        verified
            .refresh(std::slice::from_ref(&right), Some("another-cluster"))
            .await,
        Err(VerifyError::OtherCluster { .. })
    ));
    assert_eq!(
        verified
            .refresh(std::slice::from_ref(&right), Some(cluster))
            .await,
        Ok(node0)
    );
    let mut targets = verified.targets(crate::support::scheme());
    let mut expected: Vec<String> = nodes.iter().map(|n| n.agent.url("")).collect();
    targets.sort();
    expected.sort();
    assert_eq!(targets, expected, "the verified members are the cluster's");

    let without = VerifiedMembers::new(Credentials::client_agent(78, None, Some("wrong")));
    assert!(matches!(
        without.refresh(&[right], None).await,
        Err(VerifyError::Unreachable { .. })
    ));
    assert!(
        without.targets("http").is_empty(),
        "a client with the wrong token has targets"
    );
}

/// Every attack, each refused; then the cluster is checked unchanged.
async fn attack(nodes: &[crate::cluster::Node], token: Option<&str>) {
    let leader = leader_of(nodes, &[0, 1, 2]).await;
    assert_eq!(
        put(&nodes[leader].agent, "canary", "alive").await.status(),
        200
    );
    let before = cluster_status(&nodes[leader].agent).await.unwrap();
    let cluster = before["cluster_id"].as_str().unwrap().to_owned();
    let term = before["term"].as_u64().unwrap();
    let leader_id = before["leader_id"].as_u64().unwrap();
    let follower = (leader + 1) % 3;
    let follower_rpc = nodes[follower].agent.rpc.to_string();
    let leader_rpc = nodes[leader].agent.rpc.to_string();

    // Votes: from a non-member, in another's name, and with a term at the end of u64.
    let mut c = stranger(&leader_rpc, 99, &cluster, token).await;
    for (req, what) in [
        (vote(99, term + 1), "a vote request from a non-voter"),
        (
            vote(leader_id, term + 1),
            "a vote request in another node's name",
        ),
        (vote(99, u64::MAX), "a vote request with term u64::MAX"),
    ] {
        assert!(
            matches!(send(&mut c, req).await, RpcResponse::NotAllowed(_)),
            "{what} was served"
        );
    }
    let mut as_voter = stranger(&follower_rpc, leader_id, &cluster, token).await;
    assert!(
        matches!(
            send(&mut as_voter, vote(leader_id, u64::MAX)).await,
            RpcResponse::NotAllowed(_)
        ),
        "a term of u64::MAX from a claimed voter was served"
    );

    // "You were removed": acknowledged, checked with the members, not believed.
    let mut c = stranger(&follower_rpc, 99, &cluster, token).await;
    assert!(matches!(
        send(&mut c, RpcRequest::Removed { by: leader_id }).await,
        RpcResponse::Ack
    ));

    // Proposals only the leader makes, and commands the HTTP API refuses.
    let mut c = stranger(&follower_rpc, 99, &cluster, token).await;
    assert_inadmissible(
        send(
            &mut c,
            propose(Command::Clock {
                term: u64::MAX,
                now_ms: u64::MAX / 2,
                wall_ms: 0,
            }),
        )
        .await,
        "a forged clock stamp",
    );
    assert_inadmissible(
        send(&mut c, propose(Command::ExpireLeases)).await,
        "a forged lease expiry",
    );
    assert_inadmissible(
        send(
            &mut c,
            propose(Command::ConfigPut {
                kind: String::new(),
                name: "/abs/path".into(),
                content: b"{}".to_vec(),
                hash: String::new(),
                author: None,
                expected: None,
            }),
        )
        .await,
        "a document named /abs/path",
    );
    assert_inadmissible(
        send(
            &mut c,
            propose(Command::Put {
                key: "_conclave/config/x/../../..".into(),
                value: b"{}".to_vec(),
                expected: None,
            }),
        )
        .await,
        "a key under the system prefix",
    );

    // Joins that would move a member: in another's name, and in the member's own name.
    let members = before["members"].as_array().unwrap().clone();
    let victim = members
        .iter()
        .map(|m| m["node_id"].as_u64().unwrap())
        .find(|id| *id != leader_id)
        .unwrap();
    let evil = conclave_storage::NodeInfo {
        rpc_addr: "127.0.0.1:9".into(),
        api_addr: "127.0.0.1:9".into(),
        learner_only: false,
    };
    let join = |node_id| RpcRequest::Leader {
        req: LeaderRequest::Join {
            node_id,
            info: evil.clone(),
            name: "evil".into(),
            name_given: true,
        },
        hops: 1,
    };
    let mut c = stranger(&follower_rpc, 99, &cluster, token).await;
    assert!(
        matches!(send(&mut c, join(victim)).await, RpcResponse::NotAllowed(_)),
        "a join in another node's name was served"
    );
    let mut as_victim = stranger(&leader_rpc, victim, &cluster, token).await;
    assert!(
        matches!(
            send(&mut as_victim, join(victim)).await,
            RpcResponse::Leader(Err(ConsensusError::Rejected(
                RejectReason::AlreadyMember { .. }
            )))
        ),
        "a join with a member's id moved it"
    );

    // Nothing changed: same leader, same term, every node a member and serving, canary
    // intact, and the removal notice did not stick.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = cluster_status(&nodes[follower].agent).await.unwrap();
    assert_eq!(after["leader_id"].as_u64(), Some(leader_id), "{after}");
    assert_eq!(
        after["term"].as_u64(),
        Some(term),
        "the term moved: {after}"
    );
    assert_eq!(
        after["members"].as_array().map(Vec::len),
        Some(3),
        "{after}"
    );
    assert!(
        !after.to_string().contains("127.0.0.1:9\""),
        "a member's address was rewritten: {after}"
    );
    for n in nodes {
        assert_eq!(
            get_value(&n.agent, "canary", false).await.as_deref(),
            Some("alive")
        );
        let identity = std::fs::read_to_string(n.dir.join("data/identity.json")).unwrap();
        assert!(!identity.contains("removed\":\""), "{identity}");
    }
    let log = nodes[follower].agent.log_text();
    assert!(log.contains("refused a node-RPC message"), "{log}");
    // A real write still commits on every node.
    assert_eq!(
        put(&nodes[follower].agent, "after", "yes").await.status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_handshake_a_connection_gets_no_memory_and_little_time() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let root = tempfile::tempdir().unwrap();
    let agent = crate::support::Agent::start(root.path(), &[]).await;
    let rpc = agent.rpc;
    // A length prefix of 64 MiB as the first frame: refused at once, nothing allocated.
    let mut big = tokio::net::TcpStream::connect(rpc).await.unwrap();
    big.write_all(&(64u32 * 1024 * 1024).to_le_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(2), big.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a 64 MiB pre-handshake frame was not refused: {closed:?}"
    );
    // A connection that never says hello is closed after the handshake timeout.
    let started = std::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(rpc).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a silent connection was kept: {closed:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "closed before the handshake timeout: {:?}",
        started.elapsed()
    );
    // The node still serves.
    assert_eq!(crate::cluster::put(&agent, "k", "v").await.status(), 200);
}

/// A TCP relay from `listen` to `target` that keeps a copy of every byte it passes on.
async fn recording_relay(
    listen: std::net::SocketAddr,
    target: std::net::SocketAddr,
) -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                continue;
            };
            type Read = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
            type Write = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;
            let (ir, iw) = inbound.into_split();
            let (or, ow) = outbound.into_split();
            let pairs: [(Read, Write); 2] =
                [(Box::new(ir), Box::new(ow)), (Box::new(or), Box::new(iw))];
            for (mut from, mut to) in pairs {
                let record = record.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = from.read(&mut buf).await {
                        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
            }
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_of_node_rpc_during_writes_holds_no_stored_value() {
    use crate::support::{Agent, free_addr};

    let root = tempfile::tempdir().unwrap();
    let addrs: Vec<_> = (0..3).map(|_| (free_addr(), free_addr())).collect();
    // Node 3 is reached through a relay that records what crosses it.
    let relay = free_addr();
    let seen = recording_relay(relay, addrs[2].1).await;
    let members = format!("1={},2={},3={relay}", addrs[0].1, addrs[1].1);
    let env = cluster_env(&[]);
    let mut agents = Vec::new();
    for (i, (h, r)) in addrs.iter().enumerate() {
        let relay_flag = relay.to_string();
        let mut args = vec!["--initial-members", members.as_str()];
        if i == 2 {
            args.extend(["--advertise-rpc-addr", relay_flag.as_str()]);
        }
        agents.push(Agent::spawn_env(
            &root.path().join(format!("n{i}")),
            *h,
            *r,
            &args,
            &env,
        ));
    }
    for a in &agents {
        a.wait_healthy(Duration::from_secs(30)).await;
    }
    // Written through nodes 1 and 2: each value reaches node 3 through the relay (as an
    // append if it follows, as a forwarded proposal if it leads).
    for i in 0..20 {
        let value = format!("plain-secret-value-{i:02}");
        assert_eq!(
            put(&agents[i % 2], &format!("k{i}"), &value).await.status(),
            200
        );
    }
    crate::cluster::eventually(
        "node 3 has every value",
        Duration::from_secs(10),
        || async {
            get_value(&agents[2], "k19", true).await.as_deref() == Some("plain-secret-value-19")
        },
    )
    .await;
    let captured = seen.lock().unwrap().clone();
    assert!(
        captured.len() > 1000,
        "the relay saw only {} bytes",
        captured.len()
    );
    assert!(
        !captured.windows(18).any(|w| w == b"plain-secret-value"),
        "a stored value crossed node RPC in the clear"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_that_meet_through_one_client_agent_keep_their_own_views() {
    use crate::support::{Agent, free_addr};

    let root = tempfile::tempdir().unwrap();
    // Two single-node clusters without a token (so one gossip network), each its own id.
    let a = Agent::start(&root.path().join("a"), &[]).await;
    let b = Agent::start(&root.path().join("b"), &[]).await;
    let (id_a, id_b) = (
        a.status().await["node_id"].as_u64().unwrap(),
        b.status().await["node_id"].as_u64().unwrap(),
    );
    let join = format!("{},{}", a.rpc, b.rpc);
    let client = Agent::spawn_env(
        &root.path().join("client"),
        free_addr(),
        free_addr(),
        &["--role", "client", "--join", join.as_str()],
        &[],
    );
    let ids = |url: String| async move {
        crate::cluster::get_json(&url)
            .await
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|m| m["id"].as_u64())
            .collect::<Vec<u64>>()
    };
    // The client meets both (it gossips with both seeds) and sides with one cluster.
    crate::cluster::eventually(
        "the client sides with one cluster",
        Duration::from_secs(20),
        || {
            let url = client.url("/v1/members");
            async move {
                let seen = ids(url).await;
                seen.len() == 2 && (seen.contains(&id_a) != seen.contains(&id_b))
            }
        },
    )
    .await;
    // Each cluster sees itself and the client, never the other cluster's node.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!ids(a.url("/v1/members")).await.contains(&id_b));
    assert!(!ids(b.url("/v1/members")).await.contains(&id_a));
    assert!(
        a.log_text().contains("members of another cluster")
            || b.log_text().contains("members of another cluster"),
        "the meeting of two clusters was not reported"
    );
}
