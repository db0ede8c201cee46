//! `/v1/cluster/...`: the members, their health, and membership changes.
//!
//! Every handler here runs on the leader: a follower forwards the request over node RPC, so
//! an operator can use any node. The safety checks (quorum after a removal, last voter) live
//! with the leader in `conclave-raft`; this module turns requests and refusals into HTTP.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use conclave_raft::preview::Change;
use conclave_raft::rpc::{ClusterReport, LeaderRequest, MemberReport, Transferred};
use conclave_storage::NodeInfo;
use conclave_types::dashboard::ChangePreview;
use conclave_types::{
    AddMemberRequest, ClusterMember, ClusterStatus, TransferRequest, TransferResponse,
};
use serde::de::DeserializeOwned;

use conclave_state::Command;
use conclave_state::audit::{Ending, Note};

use crate::audit::Acting;
use crate::{ApiError, Ctx, query};

#[derive(utoipa::OpenApi)]
#[openapi(paths(status, list, add, remove, promote, demote, transfer, snapshot))]
pub(crate) struct Doc;

/// What a membership change answers: the members after it, or with `?dry_run=true` what
/// the leader would do.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum MembersAnswer {
    Members(Vec<ClusterMember>),
    Preview(ChangePreview),
}

/// What a leadership transfer answers: the new leader, or with `?dry_run=true` the preview.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum TransferAnswer {
    Transferred(TransferResponse),
    Preview(ChangePreview),
}

/// Membership requests are small; anything larger is a mistake.
const MAX_BODY: usize = 64 * 1024;

async fn json_body<T: DeserializeOwned + Default>(body: Body, what: &str) -> Result<T, ApiError> {
    use http_body_util::BodyExt;
    let bytes = http_body_util::Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            ApiError::bad_request(
                format!("could not read the request body: {e}"),
                format!("send a JSON {what} of at most {MAX_BODY} bytes"),
            )
        })?
        .to_bytes();
    if crate::error::absent(&bytes) {
        return Ok(T::default());
    }
    crate::error::parse_json(
        &bytes,
        what,
        format!("see the API reference in the README for the {what} fields"),
    )
}

/// The member a `/v1/cluster/members/{id}` path names: by node id, or by name among the
/// members this node knows (names are unique among them and never all digits, so neither
/// can be mistaken for the other). An unknown name is a 404 that lists the known ones.
fn node_id_from_path(ctx: &Ctx, uri: &Uri) -> Result<u64, ApiError> {
    let path = uri.path();
    let segment = ["/v1/cluster/members/", "/api/v1/cluster/nodes/"]
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix))
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("");
    if let Ok(id) = segment.parse::<u64>()
        && id > 0
    {
        return Ok(id);
    }
    if conclave_state::node_names::check_node_name(segment).is_err() {
        return Err(ApiError::bad_request(
            format!("{segment:?} is neither a node id nor a node name"),
            "name a member by its id (a positive integer) or its name; list them with GET /v1/cluster/members",
        ));
    }
    let members = ctx.node.local_members();
    if let Some(m) = members.iter().find(|m| m.name.as_deref() == Some(segment)) {
        return Ok(m.node_id);
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        conclave_types::ErrorCode::MemberNotFound,
        conclave_types::node_label::unknown_member(
            segment,
            members.iter().map(|m| (m.node_id, m.name.as_deref())),
        ),
        "name a member by one of these names or ids (conclave members list)",
    ))
}

/// The cluster as the leader sees it: term, commit index, quorum, every member's replication.
#[utoipa::path(get, path = "/v1/cluster/status", tag = "cluster",
    responses((status = 200, body = ClusterStatus)))]
pub(crate) async fn status(
    State(ctx): State<Ctx>,
    uri: Uri,
) -> Result<Json<ClusterStatus>, ApiError> {
    query::parse(uri.query(), &[])?;
    Ok(Json(cluster_status(ctx.node.cluster_status().await?)))
}

/// The leader's view; with `?consistency=stale` this node's own view (roles and addresses,
/// no replication or health). No silent fallback: when no leader answers, the error says so
/// and the caller may ask for the stale view explicitly.
#[utoipa::path(get, path = "/v1/cluster/members", tag = "cluster", params(crate::openapi::ReadQuery),
    responses((status = 200, body = Vec<ClusterMember>)))]
