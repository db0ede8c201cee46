//! `/v1/config`: the configuration registry (documents, history, validation).
//!
//! A document is validated here (by `conclave-config`) before it is proposed; the state
//! machine stores the canonical bytes. Unknown kinds are 404, invalid documents 422 with
//! every violation's JSON path, oversized ones 413.

use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use conclave_config::kinds::{self, SCHEMA_KIND};
use conclave_config::validate::{ValidateError, validate};
use conclave_state::{Command, ConfigVersion, Outcome};
use conclave_types::{
    ConfigDocument, ConfigHistory, ConfigListItem, ConfigVersionInfo, ConfigWriteResponse,
    ErrorCode, HEADER_INDEX, HEADER_REVISION, Violation,
};
use serde_json::Value;

use crate::kv::{cas_conflict, read_body, unexpected};
use crate::{ApiError, Ctx, query};

/// RFC 3339 of a leader wall-clock stamp.
pub(crate) fn rfc3339(wall_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(wall_ms)).to_string()
}

fn bad_name(message: String) -> ApiError {
    ApiError::bad_request(message, "document paths are /v1/config/<kind>/<name>")
}

fn unknown_kind(kind: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::UnknownKind,
        format!("kind {kind:?} is unknown: it is not built in and no schema is registered for it"),
        format!(
            "built-in kinds are remote-peers and schema; register a JSON Schema with PUT /v1/config/schema/{kind} to make {kind} a kind"
        ),
    )
}

fn not_found(kind: &str, name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::DocumentNotFound,
        format!("there is no document {kind}/{name}"),
        "list documents with GET /v1/config; write one with PUT",
    )
}

fn invalid(kind: &str, name: &str, violations: Vec<conclave_config::Violation>) -> ApiError {
    let e = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::InvalidDocument,
        format!(
            "{kind}/{name} is not valid: {}",
            violations
                .iter()
                .map(|v| format!(
                    "{}: {}",
                    if v.path.is_empty() { "/" } else { &v.path },
                    v.message
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        "fix each field listed in violations (JSON Pointer paths) and send the document again",
    );
    e.with_violations(
        violations
            .into_iter()
            .map(|v| Violation {
                path: v.path,
                message: v.message,
            })
            .collect(),
    )
}

fn document(kind: &str, name: &str, v: &ConfigVersion) -> Result<ConfigDocument, ApiError> {
    let content: Value =
        serde_json::from_slice(v.content.as_deref().unwrap_or(b"null")).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Unavailable,
                format!("stored document {kind}/{name} is not JSON: {e}"),
                "this is a bug in conclave; please report it",
            )
        })?;
    Ok(ConfigDocument {
        kind: kind.to_owned(),
        name: name.to_owned(),
        revision: v.revision,
        hash: v.hash.clone(),
        author: v.author.clone(),
        updated_at: rfc3339(v.wall_ms),
        content,
    })
}

/// `GET /v1/config[?kind=K]`: live documents.
pub(crate) async fn list(State(ctx): State<Ctx>, uri: Uri) -> Result<Response, ApiError> {
    let params = crate::read_point(&ctx, &uri, &["kind"]).await?;
    let kind = query::get(&params, "kind").map(str::to_owned);
    Ok(listing(&ctx, kind.as_deref()))
}

/// `GET /v1/config/{kind}`: the live documents of one kind.
pub(crate) async fn list_kind(
    State(ctx): State<Ctx>,
    Path(kind): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    crate::read_point(&ctx, &uri, &[]).await?;
    Ok(listing(&ctx, Some(&kind)))
}

/// The live documents (of `kind`), with `X-Conclave-Index`: the revision they were read at,
/// where a watch must start to miss nothing after this listing.
fn listing(ctx: &Ctx, kind: Option<&str>) -> Response {
    let (items, index): (Vec<ConfigListItem>, u64) = ctx.node.state().read(|a| {
        let items = a
            .state
            .config_documents(kind)
            .map(|(k, n, v)| ConfigListItem {
                kind: k.to_owned(),
                name: n.to_owned(),
                revision: v.revision,
                hash: v.hash.clone(),
            })
            .collect();
        (items, a.state.revision())
    });
    let mut resp = Json(items).into_response();
    resp.headers_mut().insert(HEADER_INDEX, index.into());
    resp
}

