//! Forming and joining a cluster.
//!
//! Three ways, as operators know them from etcd, Consul and rqlite:
//! - **static** (`--initial-members 1=a:7401,2=b:7401,3=c:7401`): every initial member
//!   initializes Raft with the same membership, which openraft documents as safe;
//! - **bootstrap-expect** (`--bootstrap-expect 3 --join a,b,c`): nodes ask each other what
//!   they are; once `expect` pristine nodes that all expect the same number have met, the
//!   one with the lowest id forms the cluster with all of them and the others adopt it when
//!   its first replication reaches them. If a cluster already exists, they join it instead;
//! - **join** (`--join a:7401`): ask any member; it forwards the request to the leader, which
//!   adds this node as a learner. The leader promotes it later if the cluster wants voters.
//!
//! A node that already belongs to a cluster never forms or joins again.

use std::collections::BTreeMap;
use std::time::Duration;

use conclave_storage::{NodeId, NodeInfo};
use tokio_util::sync::CancellationToken;

use crate::RaftNode;
use crate::rpc::{LeaderRequest, NodeReport, RpcRequest, RpcResponse};
use crate::transport::{CallError, Conn};

#[derive(Debug, thiserror::Error)]
pub enum FormError {
    /// A peer refused this node, or this node refused a peer: retrying cannot help.
    #[error("{0}")]
    Refused(String),
    #[error("invalid --initial-members: {0}")]
    InvalidMembers(String),
    #[error("{0}")]
    Raft(String),
    #[error("stopped before the node joined a cluster")]
    Stopped,
}

/// Parse `1=host:port,2=host:port` (also `1:host:port`, as the IPAM seed writes it, and ids
/// written with a name prefix such as `n1` or `node1`).
pub fn parse_initial_members(s: &str) -> Result<Vec<(NodeId, String)>, FormError> {
    let mut out: Vec<(NodeId, String)> = Vec::new();
    for (i, part) in s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        let bad = |why: &str| {
            FormError::InvalidMembers(format!(
                "entry {} ({part:?}) {why}; write each member as ID=HOST:PORT, e.g. 1=10.0.0.1:7401",
                i + 1
            ))
        };
        let (id, addr) = part
            .split_once('=')
            .or_else(|| part.split_once(':'))
            .ok_or_else(|| bad("has no '='"))?;
        let digits = id
            .trim()
            .trim_start_matches(|c: char| c.is_ascii_alphabetic());
        let id: NodeId = digits
            .parse()
            .map_err(|_| bad("does not start with a numeric node id"))?;
        if id == 0 {
            return Err(bad("has node id 0; node ids start at 1"));
        }
        let addr = addr.trim();
        if addr
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(bad("has no HOST:PORT address"));
        }
        if out.iter().any(|(other, _)| *other == id) {
            return Err(bad("repeats a node id"));
        }
        out.push((id, addr.to_owned()));
    }
    if out.is_empty() {
        return Err(FormError::InvalidMembers("the list is empty".into()));
    }
    Ok(out)
}

