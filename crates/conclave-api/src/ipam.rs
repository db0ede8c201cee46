//! IPAM over HTTP: networks and address allocations, at the IPAM seed's paths
//! (`/api/v1/networks`, `/api/v1/allocations`) and at conclave's (`/v1/ipam/...`).
//!
//! The rules are the state machine's (`conclave_state::ipam`): these handlers parse
//! requests (a CIDR or address that does not parse is a 400 naming the field), propose, and
//! shape answers. A network is shown with its utilisation; an allocation as stored.

use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use conclave_state::ipam::{
    AddrRange, IpamAnswer, IpamCommand, IpamRefusal, Network, NetworkSpec, NetworkUpdate, Usage,
};
use conclave_types::ErrorCode;
use conclave_types::ipam::NetworkUsage;
use serde::{Deserialize, Serialize};

use crate::audit::Acting;
use crate::elections::json_body;
use crate::{ApiError, Ctx, query};

mod allocations;
mod answer;
mod import;

use answer::count;
pub(crate) use answer::refusal_error;

const NETWORK_EXAMPLE: &str = r#"{"cidr": "10.0.0.0/24", "description": "lab"}"#;
pub(super) const ALLOCATION_EXAMPLE: &str = r#"{"network_id": "net-3", "hostname": "web-server"}"#;
/// The most allocations one listing returns.
pub(super) const MAX_LIST: usize = 10_000;

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list_networks,
    create_network,
    get_network,
    update_network,
    delete_network,
    allocations::list_allocations,
    allocations::allocate,
    allocations::release_by,
    allocations::get_allocation,
    allocations::release,
    allocations::renew,
    import::import
))]
pub(crate) struct Doc;

/// A network as the API shows it: its definition and how its addresses are used.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NetworkView {
    #[serde(flatten)]
    network: Network,
    usage: NetworkUsage,
}

/// Every network.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NetworkList {
    networks: Vec<NetworkView>,
}

/// A deleted network, and how many allocations went with it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NetworkDeleted {
    deleted: bool,
    id: String,
    /// Allocations released with it (`?force=true`).
    released: u64,
}

pub(crate) fn usage_view(u: Usage) -> NetworkUsage {
    NetworkUsage {
        total: u.total,
        allocated: u.allocated,
        reserved: u.reserved,
        free: u.free,
        utilisation_percent: (u.utilisation_percent() * 100.0).round() / 100.0,
    }
}

fn network_view(network: &Network, usage: Usage) -> NetworkView {
    NetworkView {
        network: network.clone(),
        usage: usage_view(usage),
    }
}

pub(super) fn bad(field: &str, message: String, hint: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::BadRequest,
        format!("{field}: {message}"),
        hint,
    )
}

pub(super) fn parse_addr(field: &str, s: &str) -> Result<IpAddr, ApiError> {
    s.trim().parse().map_err(|e| {
        bad(
            field,
            format!("{s:?} is not an IP address ({e})"),
            "write an IPv4 or IPv6 address, e.g. 10.0.0.7 or fd00::7",
        )
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RangeBody {
    #[schema(value_type = crate::openapi::IpText)]
    start: String,
    #[schema(value_type = crate::openapi::IpText)]
    end: String,
}

/// The schema of tags and labels: what `conclave_state::ipam` accepts.
pub(crate) struct IpamPairs;

impl utoipa::PartialSchema for IpamPairs {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use conclave_state::ipam::{MAX_FIELD_BYTES, MAX_TAGS};
        crate::openapi::pairs_schema(MAX_TAGS, MAX_FIELD_BYTES, MAX_FIELD_BYTES)
    }
}

impl utoipa::ToSchema for IpamPairs {}

pub(super) fn ranges(
    field: &str,
    body: Option<Vec<RangeBody>>,
) -> Result<Vec<AddrRange>, ApiError> {
    body.unwrap_or_default()
        .iter()
        .map(|r| {
            Ok(AddrRange {
                start: parse_addr(field, &r.start)?,
                end: parse_addr(field, &r.end)?,
            })
        })
        .collect()
}

/// A network to create.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NetworkBody {
    /// Default: `net-<n>`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,253}$")]
    id: Option<String>,
    /// e.g. `10.0.0.0/24` or `fd00::/64`.
    #[schema(
        pattern = "^(((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])/(3[0-2]|[12]?[0-9])|(([0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|([0-9A-Fa-f]{1,4}:){1,7}:|([0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}|([0-9A-Fa-f]{1,4}:){1,5}(:[0-9A-Fa-f]{1,4}){1,2}|([0-9A-Fa-f]{1,4}:){1,4}(:[0-9A-Fa-f]{1,4}){1,3}|([0-9A-Fa-f]{1,4}:){1,3}(:[0-9A-Fa-f]{1,4}){1,4}|([0-9A-Fa-f]{1,4}:){1,2}(:[0-9A-Fa-f]{1,4}){1,5}|[0-9A-Fa-f]{1,4}:(:[0-9A-Fa-f]{1,4}){1,6}|:((:[0-9A-Fa-f]{1,4}){1,7}|:))/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))$"
    )]
    cidr: String,
    #[serde(default)]
    #[schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    description: String,
    #[serde(default)]
    #[schema(value_type = IpamPairs)]
    tags: BTreeMap<String, String>,
    /// Inside the CIDR.
    #[schema(value_type = Option<crate::openapi::IpText>)]
    gateway: Option<String>,
    /// Ranges inside the CIDR (at most 64).
    #[schema(max_items = 64)]
    reserved: Option<Vec<RangeBody>>,
    #[schema(max_items = 64)]
    pools: Option<Vec<RangeBody>>,
    /// The network this one is carved out of (also `parent_id`).
    #[serde(alias = "parent_id")]
    #[schema(pattern = "^[A-Za-z0-9._-]{1,253}$")]
    parent: Option<String>,
}

