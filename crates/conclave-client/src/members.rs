//! Raft members by id or name: changes, previews, and names resolved to ids.

use percent_encoding::utf8_percent_encode;

use conclave_types::ClusterMember;

use crate::{Client, ClientError, SEGMENT_SET};

/// Raft membership changes.
impl Client {
    /// `action` is `remove`, `promote` or `demote`.
    pub async fn change_member(
        &self,
        action: &str,
        member: &str,
        force: bool,
    ) -> Result<Vec<ClusterMember>, ClientError> {
        let resp = self
            .send(self.member_request(action, member, force))
            .await?;
        self.json(resp).await
    }

    /// What [`Self::change_member`] would do (`?dry_run=true`): the effect, or the error the
    /// change itself would get.
    pub async fn preview_member(
        &self,
        action: &str,
        member: &str,
        force: bool,
    ) -> Result<conclave_types::dashboard::ChangePreview, ClientError> {
        let req = self
            .member_request(action, member, force)
            .query(&[("dry_run", "true")]);
        let resp = self.send(req).await?;
        self.json(resp).await
    }

    /// `member`: a node id or a node name (the server resolves names).
    fn member_request(&self, action: &str, member: &str, force: bool) -> reqwest::RequestBuilder {
        let base = format!(
            "{}/v1/cluster/members/{}",
            self.base,
            utf8_percent_encode(member, SEGMENT_SET)
        );
        let req = match action {
            "remove" => self.http.delete(base),
            _ => self.http.post(format!("{base}/{action}")),
        };
        if force {
            req.query(&[("force", "true")])
        } else {
            req
        }
    }

    /// How to show each agent gossip knows: `name (id)`, or the id alone for an agent
    /// without a name (an earlier release).
    pub async fn node_labels(&self) -> Result<NodeLabels, ClientError> {
        let members = self.gossip_members(&[]).await?;
        Ok(NodeLabels(
            members
                .into_iter()
                .filter_map(|m| Some((m.id, m.name?)))
                .collect(),
        ))
    }

    /// [`Self::resolve_member`] for an optional `--to`.
    pub async fn resolve_optional(&self, member: Option<&str>) -> Result<Option<u64>, ClientError> {
        match member {
            Some(member) => self.resolve_member(member).await.map(Some),
            None => Ok(None),
        }
    }

    /// The node id of `member`: an id as it is, a name looked up among the members (an
    /// unknown name is an error that lists the known ones).
    pub async fn resolve_member(&self, member: &str) -> Result<u64, ClientError> {
        if let Ok(id) = member.parse::<u64>() {
            return Ok(id);
        }
        let members = self.cluster_status().await?.members;
        if let Some(m) = members.iter().find(|m| m.name.as_deref() == Some(member)) {
            return Ok(m.node_id);
        }
        Err(ClientError::Usage(
            conclave_types::node_label::unknown_member(
                member,
                members.iter().map(|m| (m.node_id, m.name.as_deref())),
            ),
        ))
    }
}

/// Node names by id, for human output.
#[derive(Debug, Clone, Default)]
pub struct NodeLabels(std::collections::BTreeMap<u64, String>);

impl NodeLabels {
    /// `name (id)` when the node has a name, else the id.
    pub fn label(&self, id: u64) -> String {
        conclave_types::node_label::node_label(id, self.0.get(&id).map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_is_the_name_and_id_or_the_id_alone() {
        let labels = NodeLabels([(1, "db-1".to_owned())].into_iter().collect());
        assert_eq!(labels.label(1), "db-1 (1)");
        assert_eq!(labels.label(2), "2");
    }
}
