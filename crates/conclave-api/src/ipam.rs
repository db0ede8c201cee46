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
    AddrRange, AllocateRequest, Allocation, IpamAnswer, IpamCommand, IpamRefusal, Network,
    NetworkSpec, NetworkUpdate, Selector, Usage,
};
use conclave_types::ErrorCode;
use conclave_types::ipam::NetworkUsage;
use serde::{Deserialize, Serialize};

use crate::audit::Acting;
use crate::elections::json_body;
use crate::kv::read_body;
use crate::{ApiError, Ctx, query};

mod answer;
mod import;

use answer::count;
pub(crate) use answer::refusal_error;

const NETWORK_EXAMPLE: &str = r#"{"cidr": "10.0.0.0/24", "description": "lab"}"#;
const ALLOCATION_EXAMPLE: &str = r#"{"network_id": "net-3", "hostname": "web-server"}"#;
/// The most allocations one listing returns.
const MAX_LIST: usize = 10_000;

/// A network as the API shows it: its definition and how its addresses are used.
#[derive(Serialize)]
struct NetworkView<'a> {
    #[serde(flatten)]
    network: &'a Network,
    usage: NetworkUsage,
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

fn network_json(network: &Network, usage: Usage) -> serde_json::Value {
    let view = NetworkView {
        network,
        usage: usage_view(usage),
    };
    serde_json::to_value(view).unwrap_or_default()
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeBody {
    start: String,
    end: String,
}

fn ranges(field: &str, body: Option<Vec<RangeBody>>) -> Result<Vec<AddrRange>, ApiError> {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkBody {
    id: Option<String>,
    cidr: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    gateway: Option<String>,
    reserved: Option<Vec<RangeBody>>,
    pools: Option<Vec<RangeBody>>,
    #[serde(alias = "parent_id")]
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

/// `POST /api/v1/networks`.
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
            Ok((StatusCode::CREATED, Json(network_json(&network, usage))).into_response())
        }
        other => Err(unexpected(other)),
    }
}

pub(super) fn unexpected(answer: IpamAnswer) -> ApiError {
    ApiError::from(conclave_coord::CoordError::Internal(format!(
        "unexpected IPAM answer {answer:?}"
    )))
}

/// `GET /api/v1/networks`.
pub(crate) async fn list_networks(State(ctx): State<Ctx>, uri: Uri) -> Result<Response, ApiError> {
    let (_, read) = crate::read_params(&uri, &[])?;
    let networks = ctx
        .coord
        .ipam_read(read, |ipam| {
            ipam.networks()
                .map(|n| network_json(n, ipam.usage(&n.id).unwrap_or_default()))
                .collect::<Vec<_>>()
        })
        .await?;
    Ok(Json(serde_json::json!({ "networks": networks })).into_response())
}

fn network_not_found(id: &str) -> ApiError {
    refusal_error(IpamRefusal::NetworkNotFound { id: id.to_owned() })
}

/// `GET /api/v1/networks/{id}`.
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
                .map(|n| network_json(n, ipam.usage(&id).unwrap_or_default()))
        })
        .await?;
    json.map(|j| Json(j).into_response())
        .ok_or_else(|| network_not_found(&id))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    description: Option<String>,
    tags: Option<BTreeMap<String, String>>,
}

/// `PATCH /api/v1/networks/{id}`: description and tags.
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
            Ok(Json(network_json(&network, usage)).into_response())
        }
        other => Err(unexpected(other)),
    }
}

