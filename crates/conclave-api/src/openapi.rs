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

/// An IP address, v4 or v6, as text.
pub struct IpText;

impl utoipa::PartialSchema for IpText {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type,
        };
        let of = |f| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(f)))
        };
        OneOfBuilder::new()
            .item(of(KnownFormat::Ipv4))
            .item(of(KnownFormat::Ipv6))
            .into()
    }
}

impl ToSchema for IpText {}

/// A map of names to text, as tags and labels are: at most `max` pairs, each key 1 to
/// `key_len` letters, digits, `.`, `_` or `-`, each value at most `value_len` characters
/// and no control character.
pub(crate) fn pairs_schema(
    max: usize,
    key_len: usize,
    value_len: usize,
) -> RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .max_properties(Some(max))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(format!("^[A-Za-z0-9._-]{{1,{key_len}}}$"))),
        ))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(value_len))
                .pattern(Some(NO_CONTROL)),
        ))
        .into()
}

/// Text without control characters (what `char::is_control` refuses).
pub const NO_CONTROL: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]*$";

/// One server-sent event of a stream whose events are named `events`: the event's name, its
/// data (JSON, as text) and its id (a revision or sequence number, for `Last-Event-ID`).
fn sse_event(events: &[&str]) -> RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let text = || ObjectBuilder::new().schema_type(Type::String);
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("event", text().enum_values(Some(events.iter().copied())))
        .property("data", text().content_media_type("application/json"))
        .property("id", text().pattern(Some("^[0-9]+$")))
        .required("data")
        .into()
}

macro_rules! event_stream {
    ($(#[$doc:meta])* $name:ident: $($event:literal),+) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
                sse_event(&[$($event),+])
            }
        }

        impl ToSchema for $name {}
    };
}

event_stream!(
    /// `/v1/watch`: each change, or an `error` (the start was compacted) before the end.
    KvEvent: "put", "delete", "error"
);
event_stream!(
    /// `/v1/members/watch`: the members now, then each change.
    MemberStreamEvent: "snapshot", "join", "update", "suspect", "dead", "left", "reaped"
);
event_stream!(
    /// `/v1/elections/{name}/observe`: the election now, then each transition.
    ElectionEvent: "state", "elected", "resigned", "expired", "handover_requested", "changed", "error"
);
event_stream!(
    /// `/v1/audit/watch`: each entry, or an `error` (entries were dropped) before the end.
    AuditEvent: "entry", "error"
);

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
pub(crate) async fn openapi_json(
    axum::extract::State(ctx): axum::extract::State<crate::Ctx>,
) -> impl IntoResponse {
    let mut doc = document_json();
    // This agent's own limits, where they are settings.
    if let Some(wait) = doc.pointer_mut("/components/schemas/CampaignRequest/properties/wait_ms") {
        wait["maximum"] = ctx.limits.max_campaign_wait_ms.into();
    }
    ([(header::CACHE_CONTROL, "no-cache")], Json(doc))
}

/// [`document`] as served: every unsigned integer also bounded above by its type, which
/// utoipa's typed model cannot state for `u64` (its maximum does not fit a JSON float
/// exactly): a checker then neither sends nor expects values the server cannot parse.
pub fn document_json() -> serde_json::Value {
    let mut json = serde_json::to_value(document()).unwrap_or_default();
    bound_unsigned(&mut json);
    add_links(&mut json);
    plain_descriptions(&mut json);
    if let Some(schemas) = json
        .pointer_mut("/components/schemas")
        .and_then(|s| s.as_object_mut())
    {
        for name in CLOSED_BODIES {
            if let Some(schema) = schemas.get_mut(*name) {
                close_objects(schema);
            }
        }
    }
    json
}

