//! conclave's HTTP API, `/v1/...`.
//!
//! Why this crate exists: it is the only crate that knows HTTP on the server side. It turns
//! requests into [`conclave_state::Command`]s and reads, and outcomes and errors into status
//! codes and JSON. Business rules live in `conclave-state`; consensus in `conclave-raft`.
//!
//! Every error is `{"error": {"code", "message", "hint"}}` with a 4xx/5xx status; see
//! [`error::ApiError`]. Handlers never panic on request input: keys, query strings and bodies
//! are parsed by hand here so that every rejection gets that same JSON shape.

pub mod acl;
pub mod agent_reload;
mod agent_tags;
pub mod agent_view;
pub mod audit;
pub mod client;
mod cluster;
mod config;
pub mod config_status;
pub mod edge;
mod elections;
pub mod error;
pub mod gossip_keys;
mod ipam;
mod kv;
mod member_watch;
pub mod members;
pub mod openapi;
mod query;
mod roles;
mod status;
mod stopping;
pub mod ui;
mod watch;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use conclave_raft::RaftNode;
use conclave_state::Limits;

pub use error::ApiError;
pub use status::role_name;
pub use stopping::refuse_while_stopping;

/// Everything a handler needs, shared by all requests.
pub struct AppContext {
    pub node: RaftNode,
    pub limits: Limits,
    /// The coordination services (configuration, elections) over `node`.
    pub coord: conclave_coord::Local,
    pub api_addr: String,
    pub rpc_addr: String,
    pub version: String,
    /// The gossip view, for what nodes advertise (applied configuration, settings).
    pub membership: conclave_membership::Membership,
    /// After this long out of sync, a node counts as drifted.
    pub drift_after: std::time::Duration,
    pub drift: config_status::DriftTracker,
    /// Cancelled when the HTTP server starts draining: long-lived streams (watches) end.
    pub closing: tokio_util::sync::CancellationToken,
    /// The certificate the API serves, for `/v1/status`; `None` on plain HTTP.
    pub tls: Option<TlsStatusFn>,
    /// `[acl]`: whether tokens are required (the guard itself is `acl::guard`).
    pub acl: acl::AclSettings,
    /// `[audit]`: which key-value writes the audit log records.
    pub audit: audit::AuditSettings,
}

pub type Ctx = Arc<AppContext>;

/// What `/v1/status` shows of the agent's TLS, read when asked (the files may be rotated).
pub type TlsStatusFn = Arc<dyn Fn() -> conclave_types::TlsStatus + Send + Sync>;

/// Parse a read's query string (`consistency` and `allowed`) and, unless it asks for
/// `?consistency=stale`, wait until this node has applied everything committed before now.
pub(crate) async fn read_point(
    ctx: &Ctx,
    uri: &axum::http::Uri,
    allowed: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
    let (params, read) = read_params(uri, allowed)?;
    if read == conclave_coord::Read::Linearizable {
        ctx.node.read_barrier().await?;
    }
    Ok(params)
}

/// Parse a read's query string (`consistency` and `allowed`): the parameters and how fresh
/// the read must be, for a service that takes the read barrier itself.
pub(crate) fn read_params(
    uri: &axum::http::Uri,
    allowed: &[&str],
) -> Result<(Vec<(String, String)>, conclave_coord::Read), ApiError> {
    let mut names = vec!["consistency"];
    names.extend_from_slice(allowed);
    let params = query::parse(uri.query(), &names)?;
    let read = if query::stale(&params)? {
        conclave_coord::Read::Stale
    } else {
        conclave_coord::Read::Linearizable
    };
    Ok((params, read))
}

/// Build the router for the whole API.
pub fn router(ctx: Ctx, members_ctx: members::MembersContext) -> Router {
    let acl_routes = acl::router(ctx.clone());
    // IPAM at the seed's paths and at conclave's.
    ipam::routes(ipam::routes(Router::new(), "/api/v1"), "/v1/ipam")
        .route("/v1/kv", get(kv::list))
        // An empty key gets the handlers' "the key is empty" 400, not a 404 for the route.
        .route("/v1/kv/", get(kv::get).put(kv::put).delete(kv::delete))
        .route(
            "/v1/kv/{*key}",
            get(kv::get).put(kv::put).delete(kv::delete),
        )
        .route("/v1/status", get(status::status))
        .route("/v1/health", get(status::health))
        .route("/v1/ready", get(status::ready))
        // The IPAM seed's health URL, for its load balancers and probes.
        .route("/api/v1/health", get(status::health))
        .route("/v1/snapshot", get(cluster::snapshot))
        .route("/v1/cluster/status", get(cluster::status))
        // The IPAM seed's path, for tools written against it.
        .route("/api/v1/cluster/status", get(cluster::status))
        .route("/v1/cluster/members", get(cluster::list).post(cluster::add))
        .route(
            "/v1/cluster/members/{id}",
            axum::routing::delete(cluster::remove),
        )
        // The IPAM seed's node management paths (and the listing at the same path).
        .route(
            "/api/v1/cluster/nodes",
            get(cluster::list).post(cluster::add),
        )
        .route(
            "/api/v1/cluster/nodes/{id}",
            axum::routing::delete(cluster::remove),
        )
        .route("/v1/cluster/members/{id}/promote", post(cluster::promote))
        .route("/v1/cluster/members/{id}/demote", post(cluster::demote))
        .route("/v1/cluster/leader/transfer", post(cluster::transfer))
        .route("/v1/config", get(config::list))
        .route("/v1/config/status", get(config_status::status))
        .route("/v1/config/{kind}", get(config::list_kind))
        .route(
            "/v1/config/{kind}/{name}",
            get(config::get).put(config::put).delete(config::delete),
        )
        .route("/v1/config/{kind}/{name}/history", get(config::history))
        .route("/v1/elections", get(elections::list))
        .route("/v1/elections/{name}", get(elections::get))
        .route("/v1/elections/{name}/campaign", post(elections::campaign))
        .route("/v1/elections/{name}/keepalive", post(elections::keepalive))
        .route("/v1/elections/{name}/resign", post(elections::resign))
        .route("/v1/elections/{name}/observe", get(elections::observe))
        .route("/v1/watch", get(watch::watch))
        .route("/v1/audit", get(audit::list))
        // The IPAM seed's path, for tools written against it.
        .route("/api/v1/audit", get(audit::list))
        .route("/v1/audit/watch", get(audit::watch))
        .route("/v1/roles", get(roles::list))
        .route("/v1/roles/{name}", get(roles::get))
        .route("/v1/roles/{name}/handover", post(roles::handover))
        .route(openapi::PATH, get(openapi::openapi_json))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        // Bodies are read with our own limit (413 with a JSON error), not axum's default.
        .layer(DefaultBodyLimit::disable())
        .with_state(ctx)
        .merge(members::router(members_ctx))
        .merge(acl_routes)
        .merge(ui::router())
}
