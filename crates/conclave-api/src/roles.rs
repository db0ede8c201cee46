//! `/v1/roles`: every leader-bound role, its holder, epoch, candidates and the holder's
//! OAuth2 peer status; planned handovers.
//!
//! The holder and epoch come from the role's election (`role:<name>`) in the replicated
//! state; candidates, claims and peer status from what agents advertise over gossip. Two
//! live claimants of one role are reported as `split_brain`.

use std::collections::BTreeSet;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use conclave_roles::detector::{self, Claim};
use conclave_roles::oauth2::PeerStatus;
use conclave_roles::{
    HANDOVER_WINDOW, Stance, claim_key, election_name, live_claims, peers_key, stances,
};
use conclave_state::{Command, Outcome};
use conclave_types::{ErrorCode, GossipMember, MemberState};
use serde::{Deserialize, Serialize};

use crate::audit::Acting;
use crate::kv::{read_body, unexpected};
use crate::{ApiError, Ctx};

#[derive(Serialize, utoipa::ToSchema)]
pub struct Candidate {
    pub node_id: u64,
    /// `holder`, `candidate` or `ineligible`; `unknown` for a member that is not alive (its
    /// last gossiped stance is stale).
    pub state: String,
    pub priority: i64,
    pub member_state: MemberState,
    pub healthy: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RoleView {
    pub name: String,
    /// Node id of the holder (from the election), or `None`.
    pub holder: Option<u64>,
    pub epoch: u64,
    pub lease_remaining_ms: u64,
    pub candidates: Vec<Candidate>,
    /// Live nodes that believe they hold the role, with their epochs.
    pub claims: Vec<Claim>,
    pub split_brain: bool,
    /// The holder's OAuth2 remote peers: token status (never a token or secret).
    pub peers: Vec<PeerStatus>,
}

fn role_names(members: &[GossipMember]) -> BTreeSet<String> {
    members
        .iter()
        .flat_map(|m| stances(m).map(|(role, _)| role.to_owned()))
        .collect()
}

fn view_of(ctx: &Ctx, name: &str, members: &[GossipMember]) -> RoleView {
    let key = claim_key(name);
    let mut candidates: Vec<Candidate> = members
        .iter()
        .filter_map(|m| {
            let stance = Stance::parse(m.advertised.get(&key)?)?;
            // A member that is not alive cannot be believed to hold anything: its stance is
            // the last it gossiped.
            let state = if m.state == MemberState::Alive {
                stance.state
            } else {
                "unknown".to_owned()
            };
            Some(Candidate {
                node_id: m.id,
                state,
                priority: stance.priority,
                member_state: m.state,
                healthy: m.healthy,
            })
        })
        .collect();
    let claims = live_claims(members, name);
    candidates.sort_by_key(|c| (std::cmp::Reverse(c.priority), c.node_id));
    let state = ctx.node.state();
    let now = state.cluster_clock_estimate();
    let (holder, epoch, lease) = state.read(|a| {
        a.state
            .election(&election_name(name))
            .map_or((None, 0, 0), |e| match e.live_holder(now) {
                Some(h) => (
                    h.candidate.parse::<u64>().ok(),
                    h.epoch,
                    h.expires_at_ms.saturating_sub(now),
                ),
                None => (None, e.last_epoch, 0),
            })
    });
    let peers = holder
        .and_then(|h| members.iter().find(|m| m.id == h))
        .and_then(|m| m.advertised.get(&peers_key(name)))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default();
    RoleView {
        name: name.to_owned(),
        holder,
        epoch,
        lease_remaining_ms: lease,
        split_brain: detector::judge(&claims).split_brain,
        candidates,
        claims,
        peers,
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(list, get, handover))]
pub(crate) struct Doc;

/// Every role an agent declares: holder, epoch, candidates, claims and split brain.
#[utoipa::path(get, path = "/v1/roles", tag = "roles", params(crate::openapi::ReadQuery),
    responses((status = 200, body = Vec<RoleView>)))]
pub(crate) async fn list(State(ctx): State<Ctx>, uri: Uri) -> Result<Response, ApiError> {
    crate::read_point(&ctx, &uri, &[]).await?;
    let members = ctx.membership.view().members;
    let roles: Vec<RoleView> = role_names(&members)
        .iter()
        .map(|n| view_of(&ctx, n, &members))
        .collect();
    Ok(Json(roles).into_response())
}

