//! `--config-seed`: the migration from per-node configuration to one cluster document.
//!
//! The sync-database seed kept its remote-peer list in every node's own SQLite, filled from
//! each node's `appsettings.json`; nothing made them agree. Started with `--config-seed`,
//! each node reads its file (a conclave documents file, or that `appsettings.json`), checks
//! it, and advertises each document's hash over gossip (`seed:<kind>/<name>`, then
//! `seed-ready`). A document missing from the registry is imported (with `?cas=0`, so only
//! once) when every live node that has a seed for it has the *same* content, once all Raft
//! voters have said what they hold (or after [`WAIT_FOR_VOTERS`]). If the files disagree,
//! nothing is imported for that document: every node logs the conflict and
//! `GET /v1/config/status` lists which nodes hold which version, until an operator applies
//! the chosen one. A document already in the registry is never overwritten by a seed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use conclave_config::files::{self, FileDocument};
use conclave_membership::Membership;
use conclave_membership::view::keys::{SEED_PREFIX, SEED_READY};
use conclave_types::{ErrorCode, MemberState};

use conclave_coord::{CoordError, Coordinator};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// How long the import waits for every voter to advertise its seed before going ahead with
/// the nodes it has heard from.
pub const WAIT_FOR_VOTERS: Duration = Duration::from_secs(60);

/// Read and check a seed file; errors name the file and the problem.
pub fn load(path: &Path) -> anyhow::Result<Vec<FileDocument>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --config-seed {}", path.display()))?;
    let is_json = path.extension().is_some_and(|e| e == "json");
    let docs = match serde_json::from_str::<Value>(&text) {
        Ok(v) if is_json && (v.get("EntglDb").is_some() || v.get("RemotePeers").is_some()) => {
            vec![from_appsettings(&v).with_context(|| {
                format!(
                    "--config-seed {}: cannot convert EntglDb.RemotePeers",
                    path.display()
                )
            })?]
        }
        _ => files::read(path).map_err(|e| anyhow::anyhow!("--config-seed: {e}"))?,
    };
    for d in &docs {
        if let Err(e) = conclave_config::validate::validate(&d.kind, &d.name, &d.content, None) {
            match e {
                conclave_config::validate::ValidateError::UnknownKind(_) => {}
                conclave_config::validate::ValidateError::Invalid(v) => {
                    let list: Vec<String> = v
                        .iter()
                        .map(|v| format!("{}: {}", v.path, v.message))
                        .collect();
                    bail!(
                        "--config-seed {}: {} is invalid: {}",
                        path.display(),
                        d.id(),
                        list.join("; ")
                    );
                }
                other => bail!("--config-seed {}: {}: {other}", path.display(), d.id()),
            }
        }
    }
    Ok(docs)
}

/// The sync-database seed's `appsettings.json` → `remote-peers/default`.
///
/// `oAuth2.authority` is an OpenID issuer; its token endpoint is taken to be
/// `<authority>/connect/token` (the IdentityServer convention the seed uses). An inline
/// `clientSecret` is refused like everywhere else.
pub fn from_appsettings(v: &Value) -> anyhow::Result<FileDocument> {
    let list = v
        .pointer("/EntglDb/RemotePeers")
        .or_else(|| v.get("RemotePeers"))
        .and_then(Value::as_array)
        .context("expected EntglDb.RemotePeers to be a list")?;
    let mut peers = Vec::new();
    for (i, p) in list.iter().enumerate() {
        let field = |names: &[&str]| names.iter().find_map(|n| p.get(*n)).cloned();
        let node_id =
            field(&["nodeId", "NodeId"]).with_context(|| format!("peer {i}: no nodeId"))?;
        let address =
            field(&["address", "Address"]).with_context(|| format!("peer {i}: no address"))?;
        let cloud = field(&["type", "Type"])
            .and_then(|t| t.as_str().map(|s| s.to_ascii_lowercase().contains("cloud")))
            .unwrap_or(false);
        let mut peer = json!({
            "node_id": node_id,
            "address": address,
            "type": if cloud { "cloud" } else { "static" },
        });
        if let Some(o) = field(&["oAuth2", "oauth2", "OAuth2"]) {
            let get = |names: &[&str]| names.iter().find_map(|n| o.get(*n)).cloned();
            let authority = get(&["authority", "Authority"])
                .and_then(|a| a.as_str().map(|s| s.trim_end_matches('/').to_owned()))
                .with_context(|| format!("peer {i}: oAuth2 has no authority"))?;
            let token_url = get(&["tokenUrl", "token_url"])
                .and_then(|t| t.as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("{authority}/connect/token"));
            let scope = get(&["scopes", "Scopes"])
                .and_then(|s| {
                    s.as_array().map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                })
                .or_else(|| get(&["scope"]).and_then(|s| s.as_str().map(str::to_owned)));
            let mut oauth2 = json!({
                "token_url": token_url,
                "client_id": get(&["clientId", "ClientId"]).unwrap_or(Value::Null),
                "client_secret": get(&["clientSecret", "ClientSecret"]).unwrap_or(Value::Null),
            });
            if let Some(scope) = scope.filter(|s| !s.is_empty()) {
                oauth2["scope"] = Value::String(scope);
            }
            peer["oauth2"] = oauth2;
        }
        peers.push(peer);
    }
    Ok(FileDocument {
        kind: "remote-peers".into(),
        name: "default".into(),
        content: json!({ "peers": peers }),
    })
}

