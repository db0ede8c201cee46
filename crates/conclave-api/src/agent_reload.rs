//! `POST /v1/agent/reload`: re-read this agent's configuration and apply what can change
//! while it runs, as SIGHUP does. The agent (the binary) owns the configuration and does the
//! work; this module carries the request to it and its answer back.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use conclave_types::ErrorCode;
use conclave_types::reload::ReloadReport;
use tokio::sync::{mpsc, oneshot};

use crate::ApiError;
use crate::members::MCtx;

/// Why a reload changed nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadRefused {
    /// The configuration read again is invalid (the message names the file, line and key).
    #[error("{0}")]
    Invalid(String),
    /// Another reload is under way, or the agent is stopping.
    #[error("{0}")]
    Busy(String),
}

/// One reload asked for, and where its answer goes.
pub type ReloadRequest = oneshot::Sender<Result<ReloadReport, ReloadRefused>>;

/// How the API asks the agent for a reload.
pub type ReloadRequests = mpsc::Sender<ReloadRequest>;

#[derive(utoipa::OpenApi)]
#[openapi(paths(post))]
pub(crate) struct Doc;

/// Read the configuration file again and apply what can change live (like SIGHUP).
#[utoipa::path(post, path = "/v1/agent/reload", tag = "agent",
    responses(
        (status = 200, body = ReloadReport, description = "what changed, and what needs a restart"),
        (status = 409, body = conclave_types::ErrorBody, description = "a reload is already running"),
        (status = 422, body = conclave_types::ErrorBody, description = "the configuration is invalid; nothing changed"),
    ))]
pub(crate) async fn post(State(ctx): State<MCtx>) -> Result<Json<ReloadReport>, ApiError> {
    let not_running = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "this agent is not taking reloads (it is stopping, or was started without a configuration to read again)",
            "retry once the agent runs; `conclave agent` re-reads its --config file on SIGHUP or this request",
        )
    };
    let requests = ctx.reload.as_ref().ok_or_else(not_running)?;
    let (tx, rx) = oneshot::channel();
    requests.send(tx).await.map_err(|_| not_running())?;
    match rx.await.map_err(|_| not_running())? {
        Ok(report) => Ok(Json(report)),
        Err(ReloadRefused::Invalid(why)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidConfig,
            why,
            "fix the configuration and reload again; the agent runs on with its previous configuration",
        )),
        Err(ReloadRefused::Busy(why)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            why,
            "retry in a moment",
        )),
    }
}
