//! `GET /v1/watch`: changes under a prefix as Server-Sent Events, resumable.
//!
//! Each event's id is its revision. The changes are `conclave_coord::changes`' stream (every
//! revision exactly one change, in order), so a watcher that resumes with `Last-Event-ID`
//! (or `from_revision`) gets every later change under its prefix exactly once, in order. A
//! start older than the feed gets `410 Gone` with the compacted revision; a watcher that
//! falls behind the feed's window mid-stream gets an `error` event and the stream ends, so
//! a reconnect gets the same 410 instead of a silent gap.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
pub(crate) use conclave_coord::changes::Filter;
use conclave_coord::{CoordError, changes};
use conclave_state::Change;
use conclave_storage::StateHandle;
use conclave_types::{ErrorBody, ErrorDetail};
use futures::StreamExt;

use crate::{ApiError, Ctx, query};

const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);

/// Turns one matching change into an SSE event.
pub(crate) type Render = fn(&Change) -> Event;

/// Where a stream starts: `Last-Event-ID` (a reconnect) wins over `from_revision`; without
/// either, the current revision (only new changes).
pub(crate) fn start_revision(
    state: &StateHandle,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<u64, ApiError> {
    if let Some(id) = last_event_id(headers, "a revision (a non-negative integer)")? {
        return Ok(id);
    }
    match query::revision(params, "from_revision")? {
        Some(r) => Ok(r),
        None => Ok(state.read(|a| a.state.revision())),
    }
}

/// The `Last-Event-ID` a reconnecting client sent, if any; `what` says what an id is on
/// this stream, for the 400 when it is not one.
pub(crate) fn last_event_id(headers: &HeaderMap, what: &str) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get("last-event-id") else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(
                format!("Last-Event-ID must be {what}"),
                "send back the id of the last event received",
            )
        })
}

pub(crate) fn heartbeat(params: &[(String, String)]) -> Result<Duration, ApiError> {
    match query::get(params, "heartbeat_ms") {
        None => Ok(DEFAULT_HEARTBEAT),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|ms| (100..=300_000).contains(ms))
            .map(Duration::from_millis)
            .ok_or_else(|| {
                ApiError::bad_request(
                    format!("heartbeat_ms must be between 100 and 300000, got {v:?}"),
                    "leave it out for a heartbeat every 10 s",
                )
            }),
    }
}

/// What an open event stream serves, for `conclave_watch_streams{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    Kv,
    Election,
    Members,
    Audit,
}

impl StreamKind {
    fn label(self) -> &'static str {
        match self {
            StreamKind::Kv => "kv",
            StreamKind::Election => "election",
            StreamKind::Members => "members",
            StreamKind::Audit => "audit",
        }
    }
}

/// Counts a stream open in `conclave_watch_streams` while it lives.
struct OpenStream(StreamKind);

impl Drop for OpenStream {
    fn drop(&mut self) {
        metrics::gauge!("conclave_watch_streams", "kind" => self.0.label()).decrement(1.0);
    }
}

/// `stream`, counted as an open stream of `kind` until it is dropped (the client went away
/// or the server drains).
pub(crate) fn counted<S: futures::Stream>(
    kind: StreamKind,
    stream: S,
) -> impl futures::Stream<Item = S::Item> {
    metrics::gauge!("conclave_watch_streams", "kind" => kind.label()).increment(1.0);
    let open = OpenStream(kind);
    stream.map(move |item| {
        let _held = &open;
        item
    })
}

/// The SSE response for changes after `after` that pass `filter`, or the 410 when `after`
/// is older than this node's feed. A watcher that falls behind mid-stream gets one `error`
/// event and the stream ends, so a reconnect gets the 410 instead of a silent gap.
#[allow(clippy::too_many_arguments)]
pub(crate) fn stream(
    kind: StreamKind,
    state: StateHandle,
    after: u64,
    filter: Filter,
    render: Render,
    first: Option<Event>,
    heartbeat: Duration,
    closing: &tokio_util::sync::CancellationToken,
) -> Result<Response, ApiError> {
    let changes = changes::after(state, after, filter)?;
    let events = changes.map(move |change| {
        Ok::<_, Infallible>(match change {
            Ok(change) => render(&change),
            Err(e) => fell_behind(&e),
        })
    });
    let first = futures::stream::iter(first.map(Ok::<_, Infallible>));
    // The stream ends when the server drains (a reconnect resumes on another node).
    let body = first
        .chain(events)
        .take_until(closing.clone().cancelled_owned());
    Ok(Sse::new(counted(kind, body))
        .keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
        .into_response())
}

/// The last event of a watcher that fell behind the feed (the change stream ends after it).
fn fell_behind(e: &CoordError) -> Event {
    let compacted = match e {
        CoordError::Compacted { compacted } => Some(*compacted),
        _ => None,
    };
    error_event(
        e.code(),
        format!(
            "this watcher fell behind: changes up to revision {} are gone",
            compacted.unwrap_or_default()
        ),
        "read the current state and watch again from its revision",
        compacted,
    )
}

/// An `error` event: the API's error body, as the last event of a stream that ends.
pub(crate) fn error_event(
    code: conclave_types::ErrorCode,
    message: String,
    hint: &str,
    compacted_revision: Option<u64>,
) -> Event {
    let body = ErrorBody {
        error: ErrorDetail {
            code,
            message,
            hint: hint.into(),
            current_revision: None,
            violations: None,
            compacted_revision,
            holder: None,
            usage: None,
            conflicts: None,
            request_id: None,
        },
    };
    Event::default()
        .event("error")
        .data(serde_json::to_string(&body).unwrap_or_default())
}

/// A key-value style event: `put`/`delete` with the value as text or base64.
pub(crate) fn render_change(change: &Change) -> Event {
    let data = changes::watch_event(change);
    Event::default()
        .id(change.revision.to_string())
        .event(data.kind.clone())
        .data(serde_json::to_string(&data).unwrap_or_default())
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(watch))]
pub(crate) struct Doc;

/// Key changes as server-sent events (`put`, `delete`; each id is the revision), forever.
#[utoipa::path(get, path = "/v1/watch", tag = "watch", operation_id = "kv",
    params(("prefix" = Option<String>, Query, description = "only keys starting with this"), ("from_revision" = Option<u64>, Query, minimum = 0, description = "replay changes after this revision first (a `Last-Event-ID` header does the same)"), ("heartbeat_ms" = Option<u64>, Query, minimum = 100, maximum = 300000, description = "a comment line this often (default 10 s)")),
    responses(
        (status = 200, content_type = "text/event-stream", body = crate::openapi::KvEvent, description = "events whose data is a `WatchEvent`"),
        (status = 410, body = conclave_types::ErrorBody, description = "the start revision was compacted away: list again and watch from the listing's index"),
    ))]
pub(crate) async fn watch(
    State(ctx): State<Ctx>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params = query::parse(uri.query(), &["prefix", "from_revision", "heartbeat_ms"])?;
    let prefix = query::get(&params, "prefix").unwrap_or_default().to_owned();
    let state = ctx.node.state().clone();
    let after = start_revision(&state, &headers, &params)?;
    stream(
        StreamKind::Kv,
        state,
        after,
        Filter::Prefix(prefix),
        render_change,
        None,
        heartbeat(&params)?,
        &ctx.closing,
    )
}
