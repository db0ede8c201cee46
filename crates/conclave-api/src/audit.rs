//! The audit log at the edge: who is asking ([`Acting`], from the ACL guard's [`Caller`],
//! the connection and the request id), `GET /v1/audit` (also `/api/v1/audit`, the IPAM
//! seed's path): entries newest first, filtered and paged; and `GET /v1/audit/watch`: new
//! entries as Server-Sent Events, resumable by sequence number.
//!
//! The entries themselves are written by the state machine (`conclave_state::audit`); this
//! module only reads them and says who asked.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use conclave_coord::rfc3339;
use conclave_state::audit::{Actor, AuditMeta, AuditQuery};
use conclave_storage::StateHandle;
use conclave_types::audit::{AuditKind, AuditRecord, HEADER_AUDIT_CURSOR, HEADER_REQUEST_ID};
use futures::StreamExt;

use crate::acl::Caller;
use crate::{ApiError, Ctx, query};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// The longest request id taken from a caller.
const MAX_REQUEST_ID: usize = 128;

/// The caller's request id, if it is one we keep: 1 to 128 visible ASCII characters.
fn usable_request_id(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(HEADER_REQUEST_ID)?.to_str().ok()?;
    (!v.is_empty() && v.len() <= MAX_REQUEST_ID && v.bytes().all(|b| b.is_ascii_graphic()))
        .then_some(v)
}

/// A new request id: 16 hex digits, a random start for this process plus a counter, so
/// ids differ across nodes and restarts without a system call per request (an id names a
/// request; it is no secret).
fn mint_request_id() -> String {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = *BASE.get_or_init(|| {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 8];
        match ring::rand::SystemRandom::new().fill(&mut bytes) {
            Ok(()) => u64::from_le_bytes(bytes),
            // No random source: the start time still tells processes apart.
            Err(_) => SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        }
    });
    format!(
        "{:016x}",
        base.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed))
    )
}

/// Middleware: every request carries an `X-Request-Id` (the caller's when usable, else a
/// new one), every answer echoes it, an error body carries it (`error.request_id`), and what
/// is logged while the request is served carries it (a span), on every node the request
/// crosses: a client agent forwards it with the request.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    use tracing::Instrument;
    let id = match usable_request_id(req.headers()) {
        Some(id) => id.to_owned(),
        None => mint_request_id(),
    };
    // Visible ASCII only, so it is always a valid header value.
    let value = HeaderValue::from_str(&id).ok();
    if let Some(v) = &value {
        req.headers_mut().insert(HEADER_REQUEST_ID, v.clone());
    }
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let span = tracing::info_span!("request", request_id = %id);
    let started = std::time::Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status();
    span.in_scope(|| {
        let ms = started.elapsed().as_millis() as u64;
        if status.is_server_error() {
            tracing::warn!(%method, %path, status = status.as_u16(), ms, "request failed");
        } else {
            tracing::debug!(%method, %path, status = status.as_u16(), ms, "request served");
        }
    });
    if let Some(mut body) = resp.extensions_mut().remove::<conclave_types::ErrorBody>() {
        body.error.request_id = Some(id.clone());
        if let Ok(bytes) = serde_json::to_vec(&body) {
            resp.headers_mut()
                .remove(axum::http::header::CONTENT_LENGTH);
            *resp.body_mut() = axum::body::Body::from(bytes);
        }
    }
    if let Some(v) = value {
        resp.headers_mut().insert(HEADER_REQUEST_ID, v);
    }
    resp
}

/// Who a request comes from, for the audit entry of what it changes: the token the ACL
/// guard checked (else `anonymous`), the peer address, the request id.
#[derive(Debug, Clone)]
pub struct Acting(pub AuditMeta);

