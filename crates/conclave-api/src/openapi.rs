//! The API's OpenAPI 3.1 document, served at `GET /v1/openapi.json`.
//!
//! Why it is built this way: each handler carries its own `#[utoipa::path]` (method, path,
//! parameters, every status it answers and the body of each) next to its code, and the
//! bodies are the wire types of `conclave-types` with `ToSchema` derived, so the document
//! changes when a handler or a type does. Each module gathers its operations in a `Doc`;
//! [`document`] merges them and adds what holds for every operation:
//! - the error statuses any request can meet (a bad query string, a missing or refused
//!   token, an agent without a leader or shutting down, an internal error), all with the one
//!   error body, so each handler lists only the statuses its own logic chooses;
//! - the seed-compatible aliases (`/api/v1/...`), which serve exactly what their canonical
//!   path serves.
//!
//! A test reads every `.route(` of this crate and checks that the document has it, and the
//! document's paths against the routes; CI runs schemathesis against a live agent with this
//! document (`.ci/schemathesis`).

use axum::Json;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::{Response as DocResponse, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, Ref, RefOr};
use utoipa::{IntoParams, OpenApi, ToSchema};

/// Where the document is served.
pub const PATH: &str = "/v1/openapi.json";

/// Paths served twice: the IPAM seed's spelling (first) answers like conclave's (second).
/// The router registers both (`crate::router`, `crate::ipam::routes`); the document copies
/// the canonical operations to the alias.
pub const ALIASES: &[(&str, &str)] = &[
    ("/api/v1/health", "/v1/health"),
    ("/api/v1/cluster/status", "/v1/cluster/status"),
    ("/api/v1/cluster/nodes", "/v1/cluster/members"),
    ("/api/v1/cluster/nodes/{id}", "/v1/cluster/members/{id}"),
    ("/api/v1/audit", "/v1/audit"),
];

/// IPAM is served under both bases; the handlers document the second.
pub const IPAM_BASES: [&str; 2] = ["/api/v1", "/v1/ipam"];

/// How fresh a read must be: `linearizable` (the default) waits until this node has applied
/// everything committed before the request; `stale` reads this node's copy as it is.
#[derive(Debug, Clone, Copy, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Consistency {
    Linearizable,
    Stale,
}

/// Raw bytes (a value, a snapshot): `type: string` with `contentMediaType`, as 3.1 spells a
/// binary body.
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .content_media_type("application/octet-stream")
            .into()
    }
}

impl ToSchema for Binary {}

/// The query of a read that can be served stale.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    /// `linearizable` (default) or `stale`.
    pub consistency: Option<Consistency>,
}

/// The query of a membership change that can be previewed.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangeQuery {
    /// Only ask the leader whether it would make the change, and what it would do.
    pub dry_run: Option<bool>,
    /// Make a change the quorum check refuses (a voter leaving a cluster that would then
    /// have too few healthy voters).
    pub force: Option<bool>,
}

/// The error body every 4xx and 5xx carries.
pub(crate) fn error_response(description: &str) -> DocResponse {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody")))),
        )
        .build()
}

/// Statuses any operation can answer, whatever its handler does.
const COMMON_ERRORS: &[(&str, &str)] = &[
    (
        "400",
        "a query parameter is unknown or malformed, or the body is not what the operation takes",
    ),
    (
        "401",
        "ACLs are on and the request carries no token, or an unknown one",
    ),
    (
        "403",
        "the token lacks the capability, or a browser request came from another origin or host",
    ),
    ("500", "an internal error (logged with the request id)"),
    (
        "503",
        "no leader, no quorum, or the agent is shutting down; retry",
    ),
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "conclave",
        description = "conclave's HTTP API: the replicated key-value store, cluster membership, configuration documents, elections, roles, gossip membership, IPAM, ACLs and the agent. Every error is `{\"error\": {\"code\", \"message\", \"hint\", ...}}` with a 4xx or 5xx status.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(openapi_json),
    components(schemas(conclave_types::ErrorBody, Consistency)),
    tags(
        (name = "kv", description = "The replicated key-value store"),
        (name = "cluster", description = "Raft membership and leadership"),
        (name = "config", description = "Typed, versioned configuration documents"),
        (name = "elections", description = "Leases with fencing epochs for applications"),
        (name = "roles", description = "Leader-bound roles and their handover"),
        (name = "watch", description = "Server-sent event streams"),
        (name = "audit", description = "The audit log"),
        (name = "members", description = "Gossip membership of every agent"),
        (name = "agent", description = "This agent: tags, reload, settings, samples, keys"),
        (name = "ipam", description = "Networks and address allocations (also under /api/v1)"),
        (name = "acl", description = "Tokens and policies"),
        (name = "status", description = "Status, health, metrics and this document"),
        (name = "ui", description = "The dashboard's files"),
    )
)]
struct Root;