/// `GET /v1/config/{kind}/{name}[?revision=R]`.
pub(crate) async fn get(
    State(ctx): State<Ctx>,
    Path((kind, name)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let params = crate::read_point(&ctx, &uri, &["revision"]).await?;
    let at = query::revision(&params, "revision")?;
    let (found, index) = ctx.node.state().read(|a| {
        let entry = a.state.config_entry(&kind, &name);
        let found = match at {
            None => Ok(entry.and_then(|e| e.live()).cloned()),
            Some(r) => entry.map_or(Ok(None), |e| e.at(r).map(|v| v.cloned())),
        };
        (found, a.state.revision())
    });
    if let Some(r) = at.filter(|r| *r > index) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::FutureRevision,
            format!("revision {r} is in the future: the store is at revision {index}"),
            "ask for a revision at or before the X-Conclave-Index of a recent response",
        ));
    }
    let version = match found {
        Ok(Some(v)) => v,
        Ok(None) => {
            return Err(match at {
                Some(r) => ApiError::new(
                    StatusCode::NOT_FOUND,
                    ErrorCode::DocumentNotFound,
                    format!("{kind}/{name} did not exist at revision {r}"),
                    format!("see GET /v1/config/{kind}/{name}/history for its versions"),
                ),
                None => not_found(&kind, &name),
            });
        }
        Err(oldest) => {
            return Err(ApiError::new(
                StatusCode::GONE,
                ErrorCode::RevisionGone,
                format!(
                    "the history of {kind}/{name} no longer reaches revision {}; its oldest kept version is {oldest}",
                    at.unwrap_or_default()
                ),
                format!(
                    "each document keeps its last {} versions",
                    conclave_state::registry::MAX_VERSIONS
                ),
            ));
        }
    };
    let doc = document(&kind, &name, &version)?;
    let mut resp = Json(doc).into_response();
    resp.headers_mut()
        .insert(HEADER_REVISION, version.revision.into());
    resp.headers_mut().insert(HEADER_INDEX, index.into());
    Ok(resp)
}

/// `GET /v1/config/{kind}/{name}/history`: retained versions, newest first.
pub(crate) async fn history(
    State(ctx): State<Ctx>,
    Path((kind, name)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    crate::read_point(&ctx, &uri, &[]).await?;
    let versions = ctx.node.state().read(|a| {
        a.state.config_entry(&kind, &name).map(|e| {
            e.versions
                .iter()
                .rev()
                .map(|v| ConfigVersionInfo {
                    revision: v.revision,
                    hash: v.hash.clone(),
                    author: v.author.clone(),
                    updated_at: rfc3339(v.wall_ms),
                    deleted: v.content.is_none(),
                })
                .collect::<Vec<_>>()
        })
    });
    let versions = versions.ok_or_else(|| not_found(&kind, &name))?;
    Ok(Json(ConfigHistory {
        kind,
        name,
        versions,
    })
    .into_response())
}

/// `PUT /v1/config/{kind}/{name}[?cas=R][&dry_run=true]` with a JSON body.
pub(crate) async fn put(
    State(ctx): State<Ctx>,
    Path((kind, name)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let params = query::parse(uri.query(), &["cas", "dry_run"])?;
    let expected = query::revision(&params, "cas")?;
    let dry_run = query::flag(&params, "dry_run")?;
    kinds::check_kind_name(&kind).map_err(bad_name)?;
    kinds::check_doc_name(&name).map_err(bad_name)?;
    let body = read_body(&ctx, &headers, body).await?;
    let content: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            format!("the body is not JSON: {e}"),
            "send the document's content as JSON; conclave apply -f converts YAML and TOML",
        )
    })?;
    // Validation reads the registered schema and the current hash: see the newest state.
    ctx.node.read_barrier().await?;
    let (schema, current_hash) = ctx.node.state().read(|a| {
        let schema = a
            .state
            .config_entry(SCHEMA_KIND, &kind)
            .and_then(|e| e.live())
            .and_then(|v| serde_json::from_slice::<Value>(v.content.as_deref()?).ok());
        let current = a
            .state
            .config_entry(&kind, &name)
            .and_then(|e| e.live())
            .map(|v| v.hash.clone());
        (schema, current)
    });
    let validated = match validate(&kind, &name, &content, schema.as_ref()) {
        Ok(v) => v,
        Err(ValidateError::UnknownKind(k)) => return Err(unknown_kind(&k)),
        Err(ValidateError::BadName(m)) => return Err(bad_name(m)),
        Err(ValidateError::Invalid(v)) => return Err(invalid(&kind, &name, v)),
    };
    let changed = current_hash.as_deref() != Some(validated.hash.as_str());
    if dry_run {
        let revision = ctx.node.state().read(|a| a.state.revision());
        return Ok(Json(ConfigWriteResponse {
            revision,
            hash: validated.hash,
            dry_run: true,
            changed,
        })
        .into_response());
    }
    let command = Command::ConfigPut {
        kind,
        name,
        content: validated.canonical,
        hash: validated.hash.clone(),
        author: None,
        expected,
    };
    ctx.limits.check(&command)?;
    match ctx.node.propose(command).await? {
        Outcome::Put { revision } => Ok(Json(ConfigWriteResponse {
            revision,
            hash: validated.hash,
            dry_run: false,
            changed,
        })
        .into_response()),
        Outcome::CasFailed { current, .. } => Err(cas_conflict(current)),
        other => Err(unexpected(other)),
    }
}

/// `DELETE /v1/config/{kind}/{name}[?cas=R]`.
pub(crate) async fn delete(
    State(ctx): State<Ctx>,
    Path((kind, name)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let params = query::parse(uri.query(), &["cas"])?;
    let expected = query::revision(&params, "cas")?;
    let command = Command::ConfigDelete {
        kind,
        name,
        expected,
        author: None,
    };
    ctx.limits.check(&command)?;
    match ctx.node.propose(command).await? {
        Outcome::Deleted { revision, deleted } => Ok(Json(ConfigWriteResponse {
            revision,
            hash: String::new(),
            dry_run: false,
            changed: deleted,
        })
        .into_response()),
        Outcome::CasFailed { current, .. } => Err(cas_conflict(current)),
        other => Err(unexpected(other)),
    }
}
