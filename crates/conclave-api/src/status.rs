//! `/v1/status`, `/v1/health`, `/v1/ready`.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use conclave_types::{ErrorCode, HealthResponse, MemberStatus, Status, StorageStatus};
use openraft::ServerState;

use crate::{ApiError, Ctx};

/// How far the applied index may trail the commit index before a node reports itself as
/// catching up rather than healthy.
const MAX_HEALTHY_APPLY_LAG: u64 = 1000;

pub fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(status, health, ready))]
pub(crate) struct Doc;

/// This node: its role, leader, term, indexes, storage and TLS.
#[utoipa::path(get, path = "/v1/status", tag = "status", responses((status = 200, body = Status)))]
pub(crate) async fn status(State(ctx): State<Ctx>) -> Json<Status> {
    let node = &ctx.node;
    let m = node.metrics();
    let applied_index = m.last_applied.map_or(0, |l| l.index);
    let (revision, keys) = node
        .state()
        .read(|a| (a.state.revision(), a.state.len() as u64));
    let membership = m.membership_config.membership();
    let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
    let names = node.node_names();
    let members = membership
        .nodes()
        .map(|(id, info)| MemberStatus {
            node_id: *id,
            name: names.name_of(*id).map(str::to_owned),
            rpc_addr: info.rpc_addr.clone(),
            api_addr: info.api_addr.clone(),
            role: if voters.contains(id) {
                "voter"
            } else {
                "learner"
            }
            .to_string(),
        })
        .collect();
    let log = node.log_stats();
    let batches = node.batch_stats();
    let fsyncs = log.fsyncs.load(Ordering::Relaxed);
    let commands = batches.commands.load(Ordering::Relaxed);
    let (first, last) = node.log_bounds();
    Json(Status {
        node_id: node.id,
        // The name the cluster records (a taken default's fallback), else the one wanted.
        node_name: Some(names.name_of(node.id).unwrap_or(node.name()).to_owned()),
        cluster_name: node.cluster_name().map(str::to_owned),
        cluster_id: node.cluster_id().unwrap_or_default(),
        leader_id: m.current_leader,
        term: m.current_term,
        role: role_name(m.state).to_string(),
        commit_index: node.committed_index().unwrap_or(0).max(applied_index),
        applied_index,
        revision,
        version: ctx.version.clone(),
        api_addr: ctx.api_addr.clone(),
        rpc_addr: ctx.rpc_addr.clone(),
        members,
        storage: StorageStatus {
            log_fsyncs: fsyncs,
            log_entries_appended: log.entries_appended.load(Ordering::Relaxed),
            commands_proposed: commands,
            batches_proposed: batches.batches.load(Ordering::Relaxed),
            writes_per_fsync: if fsyncs == 0 {
                0.0
            } else {
                commands as f64 / fsyncs as f64
            },
            log_first_index: first,
            log_last_index: last,
            snapshot_index: m.snapshot.map(|s| s.index),
            keys,
        },
        tls: ctx.tls.as_ref().map(|f| f()),
    })
}

/// Serving means: a leader is known and this node has applied what it knows is committed.
fn serving(ctx: &Ctx) -> Result<HealthResponse, ApiError> {
    let node = &ctx.node;
    let m = node.metrics();
    let applied = m.last_applied.map_or(0, |l| l.index);
    if let Some(why) = node.removed() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Removed,
            why,
            "this node no longer serves as a member; wipe its data directory and start it with --join to bring it back",
        ));
    }
    if m.membership_config.membership().nodes().next().is_none() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NotJoined,
            format!("node {} has not formed or joined a cluster yet", node.id),
            "it is waiting for --join / --bootstrap-expect peers; see its log for what it is waiting for",
        ));
    }
    if let Err(fatal) = &m.running_state {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            format!("consensus has stopped on this node: {fatal}"),
            "check this node's log; restart it once the cause is fixed",
        ));
    }
    let Some(leader) = m.current_leader else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NoLeader,
            format!("node {} knows no leader (term {})", node.id, m.current_term),
            "an election may be in progress; if this lasts, check that a quorum of voters can reach each other",
        ));
    };
    // A leader cut off from its voters is no member to send clients to.
    node.refuse_without_quorum()?;
    let committed = node.committed_index().unwrap_or(0);
    if committed > applied + MAX_HEALTHY_APPLY_LAG {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NotReady,
            format!(
                "node {} is catching up: applied {applied} of {committed} committed entries",
                node.id
            ),
            "wait for it to apply the log",
        ));
    }
    let degraded = ctx.membership.join_problem();
    Ok(HealthResponse {
        status: if degraded.is_some() { "degraded" } else { "ok" }.to_string(),
        node_id: node.id,
        leader_id: Some(leader),
        applied_index: applied,
        degraded,
    })
}

/// 200 while this node has a leader and serves requests (the seed's health URL too).
#[utoipa::path(get, path = "/v1/health", tag = "status",
    responses((status = 200, body = HealthResponse)))]
pub(crate) async fn health(State(ctx): State<Ctx>) -> Result<Json<HealthResponse>, ApiError> {
    serving(&ctx).map(Json)
}

/// Like health, with `not_ready` as the code: for readiness probes.
#[utoipa::path(get, path = "/v1/ready", tag = "status",
    responses((status = 200, body = HealthResponse)))]
pub(crate) async fn ready(State(ctx): State<Ctx>) -> Result<Json<HealthResponse>, ApiError> {
    serving(&ctx).map(Json).map_err(|mut e| {
        if e.code == ErrorCode::NoLeader {
            e.code = ErrorCode::NotReady;
        }
        e
    })
}
