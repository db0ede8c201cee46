//! `GET /v1/members/watch`: membership changes pushed as Server-Sent Events, so a tool need
//! not poll whole member lists (polling a hundred agents' lists five times a second costs
//! more than the gossip itself).
//!
//! The stream opens with a `snapshot` event (the members now), then one event per change,
//! named by its kind (`join`, `update`, `suspect`, `dead`, `left`, `reaped`), whose data is
//! a `MemberEvent`: the member after the change and when this agent saw it. Changes are
//! `conclave_membership::events::diff` of consecutive views.

use std::convert::Infallible;
use std::time::SystemTime;

use axum::extract::State;
use axum::http::Uri;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use conclave_types::member_events::MemberEventKind;
use futures::StreamExt;

use crate::members::MCtx;
use crate::{ApiError, query};

/// `?events=join,dead` as the kinds to send (default: all); exactly that grammar, as the
/// API document states it.
fn kinds(params: &[(String, String)]) -> Result<Vec<MemberEventKind>, ApiError> {
    let Some(list) = query::get(params, "events") else {
        return Ok(MemberEventKind::ALL.to_vec());
    };
    list.split(',')
        .map(|s| {
            MemberEventKind::parse(s).ok_or_else(|| {
                ApiError::bad_request(
                    format!("{s:?} is not a membership event"),
                    format!(
                        "events: {}",
                        MemberEventKind::ALL.map(MemberEventKind::as_str).join(", ")
                    ),
                )
            })
        })
        .collect()
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(watch))]
pub(crate) struct Doc;

/// Membership changes as server-sent events: a `snapshot` first, then each change.
#[utoipa::path(get, path = "/v1/members/watch", tag = "watch", operation_id = "members",
    params(("events" = Option<String>, Query, pattern = "^(join|update|suspect|dead|left|reaped)(,(join|update|suspect|dead|left|reaped))*$", description = "comma-separated event kinds to receive (default: all)"), ("heartbeat_ms" = Option<u64>, Query, minimum = 100, maximum = 300000, description = "a comment line this often (default 10 s)")),
    responses((status = 200, content_type = "text/event-stream", body = crate::openapi::MemberStreamEvent,
        description = "`snapshot` (the members), then `MemberEvent`s by kind")))]
pub(crate) async fn watch(State(ctx): State<MCtx>, uri: Uri) -> Result<Response, ApiError> {
    let params = query::parse(uri.query(), &["events", "heartbeat_ms"])?;
    let wanted = kinds(&params)?;
    let heartbeat = crate::watch::heartbeat(&params)?;
    let mut views = ctx.membership.subscribe();
    let first = views.borrow_and_update().clone();
    let snapshot = Event::default()
        .event("snapshot")
        .data(serde_json::to_string(&first.members).unwrap_or_default());
    let changes = futures::stream::unfold((views, first), move |(mut views, last)| {
        let wanted = wanted.clone();
        async move {
            views.changed().await.ok()?;
            let now = views.borrow_and_update().clone();
            let seen_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
            let events: Vec<Event> =
                conclave_membership::events::events(&last.members, &now.members, &seen_at)
                    .into_iter()
                    .filter(|e| wanted.contains(&e.kind))
                    .map(|e| {
                        Event::default()
                            .event(e.kind.as_str())
                            .data(serde_json::to_string(&e).unwrap_or_default())
                    })
                    .collect();
            Some((events, (views, now)))
        }
    })
    .flat_map(|events| futures::stream::iter(events.into_iter().map(Ok::<_, Infallible>)));
    let body = futures::stream::once(async move { Ok::<_, Infallible>(snapshot) })
        .chain(changes)
        .take_until(ctx.closing.clone().cancelled_owned());
    Ok(Sse::new(crate::watch::counted(
        crate::watch::StreamKind::Members,
        body,
    ))
    .keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_events_filter_takes_either_name_and_refuses_others() {
        let p = |v: &str| vec![("events".to_owned(), v.to_owned())];
        assert_eq!(
            kinds(&p("join,member-failed")).unwrap(),
            vec![MemberEventKind::Join, MemberEventKind::Dead]
        );
        assert_eq!(kinds(&[]).unwrap().len(), 6);
        assert!(kinds(&p("nope")).unwrap_err().hint.contains("reaped"));
    }
}