pub(crate) async fn list(
    State(ctx): State<Ctx>,
    uri: Uri,
) -> Result<Json<Vec<ClusterMember>>, ApiError> {
    let params = query::parse(uri.query(), &["consistency"])?;
    if query::stale(&params)? {
        return Ok(Json(members(ctx.node.local_members())));
    }
    match ctx.node.cluster_status().await {
        Ok(s) => Ok(Json(members(s.members))),
        Err(e) => {
            let mut err = ApiError::from(e);
            err.hint = format!(
                "{}; GET /v1/cluster/members?consistency=stale lists the members as this node knows them",
                err.hint
            );
            Err(err)
        }
    }
}

#[derive(Default, serde::Deserialize)]
struct MaybeAdd(Option<AddMemberRequest>);

/// Add a node as a learner (and, with `voter: true`, promote it once caught up).
#[utoipa::path(post, path = "/v1/cluster/members", tag = "cluster",
    request_body = AddMemberRequest,
    responses(
        (status = 200, body = Vec<ClusterMember>, description = "the members after the change"),
        (status = 409, body = conclave_types::ErrorBody, description = "already a member, or another change is in progress"),
        (status = 504, body = conclave_types::ErrorBody, description = "the new member did not catch up in time to become a voter"),
    ))]
pub(crate) async fn add(
    State(ctx): State<Ctx>,
    acting: Acting,
    uri: Uri,
    body: Body,
) -> Result<(StatusCode, Json<Vec<ClusterMember>>), ApiError> {
    query::parse(uri.query(), &[])?;
    let MaybeAdd(req) = json_body(body, "member (node_id, rpc_addr, api_addr, voter)").await?;
    let Some(req) = req else {
        return Err(ApiError::bad_request(
            "the body is empty",
            r#"send {"node_id": 4, "rpc_addr": "10.0.0.4:7401"} (add "voter": true to make it a voter once caught up)"#,
        ));
    };
    if req
        .rpc_addr
        .rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return Err(ApiError::bad_request(
            format!("rpc_addr {:?} is not a HOST:PORT address", req.rpc_addr),
            "give the node's RPC address, e.g. 10.0.0.4:7401",
        ));
    }
    if req.node_id == 0 {
        return Err(ApiError::bad_request(
            "node_id 0 is not valid",
            "node ids start at 1; the node prints its id at start-up and in GET /v1/status",
        ));
    }
    let note = Note::Add {
        node_id: req.node_id,
        rpc_addr: req.rpc_addr.clone(),
        voter: req.voter,
    };
    let add = LeaderRequest::AddMember {
        node_id: req.node_id,
        info: NodeInfo {
            rpc_addr: req.rpc_addr,
            api_addr: req.api_addr,
            learner_only: false,
        },
        voter: req.voter,
    };
    let changed = change_noted(&ctx, acting, add, note).await?;
    Ok((StatusCode::OK, Json(members(changed))))
}

/// What a `/v1/cluster/members/{id}...` request asks of a member.
struct MemberTarget {
    node_id: u64,
    /// `?force=`, where the route takes it (elsewhere it is refused like any unknown one).
    force: bool,
    /// `?dry_run=`: preview the change instead of making it.
    dry_run: bool,
}

fn member_target(ctx: &Ctx, uri: &Uri, takes_force: bool) -> Result<MemberTarget, ApiError> {
    let allowed: &[&str] = if takes_force {
        &["force", "dry_run"]
    } else {
        &["dry_run"]
    };
    let params = query::parse(uri.query(), allowed)?;
    Ok(MemberTarget {
        node_id: node_id_from_path(ctx, uri)?,
        force: query::flag(&params, "force")?,
        dry_run: query::flag(&params, "dry_run")?,
    })
}

/// Remove a member (refused when the voters left could not keep a quorum, unless forced).
#[utoipa::path(delete, path = "/v1/cluster/members/{id}", tag = "cluster",
    params(("id" = String, Path, pattern = r"^([1-9][0-9]{0,15}|[A-Za-z][A-Za-z0-9._-]{0,62}|[0-9]{1,31}[A-Za-z._-][A-Za-z0-9._-]{0,31})$", description = "the member's node id or name"), crate::openapi::ChangeQuery),
    responses(
        (status = 200, body = MembersAnswer),
        (status = 404, body = conclave_types::ErrorBody, description = "no member has this id or name (the message lists the members)"),
        (status = 409, body = conclave_types::ErrorBody, description = "refused: it would leave too few healthy voters, or another change is in progress"),
    ))]
pub(crate) async fn remove(
    State(ctx): State<Ctx>,
    acting: Acting,
    uri: Uri,
) -> Result<Json<MembersAnswer>, ApiError> {
    let MemberTarget {
        node_id,
        force,
        dry_run,
    } = member_target(&ctx, &uri, true)?;
    if dry_run {
        return preview(&ctx, Change::Remove { node_id, force })
            .await
            .map(|p| Json(MembersAnswer::Preview(p)));
    }
    let req = LeaderRequest::Remove { node_id, force };
    let note = Note::Remove { node_id, force };
    let changed = change_noted(&ctx, acting, req, note).await?;
    Ok(Json(MembersAnswer::Members(members(changed))))
}

