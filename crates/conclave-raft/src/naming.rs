//! Node names: given by the leader, unique among the members.
//!
//! The names live in the replicated state (`conclave_state::node_names`); whether the node
//! holding a name is still a member is the membership's knowledge, so only the leader names
//! nodes (`NameNode` is a leader-only command) and tells the state machine which former
//! member, if any, a name is taken from. A joiner is named before it enters the membership,
//! so one whose configured name a member holds stays out; a member that restarts with another
//! name announces it ([`RaftNode::announce_name_if_changed`]), as it announces a new address.
//!
//! A name made from the hostname (none configured) is a default, not a claim: hosts that share
//! one (network namespaces, one machine with several agents on the same port) would refuse each
//! other. A node whose default a member holds goes by [`fallback_name`] (its id appended).

use std::collections::BTreeMap;

use conclave_state::node_names::{NameRefusal, NodeNames, check_node_name, with_suffix};
use conclave_state::{Command, Outcome};
use conclave_storage::{NodeId, NodeInfo};

use crate::rpc::LeaderRequest;
use crate::{ConsensusError, RaftNode, RejectReason};

/// The name of a node whose default `name` another member holds: `name-<node id>`, within
/// the length limit.
pub fn fallback_name(name: &str, node_id: NodeId) -> String {
    with_suffix(name, &node_id.to_string())
}

/// Whether a node recorded as `recorded` already goes by the name it asks for: `name`
/// itself, or, for a default (`given` false), its [`fallback_name`].
fn answers_to(recorded: Option<&str>, name: &str, given: bool, node_id: NodeId) -> bool {
    recorded == Some(name) || (!given && recorded == Some(fallback_name(name, node_id).as_str()))
}

impl RaftNode {
    /// This node's readable name (`--node-name`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether [`RaftNode::name`] was configured rather than made from the hostname.
    pub fn name_given(&self) -> bool {
        self.inner.name_given
    }

    /// The cluster's readable name (`--cluster-name`), as this node was configured.
    pub fn cluster_name(&self) -> Option<&str> {
        self.inner.cluster_name.as_deref()
    }

    /// The names the replicated state holds, as this node has applied them.
    pub fn node_names(&self) -> NodeNames {
        self.state().read(|a| a.state.node_names().clone())
    }

    /// The name of `node_id`, as this node has applied it.
    pub fn name_of(&self, node_id: NodeId) -> Option<String> {
        self.state()
            .read(|a| a.state.node_names().name_of(node_id).map(str::to_owned))
    }

    /// Leader: give `node_id` the name `name`, refused when another member (`nodes`) holds
    /// it and the name was `given`; a default name goes to its [`fallback_name`] instead. A
    /// former member's hold on the name ends here.
    pub(crate) async fn claim_name(
        &self,
        node_id: NodeId,
        name: &str,
        given: bool,
        nodes: &BTreeMap<NodeId, NodeInfo>,
    ) -> Result<(), ConsensusError> {
        let names = self.node_names();
        if answers_to(names.name_of(node_id), name, given, node_id) {
            return Ok(());
        }
        match self.claim_exact(&names, node_id, name, nodes).await {
            Err(ConsensusError::Rejected(RejectReason::NameTaken { holder, .. })) if !given => {
                let fallback = fallback_name(name, node_id);
                tracing::info!(
                    node_id,
                    name,
                    holder,
                    fallback,
                    "a member holds this node's default name; it goes by its fallback"
                );
                self.claim_exact(&names, node_id, &fallback, nodes).await
            }
            other => other,
        }
    }

    /// Propose exactly `name` for `node_id`, which `names` (the state before) does not
    /// record under it.
    async fn claim_exact(
        &self,
        names: &NodeNames,
        node_id: NodeId,
        name: &str,
        nodes: &BTreeMap<NodeId, NodeInfo>,
    ) -> Result<(), ConsensusError> {
        if check_node_name(name).is_err() {
            return Err(RejectReason::Refused {
                refusal: conclave_state::Refusal::BadNodeName,
            }
            .into());
        }
        let taken = |holder: NodeId| -> ConsensusError {
            RejectReason::NameTaken {
                name: name.to_owned(),
                holder,
                rpc_addr: nodes
                    .get(&holder)
                    .map_or_else(String::new, |n| n.rpc_addr.clone()),
            }
            .into()
        };
        let replaces = match names.holder_of(name) {
            Some(holder) if holder != node_id && nodes.contains_key(&holder) => {
                return Err(taken(holder));
            }
            Some(holder) if holder != node_id => Some(holder),
            _ => None,
        };
        let command = Command::NameNode {
            node_id,
            name: name.to_owned(),
            replaces,
        };
        match self.propose_boxed(command).await? {
            Outcome::Named { refusal: None, .. } => {
                match names.name_of(node_id) {
                    Some(old) => tracing::info!(node_id, old, name, "renamed a node"),
                    None => tracing::info!(node_id, name, "named a node"),
                }
                Ok(())
            }
            Outcome::Named {
                refusal: Some(NameRefusal::Taken { holder, .. }),
                ..
            } => Err(taken(holder)),
            other => Err(ConsensusError::Unavailable(format!(
                "unexpected outcome of naming node {node_id}: {other:?}"
            ))),
        }
    }

    /// Leader: free the name of a node that left. A failure leaves the name with a former
    /// member, which the next node to claim it takes over anyway.
    pub(crate) async fn forget_name(&self, node_id: NodeId) {
        if self.name_of(node_id).is_none() {
            return;
        }
        if let Err(e) = self.propose_boxed(Command::ForgetNode { node_id }).await {
            tracing::warn!(node_id, error = %e, "could not free the name of a removed member");
        }
    }

    /// [`RaftNode::propose`] behind a box with an explicit `Send` bound: it is called from
    /// `serve_membership`, which `propose` reaches again through `leader_call`.
    fn propose_boxed(
        &self,
        command: Command,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Outcome, ConsensusError>> + Send>> {
        let node = self.clone();
        Box::pin(async move { node.propose(command).await })
    }

    /// A member whose recorded name is not its current one tells the leader.
    pub(crate) async fn announce_name_if_changed(&self) {
        let recorded = self.name_of(self.id);
        if !self.is_member(self.id)
            || answers_to(recorded.as_deref(), self.name(), self.name_given(), self.id)
        {
            return;
        }
        let req = LeaderRequest::SetName {
            node_id: self.id,
            name: self.name().to_owned(),
            name_given: self.name_given(),
        };
        self.send_to_leader(req, "this node's name").await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fallback_name_is_a_valid_name_with_the_id() {
        assert_eq!(fallback_name("web01", 42), "web01-42");
        let long = "a".repeat(63);
        let f = fallback_name(&long, 9_007_199_254_740_991);
        assert!(
            f.ends_with("-9007199254740991")
                && f.len() <= conclave_state::node_names::MAX_NODE_NAME,
            "{f}"
        );
        assert_eq!(fallback_name("---", 7), "node-7");
        for name in ["web01", &long, "a.b-", "x"] {
            assert!(check_node_name(&fallback_name(name, 123)).is_ok());
        }
    }

    #[test]
    fn a_node_answers_to_its_name_or_the_fallback_of_a_default() {
        assert!(answers_to(Some("web01"), "web01", true, 7));
        assert!(answers_to(Some("web01-7"), "web01", false, 7));
        assert!(!answers_to(Some("web01-7"), "web01", true, 7));
        assert!(!answers_to(None, "web01", false, 7));
        assert!(!answers_to(Some("db-1"), "web01", false, 7));
    }
}