impl Acting {
    pub fn of(parts_headers: &HeaderMap, extensions: &axum::http::Extensions) -> Self {
        let actor = match extensions
            .get::<Caller>()
            .and_then(|c| c.accessor_id.clone())
        {
            Some(accessor_id) => Actor::Token { accessor_id },
            None => Actor::Anonymous,
        };
        Acting(AuditMeta {
            actor,
            source: extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.to_string()),
            request_id: usable_request_id(parts_headers).map(str::to_owned),
        })
    }

    /// `command` proposed for this caller: the audit log credits it to them.
    pub fn wrap(self, command: conclave_state::Command) -> conclave_state::Command {
        conclave_state::Command::Audited {
            meta: self.0,
            command: Box::new(command),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Acting {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Acting::of(&parts.headers, &parts.extensions))
    }
}

/// `[audit]` as the edge needs it.
#[derive(Debug, Clone, Default)]
pub struct AuditSettings {
    /// Key-value writes under these prefixes get an audit entry (none by default: the log
    /// is for changes to the cluster, not for application data).
    pub kv_prefixes: Vec<String>,
}

impl AuditSettings {
    pub fn audits_key(&self, key: &str) -> bool {
        self.kv_prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }
}

/// `?kind=` as an [`AuditKind`].
fn kind(params: &[(String, String)]) -> Result<Option<AuditKind>, ApiError> {
    query::get(params, "kind")
        .map(|k| {
            AuditKind::parse(k).ok_or_else(|| {
                ApiError::bad_request(
                    format!("{k:?} is not a kind of audit entry"),
                    format!(
                        "kinds: {}",
                        AuditKind::ALL.map(AuditKind::as_str).join(", ")
                    ),
                )
            })
        })
        .transpose()
}

/// `?since=` as wall-clock ms: an RFC 3339 time, or a duration back from now (`15m`, `2h`).
fn since_ms(params: &[(String, String)], now: SystemTime) -> Result<Option<u64>, ApiError> {
    let Some(v) = query::get(params, "since") else {
        return Ok(None);
    };
    let at = humantime::parse_rfc3339_weak(v)
        .ok()
        .or_else(|| {
            crate::query::duration_ms(v).map(|ms| {
                now.checked_sub(std::time::Duration::from_millis(ms))
                    .unwrap_or(SystemTime::UNIX_EPOCH)
            })
        })
        .ok_or_else(|| {
            ApiError::bad_request(
                format!("since={v:?} is neither an RFC 3339 time nor a duration"),
                "e.g. since=2026-12-06T04:00:00Z or since=15m",
            )
        })?;
    Ok(Some(
        at.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    ))
}

fn limit(params: &[(String, String)]) -> Result<usize, ApiError> {
    match query::get(params, "limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    format!("limit must be between 1 and {MAX_LIMIT}, got {v:?}"),
                    "page with the cursor header instead of a larger limit",
                )
            }),
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(list, watch))]
pub(crate) struct Doc;

/// The audit log, newest first, a page at a time.
#[utoipa::path(get, path = "/v1/audit", tag = "audit",
    params(("kind" = Option<conclave_types::audit::AuditKind>, Query, description = "only entries of this kind"), ("actor" = Option<String>, Query, description = "only entries by this actor (token accessor, node or `anonymous`)"),
        ("since" = Option<String>, Query, pattern = "^([0-9]{1,9}(ms|s|m|h|d))+$|^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?Z$", description = "an RFC 3339 time (UTC, from 1970) or a duration back from now (`1h`, `90m`)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "entries per page (default 100)"),
        ("cursor" = Option<u64>, Query, minimum = 0, description = "the previous page's `X-Conclave-Audit-Cursor`"),
        crate::openapi::ReadQuery),
    responses((status = 200, body = Vec<AuditRecord>,
        headers(("X-Conclave-Audit-Cursor" = u64, description = "present when older entries follow")))))]
