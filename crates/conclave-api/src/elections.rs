//! `/v1/elections`: named elections with leases and fencing epochs, for applications.
//!
//! The rules are the state machine's (`conclave_state::elections`); this module turns them
//! into requests. A campaign may wait: it retries whenever the election's holder changes
//! (resignation, expiry) until it wins or its `wait_ms` runs out. Lease times shown are this
//! node's estimate of the cluster clock, which lags the leader's: the remaining time shown is
//! never shorter than the real one by more than the replication delay.

use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use conclave_state::{Change, Command, Election, ElectionEvent, Outcome, election_watch_key};
use conclave_types::{CampaignRequest, ElectionStatus, ErrorCode, HandoverStatus, LeaseRequest};
use serde::de::DeserializeOwned;

use crate::config::rfc3339;
use crate::kv::{read_body, unexpected};
use crate::watch::{self, Filter};
use crate::{ApiError, Ctx, query};

/// The longest a campaign request may wait to be elected.
const MAX_WAIT: Duration = Duration::from_secs(300);

async fn json_body<T: DeserializeOwned>(
    ctx: &Ctx,
    headers: &HeaderMap,
    body: Body,
    example: &str,
) -> Result<T, ApiError> {
    let bytes = read_body(ctx, headers, body).await?;
    crate::error::parse_json(&bytes, "request", format!("send JSON like {example}"))
}

fn status_of(name: &str, e: &Election, now_ms: u64, revision: u64) -> ElectionStatus {
    let handover = e.pending_handover(now_ms).map(|h| HandoverStatus {
        target: h.target.clone(),
        from_epoch: h.from_epoch,
        remaining_ms: h.until_ms.saturating_sub(now_ms),
    });
    let status = match e.live_holder(now_ms) {
        Some(h) => ElectionStatus {
            name: name.to_owned(),
            holder: Some(h.candidate.clone()),
            epoch: h.epoch,
            elected: None,
            ttl_ms: h.ttl_ms,
            lease_remaining_ms: h.expires_at_ms.saturating_sub(now_ms),
            since: Some(rfc3339(h.acquired_wall_ms)),
            revision,
            handover: None,
        },
        None => ElectionStatus {
            name: name.to_owned(),
            holder: None,
            epoch: e.last_epoch,
            elected: None,
            ttl_ms: 0,
            lease_remaining_ms: 0,
            since: None,
            revision,
            handover: None,
        },
    };
    ElectionStatus { handover, ..status }
}

/// The election as this node sees it now, `None` if it was never campaigned for.
fn current(ctx: &Ctx, name: &str) -> Option<ElectionStatus> {
    let state = ctx.node.state();
    let now = state.cluster_clock_estimate();
    state.read(|a| {
        a.state
            .election(name)
            .map(|e| status_of(name, e, now, a.state.revision()))
    })
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::ElectionNotFound,
        format!("no one has campaigned in election {name:?} yet"),
        format!("campaign with POST /v1/elections/{name}/campaign"),
    )
}

fn not_holder(name: &str, req: &LeaseRequest, holder: Option<String>, epoch: u64) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::NotHolder,
        format!(
            "{} does not hold epoch {} of election {name:?} (holder: {}, epoch {epoch})",
            req.candidate,
            req.epoch,
            holder.as_deref().unwrap_or("none")
        ),
        "the lease ended or was never held: stop acting as the holder and campaign again",
    )
}

/// `GET /v1/elections`.
pub(crate) async fn list(State(ctx): State<Ctx>, uri: Uri) -> Result<Response, ApiError> {
    crate::read_point(&ctx, &uri, &[]).await?;
    let state = ctx.node.state();
    let now = state.cluster_clock_estimate();
    let all: Vec<ElectionStatus> = state.read(|a| {
        a.state
            .elections()
            .map(|(n, e)| status_of(n, e, now, a.state.revision()))
            .collect()
    });
    Ok(Json(all).into_response())
}

/// `GET /v1/elections/{name}`.
pub(crate) async fn get(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    crate::read_point(&ctx, &uri, &[]).await?;
    current(&ctx, &name)
        .map(|s| Json(s).into_response())
        .ok_or_else(|| not_found(&name))
}

