//! Power loss of a whole cluster: three Raft nodes in this process, each on its own
//! [`PowerLossDisk`] (only what was synced survives, plus a random, possibly torn, part of
//! the rest), under a concurrent write load; the power of all three is cut at a random
//! moment, the nodes restart on what their disks kept, and every write that was
//! acknowledged must be there with the revision it was acknowledged with. Several rounds,
//! with snapshots, log purges and segment rolls happening along the way.
//!
//! Real consensus, real sockets (loopback), the real stores; only the disk is simulated,
//! because a test cannot cut the power of the machine it runs on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclave_raft::{NodeOptions, RaftNode, RaftTuning};
use conclave_state::{Command, Outcome};
use conclave_storage::powerloss::PowerLossDisk;
use conclave_storage::{NodeId, NodeInfo, StorageOptions};
use openraft::ServerState;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const NODES: u64 = 3;
const WRITERS: usize = 8;
const ROUNDS: usize = 4;

struct Running {
    node: RaftNode,
    shutdown: CancellationToken,
}

fn root(id: NodeId) -> PathBuf {
    PathBuf::from(format!("/sim/node{id}"))
}

fn tuning() -> RaftTuning {
    RaftTuning {
        // Snapshots and purges every few hundred entries, so cuts land in them too.
        snapshot_threshold: 150,
        logs_kept_after_snapshot: 40,
        ..RaftTuning::default()
    }
}

async fn bind(addr: &str) -> TcpListener {
    // The previous incarnation's listener may take a moment to close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot bind {addr} again: {e}"),
        }
    }
}

/// Start node `id` on `disk`; `dirs` holds each node's data directory (for its identity).
async fn start(id: NodeId, disk: &PowerLossDisk, listener: TcpListener, dirs: &Path) -> Running {
    let data_dir = dirs.join(id.to_string());
    let info = NodeInfo {
        rpc_addr: listener.local_addr().unwrap().to_string(),
        api_addr: String::new(),
        learner_only: false,
    };
    let opts = StorageOptions {
        // Small segments, so segments roll under the load.
        segment_max_bytes: 32 * 1024,
        ..StorageOptions::default()
    };
    let (log, sm) = conclave_storage::open_on(Arc::new(disk.clone()), &root(id), &opts)
        .unwrap_or_else(|e| panic!("node {id} does not open its stores after the power cut: {e}"));
    let shutdown = CancellationToken::new();
    let node = RaftNode::start(
        NodeOptions {
            node_id: id,
            cluster_id: Some("power-loss".into()),
            cluster_token: None,
            tuning: tuning(),
            data_dir,
            info,
            name: format!("node-{id}"),
            name_given: true,
            cluster_name: None,
            voters_wanted: NODES as usize,
            bootstrap_expect: None,
            proposal_gate: None,
        },
        log,
        sm,
        listener,
        shutdown.clone(),
    )
    .await
    .unwrap_or_else(|e| panic!("node {id} does not start after the power cut: {e}"));
    Running { node, shutdown }
}

