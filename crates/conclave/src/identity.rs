//! A node's identity: its node id and cluster id, minted once and kept in the data dir.
//!
//! A node is its persisted id, not its address. The identity file ties a data directory to
//! one cluster, so starting it with another cluster id or node id is refused instead of
//! silently mixing two clusters' data.

use std::path::Path;

use anyhow::{Context, bail};
use rand::Rng;
use serde::{Deserialize, Serialize};

const FILE: &str = "identity.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identity {
    pub node_id: u64,
    pub cluster_id: String,
}

/// Node ids stay below 2^53 so they survive JSON tools that use doubles.
fn mint_node_id() -> u64 {
    rand::rng().random_range(1..(1u64 << 53))
}

fn mint_cluster_id() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

/// Load the identity in `data_dir`, or create it (and the directory) when missing.
/// Returns the identity and whether it was just created.
pub fn load_or_create(
    data_dir: &Path,
    want_node: Option<u64>,
    want_cluster: Option<&str>,
) -> anyhow::Result<(Identity, bool)> {
    std::fs::create_dir_all(data_dir).with_context(|| {
        format!(
            "cannot create data directory {}; choose another with --data-dir or fix its permissions",
            data_dir.display()
        )
    })?;
    let path = data_dir.join(FILE);
    if let Some(bytes) = conclave_storage::fsutil::read_optional(&path)
        .with_context(|| format!("cannot read {}", path.display()))?
    {
        let id: Identity = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not a valid identity file; it was written by conclave and should not be edited",
                path.display()
            )
        })?;
        if let Some(want) = want_node
            && want != id.node_id
        {
            bail!(
                "data directory {} belongs to node {}, but node id {want} was requested; drop --node-id or use a fresh --data-dir",
                data_dir.display(),
                id.node_id
            );
        }
        if let Some(want) = want_cluster
            && want != id.cluster_id
        {
            bail!(
                "data directory {} belongs to cluster {:?}, but cluster {want:?} was requested; a data directory holds one cluster's data — use a fresh --data-dir to join another cluster",
                data_dir.display(),
                id.cluster_id
            );
        }
        return Ok((id, false));
    }
    let id = Identity {
        node_id: want_node.unwrap_or_else(mint_node_id),
        cluster_id: want_cluster.map_or_else(mint_cluster_id, str::to_owned),
    };
    let bytes = serde_json::to_vec_pretty(&id)?;
    conclave_storage::fsutil::write_atomic(&path, &bytes).with_context(|| {
        format!(
            "cannot write {}; choose another --data-dir or fix its permissions",
            path.display()
        )
    })?;
    Ok((id, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_once_then_reused_and_guarded() {
        let dir = tempfile::tempdir().unwrap();
        let (a, created) = load_or_create(dir.path(), None, None).unwrap();
        assert!(created);
        assert!(a.node_id >= 1 && a.node_id < (1 << 53));
        let (b, created) = load_or_create(dir.path(), None, None).unwrap();
        assert!(!created);
        assert_eq!(a, b);
        let err = load_or_create(dir.path(), None, Some("other"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("belongs to cluster"), "{err}");
        let err = load_or_create(dir.path(), Some(a.node_id + 1), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("belongs to node"), "{err}");
    }
}