/// `DELETE /api/v1/networks/{id}[?force=true]`.
pub(crate) async fn delete_network(
    State(ctx): State<Ctx>,
    acting: Acting,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let params = query::parse(uri.query(), &["force"])?;
    let force = query::flag(&params, "force")?;
    match propose(&ctx, acting, IpamCommand::DeleteNetwork { id, force }).await? {
        IpamAnswer::NetworkDeleted { id, released } => Ok(Json(
            serde_json::json!({ "deleted": true, "id": id, "released": released }),
        )
        .into_response()),
        other => Err(unexpected(other)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllocationBody {
    #[serde(alias = "network")]
    network_id: String,
    hostname: Option<String>,
    #[serde(alias = "ip", alias = "ip_address")]
    address: Option<String>,
    owner: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    request_id: Option<String>,
    ttl_ms: Option<u64>,
    count: Option<u32>,
}

/// `POST /api/v1/allocations`: 201 with the allocation (`{"allocations": [...]}` for a
/// bulk request), or 200 with the same one when the request was made before (the same
/// hostname in the network, or the same `request_id` in the body: a retry after an
/// `indeterminate` answer must carry the id of its first attempt).
pub(crate) async fn allocate(
    State(ctx): State<Ctx>,
    acting: Acting,
    headers: HeaderMap,
    req: Body,
) -> Result<Response, ApiError> {
    let b: AllocationBody = json_body(&ctx, &headers, req, ALLOCATION_EXAMPLE).await?;
    let bulk = b.count.is_some_and(|c| c != 1);
    let request = AllocateRequest {
        network: b.network_id,
        address: b.address.map(|a| parse_addr("address", &a)).transpose()?,
        hostname: b.hostname,
        owner: b.owner,
        labels: b.labels,
        request_id: b.request_id,
        ttl_ms: b.ttl_ms,
        count: b.count.unwrap_or(1),
    };
    match propose(&ctx, acting, IpamCommand::Allocate(request)).await? {
        IpamAnswer::Allocated {
            allocations,
            existing,
        } => {
            let status = if existing {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            let json = match (bulk, allocations.first()) {
                (false, Some(a)) => serde_json::to_value(a).unwrap_or_default(),
                _ => serde_json::json!({ "allocations": allocations }),
            };
            Ok((status, Json(json)).into_response())
        }
        other => Err(unexpected(other)),
    }
}

/// `GET /api/v1/allocations?network=&hostname=&label=k=v&prefix=&after=&limit=`. With
/// `network`, allocations come in address order and `after` is an address; without, in id
/// order and `after` is an id. `next_after` is the cursor of the next page either way, and a
/// page costs O(log n + page), however many allocations come before it.
pub(crate) async fn list_allocations(
    State(ctx): State<Ctx>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (params, read) = crate::read_params(
        &uri,
        &[
            "network",
            "network_id",
            "hostname",
            "label",
            "prefix",
            "after",
            "limit",
        ],
    )?;
    let network = query::get(&params, "network").or(query::get(&params, "network_id"));
    let hostname = query::get(&params, "hostname");
    let prefix = query::get(&params, "prefix").unwrap_or("");
    let label = query::get(&params, "label")
        .map(|l| {
            l.split_once('=').ok_or_else(|| {
                bad(
                    "label",
                    format!("{l:?} is not key=value"),
                    "filter by a label with ?label=team=web",
                )
            })
        })
        .transpose()?;
    let after = query::get(&params, "after").filter(|a| !a.is_empty());
    let after_address = match (network, after) {
        (Some(_), Some(a)) => Some(parse_addr("after", a)?),
        _ => None,
    };
    let limit = match query::get(&params, "limit") {
        None => 1000,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIST).contains(n))
            .ok_or_else(|| {
                bad(
                    "limit",
                    format!("{l:?} is not a number from 1 to {MAX_LIST}"),
                    "page with ?limit=N&after=<next_after of the previous page>",
                )
            })?,
    };
    let keep = |a: &Allocation| {
        hostname.is_none_or(|h| a.hostname.as_deref() == Some(h))
            && label.is_none_or(|(k, v)| a.labels.get(k).is_some_and(|x| x == v))
            && a.address.to_string().starts_with(prefix)
    };
    let (items, more) = ctx
        .coord
        .ipam_read(read, |ipam| {
            let all: Box<dyn Iterator<Item = &Allocation>> = match (network, hostname) {
                (Some(n), Some(h)) => Box::new(
                    ipam.allocation_of(n, h)
                        .into_iter()
                        .filter(|a| after_address.is_none_or(|after| a.address > after)),
                ),
                (Some(n), None) => Box::new(ipam.allocations_in(n, after_address)),
                (None, _) => Box::new(ipam.allocations_after(after)),
            };
            let mut matching = all.filter(|a| keep(a)).cloned();
            let items: Vec<Allocation> = matching.by_ref().take(limit).collect();
            let more = matching.next().is_some();
            (items, more)
        })
        .await?;
    let mut json = serde_json::json!({ "allocations": items, "more": more });
    if more && let Some(last) = items.last() {
        json["next_after"] = match network {
            Some(_) => last.address.to_string(),
            None => last.id.clone(),
        }
        .into();
    }
    Ok(Json(json).into_response())
}

/// `GET /api/v1/allocations/{id}`.
pub(crate) async fn get_allocation(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (_, read) = crate::read_params(&uri, &[])?;
    let found = ctx
        .coord
        .ipam_read(read, |ipam| ipam.allocation(&id).cloned())
        .await?;
    found
        .map(|a| Json(a).into_response())
        .ok_or_else(|| refusal_error(IpamRefusal::AllocationNotFound { what: id }))
}

/// `DELETE /api/v1/allocations/{id}`: release it.
pub(crate) async fn release(
    State(ctx): State<Ctx>,
    acting: Acting,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    released(&ctx, acting, Selector::Id(id)).await
}

async fn released(ctx: &Ctx, acting: Acting, selector: Selector) -> Result<Response, ApiError> {
    match propose(ctx, acting, IpamCommand::Release(selector)).await? {
        IpamAnswer::Released(a) => Ok(Json(serde_json::json!({ "released": a })).into_response()),
        other => Err(unexpected(other)),
    }
}

/// `DELETE /api/v1/allocations?network=N&hostname=H` (or `&address=A`): release what a
/// host holds without knowing the allocation's id, in one step (no read-then-delete race).
pub(crate) async fn release_by(
    State(ctx): State<Ctx>,
    acting: Acting,
    uri: Uri,
) -> Result<Response, ApiError> {
    let params = query::parse(
        uri.query(),
        &["network", "network_id", "hostname", "address", "ip"],
    )?;
    let network = query::get(&params, "network").or(query::get(&params, "network_id"));
    let address = query::get(&params, "address").or(query::get(&params, "ip"));
    let hint = "name what to release: ?network=N&hostname=H or ?network=N&address=A, or DELETE /api/v1/allocations/{id}";
    let selector = match (network, query::get(&params, "hostname"), address) {
        (Some(n), Some(h), None) => Selector::Hostname {
            network: n.to_owned(),
            hostname: h.to_owned(),
        },
        (Some(n), None, Some(a)) => Selector::Address {
            network: n.to_owned(),
            address: parse_addr("address", a)?,
        },
        _ => {
            return Err(bad(
                "query",
                "a release needs network and exactly one of hostname and address".into(),
                hint,
            ));
        }
    };
    released(&ctx, acting, selector).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RenewBody {
    ttl_ms: Option<u64>,
}

/// `POST /api/v1/allocations/{id}/renew`: extend its lease (by its TTL or a new `ttl_ms`).
pub(crate) async fn renew(
    State(ctx): State<Ctx>,
    acting: Acting,
    Path(id): Path<String>,
    headers: HeaderMap,
    req: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&ctx, &headers, req).await?;
    let b: RenewBody = if bytes.is_empty() {
        RenewBody::default()
    } else {
        crate::error::parse_json(&bytes, "request", r#"send JSON like {"ttl_ms": 60000}"#)?
    };
    match propose(
        &ctx,
        acting,
        IpamCommand::Renew {
            id,
            ttl_ms: b.ttl_ms,
        },
    )
    .await?
    {
        IpamAnswer::Renewed(a) => Ok(Json(a).into_response()),
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
            get(list_allocations).post(allocate).delete(release_by),
        )
        .route(&format!("{base}/allocations/import"), post(import::import))
        .route(
            &format!("{base}/allocations/{{id}}"),
            get(get_allocation).delete(release),
        )
        .route(&format!("{base}/allocations/{{id}}/renew"), post(renew))
}
