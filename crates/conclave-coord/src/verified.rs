//! Where a client agent may forward: only to the API addresses of the membership the cluster
//! agreed on, as a member told it over authenticated node RPC.
//!
//! Why: gossip is not authenticated, so any process on the gossip network could advertise
//! itself as a Raft member (the leader, even) and receive every write a client agent
//! forwards. Node RPC is: the handshake proves the token both ways. So the client agent
//! dials a member gossip names, as a client agent (it may ask `Info`, nothing else), checks
//! that the node answering is the one gossip claimed and belongs to the client's cluster,
//! and forwards only to the members in that node's report — addresses that came through
//! Raft, not through gossip. Without a cluster token nothing is authenticated (which is why
//! such a cluster serves RPC only on loopback unless started with `--insecure`).

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use conclave_raft::rpc::{NodeReport, RpcRequest, RpcResponse};
use conclave_raft::transport::{Conn, Credentials};
use conclave_storage::NodeId;

/// How long dialing a member and asking it may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Why no member could be verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("gossip shows no Raft member to ask yet")]
    NoCandidate,
    #[error("cannot ask node {node} at {addr} over node RPC: {reason}")]
    Unreachable {
        node: NodeId,
        addr: String,
        reason: String,
    },
    #[error(
        "gossip says node {claimed} is at {addr}, but node {answered} answered there; not forwarding to it"
    )]
    WrongNode {
        claimed: NodeId,
        answered: NodeId,
        addr: String,
    },
    #[error(
        "node {node} belongs to cluster {theirs:?}, not to this client's cluster {ours:?}; not forwarding to it"
    )]
    OtherCluster {
        node: NodeId,
        ours: String,
        theirs: Option<String>,
    },
    #[error("node {node} is not a member of a formed cluster yet")]
    NotFormed { node: NodeId },
}

/// A member gossip names: its id and node RPC address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: NodeId,
    pub rpc_addr: String,
}

/// Check what the node at `candidate` answered against what gossip claimed of it.
pub fn check_report(
    candidate: &Candidate,
    report: &NodeReport,
    cluster: Option<&str>,
) -> Result<(), VerifyError> {
    if report.node_id != candidate.id {
        return Err(VerifyError::WrongNode {
            claimed: candidate.id,
            answered: report.node_id,
            addr: candidate.rpc_addr.clone(),
        });
    }
    if let Some(ours) = cluster
        && report.cluster_id.as_deref() != Some(ours)
    {
        return Err(VerifyError::OtherCluster {
            node: report.node_id,
            ours: ours.to_owned(),
            theirs: report.cluster_id.clone(),
        });
    }
    if !report.initialized || report.members.is_empty() {
        return Err(VerifyError::NotFormed {
            node: report.node_id,
        });
    }
    Ok(())
}

/// The API URLs (`scheme://host:port`: `http` or, with TLS, `https`) of a verified report's
/// members, the leader first, then by id; members that have not announced an API address
/// yet are left out.
pub fn forwarding_targets(report: &NodeReport, scheme: &str) -> Vec<String> {
    let mut members: Vec<_> = report
        .members
        .iter()
        .filter(|(_, info, _)| !info.api_addr.is_empty())
        .collect();
    members.sort_by_key(|(id, _, _)| (Some(*id) != report.leader_id, *id));
    members
        .into_iter()
        .map(|(_, info, _)| format!("{scheme}://{}", info.api_addr))
        .collect()
}

/// The last membership a member proved to this client agent. Cheap to share.
pub struct VerifiedMembers {
    creds: Credentials,
    latest: RwLock<Option<NodeReport>>,
    /// The last failure, logged when it changes (not on every round).
    last_error: Mutex<Option<VerifyError>>,
}

impl VerifiedMembers {
    pub fn new(creds: Credentials) -> Arc<Self> {
        Arc::new(Self {
            creds,
            latest: RwLock::new(None),
            last_error: Mutex::new(None),
        })
    }

