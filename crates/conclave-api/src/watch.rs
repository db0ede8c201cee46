//! `GET /v1/watch`: changes under a prefix as Server-Sent Events, resumable.
//!
//! Each event's id is its revision. Every revision is exactly one change, and this node's
//! change feed holds them in order, so a watcher that resumes with `Last-Event-ID` (or
//! `from_revision`) gets every later change under its prefix exactly once, in order. A start
//! older than the feed gets `410 Gone` with the compacted revision; a watcher that falls
//! behind the feed's window mid-stream gets an `error` event and the stream ends, so a
//! reconnect gets the same 410 instead of a silent gap.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use conclave_state::Change;
use conclave_storage::{Compacted, StateHandle};
use conclave_types::{ErrorBody, ErrorCode, ErrorDetail, WatchEvent};
use futures::Stream;
use tokio::sync::watch;

use crate::{ApiError, Ctx, query};

const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// Changes read from the feed per step.
const PAGE: usize = 512;

/// Which changes a stream delivers.
#[derive(Clone)]
pub(crate) enum Filter {
    Prefix(String),
    Key(String),
}

impl Filter {
    fn matches(&self, key: &str) -> bool {
        match self {
            Filter::Prefix(p) => key.starts_with(p.as_str()),
            Filter::Key(k) => key == k,
        }
    }
}

/// Turns one matching change into an SSE event.
pub(crate) type Render = fn(&Change) -> Event;

struct Cursor {
    state: StateHandle,
    feed: watch::Receiver<u64>,
    after: u64,
    filter: Filter,
    pending: VecDeque<Arc<Change>>,
    render: Render,
    done: bool,
}

fn compacted_error(c: Compacted) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        ErrorCode::Compacted,
        format!(
            "changes up to revision {} are no longer available on this node",
            c.compacted
        ),
        format!(
            "read the current state and watch from its revision, or from {} or later",
            c.compacted
        ),
    )
    .with_compacted(c.compacted)
}

/// Where a stream starts: `Last-Event-ID` (a reconnect) wins over `from_revision`; without
/// either, the current revision (only new changes).
pub(crate) fn start_revision(
    state: &StateHandle,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<u64, ApiError> {
    if let Some(v) = headers.get("last-event-id") {
        return v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "Last-Event-ID must be a revision (a non-negative integer)",
                    "send back the id of the last event received",
                )
            });
    }
    match query::revision(params, "from_revision")? {
        Some(r) => Ok(r),
        None => Ok(state.read(|a| a.state.revision())),
    }
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

/// The SSE response for changes after `after` that pass `filter`, or the 410 when `after`
/// is older than this node's feed.
pub(crate) fn stream(
    state: StateHandle,
    after: u64,
    filter: Filter,
    render: Render,
    first: Option<Event>,
    heartbeat: Duration,
    closing: &tokio_util::sync::CancellationToken,
) -> Result<Response, ApiError> {
    let feed = state.feed_revision();
    state.changes_after(after, 0).map_err(compacted_error)?;
    let cursor = Cursor {
        state,
        feed,
        after,
        filter,
        pending: VecDeque::new(),
        render,
        done: false,
    };
    let first = futures::stream::iter(first.map(Ok::<_, Infallible>));
    // The stream ends when the server drains (a reconnect resumes on another node).
    let body = futures::StreamExt::take_until(
        futures::StreamExt::chain(first, events(cursor)),
        closing.clone().cancelled_owned(),
    );
    Ok(Sse::new(body)
        .keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
        .into_response())
}

fn events(cursor: Cursor) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(cursor, |mut c| async move {
        loop {
            if c.done {
                return None;
            }
            if let Some(change) = c.pending.pop_front() {
                c.after = change.revision;
                if c.filter.matches(&change.key) {
                    let event = (c.render)(&change);
                    return Some((Ok(event), c));
                }
                continue;
            }
            // Mark the feed seen *before* reading it, so a change pushed in between wakes us.
            c.feed.borrow_and_update();
            match c.state.changes_after(c.after, PAGE) {
                Ok(page) if !page.is_empty() => c.pending.extend(page),
                Ok(_) => {
                    if c.feed.changed().await.is_err() {
                        return None; // the node is shutting down
                    }
                }
                Err(gone) => {
                    c.done = true;
                    let body = ErrorBody {
                        error: ErrorDetail {
                            code: ErrorCode::Compacted,
                            message: format!(
                                "this watcher fell behind: changes up to revision {} are gone",
                                gone.compacted
                            ),
                            hint: "read the current state and watch again from its revision".into(),
                            current_revision: None,
                            violations: None,
                            compacted_revision: Some(gone.compacted),
                        },
                    };
                    let event = Event::default()
                        .event("error")
                        .data(serde_json::to_string(&body).unwrap_or_default());
                    return Some((Ok(event), c));
                }
            }
        }
    })
}

/// A key-value style event: `put`/`delete` with the value as text or base64.
pub(crate) fn render_change(change: &Change) -> Event {
    let (kind, value, value_base64) = match &change.value {
        None => ("delete", None, None),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => ("put", Some(text.to_owned()), None),
            Err(_) => (
                "put",
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            ),
        },
    };
    let data = WatchEvent {
        revision: change.revision,
        kind: kind.into(),
        key: change.key.clone(),
        value,
        value_base64,
    };
    Event::default()
        .id(change.revision.to_string())
        .event(kind)
        .data(serde_json::to_string(&data).unwrap_or_default())
}

/// `GET /v1/watch?prefix=P&from_revision=R[&heartbeat_ms=N]`.
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
        state,
        after,
        Filter::Prefix(prefix),
        render_change,
        None,
        heartbeat(&params)?,
        &ctx.closing,
    )
}
