//! The API of a client agent (`--role client`): it holds no Raft log, serves the membership
//! view and its publications locally, and forwards everything else (KV, cluster) to a Raft
//! member it knows through gossip — the leader when gossip names one.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use conclave_membership::Membership;
use conclave_types::{ErrorCode, GossipMember, HealthResponse, MemberState};
use serde::Serialize;

use crate::ApiError;
use crate::members::{self, MembersContext};

pub struct ClientContext {
    pub membership: Membership,
    pub http: reqwest::Client,
    pub version: String,
    pub api_addr: String,
    pub rpc_addr: String,
    /// Largest request body forwarded.
    pub max_body: usize,
    /// `http`, or `https` when the cluster's agents serve TLS (then `http` presents this
    /// agent's certificate).
    pub scheme: &'static str,
    /// The certificate this agent serves, for `/v1/status`; `None` on plain HTTP.
    pub tls: Option<crate::TlsStatusFn>,
}

type CCtx = Arc<ClientContext>;

/// The paths a client agent answers itself (it forwards the others).
fn served_locally(path: &str) -> bool {
    matches!(
        path,
        "/v1/status"
            | "/v1/health"
            | "/v1/ready"
            | "/api/v1/health"
            | "/metrics"
            | "/ui"
            | "/dashboard"
    ) || [
        "/v1/members",
        "/v1/publish/",
        "/v1/gossip/",
        "/v1/agent/",
        "/ui/",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}

/// The client agent's API; with ACLs on, its own routes check the caller's token with a
/// member (`acl::remote`).
pub fn router(
    ctx: ClientContext,
    members_ctx: MembersContext,
    acl: crate::acl::AclSettings,
) -> Router {
    let ctx = Arc::new(ctx);
    let for_guard = ctx.clone();
    let guard = crate::acl::remote::RemoteGuard {
        settings: acl,
        targets: Arc::new(move || {
            raft_members(&for_guard)
                .iter()
                .map(|m| format!("{}://{}", for_guard.scheme, m.api_addr))
                .collect()
        }),
        http: ctx.http.clone(),
        served_locally,
    };
    let routes = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/health", get(health))
        .route("/v1/ready", get(health))
        .route("/api/v1/health", get(health))
        .fallback(forward)
        .method_not_allowed_fallback(crate::error::method_not_allowed)
        .with_state(ctx)
        .merge(members::router(members_ctx))
        .merge(crate::ui::router());
    crate::acl::remote::guard_remote(routes, guard)
}

/// Alive Raft members, the leader first.
fn raft_members(ctx: &ClientContext) -> Vec<GossipMember> {
    ctx.membership.view().raft_members()
}

#[derive(Serialize)]
struct ClientStatus {
    node_id: u64,
    role: &'static str,
    cluster_id: String,
    leader_id: Option<u64>,
    version: String,
    api_addr: String,
    rpc_addr: String,
    members: std::collections::BTreeMap<MemberState, usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<conclave_types::TlsStatus>,
}

async fn status(State(ctx): State<CCtx>) -> Json<ClientStatus> {
    let view = ctx.membership.view();
    let raft = raft_members(&ctx);
    Json(ClientStatus {
        node_id: ctx.membership.node_id(),
        role: "client",
        cluster_id: raft
            .first()
            .map(|m| m.cluster_id.clone())
            .unwrap_or_default(),
        leader_id: raft
            .iter()
            .find(|m| m.raft_role.as_deref() == Some("leader"))
            .map(|m| m.id),
        version: ctx.version.clone(),
        api_addr: ctx.api_addr.clone(),
        rpc_addr: ctx.rpc_addr.clone(),
        members: view.counts(),
        tls: ctx.tls.as_ref().map(|f| f()),
    })
}

/// A client serves when gossip shows it a Raft leader to forward to.
async fn health(State(ctx): State<CCtx>) -> Result<Json<HealthResponse>, ApiError> {
    let raft = raft_members(&ctx);
    if raft.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NotJoined,
            format!(
                "client {} has not met any Raft member through gossip yet ({})",
                ctx.membership.node_id(),
                ctx.membership
                    .join_problem()
                    .unwrap_or_else(|| "other agents answer, but none holds the Raft log".into())
            ),
            "check --join (RPC addresses or DNS names of members) and the cluster token; the log says what it is retrying",
        ));
    }
    let Some(leader) = raft
        .iter()
        .find(|m| m.raft_role.as_deref() == Some("leader"))
    else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NoLeader,
            "no Raft member reports a leader",
            "an election may be in progress; if this lasts, check the voters",
        ));
    };
    Ok(Json(HealthResponse {
        status: "ok".into(),
        node_id: ctx.membership.node_id(),
        leader_id: Some(leader.id),
        applied_index: 0,
        degraded: None,
    }))
}

/// What a client agent passes on to the voter: the body's type, the caller's token, a
/// watch's resume point, and what ties the two nodes' records of the request together (the
/// request id; the W3C trace context, which a build exporting traces rewrites to its own span).
const FORWARDED_HEADERS: &[&str] = &[
    "content-type",
    "accept",
    "authorization",
    "last-event-id",
    "x-request-id",
    "traceparent",
    "tracestate",
];

async fn forward(State(ctx): State<CCtx>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, ctx.max_body).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::TooLarge,
                format!("the request body is over {} bytes", ctx.max_body),
                "send a smaller body",
            )
            .into_response();
        }
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let targets = raft_members(&ctx);
    if targets.is_empty() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NoLeader,
            "this client knows no live Raft member to forward the request to",
            "wait until gossip finds the cluster (see /v1/members), or send the request to a member",
        )
        .into_response();
    }
    for target in &targets {
        let mut out = ctx
            .http
            .request(
                parts.method.clone(),
                format!("{}://{}{path}", ctx.scheme, target.api_addr),
            )
            .body(body.clone());
        for name in FORWARDED_HEADERS {
            if let Some(v) = parts.headers.get(*name) {
                out = out.header(*name, v);
            }
        }
        match out.send().await {
            Ok(resp) => return relay(resp).await,
            // Not sent: safe to try the next member.
            Err(e) if e.is_connect() => continue,
            Err(e) => {
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Indeterminate,
                    format!(
                        "the request was forwarded to node {} but no answer came back: {e}",
                        target.id
                    ),
                    "it may or may not have been applied; read before retrying a write",
                )
                .into_response();
            }
        }
    }
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
        "no Raft member accepted the forwarded request",
        "the members gossip lists may be restarting; retry shortly",
    )
    .into_response()
}

async fn relay(resp: reqwest::Response) -> Response {
    let status = resp.status();
    let mut builder = Response::builder().status(status.as_u16());
    for (name, value) in resp.headers() {
        let n = name.as_str();
        if n == "content-type" || n.starts_with("x-conclave-") {
            builder = builder.header(name.clone(), value.clone());
        }
    }
    // Watches and observers are event streams: pass them through as they come.
    let streaming = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if streaming {
        return builder
            .body(Body::from_stream(resp.bytes_stream()))
            .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response());
    }
    match resp.bytes().await {
        Ok(bytes) => builder
            .body(Body::from(bytes))
            .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response()),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Indeterminate,
            format!("the member's answer was cut off: {e}"),
            "it may or may not have been applied; read before retrying a write",
        )
        .into_response(),
    }
}
