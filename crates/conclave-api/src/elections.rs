//! `/v1/elections`: named elections with leases and fencing epochs, for applications.
//!
//! The rules are the state machine's (`conclave_state::elections`) and the campaign's wait
//! is `conclave-coord`'s; these handlers parse requests and shape answers. Lease times shown
//! are this node's estimate of the cluster clock, which lags the leader's: the remaining
//! time shown is never shorter than the real one by more than the replication delay.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use conclave_state::{Change, ElectionEvent, election_watch_key};
use conclave_types::{CampaignRequest, ElectionStatus, LeaseRequest};
use serde::de::DeserializeOwned;

use crate::audit::Acting;
use crate::kv::read_body;
use crate::watch::{self, Filter};
use crate::{ApiError, Ctx, query};

/// The request body as JSON, over the body limit a 413, malformed a 400 showing `example`.
pub(crate) async fn json_body<T: DeserializeOwned>(
    ctx: &Ctx,
    headers: &HeaderMap,
    body: Body,
    example: &str,
) -> Result<T, ApiError> {
    let bytes = read_body(ctx, headers, body).await?;
    crate::error::parse_json(&bytes, "request", format!("send JSON like {example}"))
}

const LEASE_EXAMPLE: &str = r#"{"candidate": "node-1", "epoch": 3}"#;

#[derive(utoipa::OpenApi)]
#[openapi(paths(list, get, campaign, keepalive, resign, observe))]
pub(crate) struct Doc;

/// What a resignation answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Resigned {
    pub resigned: bool,
    /// The revision of the resignation.
    pub revision: u64,
}

/// Every election: holder, epoch (the fencing token), lease and handover.
#[utoipa::path(get, path = "/v1/elections", tag = "elections", params(crate::openapi::ReadQuery),
    responses((status = 200, body = Vec<ElectionStatus>)))]
pub(crate) async fn list(State(ctx): State<Ctx>, uri: Uri) -> Result<Response, ApiError> {
    let (_, read) = crate::read_params(&uri, &[])?;
    Ok(Json(ctx.coord.elections(read).await?).into_response())
}

/// `GET /v1/elections/{name}`.
/// One election.
#[utoipa::path(get, path = "/v1/elections/{name}", tag = "elections", params(("name" = String, Path, min_length = 1, max_length = 256, description = "the election's name (1 to 256 bytes)"), crate::openapi::ReadQuery),
    responses((status = 200, body = ElectionStatus), (status = 404, body = conclave_types::ErrorBody, description = "no such election")))]
pub(crate) async fn get(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (_, read) = crate::read_params(&uri, &[])?;
    Ok(Json(ctx.coord.election(&name, read).await?).into_response())
}

/// Become the holder, waiting up to `wait_ms` while another holds it.
#[utoipa::path(post, path = "/v1/elections/{name}/campaign", tag = "elections", params(("name" = String, Path, min_length = 1, max_length = 256, description = "the election's name (1 to 256 bytes)")),
    request_body = CampaignRequest,
    responses(
        (status = 200, body = ElectionStatus, description = "elected (or still held by another when `wait_ms` ran out: compare `holder`)"),
        (status = 409, body = conclave_types::ErrorBody, description = "held by another candidate"),
        (status = 413, body = conclave_types::ErrorBody, description = "the body is above the agent's value limit"),
    ))]
pub(crate) async fn campaign(
    State(ctx): State<Ctx>,
    acting: Acting,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req: CampaignRequest = json_body(
        &ctx,
        &headers,
        body,
        r#"{"candidate": "node-1", "ttl_ms": 10000, "wait_ms": 30000}"#,
    )
    .await?;
    let longest = ctx.limits.max_campaign_wait_ms;
    if req.wait_ms > longest {
        return Err(ApiError::bad_request(
            format!(
                "wait_ms {} is above this agent's longest wait, {longest} ms (max_campaign_wait_ms)",
                req.wait_ms
            ),
            "campaign again after a shorter wait; observe the election to learn when it is free",
        ));
    }
    Ok(Json(ctx.coord.acting(acting.0).campaign(&name, &req).await?).into_response())
}

/// Extend the holder's lease (refused for any other candidate or epoch).
#[utoipa::path(post, path = "/v1/elections/{name}/keepalive", tag = "elections", params(("name" = String, Path, min_length = 1, max_length = 256, description = "the election's name (1 to 256 bytes)")),
    request_body = LeaseRequest,
    responses(
        (status = 200, body = ElectionStatus),
        (status = 404, body = conclave_types::ErrorBody, description = "no such election"),
        (status = 409, body = conclave_types::ErrorBody, description = "not the holder, or not its epoch"),
        (status = 413, body = conclave_types::ErrorBody, description = "the body is above the agent's value limit"),
    ))]
