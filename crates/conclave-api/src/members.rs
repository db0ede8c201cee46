//! The gossip view and peer publishing over HTTP, served by every agent (clients included):
//! `GET /v1/members`, `POST /v1/members/remove-dead`, `GET /v1/publish/status`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::routing::{get, post};
use conclave_membership::Membership;
use conclave_membership::view::MemberFilter;
use conclave_publish::Publisher;
use conclave_types::{GossipMember, GossipStats, MemberState, RemoveDeadResponse, SinkStatus};

use conclave_state::audit::{Ending, Note};

use crate::audit::Acting;
use crate::{ApiError, query};

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list,
    one,
    remove_dead,
    publish_status,
    stats,
    agent_roles,
    prometheus,
    check_secrets
))]
pub(crate) struct Doc;

/// What the membership endpoints need.
#[derive(Clone)]
pub struct MembersContext {
    pub membership: Membership,
    pub publisher: Publisher,
    pub roles: conclave_roles::Roles,
    /// The Prometheus recorder's handle, when this process installed one.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// This agent's local rules for secret references (`[secrets]`).
    pub secrets: Arc<conclave_config::SecretPolicy>,
    /// This agent's Raft node, to note reaped members in the audit log; `None` on a
    /// client agent (no member of the log: its reaping is local to its view anyway).
    pub node: Option<conclave_raft::RaftNode>,
    /// Cancelled when the agent starts to stop: event streams end.
    pub closing: tokio_util::sync::CancellationToken,
    /// How this agent reaches the others (cluster-wide keyring changes).
    pub peers: crate::gossip_keys::PeerHttp,
    /// Where `POST /v1/agent/reload` sends its request; `None`: this agent takes none.
    pub reload: Option<crate::agent_reload::ReloadRequests>,
    /// This agent's recent history, for the dashboard.
    pub samples: crate::agent_view::SamplesFn,
    /// This agent's effective settings.
    pub settings: crate::agent_view::SettingsView,
}

/// The membership routes, with their own state, to merge into an agent's router.
pub fn router(ctx: MembersContext) -> Router {
    Router::new()
        .route("/v1/members", get(list))
        .route("/v1/members/remove-dead", post(remove_dead))
        .route("/v1/members/watch", get(crate::member_watch::watch))
        .route(
            "/v1/agent/tags",
            get(crate::agent_tags::get).put(crate::agent_tags::put),
        )
        .route("/v1/agent/reload", post(crate::agent_reload::post))
        .route("/v1/members/{id}", get(one))
        .route("/v1/publish/status", get(publish_status))
        .route("/v1/gossip/stats", get(stats))
        .route(
            "/v1/gossip/keys",
            get(crate::gossip_keys::list).post(crate::gossip_keys::change),
        )
        .route("/v1/agent/roles", get(agent_roles))
        .route("/v1/agent/samples", get(crate::agent_view::samples))
        .route("/v1/agent/settings", get(crate::agent_view::settings))
        .route("/metrics", get(prometheus))
        .route("/v1/agent/secrets/check", post(check_secrets))
        // Set here, not only on the router this is merged into: axum applies it to the
        // routes registered so far, so merged routes would answer an empty-body 405.
        .method_not_allowed_fallback(crate::error::method_not_allowed)
        .with_state(Arc::new(ctx))
}

pub(crate) type MCtx = Arc<MembersContext>;

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SecretCheck {
    /// Up to 100 references: `${NAME}`, `file:/path`.
    references: Vec<String>,
}

/// Whether each reference resolves on this node (never a value).
#[derive(serde::Serialize, utoipa::ToSchema)]
struct SecretChecks {
    results: Vec<SecretCheckResult>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct SecretCheckResult {
    /// The reference as given, or `<not a reference>` (which may be a secret itself).
    reference: String,
    resolves: bool,
    /// Why it does not resolve.
    problem: Option<String>,
}

/// `POST /v1/agent/secrets/check`: whether secret references resolve on this node. Answers
/// yes or no and why not; never a value. Only within this node's `[secrets]` policy, so it
/// can tell nothing about files or variables a document could not use anyway; the reads
/// run off the async runtime (a reference is never waited on: see `SecretRef::resolve`).
#[utoipa::path(post, path = "/v1/agent/secrets/check", tag = "agent", request_body = SecretCheck,
    responses((status = 200, body = SecretChecks)))]