/// `X-Conclave-Audit-Cursor` header, when present, fetches the next (older) page.
pub(crate) async fn list(State(ctx): State<Ctx>, uri: Uri) -> Result<Response, ApiError> {
    let params =
        crate::read_point(&ctx, &uri, &["kind", "actor", "since", "limit", "cursor"]).await?;
    let q = AuditQuery {
        kind: kind(&params)?,
        actor: query::get(&params, "actor").map(str::to_owned),
        since_ms: since_ms(&params, SystemTime::now())?,
        before_seq: query::revision(&params, "cursor")?,
        after_seq: None,
        limit: limit(&params)?,
    };
    let (records, cursor) = ctx.node.state().read(|a| {
        let (entries, cursor) = a.state.audit_log().query(&q);
        (
            entries
                .iter()
                .map(|e| e.record(rfc3339))
                .collect::<Vec<_>>(),
            cursor,
        )
    });
    let mut resp = Json(records).into_response();
    if let Some(c) = cursor {
        resp.headers_mut().insert(HEADER_AUDIT_CURSOR, c.into());
    }
    Ok(resp)
}

/// What a follower of the log gets after sequence `after`, read at once.
struct Since {
    /// Matching entries, oldest first.
    records: Vec<AuditRecord>,
    /// Entries after `after` were dropped before this node could show them.
    gap: bool,
    /// The newest sequence number: where to resume, whether or not it matched.
    last_seq: u64,
}

fn since(state: &StateHandle, after: u64, q: &AuditQuery) -> Since {
    state.read(|a| {
        let log = a.state.audit_log();
        let q = AuditQuery {
            after_seq: Some(after),
            limit: usize::MAX,
            ..q.clone()
        };
        let (entries, _) = log.query(&q);
        Since {
            records: entries.iter().rev().map(|e| e.record(rfc3339)).collect(),
            gap: log.dropped_after(after),
            last_seq: log.last_seq().max(after),
        }
    })
}

/// New audit entries as server-sent events (`entry`, id = sequence number).
#[utoipa::path(get, path = "/v1/audit/watch", tag = "watch", operation_id = "audit",
    params(("after" = Option<u64>, Query, minimum = 0, description = "replay entries after this sequence number first"),
        ("kind" = Option<conclave_types::audit::AuditKind>, Query, description = "only entries of this kind"), ("actor" = Option<String>, Query, description = "only entries by this actor (token accessor, node or `anonymous`)"), ("heartbeat_ms" = Option<u64>, Query, minimum = 100, maximum = 300000, description = "a comment line this often (default 10 s)")),
    responses(
        (status = 200, content_type = "text/event-stream", body = crate::openapi::AuditEvent, description = "`entry` events whose data is an `AuditRecord`"),
        (status = 410, body = conclave_types::ErrorBody, description = "entries after `after` were dropped from the log"),
    ))]