/// `POST /v1/elections/{name}/campaign`: become the holder, waiting up to `wait_ms`.
pub(crate) async fn campaign(
    State(ctx): State<Ctx>,
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
    let command = Command::Campaign {
        election: name.clone(),
        candidate: req.candidate.clone(),
        ttl_ms: req.ttl_ms,
    };
    ctx.limits.check(&command)?;
    let deadline = Instant::now() + Duration::from_millis(req.wait_ms).min(MAX_WAIT);
    let mut feed = ctx.node.state().feed_revision();
    loop {
        feed.borrow_and_update();
        let outcome = ctx.node.propose(command.clone()).await?;
        let busy_epoch = match outcome {
            Outcome::Elected {
                revision,
                epoch,
                expires_at_ms,
                now_ms,
                ..
            } => {
                return Ok(Json(ElectionStatus {
                    name,
                    holder: Some(req.candidate),
                    epoch,
                    elected: Some(true),
                    ttl_ms: req.ttl_ms,
                    lease_remaining_ms: expires_at_ms.saturating_sub(now_ms),
                    since: None,
                    revision,
                    handover: None,
                })
                .into_response());
            }
            Outcome::Busy { epoch, .. } => epoch,
            // Reserved for a handover target: wait like for a holder.
            Outcome::Reserved { .. } => 0,
            other => return Err(unexpected(other)),
        };
        if Instant::now() >= deadline {
            let mut status = current(&ctx, &name).ok_or_else(|| not_found(&name))?;
            status.elected = Some(false);
            return Ok(Json(status).into_response());
        }
        // Wait until the holder changes (resigned, expired, replaced) or the wait is over;
        // look again every second in case an expiry is due but not yet proposed.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = tokio::time::timeout(left.min(Duration::from_secs(1)), feed.changed()).await;
            let still_busy = current(&ctx, &name).is_some_and(|s| {
                let reserved = s.handover.is_some_and(|h| h.target != req.candidate);
                reserved || (s.holder.is_some() && s.epoch == busy_epoch)
            });
            if !still_busy {
                break;
            }
        }
    }
}

/// Read a `{candidate, epoch}` body and propose the lease command `build` makes of it.
async fn propose_lease(
    ctx: &Ctx,
    name: &str,
    headers: &HeaderMap,
    body: Body,
    build: fn(String, String, u64) -> Command,
) -> Result<(LeaseRequest, Outcome), ApiError> {
    let req: LeaseRequest =
        json_body(ctx, headers, body, r#"{"candidate": "node-1", "epoch": 3}"#).await?;
    let command = build(name.to_owned(), req.candidate.clone(), req.epoch);
    ctx.limits.check(&command)?;
    let outcome = ctx.node.propose(command).await?;
    Ok((req, outcome))
}

/// `POST /v1/elections/{name}/keepalive`: extend the lease of the holder's epoch.
pub(crate) async fn keepalive(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let build = |election, candidate, epoch| Command::Keepalive {
        election,
        candidate,
        epoch,
    };
    match propose_lease(&ctx, &name, &headers, body, build).await? {
        (
            req,
            Outcome::Renewed {
                revision,
                expires_at_ms,
                now_ms,
            },
        ) => {
            let ttl_ms = expires_at_ms.saturating_sub(now_ms);
            Ok(Json(ElectionStatus {
                name,
                holder: Some(req.candidate),
                epoch: req.epoch,
                elected: Some(true),
                ttl_ms,
                lease_remaining_ms: ttl_ms,
                since: None,
                revision,
                handover: None,
            })
            .into_response())
        }
        (req, Outcome::NotHolder { holder, epoch, .. }) => {
            Err(not_holder(&name, &req, holder, epoch))
        }
        (_, other) => Err(unexpected(other)),
    }
}

/// `POST /v1/elections/{name}/resign`.
pub(crate) async fn resign(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let build = |election, candidate, epoch| Command::Resign {
        election,
        candidate,
        epoch,
    };
    match propose_lease(&ctx, &name, &headers, body, build).await? {
        (_, Outcome::Resigned { revision }) => Ok(Json(serde_json::json!({
            "resigned": true,
            "revision": revision,
        }))
        .into_response()),
        (req, Outcome::NotHolder { holder, epoch, .. }) => {
            Err(not_holder(&name, &req, holder, epoch))
        }
        (_, other) => Err(unexpected(other)),
    }
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
        let status = current(&ctx, &name).unwrap_or(ElectionStatus {
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
        state,
        after,
        Filter::Key(election_watch_key(&name)),
        render_transition,
        first,
        watch::heartbeat(&params)?,
        &ctx.closing,
    )
}
