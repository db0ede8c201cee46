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

/// `GET /v1/elections`.
pub(crate) async fn list(State(ctx): State<Ctx>, uri: Uri) -> Result<Response, ApiError> {
    let (_, read) = crate::read_params(&uri, &[])?;
    Ok(Json(ctx.coord.elections(read).await?).into_response())
}

/// `GET /v1/elections/{name}`.
pub(crate) async fn get(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (_, read) = crate::read_params(&uri, &[])?;
    Ok(Json(ctx.coord.election(&name, read).await?).into_response())
}

/// `POST /v1/elections/{name}/campaign`: become the holder, waiting up to `wait_ms`.
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
    Ok(Json(ctx.coord.acting(acting.0).campaign(&name, &req).await?).into_response())
}

/// `POST /v1/elections/{name}/keepalive`: extend the lease of the holder's epoch.
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

/// `POST /v1/elections/{name}/resign`.
pub(crate) async fn resign(
    State(ctx): State<Ctx>,
    acting: Acting,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req: LeaseRequest = json_body(&ctx, &headers, body, LEASE_EXAMPLE).await?;
    let revision = ctx.coord.acting(acting.0).resign(&name, &req).await?;
    Ok(Json(serde_json::json!({ "resigned": true, "revision": revision })).into_response())
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

/// `GET /v1/elections/{name}/observe`: the current state, then every transition (SSE).
pub(crate) async fn observe(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params = query::parse(uri.query(), &["from_revision", "heartbeat_ms"])?;
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
