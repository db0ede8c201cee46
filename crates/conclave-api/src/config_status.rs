//! `GET /v1/config/status`: desired against applied configuration, per node and document.
//!
//! Desired = the live documents of the registry (this Raft member's state, read
//! linearizably). Applied = what each node advertises over gossip (`cfg:<kind>/<name>`),
//! for the documents matching its `cfg-subscribe` patterns. A node drifts when it has not
//! applied the committed revision and hash, when its rendered file was edited by hand, or
//! when its hook fails; it is reported `drifted` once that has lasted `drift_after`
//! (before that, `pending`: it is probably applying). Declared `must_match` settings are
//! compared across nodes too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use conclave_membership::view::keys::SEED_PREFIX;
use conclave_publish::config_sync::{
    APPLIED_PREFIX, SETTING_PREFIX, SUBSCRIBE_KEY, parse_applied, subscribed,
};
use conclave_types::{GossipMember, MemberState};
use serde::Serialize;

use crate::{ApiError, Ctx};

/// When each (node, document) was first seen out of sync by this node.
#[derive(Default)]
pub struct DriftTracker {
    since: Mutex<HashMap<(u64, String), (u64, Instant)>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct NodeApplied {
    pub node_id: u64,
    /// The node's gossip state (`alive`, `dead`, ...).
    pub state: MemberState,
    pub applied_revision: Option<u64>,
    /// `in_sync`, `pending`, `drifted`, `modified` (rendered file edited by hand) or
    /// `error` (its hook fails).
    pub status: &'static str,
    /// Revisions behind the committed one (0 when in sync).
    pub lag: u64,
    /// How long it has been out of sync, as this node has seen it.
    pub drifted_for_ms: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DocumentStatus {
    pub kind: String,
    pub name: String,
    pub revision: u64,
    pub hash: String,
    pub nodes: Vec<NodeApplied>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SettingStatus {
    pub name: String,
    /// Value → the nodes that have it.
    pub values: BTreeMap<String, Vec<u64>>,
    pub mismatch: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConfigStatus {
    pub revision: u64,
    /// Node-document pairs out of sync for longer than `drift_after` (or modified, or
    /// failing).
    pub drifted: usize,
    pub documents: Vec<DocumentStatus>,
    pub settings: Vec<SettingStatus>,
    /// Documents not in the registry whose `--config-seed` files disagree between nodes:
    /// content hash → the nodes holding it. Nothing is imported for them.
    pub seed_conflicts: BTreeMap<String, BTreeMap<String, Vec<u64>>>,
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(status))]
pub(crate) struct Doc;

/// Desired versus applied configuration on every node (drift), and mismatched settings.
#[utoipa::path(get, path = "/v1/config/status", tag = "config", params(crate::openapi::ReadQuery),
    responses((status = 200, body = ConfigStatus)))]
pub(crate) async fn status(State(ctx): State<Ctx>, uri: Uri) -> Result<Response, ApiError> {
    crate::read_point(&ctx, &uri, &[]).await?;
    #[allow(clippy::type_complexity)]
    let (revision, desired): (u64, Vec<(String, String, u64, String)>) =
        ctx.node.state().read(|a| {
            (
                a.state.revision(),
                a.state
                    .config_documents(None)
                    .map(|(k, n, v)| (k.to_owned(), n.to_owned(), v.revision, v.hash.clone()))
                    .collect(),
            )
        });
    let members = ctx.membership.view().members;
    // Each member's subscription patterns, parsed once (members without config sync have
    // none and are not listed).
    let subscribers: Vec<(&GossipMember, Vec<String>)> = members
        .iter()
        .filter_map(|m| {
            let patterns = m.advertised.get(SUBSCRIBE_KEY)?;
            Some((m, patterns.split(',').map(str::to_owned).collect()))
        })
        .collect();
    let now = Instant::now();
    let mut since = ctx.drift.since.lock().unwrap_or_else(|p| p.into_inner());
    let mut drifted = 0;
    let mut documents = Vec::new();
    let mut still_out = HashSet::new();
    for (kind, name, rev, hash) in desired {
        let id = format!("{kind}/{name}");
        let mut nodes = Vec::new();
        for (m, patterns) in &subscribers {
            if !subscribed(patterns, &kind, &name) {
                continue;
            }
            let applied = m
                .advertised
                .get(&format!("{APPLIED_PREFIX}{id}"))
                .and_then(|v| parse_applied(v));
            let (applied_revision, matches, flag) = match applied {
                Some((r, h, flag)) => (Some(r), r == rev && hash.starts_with(h), flag),
                None => (None, false, "missing"),
            };
            let in_sync = matches && flag == "ok";
            let key = (m.id, id.clone());
            let drifted_for = if in_sync {
                Duration::ZERO
            } else {
                still_out.insert(key.clone());
                let entry = since.entry(key).or_insert((rev, now));
                if entry.0 != rev && flag != "modified" && flag != "error" {
                    // A new revision: its clock starts now.
                    *entry = (rev, now);
                }
                now - entry.1
            };
            let status = match flag {
                _ if in_sync => "in_sync",
                "modified" if matches => "modified",
                "error" => "error",
                _ if drifted_for >= ctx.drift_after => "drifted",
                _ => "pending",
            };
            if !matches!(status, "in_sync" | "pending") {
                drifted += 1;
            }
            nodes.push(NodeApplied {
                node_id: m.id,
                state: m.state,
                applied_revision,
                status,
                lag: applied_revision.map_or(rev, |a| rev.saturating_sub(a)),
                drifted_for_ms: drifted_for.as_millis() as u64,
            });
        }
        documents.push(DocumentStatus {
            kind,
            name,
            revision: rev,
            hash,
            nodes,
        });
    }
    since.retain(|k, _| still_out.contains(k));
    drop(since);
    let settings = advertised_values(&members, SETTING_PREFIX)
        .into_iter()
        .map(|(name, values)| SettingStatus {
            mismatch: values.len() > 1,
            name,
            values,
        })
        .collect();
    let mut seed_conflicts = advertised_values(&members, SEED_PREFIX);
    // A conflict is a document not in the registry whose seed versions disagree.
    seed_conflicts.retain(|id, versions| {
        versions.len() > 1
            && !documents
                .iter()
                .any(|d| format!("{}/{}", d.kind, d.name) == *id)
    });
    Ok(Json(ConfigStatus {
        revision,
        drifted,
        documents,
        settings,
        seed_conflicts,
    })
    .into_response())
}

/// For the gossip keys `<prefix><name>` of the live members: name → value → the nodes that
/// advertise that value.
fn advertised_values(
    members: &[GossipMember],
    prefix: &str,
) -> BTreeMap<String, BTreeMap<String, Vec<u64>>> {
    let mut by_name: BTreeMap<String, BTreeMap<String, Vec<u64>>> = BTreeMap::new();
    for m in members.iter().filter(|m| m.state == MemberState::Alive) {
        for (k, v) in &m.advertised {
            if let Some(name) = k.strip_prefix(prefix) {
                by_name
                    .entry(name.to_owned())
                    .or_default()
                    .entry(v.clone())
                    .or_default()
                    .push(m.id);
            }
        }
    }
    by_name
}
