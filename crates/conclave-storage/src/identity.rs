//! A node's identity: its node id and the cluster it belongs to, kept in the data dir.
//!
//! A node is its persisted id, not its address. The identity file ties a data directory to
//! one cluster, so starting it with another cluster id or node id is refused instead of
//! silently mixing two clusters' data. A node that is started to join a cluster has no
//! cluster id until it has been accepted by one; it then adopts that cluster's id for good.
//! A node removed from its cluster gets a `removed` marker, so a restart says so instead of
//! quietly trying to rejoin.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil;

const FILE: &str = "identity.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identity {
    pub node_id: u64,
    /// None until the node has formed or joined a cluster.
    pub cluster_id: Option<String>,
    /// Why this node is no longer a member, once it has been removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<String>,
    /// Its readable name, as last started (absent in files of earlier releases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot use {path}: {source}; choose another --data-dir or fix its permissions")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a valid identity file ({reason}); it was written by conclave and should not be edited"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "data directory {dir} belongs to node {have}, but node id {want} was requested; drop --node-id or use a fresh --data-dir"
    )]
    NodeMismatch { dir: PathBuf, have: u64, want: u64 },
    #[error(
        "data directory {dir} belongs to cluster {have:?}, but cluster {want:?} was requested; a data directory holds one cluster's data — use a fresh --data-dir to join another cluster"
    )]
    ClusterMismatch {
        dir: PathBuf,
        have: String,
        want: String,
    },
}

/// Node ids stay below 2^53 so they survive JSON tools that use doubles.
pub fn mint_node_id() -> u64 {
    rand::random_range(1..(1u64 << 53))
}

pub fn mint_cluster_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Read the identity in `data_dir`, if there is one.
pub fn load(data_dir: &Path) -> Result<Option<Identity>, IdentityError> {
    let path = data_dir.join(FILE);
    let Some(bytes) = fsutil::read_optional(&path).map_err(io(&path))? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| IdentityError::Corrupt {
            path,
            reason: e.to_string(),
        })
}

/// Write the identity atomically.
pub fn save(data_dir: &Path, id: &Identity) -> Result<(), IdentityError> {
    let path = data_dir.join(FILE);
    let bytes = serde_json::to_vec_pretty(id).map_err(|e| IdentityError::Corrupt {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    fsutil::write_atomic(&path, &bytes).map_err(io(&path))
}

/// Load the identity in `data_dir`, or create it (and the directory) when missing. A new
/// identity takes `want_node` (or a minted id) and `new_cluster` as its cluster id.
/// Returns the identity and whether it was just created.
pub fn load_or_create(
    data_dir: &Path,
    want_node: Option<u64>,
    want_cluster: Option<&str>,
    new_cluster: Option<String>,
) -> Result<(Identity, bool), IdentityError> {
    crate::disk::Disk::create_dir_all(&crate::disk::OsDisk, data_dir).map_err(io(data_dir))?;
    if let Some(id) = load(data_dir)? {
        if let Some(want) = want_node
            && want != id.node_id
        {
            return Err(IdentityError::NodeMismatch {
                dir: data_dir.to_owned(),
                have: id.node_id,
                want,
            });
        }
        if let (Some(want), Some(have)) = (want_cluster, &id.cluster_id)
            && want != have
        {
            return Err(IdentityError::ClusterMismatch {
                dir: data_dir.to_owned(),
                have: have.clone(),
                want: want.to_owned(),
            });
        }
        return Ok((id, false));
    }
    let id = Identity {
        node_id: want_node.unwrap_or_else(mint_node_id),
        cluster_id: new_cluster,
        removed: None,
        name: None,
    };
    save(data_dir, &id)?;
    Ok((id, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_once_then_reused_and_guarded() {
        let dir = tempfile::tempdir().unwrap();
        let (a, created) = load_or_create(dir.path(), None, None, Some("c1".into())).unwrap();
        assert!(created);
        assert!(a.node_id >= 1 && a.node_id < (1 << 53));
        let (b, created) = load_or_create(dir.path(), None, None, None).unwrap();
        assert!(!created);
        assert_eq!(a, b);
        let err = load_or_create(dir.path(), None, Some("other"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("belongs to cluster"), "{err}");
        let err = load_or_create(dir.path(), Some(a.node_id + 1), None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("belongs to node"), "{err}");
    }

    #[test]
    fn a_joining_node_has_no_cluster_until_it_adopts_one() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, _) = load_or_create(dir.path(), Some(7), None, None).unwrap();
        assert_eq!(a.cluster_id, None);
        a.cluster_id = Some("abc".into());
        save(dir.path(), &a).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(a));
    }
}
