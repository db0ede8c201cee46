//! `/v1/kv`: put, get, delete and prefix listing.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use conclave_state::{Command, KeyValue, Outcome};
use conclave_types::{
    DeleteResponse, ErrorCode, HEADER_CREATE_REVISION, HEADER_INDEX, HEADER_NEXT_AFTER,
    HEADER_REVISION, HEADER_VERSION, KvItem, PutResponse,
};

use crate::audit::Acting;
use crate::openapi::{Binary, ReadQuery};
use crate::{ApiError, Ctx, query};

#[derive(utoipa::OpenApi)]
#[openapi(paths(get, put, delete, list))]
pub(crate) struct Doc;

/// Default and maximum page size of a listing.
const DEFAULT_LIST_LIMIT: usize = 1000;
const MAX_LIST_LIMIT: usize = 10_000;
/// Oversized bodies up to this many bytes beyond the limit are read before the 413.
const DRAIN_OVERSIZED_UP_TO: usize = 16 * 1024 * 1024;

fn header_u64(v: u64) -> HeaderValue {
    HeaderValue::from(v)
}

pub(crate) fn cas_conflict(current: u64) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::CasConflict,
        if current == 0 {
            "compare-and-swap failed: the key does not exist".to_string()
        } else {
            format!("compare-and-swap failed: the key's current revision is {current}")
        },
        "read the key again and retry with ?cas=<its X-Conclave-Revision> (0 = must not exist)",
    );
    e.current_revision = Some(current);
    e
}

pub(crate) async fn read_body(
    ctx: &Ctx,
    headers: &HeaderMap,
    body: Body,
) -> Result<Vec<u8>, ApiError> {
    let limit = ctx.limits.max_value_bytes;
    let too_large = |size: String| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            format!("the value is {size} bytes, above the limit of {limit} bytes"),
            "store large blobs elsewhere and keep a reference here; the limit is the agent's max_value_bytes",
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > limit
    {
        // Read (and drop) a moderately oversized body so the client, still sending, gets
        // to see the 413 instead of a reset connection. Far larger ones are cut off.
        if len <= limit.saturating_add(DRAIN_OVERSIZED_UP_TO) {
            use http_body_util::BodyExt;
            let _ = http_body_util::Limited::new(body, len).collect().await;
        }
        return Err(too_large(len.to_string()));
    }
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large(format!("more than {limit}")))
        }
        Err(e) => Err(ApiError::bad_request(
            format!("could not read the request body: {e}"),
            "send the value as the raw request body",
        )),
    }
}

/// Store the body as the key's value.
#[utoipa::path(put, path = "/v1/kv/{key}", tag = "kv", params(
        ("key" = String, Path, description = "the key: UTF-8, `/` allowed; percent-encode other reserved bytes"),
        ("cas" = Option<u64>, Query, minimum = 0, description = "compare-and-swap: write only if the key's revision is this (0: only if absent)")),
    request_body(content = Option<Binary>, content_type = "application/octet-stream", description = "the value (may be empty)"),
    responses(
        (status = 200, body = PutResponse, description = "stored; the revision of the write"),
        (status = 409, body = conclave_types::ErrorBody, description = "`cas` did not match the key's revision"),
        (status = 413, body = conclave_types::ErrorBody, description = "the key or value is above the agent's limits"),
    ))]
pub(crate) async fn put(
    State(ctx): State<Ctx>,
    acting: Acting,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = query::key_from_path(uri.path())?;
    let params = query::parse(uri.query(), &["cas"])?;
    let expected = query::revision(&params, "cas")?;
    ctx.limits.check_key(&key)?;
    let value = read_body(&ctx, &headers, body).await?;
    let command = Command::Put {
        key,
        value,
        expected,
    };
    ctx.limits.check(&command)?;
    let command = audited(&ctx, acting, command);
    match ctx.node.propose(command).await? {
        Outcome::Put { revision } => Ok(Json(PutResponse { revision }).into_response()),
        Outcome::CasFailed { current, .. } => Err(cas_conflict(current)),
        other => Err(unexpected(other)),
    }
}

/// Delete the key (`deleted: false` when it did not exist).
#[utoipa::path(delete, path = "/v1/kv/{key}", tag = "kv", params(
        ("key" = String, Path, description = "the key: UTF-8, `/` allowed; percent-encode other reserved bytes"),
        ("cas" = Option<u64>, Query, minimum = 0, description = "compare-and-swap: write only if the key's revision is this (0: only if absent)")),
    responses(
        (status = 200, body = DeleteResponse),
        (status = 409, body = conclave_types::ErrorBody, description = "`cas` did not match the key's revision"),
        (status = 413, body = conclave_types::ErrorBody, description = "the key is above the agent's limit"),
    ))]
pub(crate) async fn delete(
    State(ctx): State<Ctx>,
    acting: Acting,
    uri: Uri,
) -> Result<Response, ApiError> {
    let key = query::key_from_path(uri.path())?;
    let params = query::parse(uri.query(), &["cas"])?;
    let expected = query::revision(&params, "cas")?;
    ctx.limits.check_key(&key)?;
    let command = audited(&ctx, acting, Command::Delete { key, expected });
    match ctx.node.propose(command).await? {
        Outcome::Deleted { revision, deleted } => {
            Ok(Json(DeleteResponse { revision, deleted }).into_response())
        }
        Outcome::CasFailed { current, .. } => Err(cas_conflict(current)),
        other => Err(unexpected(other)),
    }
}