pub(super) async fn propose(
    ctx: &Ctx,
    acting: Acting,
    command: IpamCommand,
) -> Result<IpamAnswer, ApiError> {
    let result = ctx.coord.acting(acting.0).ipam(command).await;
    count(&result);
    Ok(result?)
}

/// Create a network (optionally inside a parent, with gateway, reserved ranges and pools).
#[utoipa::path(post, path = "/v1/ipam/networks", tag = "ipam", request_body = NetworkBody,
    responses(
        (status = 201, body = NetworkView),
        (status = 404, body = conclave_types::ErrorBody, description = "the parent network does not exist"),
        (status = 409, body = conclave_types::ErrorBody, description = "the id is taken, or the CIDR overlaps a network or lies outside its parent"),
        (status = 413, body = conclave_types::ErrorBody, description = "the body is above the agent's value limit"),
    ))]
pub(crate) async fn create_network(
    State(ctx): State<Ctx>,
    acting: Acting,
    headers: HeaderMap,
    req: Body,
) -> Result<Response, ApiError> {
    let b: NetworkBody = json_body(&ctx, &headers, req, NETWORK_EXAMPLE).await?;
    let cidr = b.cidr.trim().parse().map_err(|e| {
        bad(
            "cidr",
            format!("{:?} is not a CIDR ({e})", b.cidr),
            "write a network and prefix length, e.g. 10.0.0.0/24 or fd00::/64",
        )
    })?;
    let spec = NetworkSpec {
        id: b.id,
        cidr,
        description: b.description,
        tags: b.tags,
        gateway: b.gateway.map(|g| parse_addr("gateway", &g)).transpose()?,
        reserved: ranges("reserved", b.reserved)?,
        pools: ranges("pools", b.pools)?,
        parent: b.parent,
    };
    match propose(&ctx, acting, IpamCommand::CreateNetwork(spec)).await? {
        IpamAnswer::Network { network, usage } => {
            Ok((StatusCode::CREATED, Json(network_view(&network, usage))).into_response())
        }
        other => Err(unexpected(other)),
    }
}

pub(super) fn unexpected(answer: IpamAnswer) -> ApiError {
    ApiError::from(conclave_coord::CoordError::Internal(format!(
        "unexpected IPAM answer {answer:?}"
    )))
}

/// Every network with its utilisation.
#[utoipa::path(get, path = "/v1/ipam/networks", tag = "ipam", params(crate::openapi::ReadQuery),
    responses((status = 200, body = NetworkList)))]
pub(crate) async fn list_networks(State(ctx): State<Ctx>, uri: Uri) -> Result<Response, ApiError> {
    let (_, read) = crate::read_params(&uri, &[])?;
    let networks = ctx
        .coord
        .ipam_read(read, |ipam| {
            ipam.networks()
                .map(|n| network_view(n, ipam.usage(&n.id).unwrap_or_default()))
                .collect::<Vec<_>>()
        })
        .await?;
    Ok(Json(NetworkList { networks }).into_response())
}