/// Advertise the seed and import what all nodes agree on; ends when every document is in
/// the registry (or at shutdown).
pub async fn run(
    docs: Vec<FileDocument>,
    coord: Coordinator,
    membership: Membership,
    shutdown: CancellationToken,
) {
    let hashes: BTreeMap<String, String> = docs
        .iter()
        .map(|d| {
            let bytes = conclave_config::canonical_bytes(&d.content);
            (d.id(), conclave_config::content_hash(&bytes))
        })
        .collect();
    for (id, hash) in &hashes {
        membership.set(&format!("{SEED_PREFIX}{id}"), hash).await;
    }
    membership.set(SEED_READY, "1").await;
    let started = Instant::now();
    let mut reported: BTreeSet<String> = BTreeSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let registry = match coord.config_list(None).await {
            Ok((r, _)) => r,
            Err(e) => {
                tracing::debug!(error = %e, "configuration seed: cannot list the registry yet");
                continue;
            }
        };
        let present: BTreeMap<String, String> = registry
            .into_iter()
            .map(|d| (format!("{}/{}", d.kind, d.name), d.hash))
            .collect();
        let missing: Vec<&FileDocument> = docs
            .iter()
            .filter(|d| !present.contains_key(&d.id()))
            .collect();
        for d in docs.iter().filter(|d| present.contains_key(&d.id())) {
            let id = d.id();
            if present[&id] != hashes[&id] && reported.insert(format!("differs:{id}")) {
                tracing::warn!(document = %id, "the seed file's version differs from the registry's; the registry's stays (change it with conclave apply)");
            }
        }
        if missing.is_empty() {
            tracing::info!("configuration seed: every document is in the registry");
            return;
        }
        // Wait until every Raft voter has said what its seed holds.
        let voters: Vec<u64> = coord.voters().await.unwrap_or_default();
        let view = membership.view().members;
        let ready = voters.iter().all(|v| {
            view.iter()
                .any(|m| m.id == *v && m.advertised.contains_key(SEED_READY))
        });
        if !ready && started.elapsed() < WAIT_FOR_VOTERS {
            continue;
        }
        for d in missing {
            let id = d.id();
            let mut versions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
            for m in view.iter().filter(|m| m.state == MemberState::Alive) {
                if let Some(h) = m.advertised.get(&format!("{SEED_PREFIX}{id}")) {
                    versions.entry(h.as_str()).or_default().push(m.id);
                }
            }
            if versions.len() > 1 {
                if reported.insert(format!("conflict:{id}")) {
                    tracing::error!(document = %id, versions = ?versions, "configuration seed conflict: nodes' seed files disagree, so nothing is imported for this document; apply the right version with conclave apply");
                }
                continue;
            }
            match coord
                .config_put(&d.kind, &d.name, &d.content, Some(0))
                .await
            {
                Ok(_) => tracing::info!(document = %id, "configuration seed imported"),
                // Another node imported it first.
                Err(e) if e.code() == ErrorCode::CasConflict => {}
                Err(e) if refused(&e) => {
                    if reported.insert(format!("refused:{id}")) {
                        tracing::error!(document = %id, code = %e.code(), error = %e, "the configuration seed was refused");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "configuration seed: retrying"),
            }
        }
    }
}

/// The registry refused the document itself (retrying cannot help), as opposed to the
/// cluster being unavailable for now.
fn refused(e: &CoordError) -> bool {
    !matches!(
        e.code(),
        ErrorCode::NoLeader
            | ErrorCode::Unavailable
            | ErrorCode::Indeterminate
            | ErrorCode::NotJoined
            | ErrorCode::Removed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_appsettings_become_one_remote_peers_document() {
        let v: Value = serde_json::from_str(
            r#"{"EntglDb": {"Node": {"NodeId": "node-1"}, "RemotePeers": [
                {"nodeId": "cloud-node-1", "address": "remote.entgldb.com:9000", "type": "CloudRemote",
                 "oAuth2": {"authority": "https://identity.example.com", "clientId": "lan-cluster-client",
                            "clientSecret": "${SECRET_FROM_ENV}", "scopes": ["entgldb:sync"]}}]}}"#,
        )
        .unwrap();
        let doc = from_appsettings(&v).unwrap();
        assert_eq!(doc.id(), "remote-peers/default");
        let p = &doc.content["peers"][0];
        assert_eq!(p["type"], "cloud");
        assert_eq!(
            p["oauth2"]["token_url"],
            "https://identity.example.com/connect/token"
        );
        assert_eq!(p["oauth2"]["scope"], "entgldb:sync");
        assert!(
            conclave_config::validate::validate("remote-peers", "default", &doc.content, None)
                .is_ok()
        );
    }
}