async fn check_secrets(
    State(ctx): State<MCtx>,
    body: axum::body::Bytes,
) -> Result<Json<SecretChecks>, ApiError> {
    let req: SecretCheck = crate::error::parse_json(
        &body,
        "check",
        r#"send {"references": ["${NAME}", "file:/path"]}"#,
    )?;
    if req.references.len() > 100 {
        return Err(ApiError::bad_request(
            "at most 100 references per check",
            "split the list",
        ));
    }
    let policy = ctx.secrets.clone();
    let check = move || -> Vec<SecretCheckResult> {
        req.references
            .iter()
            .map(|r| match conclave_config::SecretRef::parse(r) {
                // Not a reference: it may be a secret itself, so it is not echoed.
                Err(e) => SecretCheckResult {
                    reference: "<not a reference>".into(),
                    resolves: false,
                    problem: Some(e.to_string()),
                },
                Ok(reference) => {
                    let problem = reference.resolve(&policy).err().map(|e| e.to_string());
                    SecretCheckResult {
                        reference: reference.to_string(),
                        resolves: problem.is_none(),
                        problem,
                    }
                }
            })
            .collect()
    };
    let results = tokio::task::spawn_blocking(check).await.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            conclave_types::ErrorCode::Unavailable,
            format!("the check did not finish: {e}"),
            "retry",
        )
    })?;
    Ok(Json(SecretChecks { results }))
}

/// Prometheus metrics (text format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "status",
    responses((status = 200, content_type = "text/plain", body = String)))]
async fn prometheus(State(ctx): State<MCtx>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match &ctx.metrics {
        Some(h) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            h.render(),
        )
            .into_response(),
        None => ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            conclave_types::ErrorCode::NotFound,
            "metrics are not recorded in this process",
            "metrics are served by the agent",
        )
        .into_response(),
    }
}

/// This agent's own roles (state, epoch, hooks, OAuth2 peers).
#[utoipa::path(get, path = "/v1/agent/roles", tag = "agent",
    responses((status = 200, body = Vec<conclave_roles::RoleStatus>)))]
async fn agent_roles(State(ctx): State<MCtx>) -> Json<Vec<conclave_roles::RoleStatus>> {
    Json(ctx.roles.status())
}

const LIST_PARAMS: &[&str] = &["role", "healthy", "tag", "state"];

/// `?role=voter,client&healthy=true&tag=zone=a&tag=rack=1&state=alive,suspect`.
fn filter_from(raw: Option<&str>) -> Result<MemberFilter, ApiError> {
    let mut f = MemberFilter::default();
    for (name, value) in query::parse(raw, LIST_PARAMS)? {
        match name.as_str() {
            "role" => f.roles.extend(value.split(',').map(str::to_string)),
            "healthy" => {
                f.healthy = match value.as_str() {
                    "true" => Some(true),
                    "false" => Some(false),
                    other => {
                        return Err(ApiError::bad_request(
                            format!("healthy={other:?} is not a boolean"),
                            "use healthy=true or healthy=false",
                        ));
                    }
                }
            }
            "tag" => {
                let Some((k, v)) = value.split_once('=') else {
                    return Err(ApiError::bad_request(
                        format!("tag={value:?} is not key=value"),
                        "filter by tag as tag=zone=eu-1 (repeat for several)",
                    ));
                };
                f.tags.insert(k.to_string(), v.to_string());
            }
            "state" => {
                for s in value.split(',') {
                    let Some(state) = MemberState::ALL.into_iter().find(|m| m.as_str() == s) else {
                        return Err(ApiError::bad_request(
                            format!("state={s:?} is not a member state"),
                            "states are alive, suspect, dead and left",
                        ));
                    };
                    f.states.push(state);
                }
            }
            _ => {}
        }
    }
    Ok(f)
}

/// The gossip members this agent knows, filtered.
#[utoipa::path(get, path = "/v1/members", tag = "members",
    params(
        ("role" = Option<String>, Query, description = "comma-separated roles (`voter,client`)"),
        ("healthy" = Option<bool>, Query, description = "only healthy (or unhealthy) members"),
        ("tag" = Option<String>, Query, pattern = "=", description = "`key=value`; repeat for several"),
        ("state" = Option<String>, Query, pattern = "^(alive|suspect|dead|left)(,(alive|suspect|dead|left))*$", description = "comma-separated states: alive, suspect, dead, left")),
    responses((status = 200, body = Vec<GossipMember>)))]
async fn list(
    State(ctx): State<MCtx>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<GossipMember>>, ApiError> {
    let filter = filter_from(raw.as_deref())?;
    Ok(Json(
        ctx.membership
            .view()
            .members
            .into_iter()
            .filter(|m| filter.matches(m))
            .collect(),
    ))
}

/// One gossip member.
#[utoipa::path(get, path = "/v1/members/{id}", tag = "members",
    params(("id" = u64, Path, minimum = 1, description = "the member's node id")),
    responses((status = 200, body = GossipMember),
        (status = 404, body = conclave_types::ErrorBody, description = "this agent knows no such member")))]