/// `after` (or `Last-Event-ID`; default: only new ones), then each new one as it applies,
/// as `entry` events whose id is the sequence number. A start the log has dropped gets
/// `410 Gone`; a follower that falls that far behind gets an `error` event and the end.
pub(crate) async fn watch(
    State(ctx): State<Ctx>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params = query::parse(uri.query(), &["after", "kind", "actor", "heartbeat_ms"])?;
    let q = AuditQuery {
        kind: kind(&params)?,
        actor: query::get(&params, "actor").map(str::to_owned),
        ..AuditQuery::default()
    };
    let state = ctx.node.state().clone();
    let resumed = crate::watch::last_event_id(&headers, "an audit sequence number")?;
    let after = match resumed {
        Some(id) => id,
        None => match query::revision(&params, "after")? {
            Some(seq) => seq,
            None => state.read(|a| a.state.audit_log().last_seq()),
        },
    };
    if state.read(|a| a.state.audit_log().dropped_after(after)) {
        return Err(ApiError::new(
            axum::http::StatusCode::GONE,
            conclave_types::ErrorCode::Compacted,
            format!(
                "audit entries after {after} were dropped (the log keeps the newest {})",
                conclave_state::audit::MAX_AUDIT_ENTRIES
            ),
            "read GET /v1/audit for what is kept, then follow from its newest entry",
        ));
    }
    let heartbeat = crate::watch::heartbeat(&params)?;
    let applied = state.applied_index();
    let events = futures::stream::unfold(
        (state, applied, after, q, false),
        |(state, mut applied, after, q, ended)| async move {
            if ended {
                return None;
            }
            let Since {
                records,
                gap,
                last_seq: last,
            } = since(&state, after, &q);
            if gap {
                let event = crate::watch::error_event(
                    conclave_types::ErrorCode::Compacted,
                    format!("this follower fell behind: entries after {after} were dropped"),
                    "read GET /v1/audit and follow again",
                    None,
                );
                return Some((vec![event], (state, applied, after, q, true)));
            }
            if !records.is_empty() {
                let events = records
                    .iter()
                    .map(|r| {
                        Event::default()
                            .id(r.seq.to_string())
                            .event("entry")
                            .data(serde_json::to_string(r).unwrap_or_default())
                    })
                    .collect();
                return Some((events, (state, applied, last, q, false)));
            }
            // Entries that did not match still move the resume point; then wait for the
            // next applied entry.
            applied.changed().await.ok()?;
            Some((Vec::new(), (state, applied, last, q, false)))
        },
    )
    .flat_map(|events| futures::stream::iter(events.into_iter().map(Ok::<_, Infallible>)))
    .take_until(ctx.closing.clone().cancelled_owned());
    Ok(Sse::new(crate::watch::counted(
        crate::watch::StreamKind::Audit,
        events,
    ))
    .keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn since_takes_a_time_or_a_duration_back_from_now() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(
            since_ms(&params(&[("since", "15m")]), now).unwrap(),
            Some(10_000_000 - 900_000)
        );
        assert_eq!(
            since_ms(&params(&[("since", "1970-01-01T00:00:01Z")]), now).unwrap(),
            Some(1_000)
        );
        assert_eq!(since_ms(&params(&[]), now).unwrap(), None);
        let bad = since_ms(&params(&[("since", "yesterday")]), now).unwrap_err();
        assert!(bad.message.contains("yesterday"), "{}", bad.message);
    }

    #[test]
    fn kinds_and_limits_are_checked() {
        assert_eq!(
            kind(&params(&[("kind", "acl")])).unwrap(),
            Some(AuditKind::Acl)
        );
        assert!(
            kind(&params(&[("kind", "nope")]))
                .unwrap_err()
                .hint
                .contains("membership")
        );
        assert_eq!(limit(&params(&[])).unwrap(), DEFAULT_LIMIT);
        assert!(limit(&params(&[("limit", "0")])).is_err());
        assert!(limit(&params(&[("limit", "1001")])).is_err());
    }

    #[test]
    fn a_request_id_is_kept_only_when_usable() {
        let mut h = HeaderMap::new();
        h.insert(HEADER_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(usable_request_id(&h), Some("abc-123"));
        h.insert(HEADER_REQUEST_ID, HeaderValue::from_static("has space"));
        assert_eq!(usable_request_id(&h), None);
        let long = "x".repeat(MAX_REQUEST_ID + 1);
        h.insert(HEADER_REQUEST_ID, HeaderValue::from_str(&long).unwrap());
        assert_eq!(usable_request_id(&h), None);
        let minted = mint_request_id();
        assert_eq!(minted.len(), 16);
        assert_ne!(minted, mint_request_id());
    }

    #[test]
    fn the_actor_is_the_guards_caller_or_anonymous() {
        let mut ext = axum::http::Extensions::new();
        let headers = HeaderMap::new();
        assert_eq!(Acting::of(&headers, &ext).0.actor, Actor::Anonymous);
        ext.insert(Caller {
            accessor_id: Some("abc".into()),
        });
        ext.insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 9], 4000))));
        let meta = Acting::of(&headers, &ext).0;
        assert_eq!(
            meta.actor,
            Actor::Token {
                accessor_id: "abc".into()
            }
        );
        assert_eq!(meta.source.as_deref(), Some("10.0.0.9:4000"));
    }
}
