//! Readable names of the cluster's nodes: one name per node id, no name held by two.
//!
//! Why in the replicated state rather than in Raft's membership (`NodeInfo`): membership
//! entries are part of the log's and the snapshot metadata's encoding, so a new field there
//! would make every existing data directory a new format. Here a name is one more command
//! (appended to [`Command`], so earlier logs decode as they are) and one more map in the
//! snapshot (format 6 reads 5).
//!
//! Whether the node holding a name is still a member is Raft's knowledge, not the state's:
//! the leader decides it and says so in the command (`replaces`: the former holder, no
//! longer a member, whose name the node takes), so applying stays a pure function.
//!
//! [`Command`]: crate::Command

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The longest node name, in bytes (a DNS label's limit: names are often hostnames).
pub const MAX_NODE_NAME: usize = 63;

/// Node names: letters, digits, `.`, `_` and `-`, starting with a letter or digit, at most
/// [`MAX_NODE_NAME`] bytes, and not all digits (so a name never reads as a node id).
pub fn check_node_name(name: &str) -> Result<(), BadNodeName> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NODE_NAME
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.chars().all(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(BadNodeName(name.to_owned()))
    }
}

/// `base-suffix` within [`MAX_NODE_NAME`]: `base` cut to fit, without the separators the cut
/// may leave at its end (`node` when nothing is left). How a name is told apart from another
/// with the same base: a port for a second agent on one host, an id for a taken default.
pub fn with_suffix(base: &str, suffix: &str) -> String {
    let keep = MAX_NODE_NAME
        .saturating_sub(suffix.len() + 1)
        .min(base.len());
    let base = base
        .get(..keep)
        .unwrap_or("")
        .trim_end_matches(['.', '-', '_']);
    let base = if base.is_empty() { "node" } else { base };
    format!("{base}-{suffix}")
}

/// A node name that breaks the rules of [`check_node_name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "node name {0:?} is not valid: use letters, digits, '.', '_' and '-', starting with a letter or digit, at most 63 characters, not only digits"
)]
pub struct BadNodeName(pub String);

/// Why a name was not given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum NameRefusal {
    #[error("the name {name:?} is held by node {holder}")]
    Taken { name: String, holder: u64 },
}

/// The name of each named node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeNames {
    by_id: BTreeMap<u64, String>,
}

impl NodeNames {
    pub fn name_of(&self, node_id: u64) -> Option<&str> {
        self.by_id.get(&node_id).map(String::as_str)
    }

    /// The node holding `name` (a linear scan: there are as many names as nodes).
    pub fn holder_of(&self, name: &str) -> Option<u64> {
        self.by_id
            .iter()
            .find_map(|(id, n)| (n == name).then_some(*id))
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &str)> {
        self.by_id.iter().map(|(id, n)| (*id, n.as_str()))
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Give `node_id` the name `name` (its earlier name, if any, is freed). A name another
    /// node holds is refused unless that node is `replaces`, which then loses it.
    pub(crate) fn set(
        &mut self,
        node_id: u64,
        name: &str,
        replaces: Option<u64>,
    ) -> Result<(), NameRefusal> {
        if let Some(holder) = self.holder_of(name)
            && holder != node_id
        {
            if replaces != Some(holder) {
                return Err(NameRefusal::Taken {
                    name: name.to_owned(),
                    holder,
                });
            }
            self.by_id.remove(&holder);
        }
        self.by_id.insert(node_id, name.to_owned());
        Ok(())
    }

    /// Free the name of a node that left the cluster.
    pub(crate) fn forget(&mut self, node_id: u64) {
        self.by_id.remove(&node_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_hostname_like_and_never_a_number() {
        for good in ["db-1", "node-1", "web01.example.com", "a", "host_2", "1a"] {
            assert!(check_node_name(good).is_ok(), "{good:?} refused");
        }
        for bad in ["", "-a", ".a", "a b", "a/b", "é", "1234", &"a".repeat(64)] {
            assert!(check_node_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_node_name(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn a_suffix_fits_within_the_limit_and_leaves_a_valid_name() {
        assert_eq!(with_suffix("web01", "7401"), "web01-7401");
        assert_eq!(with_suffix("---", "7"), "node-7");
        let long = "a".repeat(63);
        let s = with_suffix(&long, "9007199254740991");
        assert!(
            s.ends_with("-9007199254740991") && s.len() == MAX_NODE_NAME,
            "{s}"
        );
        assert!(check_node_name(&with_suffix("a.b-", "1")).is_ok());
    }

    #[test]
    fn a_name_is_held_by_one_node_and_taken_over_only_from_the_node_named() {
        let mut names = NodeNames::default();
        names.set(1, "db-1", None).unwrap();
        names.set(2, "db-2", None).unwrap();
        assert_eq!(
            names.set(3, "db-1", None),
            Err(NameRefusal::Taken {
                name: "db-1".into(),
                holder: 1
            })
        );
        // Replacing another node than the holder is still refused.
        assert!(names.set(3, "db-1", Some(2)).is_err());
        names.set(3, "db-1", Some(1)).unwrap();
        assert_eq!(names.holder_of("db-1"), Some(3));
        assert_eq!(names.name_of(1), None);
        // Renaming frees the old name; naming a node its own name changes nothing.
        names.set(2, "db-two", None).unwrap();
        assert_eq!(names.holder_of("db-2"), None);
        names.set(2, "db-two", None).unwrap();
        assert_eq!(names.len(), 2);
        names.forget(2);
        assert_eq!(names.name_of(2), None);
    }
}