pub(crate) async fn keepalive(
    State(ctx): State<Ctx>,
    acting: Acting,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req: LeaseRequest = json_body(&ctx, &headers, body, LEASE_EXAMPLE).await?;
    Ok(Json(ctx.coord.acting(acting.0).keepalive(&name, &req).await?).into_response())
}

/// Give the election up (the holder of that epoch only).
#[utoipa::path(post, path = "/v1/elections/{name}/resign", tag = "elections", params(("name" = String, Path, min_length = 1, max_length = 256, description = "the election's name (1 to 256 bytes)")),
    request_body = LeaseRequest,
    responses(
        (status = 200, body = Resigned),
        (status = 404, body = conclave_types::ErrorBody, description = "no such election"),
        (status = 409, body = conclave_types::ErrorBody, description = "not the holder, or not its epoch"),
        (status = 413, body = conclave_types::ErrorBody, description = "the body is above the agent's value limit"),
    ))]
pub(crate) async fn resign(
    State(ctx): State<Ctx>,
    acting: Acting,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req: LeaseRequest = json_body(&ctx, &headers, body, LEASE_EXAMPLE).await?;
    let revision = ctx.coord.acting(acting.0).resign(&name, &req).await?;
    Ok(Json(Resigned {
        resigned: true,
        revision,
    })
    .into_response())
}

fn render_transition(change: &Change) -> Event {
    let parsed: Option<ElectionEvent> = change
        .value
        .as_deref()
        .and_then(|v| serde_json::from_slice(v).ok());
    let kind = match parsed.as_ref().map(|e| e.transition) {
        Some(conclave_state::Transition::Elected) => "elected",
        Some(conclave_state::Transition::Resigned) => "resigned",
        Some(conclave_state::Transition::Expired) => "expired",
        Some(conclave_state::Transition::HandoverRequested) => "handover_requested",
        None => "changed",
    };
    let mut data = serde_json::to_value(&parsed).unwrap_or_default();
    if let Some(obj) = data.as_object_mut() {
        obj.insert("revision".into(), change.revision.into());
    }
    Event::default()
        .id(change.revision.to_string())
        .event(kind)
        .data(data.to_string())
}

/// The current state, then every transition, as server-sent events.
#[utoipa::path(get, path = "/v1/elections/{name}/observe", tag = "watch", params(("name" = String, Path, min_length = 1, max_length = 256, description = "the election's name (1 to 256 bytes)"), ("from_revision" = Option<u64>, Query, minimum = 0, description = "replay changes after this revision first (a `Last-Event-ID` header does the same)"), ("heartbeat_ms" = Option<u64>, Query, minimum = 100, maximum = 300000, description = "a comment line this often (default 10 s)")),
    responses(
        (status = 200, content_type = "text/event-stream", body = crate::openapi::ElectionEvent, description = "`state` first (an `ElectionStatus`), then `elected`, `resigned`, `expired`, `handover_requested`"),
        (status = 410, body = conclave_types::ErrorBody, description = "the start revision was compacted away: list again and watch from the listing's index"),
    ))]
pub(crate) async fn observe(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params = query::parse(uri.query(), &["from_revision", "heartbeat_ms"])?;
    conclave_state::check_election_name(&name)?;
    let state = ctx.node.state().clone();
    let resuming = headers.contains_key("last-event-id");
    let after = watch::start_revision(&state, &headers, &params)?;
    // A fresh observer first learns the current holder; a resuming one only what it missed.
    let first = if resuming {
        None
    } else {
        let status = ctx.coord.election_applied(&name).unwrap_or(ElectionStatus {
            name: name.clone(),
            holder: None,
            epoch: 0,
            elected: None,
            ttl_ms: 0,
            lease_remaining_ms: 0,
            since: None,
            revision: after,
            handover: None,
        });
        Some(
            Event::default()
                .event("state")
                .data(serde_json::to_string(&status).unwrap_or_default()),
        )
    };
    watch::stream(
        watch::StreamKind::Election,
        state,
        after,
        Filter::Key(election_watch_key(&name)),
        render_transition,
        first,
        watch::heartbeat(&params)?,
        &ctx.closing,
    )
}