/// One role.
#[utoipa::path(get, path = "/v1/roles/{name}", tag = "roles", params(("name" = String, Path, min_length = 1, description = "the role's name"), crate::openapi::ReadQuery),
    responses((status = 200, body = RoleView), (status = 404, body = conclave_types::ErrorBody, description = "no agent declares this role")))]
pub(crate) async fn get(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    crate::read_point(&ctx, &uri, &[]).await?;
    let members = ctx.membership.view().members;
    if !role_names(&members).contains(&name) {
        return Err(unknown_role(&name));
    }
    Ok(Json(view_of(&ctx, &name, &members)).into_response())
}

fn unknown_role(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!("no agent declares role {name:?}"),
        "declare it in the agents' configuration ([[roles]] with name = ...); GET /v1/roles lists the known ones",
    )
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct HandoverRequest {
    /// The node to hand over to; default: the highest-priority live eligible candidate.
    #[serde(default)]
    to: Option<u64>,
}

/// A handover the holder will carry out: it steps down for `to` within the handover window.
#[derive(Serialize, utoipa::ToSchema)]
pub struct HandoverAccepted {
    pub role: String,
    /// The holder stepping down.
    pub from: u64,
    /// The candidate taking over.
    pub to: u64,
    /// The holder's epoch when asked; the new holder's is higher.
    pub from_epoch: u64,
}

/// The holder steps down for the chosen candidate (default: the highest-priority live one).
#[utoipa::path(post, path = "/v1/roles/{name}/handover", tag = "roles", params(("name" = String, Path, min_length = 1, description = "the role's name")),
    request_body(content = Option<HandoverRequest>, description = "optional: `to`, the node to hand over to"),
    responses(
        (status = 202, body = HandoverAccepted, description = "the holder was asked to step down"),
        (status = 404, body = conclave_types::ErrorBody, description = "no agent declares this role"),
        (status = 409, body = conclave_types::ErrorBody, description = "no holder, no eligible candidate, or the holder changed meanwhile"),
        (status = 413, body = conclave_types::ErrorBody, description = "the body is above the agent's value limit"),
    ))]
pub(crate) async fn handover(
    State(ctx): State<Ctx>,
    acting: Acting,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&ctx, &headers, body).await?;
    let req: HandoverRequest = if crate::error::absent(&bytes) {
        HandoverRequest::default()
    } else {
        crate::error::parse_json(
            &bytes,
            "handover request",
            r#"send {"to": <node id>} or nothing for the highest-priority candidate"#,
        )?
    };
    ctx.node.read_barrier().await?;
    let members = ctx.membership.view().members;
    if !role_names(&members).contains(&name) {
        return Err(unknown_role(&name));
    }
    let view = view_of(&ctx, &name, &members);
    let Some(holder) = view.holder else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            format!("role {name} has no holder to hand over from"),
            "wait until a candidate holds it (GET /v1/roles)",
        ));
    };
    let ready = |c: &&Candidate| {
        c.node_id != holder && c.state == "candidate" && c.member_state == MemberState::Alive
    };
    let target = match req.to {
        Some(to) => view
            .candidates
            .iter()
            .filter(ready)
            .find(|c| c.node_id == to)
            .map(|c| c.node_id)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    ErrorCode::Conflict,
                    format!("node {to} is not a live, eligible candidate for role {name}"),
                    format!("GET /v1/roles/{name} lists the candidates and their state"),
                )
            })?,
        None => view
            .candidates
            .iter()
            .find(ready)
            .map(|c| c.node_id)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    ErrorCode::Conflict,
                    format!("role {name} has no other live, eligible candidate"),
                    "start an eligible agent first; the holder keeps the role meanwhile",
                )
            })?,
    };
    let command = Command::Handover {
        election: election_name(&name),
        target: target.to_string(),
        from_epoch: view.epoch,
        window_ms: HANDOVER_WINDOW.as_millis() as u64,
    };
    match ctx.node.propose(acting.wrap(command)).await? {
        Outcome::HandoverPlanned { .. } => {}
        Outcome::NotHolder { .. } => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                format!("role {name} changed holder while the handover was asked for"),
                format!("look again with GET /v1/roles/{name} and retry"),
            ));
        }
        other => return Err(unexpected(other)),
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(HandoverAccepted {
            role: name,
            from: holder,
            to: target,
            from_epoch: view.epoch,
        }),
    )
        .into_response())
}