/// Make a learner a voter.
#[utoipa::path(post, path = "/v1/cluster/members/{id}/promote", tag = "cluster",
    params(("id" = String, Path, pattern = r"^([1-9][0-9]{0,15}|[A-Za-z][A-Za-z0-9._-]{0,62}|[0-9]{1,31}[A-Za-z._-][A-Za-z0-9._-]{0,31})$", description = "the member's node id or name"), ("dry_run" = Option<bool>, Query, description = "only preview the change")),
    responses(
        (status = 200, body = MembersAnswer),
        (status = 404, body = conclave_types::ErrorBody, description = "no member has this id or name (the message lists the members)"),
        (status = 409, body = conclave_types::ErrorBody, description = "refused: it would leave too few healthy voters, or another change is in progress"),
        (status = 504, body = conclave_types::ErrorBody, description = "the learner did not catch up in time"),
    ))]
pub(crate) async fn promote(
    State(ctx): State<Ctx>,
    acting: Acting,
    uri: Uri,
) -> Result<Json<MembersAnswer>, ApiError> {
    let MemberTarget {
        node_id, dry_run, ..
    } = member_target(&ctx, &uri, false)?;
    if dry_run {
        return preview(&ctx, Change::Promote { node_id })
            .await
            .map(|p| Json(MembersAnswer::Preview(p)));
    }
    let req = LeaderRequest::Promote { node_id };
    let note = Note::Promote { node_id };
    let changed = change_noted(&ctx, acting, req, note).await?;
    Ok(Json(MembersAnswer::Members(members(changed))))
}

/// Make a voter a learner.
#[utoipa::path(post, path = "/v1/cluster/members/{id}/demote", tag = "cluster",
    params(("id" = String, Path, pattern = r"^([1-9][0-9]{0,15}|[A-Za-z][A-Za-z0-9._-]{0,62}|[0-9]{1,31}[A-Za-z._-][A-Za-z0-9._-]{0,31})$", description = "the member's node id or name"), crate::openapi::ChangeQuery),
    responses(
        (status = 200, body = MembersAnswer),
        (status = 404, body = conclave_types::ErrorBody, description = "no member has this id or name (the message lists the members)"),
        (status = 409, body = conclave_types::ErrorBody, description = "refused: it would leave too few healthy voters, or another change is in progress"),
    ))]
pub(crate) async fn demote(
    State(ctx): State<Ctx>,
    acting: Acting,
    uri: Uri,
) -> Result<Json<MembersAnswer>, ApiError> {
    let MemberTarget {
        node_id,
        force,
        dry_run,
    } = member_target(&ctx, &uri, true)?;
    if dry_run {
        return preview(&ctx, Change::Demote { node_id, force })
            .await
            .map(|p| Json(MembersAnswer::Preview(p)));
    }
    let req = LeaderRequest::Demote { node_id, force };
    let note = Note::Demote { node_id, force };
    let changed = change_noted(&ctx, acting, req, note).await?;
    Ok(Json(MembersAnswer::Members(members(changed))))
}

/// Hand leadership to a voter (the best caught-up one unless `to` names one).
#[utoipa::path(post, path = "/v1/cluster/leader/transfer", tag = "cluster",
    params(
        ("to" = Option<u64>, Query, minimum = 1, description = "the voter to hand leadership to"),
        ("dry_run" = Option<bool>, Query, description = "only preview the transfer")),
    request_body(content = Option<TransferRequest>, description = "optional; `?to=` overrides `to`"),
    responses(
        (status = 200, body = TransferAnswer),
        (status = 404, body = conclave_types::ErrorBody, description = "`to` is not a member"),
        (status = 409, body = conclave_types::ErrorBody, description = "no healthy voter to take over"),
        (status = 504, body = conclave_types::ErrorBody, description = "no new leader in time"),
    ))]
