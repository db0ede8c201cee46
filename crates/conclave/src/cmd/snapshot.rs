//! `conclave snapshot save|restore` and `conclave recover`.

use std::path::PathBuf;

use crate::cli::Output;
use crate::cli::SnapshotCommand;
use crate::client::ClientError;
use crate::output::print_json;
use conclave_state::audit::Offline;

/// The operator's clock, for the audit entry of an offline change (no leader stamps one).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn local(e: impl std::fmt::Display) -> ClientError {
    ClientError::Local(e.to_string())
}

pub(crate) async fn snapshot(cmd: SnapshotCommand) -> Result<(), ClientError> {
    use conclave_storage::{NodeInfo, identity, offline};
    match cmd {
        SnapshotCommand::Save { file, client } => {
            let bytes = client.client()?.snapshot().await?;
            let loaded = conclave_storage::state_machine::decode_snapshot(&bytes)
                .map_err(|e| local(format!("the agent sent a damaged snapshot: {e}")))?;
            conclave_storage::fsutil::write_atomic(&file, &bytes)
                .map_err(|e| local(format!("cannot write {}: {e}", file.display())))?;
            let index = loaded.meta.last_log_id.map_or(0, |l| l.index);
            match client.output {
                Output::Json => print_json(&serde_json::json!({
                    "file": file, "bytes": bytes.len(), "keys": loaded.state.len(),
                    "revision": loaded.state.revision(), "index": index,
                })),
                Output::Human => out!(
                    "saved {} ({} bytes): {} keys, revision {}, log index {index}",
                    file.display(),
                    bytes.len(),
                    loaded.state.len(),
                    loaded.state.revision()
                ),
            }
        }
        SnapshotCommand::Restore {
            file,
            data_dir,
            node_id,
            rpc_addr,
            http_addr,
        } => {
            let loaded = offline::read_snapshot_file(&file).map_err(local)?;
            let Some(at) = loaded.meta.last_log_id else {
                return Err(local(format!(
                    "{} holds no applied log position",
                    file.display()
                )));
            };
            let _lock = offline::lock_dir(&data_dir).map_err(local)?;
            if identity::load(&data_dir).map_err(local)?.is_some() || data_dir.join("log").exists()
            {
                return Err(local(format!(
                    "{} already holds a node; restore into a new, empty directory",
                    data_dir.display()
                )));
            }
            let (id, _) = identity::load_or_create(
                &data_dir,
                node_id,
                None,
                Some(identity::mint_cluster_id()),
            )
            .map_err(local)?;
            let info = NodeInfo {
                rpc_addr,
                api_addr: http_addr,
                learner_only: false,
            };
            let mut state = loaded.state;
            state.record_offline(
                Offline::Restore {
                    node_id: id.node_id,
                    cluster_id: id.cluster_id.clone().unwrap_or_default(),
                },
                now_ms(),
            );
            offline::rewrite_single(&data_dir, id.node_id, info, &state, at)
                .await
                .map_err(local)?;
            out!(
                "restored {} keys (revision {}) into {} as node {} of new cluster {}; start it with: conclave agent --data-dir {}",
                state.len(),
                state.revision(),
                data_dir.display(),
                id.node_id,
                id.cluster_id.unwrap_or_default(),
                data_dir.display()
            );
        }
    }
    Ok(())
}

pub(crate) async fn recover(data_dir: PathBuf, yes: bool) -> Result<(), ClientError> {
    use conclave_storage::{identity, offline};
    let _lock = offline::lock_dir(&data_dir).map_err(local)?;
    let Some(id) = identity::load(&data_dir).map_err(local)? else {
        return Err(local(format!(
            "{} holds no conclave node",
            data_dir.display()
        )));
    };
    let found = offline::inspect(&data_dir).await.map_err(local)?;
    let Some(at) = found.last_log_id else {
        return Err(local(
            "this node's log is empty; there is nothing to recover",
        ));
    };
    let membership = found.membership.membership();
    let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
    out!("node        {}", id.node_id);
    out!("cluster     {}", id.cluster_id.clone().unwrap_or_default());
    out!("last log    index {} term {}", at.index, at.leader_id.term);
    out!(
        "state       {} keys, revision {}",
        found.state.len(),
        found.state.revision()
    );
    out!("members it knows:");
    for (nid, info) in membership.nodes() {
        out!(
            "  {nid:<18} {:<7} rpc {}",
            if voters.contains(nid) {
                "voter"
            } else {
                "learner"
            },
            info.rpc_addr
        );
    }
    out!();
    out!(
        "This makes node {} the only voter of cluster {} with the data above.",
        id.node_id,
        id.cluster_id.clone().unwrap_or_default()
    );
    out!(
        "Do it only if the other voters are lost for good: if they come back with their old data,"
    );
    out!(
        "they must be wiped and re-joined (conclave agent --data-dir <fresh> --join <this node>)."
    );
    if !yes {
        out!("Type 'recover' to continue:");
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|e| local(format!("cannot read the answer: {e}")))?;
        if answer.trim() != "recover" {
            return Err(local("not confirmed; nothing was changed"));
        }
    }
    let info = membership
        .get_node(&id.node_id)
        .cloned()
        .unwrap_or_default();
    let mut state = found.state;
    state.record_offline(
        Offline::Recover {
            node_id: id.node_id,
            voters_before: voters.iter().copied().collect(),
        },
        now_ms(),
    );
    offline::rewrite_single(&data_dir, id.node_id, info, &state, at)
        .await
        .map_err(local)?;
    out!(
        "recovered: start the agent on {} and it will lead a single-voter cluster",
        data_dir.display()
    );
    Ok(())
}
