//! Address allocations: allocate (one, a bulk of them, or again idempotently), list in
//! pages, release by id or by host, renew leases.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use conclave_state::ipam::{
    AllocateRequest, Allocation, IpamAnswer, IpamCommand, IpamRefusal, Selector,
};
use serde::{Deserialize, Serialize};

use super::{ALLOCATION_EXAMPLE, MAX_LIST, bad, parse_addr, propose, refusal_error, unexpected};
use crate::audit::Acting;
use crate::elections::json_body;
use crate::kv::read_body;
use crate::{ApiError, Ctx, query};

/// What an allocation request answers: the allocation, or for `count` > 1 all of them.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum Allocated {
    One(Allocation),
    Many { allocations: Vec<Allocation> },
}

/// A page of allocations.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AllocationPage {
    allocations: Vec<Allocation>,
    /// More follow: ask again with `after` = `next_after`.
    more: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<String>,
}

/// A released allocation.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Released {
    released: Allocation,
}

/// An allocation to make: an address named, or the next free one (`count` of them).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AllocationBody {
    /// Also `network`.
    #[serde(alias = "network")]
    #[schema(pattern = "^[A-Za-z0-9._-]{1,253}$")]
    network_id: String,
    #[schema(pattern = "^[A-Za-z0-9._-]{1,253}$")]
    hostname: Option<String>,
    /// A particular address (also `ip`, `ip_address`); default: the next free one.
    #[serde(alias = "ip", alias = "ip_address")]
    #[schema(value_type = Option<crate::openapi::IpText>)]
    address: Option<String>,
    #[schema(max_length = 253, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    owner: Option<String>,
    #[serde(default)]
    #[schema(value_type = super::IpamPairs)]
    labels: BTreeMap<String, String>,
    /// Repeat a request with the same id to get its allocation again.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,253}$")]
    request_id: Option<String>,
    /// Lease the address for this long (renew before it ends).
    #[schema(minimum = 1000, maximum = 31536000000_u64)]
    ttl_ms: Option<u64>,
    /// How many addresses (default 1).
    #[schema(minimum = 1, maximum = 1024)]
    count: Option<u32>,
}

/// Allocate an address: 201 with the allocation (`{"allocations": [...]}` for a bulk
/// request), or 200 with the same one when the request was made before (the same hostname
/// in the network, or the same `request_id`: a retry after an `indeterminate` answer must
/// carry the id of its first attempt).
#[utoipa::path(post, path = "/v1/ipam/allocations", tag = "ipam", request_body = AllocationBody,
    responses(
        (status = 201, body = Allocated, description = "allocated"),
        (status = 200, body = Allocated, description = "made before: the same allocation"),
        (status = 404, body = conclave_types::ErrorBody, description = "no such network"),
        (status = 409, body = conclave_types::ErrorBody, description = "the address or hostname is taken, the network is full, or the request id was used for another request"),
        (status = 413, body = conclave_types::ErrorBody, description = "the body is above the agent's value limit"),
    ))]
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
            let answer = match (bulk, allocations.first()) {
                (false, Some(a)) => Allocated::One(a.clone()),
                _ => Allocated::Many { allocations },
            };
            Ok((status, Json(answer)).into_response())
        }
        other => Err(unexpected(other)),
    }
}

/// Allocations, filtered, a page at a time. With `network`, in address order and `after`
/// is an address; without, in id order and `after` is an id. `next_after` is the cursor of
/// the next page either way, and a page costs O(log n + page).
#[utoipa::path(get, path = "/v1/ipam/allocations", tag = "ipam",
    params(
        ("network" = Option<String>, Query, description = "only this network's (also `network_id`)"),
        ("network_id" = Option<String>, Query, description = "the same as `network`"),
        ("hostname" = Option<String>, Query, description = "only this hostname's"),
        ("label" = Option<String>, Query, pattern = "=", description = "`key=value`: only allocations with this label"),
        ("prefix" = Option<String>, Query, description = "only addresses starting with this text"),
        ("after" = Option<String>, Query, description = "the previous page's `next_after`"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "at most this many (default 1000)"),
        crate::openapi::ReadQuery),
    responses((status = 200, body = AllocationPage)))]
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
    let next_after = items.last().filter(|_| more).map(|last| match network {
        Some(_) => last.address.to_string(),
        None => last.id.clone(),
    });
    Ok(Json(AllocationPage {
        allocations: items,
        more,
        next_after,
    })
    .into_response())
}

/// One allocation.
#[utoipa::path(get, path = "/v1/ipam/allocations/{id}", tag = "ipam", params(("id" = String, Path, pattern = "^[A-Za-z0-9._-]{1,253}$", description = "the allocation's id"), crate::openapi::ReadQuery),
    responses((status = 200, body = Allocation), (status = 404, body = conclave_types::ErrorBody, description = "no such allocation")))]
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

/// Release an allocation.
#[utoipa::path(delete, path = "/v1/ipam/allocations/{id}", tag = "ipam", params(("id" = String, Path, pattern = "^[A-Za-z0-9._-]{1,253}$", description = "the allocation's id")),
    responses((status = 200, body = Released), (status = 404, body = conclave_types::ErrorBody, description = "no such allocation")))]
pub(crate) async fn release(
    State(ctx): State<Ctx>,
    acting: Acting,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    released(&ctx, acting, Selector::Id(id)).await
}

async fn released(ctx: &Ctx, acting: Acting, selector: Selector) -> Result<Response, ApiError> {
    match propose(ctx, acting, IpamCommand::Release(selector)).await? {
        IpamAnswer::Released(a) => Ok(Json(Released { released: a }).into_response()),
        other => Err(unexpected(other)),
    }
}

/// Release what a host holds without knowing the allocation's id, in one step (no
/// read-then-delete race): `?network=N&hostname=H` or `?network=N&address=A`.
#[utoipa::path(delete, path = "/v1/ipam/allocations", tag = "ipam",
    params(
        ("network" = Option<String>, Query, description = "the network (also `network_id`); required"),
        ("network_id" = Option<String>, Query, description = "the same as `network`"),
        ("hostname" = Option<String>, Query, description = "the host whose allocation goes"),
        ("address" = Option<String>, Query, description = "or the address (also `ip`)"),
        ("ip" = Option<String>, Query, description = "the same as `address`")),
    responses((status = 200, body = Released), (status = 404, body = conclave_types::ErrorBody, description = "nothing matches")))]
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

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RenewBody {
    /// A new lease length; default: the allocation's own.
    #[schema(minimum = 1000, maximum = 31536000000_u64)]
    ttl_ms: Option<u64>,
}

/// Extend an allocation's lease (by its TTL or a new `ttl_ms`).
#[utoipa::path(post, path = "/v1/ipam/allocations/{id}/renew", tag = "ipam", params(("id" = String, Path, pattern = "^[A-Za-z0-9._-]{1,253}$", description = "the allocation's id")),
    request_body(content = Option<RenewBody>, description = "optional"),
    responses((status = 200, body = Allocation),
        (status = 404, body = conclave_types::ErrorBody, description = "no such allocation"),
        (status = 409, body = conclave_types::ErrorBody, description = "the allocation has no lease and no `ttl_ms` was given"),
        (status = 413, body = conclave_types::ErrorBody, description = "the body is above the agent's value limit")))]
pub(crate) async fn renew(
    State(ctx): State<Ctx>,
    acting: Acting,
    Path(id): Path<String>,
    headers: HeaderMap,
    req: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&ctx, &headers, req).await?;
    let b: RenewBody = if crate::error::absent(&bytes) {
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