/// One parameter a link fills: (target operation, parameter, runtime expression).
type LinkParam = (&'static str, &'static str, &'static str);

/// What a response names that another operation takes (OpenAPI links): where a client, or
/// a stateful checker, goes next. `(operation, status, [(target operation, parameter,
/// runtime expression)])`.
const LINKS: &[(&str, &str, &[LinkParam])] = &[
    (
        "kv_put",
        "200",
        &[
            ("kv_get", "key", "$request.path.key"),
            ("kv_delete", "key", "$request.path.key"),
        ],
    ),
    (
        "config_put",
        "200",
        &[
            ("config_get", "kind", "$request.path.kind"),
            ("config_get", "name", "$request.path.name"),
            ("config_history", "kind", "$request.path.kind"),
            ("config_history", "name", "$request.path.name"),
            ("config_delete", "kind", "$request.path.kind"),
            ("config_delete", "name", "$request.path.name"),
        ],
    ),
    (
        "elections_campaign",
        "200",
        &[("elections_get", "name", "$request.path.name")],
    ),
    (
        "ipam_create_network",
        "201",
        &[
            ("ipam_get_network", "id", "$response.body#/id"),
            ("ipam_update_network", "id", "$response.body#/id"),
            ("ipam_delete_network", "id", "$response.body#/id"),
        ],
    ),
    (
        "ipam_allocate",
        "201",
        &[
            ("ipam_get_allocation", "id", "$response.body#/id"),
            ("ipam_renew", "id", "$response.body#/id"),
            ("ipam_release", "id", "$response.body#/id"),
        ],
    ),
    (
        "acl_create_token",
        "200",
        &[
            ("acl_get_token", "accessor", "$response.body#/accessor_id"),
            (
                "acl_delete_token",
                "accessor",
                "$response.body#/accessor_id",
            ),
        ],
    ),
    (
        "acl_put_policy",
        "200",
        &[
            ("acl_get_policy", "name", "$response.body#/name"),
            ("acl_delete_policy", "name", "$response.body#/name"),
        ],
    ),
];

fn add_links(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut() {
            let Some(id) = op.get("operationId").and_then(|i| i.as_str()) else {
                continue;
            };
            let canonical = id.trim_end_matches("_seed").to_owned();
            // An alias links to the aliases of its targets.
            let suffix = if canonical.len() < id.len() {
                "_seed"
            } else {
                ""
            };
            for (from, status, targets) in LINKS {
                if *from != canonical {
                    continue;
                }
                let Some(response) = op.pointer_mut(&format!("/responses/{status}")) else {
                    continue;
                };
                let mut links = serde_json::Map::new();
                for (target, param, expression) in *targets {
                    let target = if target.starts_with("ipam_") {
                        format!("{target}{suffix}")
                    } else {
                        target.to_string()
                    };
                    let link = links.entry(target.clone()).or_insert_with(
                        || serde_json::json!({"operationId": target, "parameters": {}}),
                    );
                    link["parameters"][*param] = (*expression).into();
                }
                response["links"] = links.into();
            }
        }
    }
}

/// Request bodies read with `deny_unknown_fields`: their objects take no other property.
const CLOSED_BODIES: &[&str] = &[
    "AddMemberRequest",
    "TransferRequest",
    "CampaignRequest",
    "LeaseRequest",
    "TokenRequest",
    "PolicyRequest",
    "KeyOp",
    "HandoverRequest",
    "NetworkBody",
    "UpdateBody",
    "AllocationBody",
    "RenewBody",
    "RangeBody",
    "RowBody",
    "SecretCheck",
];

fn close_objects(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            if map.contains_key("properties") {
                map.entry("additionalProperties").or_insert(false.into());
            }
            for (key, child) in map.iter_mut() {
                // A map's values are data, not this body's fields.
                if key != "additionalProperties" {
                    close_objects(child);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// Descriptions come from doc comments: rustdoc's links (`` [`Name`] ``) read as `` `Name` ``.
fn plain_descriptions(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    serde_json::Value::String(text) if key == "description" => {
                        *text = text.replace("[`", "`").replace("`]", "`");
                    }
                    _ => plain_descriptions(child),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(plain_descriptions),
        _ => {}
    }
}

fn bound_unsigned(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            // utoipa spells these formats `u-int64`...; the registry's name is `uint64`.
            let (name, max): (&str, u64) = match map.get("format").and_then(|f| f.as_str()) {
                Some("uint64" | "u-int64") => ("uint64", u64::MAX),
                Some("uint32" | "u-int32") => ("uint32", u32::MAX.into()),
                Some("uint16" | "u-int16") => ("uint16", u16::MAX.into()),
                Some("uint8" | "u-int8") => ("uint8", u8::MAX.into()),
                _ => ("", 0),
            };
            if !name.is_empty() {
                map.insert("format".into(), name.into());
                map.entry("minimum").or_insert(0.into());
                map.entry("maximum").or_insert(max.into());
            }
            // A map keyed by node id: JSON object keys are strings of digits.
            if let Some(names) = map.get_mut("propertyNames")
                && names.get("type").is_some_and(|t| t == "integer")
            {
                *names = serde_json::json!({"type": "string", "pattern": "^[0-9]{1,20}$"});
            }
            map.values_mut().for_each(bound_unsigned);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(bound_unsigned),
        _ => {}
    }
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