    /// Where to forward now (URLs with `scheme`): empty until a member has been verified.
    pub fn targets(&self, scheme: &str) -> Vec<String> {
        self.latest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|r| forwarding_targets(r, scheme))
            .unwrap_or_default()
    }

    /// Ask the candidates in order until one proves itself, and keep its report. `cluster`
    /// is the client's cluster (configured, or met in gossip). On failure the previous
    /// report stays: its members were verified, and a call to one that is gone fails on
    /// its own.
    pub async fn refresh(
        &self,
        candidates: &[Candidate],
        cluster: Option<&str>,
    ) -> Result<NodeId, VerifyError> {
        let mut last = VerifyError::NoCandidate;
        for candidate in candidates {
            match self.ask(candidate, cluster).await {
                Ok(report) => {
                    let id = report.node_id;
                    *self.latest.write().unwrap_or_else(|p| p.into_inner()) = Some(report);
                    self.note(None);
                    return Ok(id);
                }
                Err(e) => last = e,
            }
        }
        self.note(Some(last.clone()));
        Err(last)
    }

    async fn ask(
        &self,
        candidate: &Candidate,
        cluster: Option<&str>,
    ) -> Result<NodeReport, VerifyError> {
        let unreachable = |reason: String| VerifyError::Unreachable {
            node: candidate.id,
            addr: candidate.rpc_addr.clone(),
            reason,
        };
        let asked = tokio::time::timeout(ASK_TIMEOUT, async {
            let mut conn = Conn::connect(&candidate.rpc_addr, &self.creds).await?;
            conn.call::<_, RpcResponse>(&RpcRequest::Info).await
        })
        .await
        .map_err(|_| unreachable(format!("no answer within {ASK_TIMEOUT:?}")))?;
        let report = match asked {
            Ok(RpcResponse::Info(report)) => *report,
            Ok(other) => return Err(unreachable(format!("it answered {other:?}"))),
            Err(e) => return Err(unreachable(e.to_string())),
        };
        check_report(candidate, &report, cluster)?;
        Ok(report)
    }

    /// Log a failure when it differs from the last one, and the recovery once.
    fn note(&self, now: Option<VerifyError>) {
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        if *last == now {
            return;
        }
        match &now {
            Some(e) => tracing::warn!(
                "this client agent cannot verify a Raft member, so it forwards to none it has not verified: {e}"
            ),
            None => {
                tracing::info!("this client agent verified the cluster's members over node RPC")
            }
        }
        *last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_storage::NodeInfo;

    fn info(api: &str) -> NodeInfo {
        NodeInfo {
            rpc_addr: "r".into(),
            api_addr: api.into(),
            learner_only: false,
        }
    }

    fn report(node_id: NodeId, cluster: Option<&str>) -> NodeReport {
        NodeReport {
            node_id,
            cluster_id: cluster.map(str::to_owned),
            cluster_name: None,
            initialized: true,
            bootstrap_expect: None,
            info: info("a:1"),
            leader_id: Some(3),
            term: 2,
            last_log_index: 9,
            members: vec![
                (1, info("a:1"), true),
                (2, info(""), true),
                (3, info("c:3"), true),
                (4, info("d:4"), false),
            ],
        }
    }

    fn candidate(id: NodeId) -> Candidate {
        Candidate {
            id,
            rpc_addr: "10.0.0.1:7401".into(),
        }
    }

    #[test]
    fn targets_are_the_agreed_members_leader_first_without_unannounced_ones() {
        assert_eq!(
            forwarding_targets(&report(1, Some("c")), "http"),
            ["http://c:3", "http://a:1", "http://d:4"]
        );
        assert_eq!(
            forwarding_targets(&report(1, Some("c")), "https")[0],
            "https://c:3"
        );
    }

    #[test]
    fn a_report_from_another_node_or_cluster_or_an_unformed_node_is_refused() {
        assert_eq!(
            check_report(&candidate(1), &report(1, Some("c")), Some("c")),
            Ok(())
        );
        assert_eq!(
            check_report(&candidate(1), &report(1, Some("c")), None),
            Ok(())
        );
        assert!(matches!(
            check_report(&candidate(2), &report(1, Some("c")), Some("c")),
            Err(VerifyError::WrongNode {
                claimed: 2,
                answered: 1,
                ..
            })
        ));
        assert!(matches!(
            check_report(&candidate(1), &report(1, Some("other")), Some("c")),
            Err(VerifyError::OtherCluster { .. })
        ));
        let mut unformed = report(1, None);
        unformed.initialized = false;
        assert_eq!(
            check_report(&candidate(1), &unformed, None),
            Err(VerifyError::NotFormed { node: 1 })
        );
    }

    /// A "member" on the RPC port that does not hold the token: nothing is verified, nothing
    /// is forwarded to, and the previous verification is kept.
    #[tokio::test]
    async fn a_listener_that_cannot_prove_the_token_is_never_a_target() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                use tokio::io::AsyncWriteExt;
                let _ = socket
                    .write_all(&[8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8])
                    .await;
            }
        });
        let verified = VerifiedMembers::new(Credentials::client_agent(9, None, Some("t")));
        let result = verified
            .refresh(
                &[Candidate {
                    id: 1,
                    rpc_addr: addr,
                }],
                None,
            )
            .await;
        assert!(
            matches!(result, Err(VerifyError::Unreachable { node: 1, .. })),
            "{result:?}"
        );
        assert!(verified.targets("http").is_empty());
        assert_eq!(
            verified.refresh(&[], None).await,
            Err(VerifyError::NoCandidate)
        );
    }
}