async fn one(
    State(ctx): State<MCtx>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<GossipMember>, ApiError> {
    let id: u64 = id.parse().map_err(|_| {
        ApiError::bad_request(
            format!("member id {id:?} is not a number"),
            "use the numeric id shown by GET /v1/members",
        )
    })?;
    ctx.membership
        .view()
        .members
        .into_iter()
        .find(|m| m.id == id)
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                conclave_types::ErrorCode::MemberNotFound,
                format!("no member {id} in this agent's view"),
                "GET /v1/members lists the members this agent knows",
            )
        })
}

/// Forget members that are dead or left (gossip only; Raft membership is separate).
#[utoipa::path(post, path = "/v1/members/remove-dead", tag = "members",
    params(("dry_run" = Option<bool>, Query, description = "only list who would be removed")),
    responses((status = 200, body = RemoveDeadResponse)))]
async fn remove_dead(
    State(ctx): State<MCtx>,
    acting: Acting,
    RawQuery(raw): RawQuery,
) -> Result<Json<RemoveDeadResponse>, ApiError> {
    let params = query::parse(raw.as_deref(), &["dry_run"])?;
    if query::flag(&params, "dry_run")? {
        let would = ctx.membership.reapable().into_iter().map(|(id, _)| id);
        return Ok(Json(RemoveDeadResponse {
            removed: would.collect(),
            dry_run: true,
        }));
    }
    let removed = ctx.membership.remove_dead().await;
    if !removed.is_empty() {
        tracing::info!(?removed, "removed dead and left members on request");
        if let Some(node) = &ctx.node {
            let members = removed.iter().map(u64::to_string).collect();
            node.note(acting.0, Note::Reap { members }, Ending::Applied);
        }
    }
    Ok(Json(RemoveDeadResponse {
        removed,
        dry_run: false,
    }))
}

/// Each peer sink (files, ConfigMap, hooks): last render, guards, failures.
#[utoipa::path(get, path = "/v1/publish/status", tag = "members",
    responses((status = 200, body = Vec<SinkStatus>)))]
async fn publish_status(State(ctx): State<MCtx>) -> Json<Vec<SinkStatus>> {
    Json(ctx.publisher.status())
}

/// Gossip counters of this agent.
#[utoipa::path(get, path = "/v1/gossip/stats", tag = "members",
    responses((status = 200, body = GossipStats)))]
async fn stats(State(ctx): State<MCtx>) -> Json<GossipStats> {
    let m = &ctx.membership;
    let counters = m.counters();
    let t = &counters.core;
    let sinks = ctx.publisher.status();
    Json(GossipStats {
        node_id: m.node_id(),
        members: m
            .view()
            .counts()
            .into_iter()
            .map(|(state, n)| {
                let name = serde_json::to_value(state)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                (name, n)
            })
            .collect(),
        datagrams_sent: t.sent,
        datagrams_received: t.received,
        bytes_sent: t.sent_bytes,
        bytes_received: t.received_bytes,
        datagrams_rejected: t.refused_forged
            + t.refused_replayed
            + t.refused_unknown_key
            + t.refused_other,
        refused_forged: t.refused_forged,
        refused_replayed: t.refused_replayed,
        refused_unknown_key: t.refused_unknown_key,
        refused_other: t.refused_other,
        undecodable: t.undecodable,
        send_errors: counters.send_errors,
        adverts_pushed: t.adverts_pushed,
        publications: sinks.iter().map(|s| s.writes).sum(),
        publications_held: sinks.iter().filter(|s| s.held.is_some()).count() as u64,
        hook_failures: sinks.iter().map(|s| s.hook_failures).sum(),
        join_problem: m.join_problem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_filter_takes_the_wire_names_and_refuses_others() {
        let f = filter_from(Some("state=alive,dead,suspect,left")).expect("known states");
        assert_eq!(
            f.states,
            vec![
                MemberState::Alive,
                MemberState::Dead,
                MemberState::Suspect,
                MemberState::Left
            ]
        );
        let refused = filter_from(Some("state=zombie")).expect_err("unknown state");
        assert_eq!(refused.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(
            refused.message.contains("\"zombie\""),
            "{}",
            refused.message
        );
        assert!(refused.hint.contains("alive, suspect, dead and left"));
    }
}