pub(crate) async fn transfer(
    State(ctx): State<Ctx>,
    acting: Acting,
    uri: Uri,
    body: Body,
) -> Result<Json<TransferAnswer>, ApiError> {
    let params = query::parse(uri.query(), &["to", "dry_run"])?;
    let mut req: TransferRequest = json_body(body, "transfer request (to)").await?;
    if let Some(to) = query::get(&params, "to") {
        req.to = Some(to.parse().map_err(|_| {
            ApiError::bad_request(
                format!("to must be a node id, got {to:?}"),
                "leave it out to let the leader pick the best voter",
            )
        })?);
    }
    if query::flag(&params, "dry_run")? {
        return preview(&ctx, Change::TransferLeader { to: req.to })
            .await
            .map(|p| Json(TransferAnswer::Preview(p)));
    }
    // Noted before the transfer, so the new leader's entry can say a transfer chose it.
    let requested = Note::TransferRequested { to: req.to };
    let note = Command::Note {
        meta: acting.0.clone(),
        note: requested.clone(),
        ending: Ending::Applied,
    };
    if let Err(e) = ctx.node.propose(note).await {
        tracing::debug!(error = %e, "could not note a leadership transfer request");
    }
    let transferred = ctx.node.transfer_leader(req.to).await;
    if let Err(e) = &transferred {
        ctx.node.note(acting.0, requested, Ending::refused(e));
    }
    let Transferred {
        previous_leader,
        leader_id,
        term,
    } = transferred?;
    Ok(Json(TransferAnswer::Transferred(TransferResponse {
        previous_leader,
        leader_id,
        term,
    })))
}

/// What `change` would do, judged by the leader's checks on the leader's current report
/// (see `conclave_raft::preview`); a refusal is the error the change itself would get.
async fn preview(ctx: &Ctx, change: Change) -> Result<ChangePreview, ApiError> {
    let report = ctx.node.cluster_status().await?;
    let effect = conclave_raft::preview::preview(&report, change)
        .map_err(conclave_raft::ConsensusError::from)?;
    Ok(ChangePreview {
        dry_run: true,
        effect,
    })
}

/// Run membership request `req` on the leader and note it in the audit log for `acting`,
/// with how it ended.
async fn change_noted(
    ctx: &Ctx,
    acting: Acting,
    req: LeaderRequest,
    note: Note,
) -> Result<Vec<MemberReport>, ApiError> {
    let changed = ctx.node.change_members(req).await;
    let ending = match &changed {
        Ok(_) => Ending::Applied,
        Err(e) => Ending::refused(e),
    };
    ctx.node.note(acting.0, note, ending);
    Ok(changed?)
}

/// A member as the API shows it (the node-RPC shape converted at this edge).
pub(crate) fn member(m: MemberReport) -> ClusterMember {
    let replication = m.replication;
    ClusterMember {
        node_id: m.node_id,
        name: m.name,
        role: m.role.as_str().to_string(),
        learner_only: m.info.learner_only,
        is_leader: m.is_leader,
        rpc_addr: m.info.rpc_addr,
        api_addr: m.info.api_addr,
        match_index: replication.as_ref().and_then(|r| r.match_index),
        lag_entries: replication.as_ref().and_then(|r| r.lag_entries),
        lag_seconds: replication.as_ref().map(|r| r.lag_seconds),
        last_contact_ms: replication.as_ref().and_then(|r| r.last_contact_ms),
        healthy: m.healthy,
    }
}

pub(crate) fn members(ms: Vec<MemberReport>) -> Vec<ClusterMember> {
    ms.into_iter().map(member).collect()
}

pub(crate) fn cluster_status(r: ClusterReport) -> ClusterStatus {
    ClusterStatus {
        cluster_id: r.cluster_id,
        leader_id: r.leader_id,
        term: r.term,
        commit_index: r.commit_index,
        last_log_index: r.last_log_index,
        voters_wanted: r.voters_wanted as usize,
        quorum_healthy: r.quorum_healthy,
        reported_by: r.reported_by,
        members: members(r.members),
    }
}

/// `GET /v1/snapshot`: the whole state as a verified snapshot file, read at a linearizable
/// point (`conclave snapshot save`).
#[utoipa::path(get, path = "/v1/snapshot", tag = "cluster",
    responses((status = 200, body = crate::openapi::Binary, content_type = "application/octet-stream",
        description = "a verified snapshot file (`conclave snapshot restore` reads it)")))]
pub(crate) async fn snapshot(
    State(ctx): State<Ctx>,
    uri: Uri,
) -> Result<axum::response::Response, ApiError> {
    query::parse(uri.query(), &[])?;
    ctx.node.read_barrier().await?;
    let bytes = ctx.node.state().read(|a| {
        let meta = conclave_storage::SnapshotMeta {
            last_log_id: a.last_applied,
            last_membership: a.membership.clone(),
            snapshot_id: format!("saved-{}", a.last_applied.map_or(0, |l| l.index)),
        };
        conclave_storage::state_machine::encode_snapshot(&meta, &a.state)
    });
    let mut resp = axum::response::Response::new(Body::from(bytes));
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}