fn network_not_found(id: &str) -> ApiError {
    refusal_error(IpamRefusal::NetworkNotFound { id: id.to_owned() })
}

/// One network with its utilisation.
#[utoipa::path(get, path = "/v1/ipam/networks/{id}", tag = "ipam", params(("id" = String, Path, pattern = "^[A-Za-z0-9._-]{1,253}$", description = "the network's id"), crate::openapi::ReadQuery),
    responses((status = 200, body = NetworkView), (status = 404, body = conclave_types::ErrorBody, description = "no such network")))]
pub(crate) async fn get_network(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (_, read) = crate::read_params(&uri, &[])?;
    let json = ctx
        .coord
        .ipam_read(read, |ipam| {
            ipam.network(&id)
                .map(|n| network_view(n, ipam.usage(&id).unwrap_or_default()))
        })
        .await?;
    json.map(|j| Json(j).into_response())
        .ok_or_else(|| network_not_found(&id))
}

/// What may change of a network.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    #[schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    description: Option<String>,
    #[schema(value_type = Option<IpamPairs>)]
    tags: Option<BTreeMap<String, String>>,
}

/// Change a network's description or tags.
#[utoipa::path(patch, path = "/v1/ipam/networks/{id}", tag = "ipam", params(("id" = String, Path, pattern = "^[A-Za-z0-9._-]{1,253}$", description = "the network's id")), request_body = UpdateBody,
    responses((status = 200, body = NetworkView), (status = 404, body = conclave_types::ErrorBody, description = "no such network"), (status = 413, body = conclave_types::ErrorBody, description = "the body is above the agent's value limit")))]
pub(crate) async fn update_network(
    State(ctx): State<Ctx>,
    acting: Acting,
    Path(id): Path<String>,
    headers: HeaderMap,
    req: Body,
) -> Result<Response, ApiError> {
    let b: UpdateBody = json_body(&ctx, &headers, req, r#"{"description": "lab"}"#).await?;
    let update = NetworkUpdate {
        description: b.description,
        tags: b.tags,
    };
    match propose(&ctx, acting, IpamCommand::UpdateNetwork { id, update }).await? {
        IpamAnswer::Network { network, usage } => {
            Ok(Json(network_view(&network, usage)).into_response())
        }
        other => Err(unexpected(other)),
    }
}

/// Delete a network (refused while it holds allocations or children, unless forced).
#[utoipa::path(delete, path = "/v1/ipam/networks/{id}", tag = "ipam",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9._-]{1,253}$", description = "the network's id"), ("force" = Option<bool>, Query, description = "release its allocations with it")),
    responses((status = 200, body = NetworkDeleted), (status = 404, body = conclave_types::ErrorBody, description = "no such network"),
        (status = 409, body = conclave_types::ErrorBody, description = "it holds allocations (use force) or has child networks")))]
pub(crate) async fn delete_network(
    State(ctx): State<Ctx>,
    acting: Acting,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let params = query::parse(uri.query(), &["force"])?;
    let force = query::flag(&params, "force")?;
    match propose(&ctx, acting, IpamCommand::DeleteNetwork { id, force }).await? {
        IpamAnswer::NetworkDeleted { id, released } => Ok(Json(NetworkDeleted {
            deleted: true,
            id,
            released,
        })
        .into_response()),
        other => Err(unexpected(other)),
    }
}

/// The IPAM routes under `base` (`/api/v1` for the seed, `/v1/ipam` for conclave).
pub(crate) fn routes(router: axum::Router<Ctx>, base: &str) -> axum::Router<Ctx> {
    use axum::routing::{get, post};
    router
        .route(
            &format!("{base}/networks"),
            get(list_networks).post(create_network),
        )
        .route(
            &format!("{base}/networks/{{id}}"),
            get(get_network)
                .patch(update_network)
                .delete(delete_network),
        )
        .route(
            &format!("{base}/allocations"),
            get(allocations::list_allocations)
                .post(allocations::allocate)
                .delete(allocations::release_by),
        )
        .route(&format!("{base}/allocations/import"), post(import::import))
        .route(
            &format!("{base}/allocations/{{id}}"),
            get(allocations::get_allocation).delete(allocations::release),
        )
        .route(
            &format!("{base}/allocations/{{id}}/renew"),
            post(allocations::renew),
        )
}