/// A key-value write, wrapped for the audit log when `[audit] kv_prefixes` names its key.
fn audited(ctx: &Ctx, acting: Acting, command: Command) -> Command {
    match &command {
        Command::Put { key, .. } | Command::Delete { key, .. } if ctx.audit.audits_key(key) => {
            acting.wrap(command)
        }
        _ => command,
    }
}

pub(crate) fn unexpected(outcome: Outcome) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Unavailable,
        format!("unexpected outcome {outcome:?}"),
        "this is a bug in conclave; please report it",
    )
}

/// Read a key: the value as the raw body, its revisions in headers.
#[utoipa::path(get, path = "/v1/kv/{key}", tag = "kv", params(
        ("key" = String, Path, description = "the key: UTF-8, `/` allowed; percent-encode other reserved bytes"), ReadQuery),
    responses(
        (status = 200, content_type = "application/octet-stream", body = Binary, description = "the value",
            headers(
                ("X-Conclave-Revision" = u64, description = "the key's last write"),
                ("X-Conclave-Create-Revision" = u64, description = "the write that created it"),
                ("X-Conclave-Version" = u64, description = "writes since it was created"),
                ("X-Conclave-Index" = u64, description = "the store's revision when read"),
            )),
        (status = 404, body = conclave_types::ErrorBody, description = "the key does not exist"),
        (status = 413, body = conclave_types::ErrorBody, description = "the key is above the agent's limit"),
    ))]
pub(crate) async fn get(State(ctx): State<Ctx>, uri: Uri) -> Result<Response, ApiError> {
    let key = query::key_from_path(uri.path())?;
    let params = query::parse(uri.query(), &["consistency"])?;
    ctx.limits.check_key(&key)?;
    if !query::stale(&params)? {
        ctx.node.read_barrier().await?;
    }
    let (found, index): (Option<KeyValue>, u64) = ctx
        .node
        .state()
        .read(|a| (a.state.get(&key).cloned(), a.state.revision()));
    match found {
        Some(kv) => {
            let mut resp = Response::new(Body::from(kv.value));
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(HEADER_REVISION, header_u64(kv.mod_revision));
            h.insert(HEADER_INDEX, header_u64(index));
            h.insert(HEADER_CREATE_REVISION, header_u64(kv.create_revision));
            h.insert(HEADER_VERSION, header_u64(kv.version));
            Ok(resp)
        }
        None => {
            let mut resp = ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::KeyNotFound,
                format!("key {key:?} does not exist"),
                "list keys with GET /v1/kv?prefix=",
            )
            .into_response();
            resp.headers_mut().insert(HEADER_INDEX, header_u64(index));
            Ok(resp)
        }
    }
}

/// List keys and values in key order, a page at a time.
#[utoipa::path(get, path = "/v1/kv", tag = "kv", params(
        ("prefix" = Option<String>, Query, description = "only keys starting with this"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "at most this many items (default 1000)"),
        ("after" = Option<String>, Query, description = "start after this key (the previous page's X-Conclave-Next-After)"),
        ReadQuery),
    responses((status = 200, body = Vec<KvItem>,
        headers(
            ("X-Conclave-Index" = u64, description = "the store's revision when read"),
            ("X-Conclave-Next-After" = String, description = "present when more keys follow: pass it as `after`"),
        ))))]
pub(crate) async fn list(State(ctx): State<Ctx>, uri: Uri) -> Result<Response, ApiError> {
    let params = query::parse(uri.query(), &["prefix", "limit", "after", "consistency"])?;
    let prefix = query::get(&params, "prefix").unwrap_or("").to_owned();
    let after = query::get(&params, "after").map(str::to_owned);
    let limit = match query::get(&params, "limit") {
        None => DEFAULT_LIST_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIST_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(
                    format!("limit must be an integer from 1 to {MAX_LIST_LIMIT}, got {v:?}"),
                    format!(
                        "page through larger listings with ?after=<the {HEADER_NEXT_AFTER} header of the previous page>"
                    ),
                ));
            }
        },
    };
    if !query::stale(&params)? {
        ctx.node.read_barrier().await?;
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let (items, next, index) = ctx.node.state().read(|a| {
        let (found, more) = a.state.list(&prefix, after.as_deref(), limit);
        let next = if more {
            found.last().map(|(k, _)| (*k).to_owned())
        } else {
            None
        };
        let items: Vec<KvItem> = found
            .into_iter()
            .map(|(k, kv)| {
                let (value, value_base64) = match std::str::from_utf8(&kv.value) {
                    Ok(s) => (Some(s.to_owned()), None),
                    Err(_) => (None, Some(b64.encode(&kv.value))),
                };
                KvItem {
                    key: k.to_owned(),
                    value,
                    value_base64,
                    revision: kv.mod_revision,
                    create_revision: kv.create_revision,
                    version: kv.version,
                }
            })
            .collect();
        (items, next, a.state.revision())
    });
    let mut resp = Json(items).into_response();
    resp.headers_mut().insert(HEADER_INDEX, header_u64(index));
    if let Some(next) = next
        && let Ok(v) = HeaderValue::from_str(
            &percent_encoding::utf8_percent_encode(&next, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
        )
    {
        resp.headers_mut().insert(HEADER_NEXT_AFTER, v);
    }
    Ok(resp)
}
