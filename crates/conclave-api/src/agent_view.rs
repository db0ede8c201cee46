//! What an agent shows of itself to the dashboard: its recent history
//! (`GET /v1/agent/samples`) and its effective settings (`GET /v1/agent/settings`).
//! Both are this agent's own, never forwarded: open the dashboard of the node to look at.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use conclave_types::dashboard::{AgentSetting, AgentSettings, Samples};

use crate::members::MCtx;
use crate::{ApiError, query};

/// The agent's samples taken after a Unix time in milliseconds (all with `None`).
pub type SamplesFn = Arc<dyn Fn(Option<u64>) -> Samples + Send + Sync>;

/// The agent's settings as in effect now (a reload replaces them).
pub type SettingsView = tokio::sync::watch::Receiver<Vec<AgentSetting>>;

/// What a served request counts as on the dashboard's throughput chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    Read,
    Write,
}

/// A request to route template `route` counts as traffic when it is the cluster's API, not
/// the agent watching itself: probes, scrapes, the dashboard's own assets and samples.
pub fn traffic(method: &axum::http::Method, route: &str) -> Option<Traffic> {
    let api = route.starts_with("/v1/") || route.starts_with("/api/v1/");
    let own = matches!(
        route,
        "/v1/health" | "/v1/ready" | "/api/v1/health" | "/v1/agent/samples"
    );
    if !api || own {
        return None;
    }
    Some(
        if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
            Traffic::Read
        } else {
            Traffic::Write
        },
    )
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(samples, settings))]
pub(crate) struct Doc;

/// This agent's recent samples (one per 2 s, 15 minutes kept), for the dashboard's charts.
#[utoipa::path(get, path = "/v1/agent/samples", tag = "agent",
    params(("since" = Option<u64>, Query, minimum = 0, description = "only samples after this Unix time in milliseconds")),
    responses((status = 200, body = Samples)))]
pub(crate) async fn samples(
    State(ctx): State<MCtx>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Samples>, ApiError> {
    let params = query::parse(raw.as_deref(), &["since"])?;
    let since = query::get(&params, "since")
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::bad_request(
                    format!("since must be a Unix time in milliseconds, got {v:?}"),
                    "pass the at_ms of the last sample you have, or leave it out for all",
                )
            })
        })
        .transpose()?;
    Ok(Json((ctx.samples)(since)))
}

/// This agent's effective settings (secrets redacted), each marked live or restart.
#[utoipa::path(get, path = "/v1/agent/settings", tag = "agent",
    responses((status = 200, body = AgentSettings)))]
pub(crate) async fn settings(
    State(ctx): State<MCtx>,
    RawQuery(raw): RawQuery,
) -> Result<Json<AgentSettings>, ApiError> {
    query::parse(raw.as_deref(), &[])?;
    Ok(Json(AgentSettings {
        node_id: ctx.membership.node_id(),
        settings: ctx.settings.borrow().clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn only_the_clusters_api_counts_as_traffic() {
        assert_eq!(traffic(&Method::GET, "/v1/kv/{*key}"), Some(Traffic::Read));
        assert_eq!(traffic(&Method::PUT, "/v1/kv/{*key}"), Some(Traffic::Write));
        assert_eq!(
            traffic(&Method::POST, "/api/v1/networks"),
            Some(Traffic::Write)
        );
        for own in [
            "/v1/health",
            "/v1/agent/samples",
            "/metrics",
            "/ui",
            "unmatched",
        ] {
            assert_eq!(traffic(&Method::GET, own), None, "{own}");
        }
    }
}