/// A cluster id every initial member derives alike from the same member list.
pub fn derived_cluster_id(members: &[(NodeId, String)]) -> String {
    let mut sorted = members.to_vec();
    sorted.sort();
    let mut text = String::new();
    for (id, addr) in sorted {
        text.push_str(&format!("{id}={addr},"));
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Static formation: initialize with exactly these members (a no-op on restart).
pub async fn form_static(node: &RaftNode, members: &[(NodeId, String)]) -> Result<(), FormError> {
    let me = node.info();
    let map: BTreeMap<NodeId, NodeInfo> = members
        .iter()
        .map(|(id, addr)| {
            (
                *id,
                NodeInfo {
                    rpc_addr: addr.clone(),
                    // Identical on every member (required for a safe multi-node initialize);
                    // each node announces its API address once the cluster runs.
                    api_addr: String::new(),
                    learner_only: false,
                },
            )
        })
        .collect();
    if !map.contains_key(&node.id) {
        return Err(FormError::InvalidMembers(format!(
            "this node (id {}, rpc {}) is not in the list",
            node.id, me.rpc_addr
        )));
    }
    node.initialize(map)
        .await
        .map_err(|e| FormError::Raft(e.to_string()))
}

async fn ask_info(node: &RaftNode, addr: &str) -> Result<(Conn, NodeReport), CallError> {
    let mut conn = tokio::time::timeout(
        Duration::from_secs(3),
        Conn::connect(addr, node.credentials()),
    )
    .await
    .map_err(|_| CallError::Unreachable {
        addr: addr.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
    })??;
    match conn.call::<_, RpcResponse>(&RpcRequest::Info).await? {
        RpcResponse::Info(r) => Ok((conn, *r)),
        _ => Err(CallError::Refused(format!(
            "the node at {addr} answered with the wrong message type"
        ))),
    }
}

fn describe(e: &CallError) -> String {
    match e {
        CallError::Unreachable { .. } | CallError::Lost { .. } => {
            format!("{e} (--join takes node RPC addresses, port 7401 by default, not HTTP ones)")
        }
        CallError::Refused(_) | CallError::ItsMe(_) => e.to_string(),
    }
}

async fn pause(shutdown: &CancellationToken, attempt: u32) -> Result<(), FormError> {
    let wait = Duration::from_millis((250u64 << attempt.min(4)).min(5000));
    tokio::select! {
        _ = shutdown.cancelled() => Err(FormError::Stopped),
        _ = tokio::time::sleep(wait) => Ok(()),
    }
}

/// A node at `addr` configured with another `--cluster-name` than this one: the two were
/// meant for different clusters (checked like the cluster id; a node without a name
/// configured matches any).
fn other_cluster_name(node: &RaftNode, addr: &str, report: &NodeReport) -> Result<(), FormError> {
    match (node.cluster_name(), report.cluster_name.as_deref()) {
        (Some(mine), Some(theirs)) if mine != theirs => Err(FormError::Refused(format!(
            "this node is configured for cluster {mine:?}, but {addr} belongs to cluster {theirs:?}; fix --cluster-name or --join"
        ))),
        _ => Ok(()),
    }
}

/// Try one address: adopt its cluster and ask to join. `Ok(false)`: not possible yet.
async fn join_via(node: &RaftNode, addr: &str) -> Result<bool, FormError> {
    let (mut conn, report) = match ask_info(node, addr).await {
        Ok(r) => r,
        Err(CallError::Refused(why)) => return Err(FormError::Refused(why)),
        Err(e) => {
            tracing::info!(%addr, "join: {}", describe(&e));
            return Ok(false);
        }
    };
    other_cluster_name(node, addr, &report)?;
    let Some(cluster) = report.cluster_id.filter(|_| report.initialized) else {
        tracing::info!(%addr, node = report.node_id, "join: that node has not formed a cluster yet");
        return Ok(false);
    };
    if let Some(mine) = node.cluster_id()
        && mine != cluster
    {
        return Err(FormError::Refused(format!(
            "this node's data directory belongs to cluster {mine:?}, but {addr} is in cluster {cluster:?}; start with a fresh --data-dir to join that cluster"
        )));
    }
    node.adopt_cluster(&cluster)
        .map_err(|e| FormError::Refused(e.to_string()))?;
    let req = RpcRequest::Leader {
        req: LeaderRequest::Join {
            node_id: node.id,
            info: node.info(),
            name: node.name().to_owned(),
            name_given: node.name_given(),
        },
        hops: 1,
    };
    match conn.call::<_, RpcResponse>(&req).await {
        Ok(RpcResponse::Leader(Ok(_))) => {
            tracing::info!(%addr, cluster_id = %cluster, "joined the cluster as a learner");
            Ok(true)
        }
        // A name another member holds will not free itself: say so and stop.
        Ok(RpcResponse::Leader(Err(crate::ConsensusError::Rejected(
            reason @ crate::RejectReason::NameTaken { .. },
        )))) => Err(FormError::Refused(reason.to_string())),
        Ok(RpcResponse::Leader(Err(e))) => {
            tracing::info!(%addr, error = %e, "join: the cluster could not add this node yet");
            Ok(false)
        }
        Ok(other) => {
            tracing::info!(%addr, reply = ?other, "join: not accepted");
            Ok(false)
        }
        Err(e) => {
            tracing::info!(%addr, "join: {}", describe(&e));
            Ok(false)
        }
    }
}

/// Join the cluster one of `addrs` belongs to; retries with backoff until it works, a node
/// refuses this one (returned as an error), or `shutdown`.
pub async fn join(
    node: &RaftNode,
    addrs: &[String],
    shutdown: &CancellationToken,
) -> Result<(), FormError> {
    let mut attempt = 0;
    loop {
        for addr in addrs {
            if join_via(node, addr).await? {
                return Ok(());
            }
        }
        attempt += 1;
        pause(shutdown, attempt).await?;
    }
}

/// A node that already belongs to a cluster was given `--join`: check that the addresses
/// point at its own cluster, so a data directory of another cluster is caught loudly.
pub async fn check_join_targets(node: &RaftNode, addrs: &[String]) -> Result<(), FormError> {
    let mine = node.cluster_id();
    for addr in addrs {
        match ask_info(node, addr).await {
            Ok((_, report)) => {
                if let (Some(theirs), Some(mine)) = (&report.cluster_id, &mine)
                    && theirs != mine
                {
                    return Err(FormError::Refused(format!(
                        "this node's data directory belongs to cluster {mine:?}, but {addr} is in cluster {theirs:?}; start with a fresh --data-dir to join that cluster"
                    )));
                }
                other_cluster_name(node, addr, &report)?;
            }
            Err(CallError::Refused(why)) => return Err(FormError::Refused(why)),
            Err(_) => {}
        }
    }
    Ok(())
}

/// Wait until `expect` pristine voters have met, then form the cluster (lowest id) or wait to
/// be adopted by it (the others). Joins instead if a cluster already exists.
pub async fn bootstrap(
    node: &RaftNode,
    expect: u32,
    addrs: &[String],
    shutdown: &CancellationToken,
) -> Result<(), FormError> {
    let mut attempt = 0;
    loop {
        if node.is_initialized().await {
            return Ok(());
        }
        let mut seen: BTreeMap<NodeId, NodeInfo> = BTreeMap::from([(node.id, node.info())]);
        for addr in addrs {
            match ask_info(node, addr).await {
                Ok((_, report)) => {
                    if report.initialized {
                        tracing::info!(%addr, "bootstrap: a cluster already exists; joining it");
                        if join_via(node, addr).await? {
                            return Ok(());
                        }
                        continue;
                    }
                    if report.node_id == node.id {
                        continue;
                    }
                    if report.bootstrap_expect != Some(expect) || report.info.learner_only {
                        tracing::warn!(
                            %addr,
                            theirs = ?report.bootstrap_expect,
                            ours = expect,
                            "bootstrap: that node does not expect the same number of voters; not counting it"
                        );
                        continue;
                    }
                    seen.insert(
                        report.node_id,
                        NodeInfo {
                            learner_only: false,
                            ..report.info
                        },
                    );
                }
                Err(CallError::Refused(why)) => return Err(FormError::Refused(why)),
                Err(e) => tracing::debug!(%addr, "bootstrap: {}", describe(&e)),
            }
        }
        if seen.len() as u32 >= expect {
            let lowest = seen.keys().next().copied().unwrap_or(node.id);
            if lowest == node.id {
                let members: Vec<(NodeId, String)> = seen
                    .iter()
                    .map(|(id, n)| (*id, n.rpc_addr.clone()))
                    .collect();
                let cluster = node
                    .cluster_id()
                    .unwrap_or_else(|| derived_cluster_id(&members));
                node.adopt_cluster(&cluster)
                    .map_err(|e| FormError::Refused(e.to_string()))?;
                tracing::info!(voters = ?seen.keys().collect::<Vec<_>>(), cluster_id = %cluster, "bootstrap: forming the cluster");
                return node
                    .initialize(seen)
                    .await
                    .map_err(|e| FormError::Raft(e.to_string()));
            }
            tracing::info!(
                former = lowest,
                "bootstrap: expected voters met; waiting for node {lowest} to form the cluster"
            );
            let formed = node
                .raft()
                .wait(Some(Duration::from_secs(10)))
                .metrics(
                    |m| m.membership_config.membership().nodes().next().is_some(),
                    "cluster formed",
                )
                .await;
            if formed.is_ok() {
                return Ok(());
            }
        } else {
            tracing::info!(
                seen = seen.len(),
                expect,
                "bootstrap: waiting for more voters to meet"
            );
        }
        attempt += 1;
        pause(shutdown, attempt.min(2)).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_members_forms() {
        let m = parse_initial_members("1=a:1, n2=b:2,node3:c:3").unwrap();
        assert_eq!(
            m,
            vec![(1, "a:1".into()), (2, "b:2".into()), (3, "c:3".into())]
        );
        assert_eq!(
            derived_cluster_id(&m),
            derived_cluster_id(&[(3, "c:3".into()), (1, "a:1".into()), (2, "b:2".into())])
        );
        for bad in ["", "1=a", "x=a:1", "0=a:1", "1=a:1,1=b:2", "1=a:99999"] {
            let e = parse_initial_members(bad).unwrap_err().to_string();
            assert!(e.contains("initial-members"), "{bad}: {e}");
        }
    }
}

/// Why a node could not take the cluster id it was offered.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error(transparent)]
    Identity(#[from] conclave_storage::identity::IdentityError),
    #[error("no identity file in {}", .0.display())]
    NoIdentity(std::path::PathBuf),
    #[error("this node belongs to cluster {have:?}, not {offered:?}")]
    OtherCluster { have: String, offered: String },
}

impl RaftNode {
    /// Record the cluster this node now belongs to (a joining node, accepted by a leader).
    pub fn adopt_cluster(&self, cluster_id: &str) -> Result<(), AdoptError> {
        let dir = &self.inner.data_dir;
        let mut id = conclave_storage::identity::load(dir)?
            .ok_or_else(|| AdoptError::NoIdentity(dir.clone()))?;
        if let Some(have) = &id.cluster_id {
            if have != cluster_id {
                return Err(AdoptError::OtherCluster {
                    have: have.clone(),
                    offered: cluster_id.to_owned(),
                });
            }
        } else {
            id.cluster_id = Some(cluster_id.to_owned());
            conclave_storage::identity::save(dir, &id)?;
            tracing::info!(cluster_id, "joined cluster");
        }
        self.inner.creds.set_cluster_id(cluster_id.to_owned());
        Ok(())
    }
}