async fn wait_leader(nodes: &[Running]) -> NodeId {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for r in nodes {
            let m = r.node.metrics();
            if m.state == ServerState::Leader {
                return r.node.id;
            }
        }
        assert!(Instant::now() < deadline, "no leader after the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every node runs and has applied what the leader has: a node that came back from the
/// power cut unable to serve would stay behind (or report a fatal error).
async fn wait_all_caught_up(nodes: &[Running], seed: u64, round: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics: Vec<_> = nodes.iter().map(|r| r.node.metrics()).collect();
        for m in &metrics {
            if let Err(e) = &m.running_state {
                panic!(
                    "seed {seed}, round {round}: node {} stopped after the power cut: {e}",
                    m.id
                );
            }
        }
        let leader_applied = metrics
            .iter()
            .find(|m| m.state == ServerState::Leader)
            .and_then(|m| m.last_applied);
        if leader_applied.is_some() && metrics.iter().all(|m| m.last_applied >= leader_applied) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}, round {round}: not every node caught up after the restart: {:?}",
            metrics
                .iter()
                .map(|m| (m.id, m.state, m.last_applied))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Terms → the node that led in them, from every node's metrics. A vote that came back
/// older than it was saved could elect two leaders in one term; this notices.
type Leaders = Arc<Mutex<BTreeMap<u64, NodeId>>>;

fn record_leaders(nodes: &[Running], leaders: &Leaders) -> Result<(), String> {
    let mut seen = leaders.lock().unwrap();
    for r in nodes {
        let m = r.node.metrics();
        if m.state == ServerState::Leader {
            let holder = *seen.entry(m.current_term).or_insert(m.id);
            if holder != m.id {
                return Err(format!(
                    "two leaders in term {}: node {holder} and node {}",
                    m.current_term, m.id
                ));
            }
        }
    }
    Ok(())
}

/// Acknowledged writes: key → (value, revision).
type Acked = Arc<Mutex<BTreeMap<String, (Vec<u8>, u64)>>>;

fn spawn_writers(
    nodes: &[Running],
    round: usize,
    acked: &Acked,
    stop: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..WRITERS)
        .map(|w| {
            let node = nodes[w % nodes.len()].node.clone();
            let (acked, stop) = (acked.clone(), stop.clone());
            tokio::spawn(async move {
                for i in 0u64.. {
                    let key = format!("r{round}/w{w}/{i}");
                    let value = format!("{key}={}", "v".repeat((i % 200) as usize)).into_bytes();
                    let put = Command::Put {
                        key: key.clone(),
                        value: value.clone(),
                        expected: None,
                    };
                    let outcome = tokio::select! {
                        _ = stop.cancelled() => return,
                        o = node.propose(put) => o,
                    };
                    match outcome {
                        Ok(Outcome::Put { revision }) => {
                            acked.lock().unwrap().insert(key, (value, revision));
                        }
                        Ok(other) => panic!("a put answered {other:?}"),
                        // Failures and unknown outcomes are allowed; only acks are promises.
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_write_survives_a_power_cut_of_the_whole_cluster() {
    let seed: u64 = std::env::var("CONCLAVE_POWER_LOSS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (CONCLAVE_POWER_LOSS_SEED={seed} replays the disks' choices)");
    let mut rng = StdRng::seed_from_u64(seed);
    let dirs = tempfile::TempDir::new().unwrap();

    let mut disks: Vec<PowerLossDisk> = (1..=NODES)
        .map(|id| PowerLossDisk::new(&root(id), seed.wrapping_add(id)))
        .collect();
    let mut addrs = Vec::new();
    let mut nodes = Vec::new();
    for id in 1..=NODES {
        let l = bind("127.0.0.1:0").await;
        addrs.push(l.local_addr().unwrap().to_string());
        nodes.push(start(id, &disks[id as usize - 1], l, dirs.path()).await);
    }
    let members: BTreeMap<NodeId, NodeInfo> = (1..=NODES)
        .map(|id| {
            (
                id,
                NodeInfo {
                    rpc_addr: addrs[id as usize - 1].clone(),
                    api_addr: String::new(),
                    learner_only: false,
                },
            )
        })
        .collect();
    nodes[0].node.initialize(members).await.unwrap();
    wait_leader(&nodes).await;

    let acked: Acked = Arc::default();
    let leaders: Leaders = Arc::default();
    for round in 0..ROUNDS {
        let stop = CancellationToken::new();
        let writers = spawn_writers(&nodes, round, &acked, &stop);
        let before = acked.lock().unwrap().len();
        let watched = nodes
            .iter()
            .map(|r| Running {
                node: r.node.clone(),
                shutdown: r.shutdown.clone(),
            })
            .collect::<Vec<_>>();
        let watch_stop = CancellationToken::new();
        let watcher = {
            let (leaders, stop) = (leaders.clone(), watch_stop.clone());
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    record_leaders(&watched, &leaders)?;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ok::<(), String>(())
            })
        };
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        if round % 2 == 1 {
            // One node loses power first and comes back while the others go on: far behind
            // their purged logs, it is sent a snapshot, and the cut below may land mid-install.
            let k = rng.random_range(0..NODES as usize);
            let id = k as NodeId + 1;
            disks[k] = disks[k].power_cut();
            nodes[k].shutdown.cancel();
            nodes[k].node.shutdown().await;
            tokio::time::sleep(Duration::from_millis(rng.random_range(300..1200))).await;
            let l = bind(&addrs[k]).await;
            nodes[k] = start(id, &disks[k], l, dirs.path()).await;
            println!("round {round}: node {id} lost power alone and restarted");
            tokio::time::sleep(Duration::from_millis(rng.random_range(50..1200))).await;
        }

        // The power goes on all three at once; nothing written after this survives.
        let survivors: Vec<PowerLossDisk> = disks.iter().map(PowerLossDisk::power_cut).collect();
        stop.cancel();
        for w in writers {
            let _ = w.await;
        }
        for r in &nodes {
            r.shutdown.cancel();
            r.node.shutdown().await;
        }
        let in_round = acked.lock().unwrap().len() - before;
        println!("round {round}: {in_round} writes acknowledged before the cut");

        disks = survivors;
        nodes.clear();
        for id in 1..=NODES {
            let l = bind(&addrs[id as usize - 1]).await;
            nodes.push(start(id, &disks[id as usize - 1], l, dirs.path()).await);
        }
        watch_stop.cancel();
        if let Err(e) = watcher.await.unwrap() {
            panic!("seed {seed}, round {round}: {e}");
        }
        let leader = wait_leader(&nodes).await;
        record_leaders(&nodes, &leaders).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let reader = &nodes[(leader - 1) as usize].node;
        reader.read_barrier().await.unwrap();

        let acked_now = acked.lock().unwrap().clone();
        let mut missing = Vec::new();
        reader.state().read(|applied| {
            for (key, (value, revision)) in &acked_now {
                match applied.state.get(key) {
                    Some(kv)
                        if kv.value.as_ref() == value.as_slice()
                            && kv.mod_revision == *revision => {}
                    Some(kv) => missing.push(format!(
                        "{key}: acknowledged at revision {revision}, found revision {}",
                        kv.mod_revision
                    )),
                    None => {
                        missing.push(format!("{key}: acknowledged at revision {revision}, gone"))
                    }
                }
            }
        });
        let nodes_seen: Vec<String> = nodes
            .iter()
            .map(|r| {
                let m = r.node.metrics();
                let revision = r.node.state().read(|a| a.state.revision());
                format!(
                    "node {}: {:?} term {} vote {} last_log {:?} applied {:?} snapshot {:?} purged {:?} revision {revision}",
                    m.id,
                    m.state,
                    m.current_term,
                    m.vote,
                    m.last_log_index,
                    m.last_applied.map(|l| l.index),
                    m.snapshot.map(|l| l.index),
                    m.purged.map(|l| l.index)
                )
            })
            .collect();
        let max_acked = acked_now.values().map(|(_, r)| *r).max().unwrap_or(0);
        assert!(
            missing.is_empty(),
            "seed {seed}, round {round}: {} of {} acknowledged writes missing from a linearizable read after the power cut (highest acknowledged revision {max_acked}), e.g. {:?}\n{}",
            missing.len(),
            acked_now.len(),
            &missing[..missing.len().min(5)],
            nodes_seen.join("\n")
        );
        // Read first (as a client would, at once), then every node must catch up.
        wait_all_caught_up(&nodes, seed, round).await;
        println!(
            "round {round}: all {} acknowledged writes present after the restart (leader {leader})",
            acked_now.len()
        );
    }
    assert!(
        acked.lock().unwrap().len() > 100,
        "too few writes were acknowledged for the test to mean anything"
    );
    for r in &nodes {
        r.shutdown.cancel();
        r.node.shutdown().await;
    }
}