/// `GET /v1/openapi.json`: this document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "status",
    responses((status = 200, description = "the OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub(crate) async fn openapi_json() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Json(document()))
}

/// The whole document: every module's operations, the common errors and the aliases.
pub fn document() -> Document {
    let mut doc = Root::openapi();
    for part in [
        crate::kv::Doc::openapi(),
        crate::status::Doc::openapi(),
        crate::cluster::Doc::openapi(),
        crate::config::Doc::openapi(),
        crate::config_status::Doc::openapi(),
        crate::elections::Doc::openapi(),
        crate::roles::Doc::openapi(),
        crate::watch::Doc::openapi(),
        crate::audit::Doc::openapi(),
        crate::members::Doc::openapi(),
        crate::agent_tags::Doc::openapi(),
        crate::agent_view::Doc::openapi(),
        crate::agent_reload::Doc::openapi(),
        crate::gossip_keys::Doc::openapi(),
        crate::acl::Doc::openapi(),
        crate::ipam::Doc::openapi(),
        crate::ui::Doc::openapi(),
        crate::member_watch::Doc::openapi(),
    ] {
        doc.merge(part);
    }
    for (_, item) in doc.paths.paths.iter_mut() {
        for op in operations(item) {
            // utoipa names an operation after its function; `list` and `get` recur across
            // modules, so the id is `<tag>_<function>`.
            if let (Some(id), Some(tag)) = (
                &mut op.operation_id,
                op.tags.as_ref().and_then(|t| t.first()),
            ) {
                *id = format!("{tag}_{id}");
            }
            for (status, why) in COMMON_ERRORS {
                op.responses
                    .responses
                    .entry((*status).to_owned())
                    .or_insert_with(|| RefOr::T(error_response(why)));
            }
        }
    }
    let copies: Vec<(String, PathItem)> = ALIASES
        .iter()
        .filter_map(|(alias, canonical)| {
            doc.paths
                .paths
                .get(*canonical)
                .map(|item| ((*alias).to_owned(), seed_copy(item)))
        })
        .chain(ipam_aliases(&doc))
        .collect();
    doc.paths.paths.extend(copies);
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "token",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    // The token is optional in the document: ACLs are off unless `[acl] enabled = true`.
    doc.security = Some(vec![
        utoipa::openapi::security::SecurityRequirement::default(),
        utoipa::openapi::security::SecurityRequirement::new("token", Vec::<String>::new()),
    ]);
    doc
}

/// IPAM's operations again under the seed's base, with their own operation ids.
fn ipam_aliases(doc: &Document) -> Vec<(String, PathItem)> {
    let [seed, ours] = IPAM_BASES;
    doc.paths
        .paths
        .iter()
        .filter_map(|(path, item)| {
            let rest = path.strip_prefix(ours)?;
            Some((format!("{seed}{rest}"), seed_copy(item)))
        })
        .collect()
}

/// An alias's operations: the canonical ones with `_seed` on their ids (ids are unique).
fn seed_copy(item: &PathItem) -> PathItem {
    let mut copy = item.clone();
    for op in operations(&mut copy) {
        if let Some(id) = &mut op.operation_id {
            id.push_str("_seed");
        }
    }
    copy
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
        item.head.as_mut(),
    ]
    .into_iter()
    .flatten()
}

#[cfg(test)]
mod tests;
