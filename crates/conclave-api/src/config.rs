//! `/v1/config`: the configuration registry (documents, history, validation).
//!
//! The rules are `conclave-coord`'s (validated by `conclave-config`, then proposed; the
//! state machine stores the canonical bytes); these handlers parse requests and shape
//! answers. Unknown kinds are 404, invalid documents 422 with every violation's JSON path,
//! oversized ones 413 (the table is in `error.rs`).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use conclave_coord::Read;
use conclave_types::{ErrorCode, HEADER_INDEX, HEADER_REVISION};
use serde_json::Value;

use crate::audit::Acting;
use crate::kv::read_body;
use crate::openapi::ReadQuery;
use crate::{ApiError, Ctx, query};

#[derive(utoipa::OpenApi)]
#[openapi(paths(list, list_kind, get, history, put, delete))]
pub(crate) struct Doc;

/// The live documents (of every kind, or of `kind`).
#[utoipa::path(get, path = "/v1/config", tag = "config",
    params(("kind" = Option<String>, Query, pattern = "^[a-z][a-z0-9-]{0,62}$", description = "only this kind"), ReadQuery),
    responses((status = 200, body = Vec<conclave_types::ConfigListItem>, headers(("X-Conclave-Index" = u64, description = "the revision read at: a watch from here misses nothing"))), (status = 404, body = conclave_types::ErrorBody, description = "no such kind, or no such document")))]
pub(crate) async fn list(State(ctx): State<Ctx>, uri: Uri) -> Result<Response, ApiError> {
    let (params, read) = crate::read_params(&uri, &["kind"])?;
    listing(&ctx, query::get(&params, "kind"), read).await
}

/// The live documents of one kind.
#[utoipa::path(get, path = "/v1/config/{kind}", tag = "config", params(("kind" = String, Path, pattern = "^[a-z][a-z0-9-]{0,62}$", description = "the document kind, e.g. `remote-peers`"), ReadQuery),
    responses((status = 200, body = Vec<conclave_types::ConfigListItem>, headers(("X-Conclave-Index" = u64, description = "the revision read at: a watch from here misses nothing"))), (status = 404, body = conclave_types::ErrorBody, description = "no such kind, or no such document")))]
pub(crate) async fn list_kind(
    State(ctx): State<Ctx>,
    Path(kind): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (_, read) = crate::read_params(&uri, &[])?;
    listing(&ctx, Some(&kind), read).await
}

/// The live documents (of `kind`), with `X-Conclave-Index`: the revision they were read at,
/// where a watch must start to miss nothing after this listing.
async fn listing(ctx: &Ctx, kind: Option<&str>, read: Read) -> Result<Response, ApiError> {
    let (items, index) = ctx.coord.config_list(kind, read).await?;
    let mut resp = Json(items).into_response();
    resp.headers_mut().insert(HEADER_INDEX, index.into());
    Ok(resp)
}

/// One document, now or at an earlier retained revision.
#[utoipa::path(get, path = "/v1/config/{kind}/{name}", tag = "config",
    params(("kind" = String, Path, pattern = "^[a-z][a-z0-9-]{0,62}$", description = "the document kind, e.g. `remote-peers`"), ("name" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description = "the document's name"),
        ("revision" = Option<u64>, Query, minimum = 0, description = "the version at this revision"),
        ReadQuery),
    responses(
        (status = 200, body = conclave_types::ConfigDocument,
            headers(("X-Conclave-Revision" = u64, description = "the document's revision"),
                ("X-Conclave-Index" = u64, description = "the store's revision when read"))),
        (status = 404, body = conclave_types::ErrorBody, description = "no such kind or document, or (`future_revision`) a revision the store has not reached"),
        (status = 410, body = conclave_types::ErrorBody, description = "that revision is no longer retained"),
    ))]
pub(crate) async fn get(
    State(ctx): State<Ctx>,
    Path((kind, name)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (params, read) = crate::read_params(&uri, &["revision"])?;
    let at = query::revision(&params, "revision")?;
    let (doc, index) = ctx.coord.config_get(&kind, &name, at, read).await?;
    let revision = doc.revision;
    let mut resp = Json(doc).into_response();
    resp.headers_mut().insert(HEADER_REVISION, revision.into());
    resp.headers_mut().insert(HEADER_INDEX, index.into());
    Ok(resp)
}

/// The retained versions of a document, newest first.
#[utoipa::path(get, path = "/v1/config/{kind}/{name}/history", tag = "config",
    params(("kind" = String, Path, pattern = "^[a-z][a-z0-9-]{0,62}$", description = "the document kind, e.g. `remote-peers`"), ("name" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description = "the document's name"), ReadQuery),
    responses((status = 200, body = conclave_types::ConfigHistory), (status = 404, body = conclave_types::ErrorBody, description = "no such kind, or no such document")))]
pub(crate) async fn history(
    State(ctx): State<Ctx>,
    Path((kind, name)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (_, read) = crate::read_params(&uri, &[])?;
    Ok(Json(ctx.coord.config_history(&kind, &name, read).await?).into_response())
}

/// Write a document: validated against its kind's schema, then committed.
#[utoipa::path(put, path = "/v1/config/{kind}/{name}", tag = "config",
    params(("kind" = String, Path, pattern = "^[a-z][a-z0-9-]{0,62}$", description = "the document kind, e.g. `remote-peers`"), ("name" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description = "the document's name"), ("cas" = Option<u64>, Query, minimum = 0, description = "write only if the document's revision is this (0: only if absent)"),
        ("dry_run" = Option<bool>, Query, description = "validate only")),
    request_body(content = Object, description = "the document's content (JSON)"),
    responses(
        (status = 200, body = conclave_types::ConfigWriteResponse),
        (status = 404, body = conclave_types::ErrorBody, description = "no such kind, or no such document"),
        (status = 409, body = conclave_types::ErrorBody, description = "`cas` did not match"),
        (status = 413, body = conclave_types::ErrorBody, description = "above the agent's value limit"),
        (status = 422, body = conclave_types::ErrorBody, description = "the content breaks the kind's schema: every violation with its path"),
    ))]
pub(crate) async fn put(
    State(ctx): State<Ctx>,
    acting: Acting,
    Path((kind, name)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let params = query::parse(uri.query(), &["cas", "dry_run"])?;
    let expected = query::revision(&params, "cas")?;
    let dry_run = query::flag(&params, "dry_run")?;
    let body = read_body(&ctx, &headers, body).await?;
    let content: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            format!("the body is not JSON: {e}"),
            "send the document's content as JSON; conclave apply -f converts YAML and TOML",
        )
    })?;
    if let Ok(Some(path)) = conclave_config::duplicates::first_duplicate_key(&body) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InvalidDocument,
            format!("{kind}/{name} repeats the key at {path}"),
            "keep one of them: JSON readers disagree on which one counts",
        )
        .with_violations(vec![conclave_types::Violation {
            path,
            message: "this key appears more than once in its object".into(),
        }]));
    }
    let written = ctx
        .coord
        .acting(acting.0)
        .config_put(&kind, &name, &content, expected, dry_run)
        .await?;
    Ok(Json(written).into_response())
}

/// Delete a document (its history is kept until compacted).
#[utoipa::path(delete, path = "/v1/config/{kind}/{name}", tag = "config",
    params(("kind" = String, Path, pattern = "^[a-z][a-z0-9-]{0,62}$", description = "the document kind, e.g. `remote-peers`"), ("name" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description = "the document's name"), ("cas" = Option<u64>, Query, minimum = 0, description = "write only if the document's revision is this (0: only if absent)")),
    responses(
        (status = 200, body = conclave_types::ConfigWriteResponse),
        (status = 404, body = conclave_types::ErrorBody, description = "no such kind, or no such document"),
        (status = 409, body = conclave_types::ErrorBody, description = "`cas` did not match"),
    ))]
pub(crate) async fn delete(
    State(ctx): State<Ctx>,
    acting: Acting,
    Path((kind, name)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let params = query::parse(uri.query(), &["cas"])?;
    let expected = query::revision(&params, "cas")?;
    let deleted = ctx
        .coord
        .acting(acting.0)
        .config_delete(&kind, &name, expected)
        .await?;
    Ok(Json(deleted).into_response())
}
