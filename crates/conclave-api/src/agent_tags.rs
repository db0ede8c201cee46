//! `GET /v1/agent/tags` and `PUT /v1/agent/tags`: this agent's tags, changed while it runs.
//! A change reaches every agent with gossip (peer files, role eligibility and the
//! membership watch follow it). It lasts until the agent restarts, which takes the tags of
//! its configuration again, or a reload (`conclave reload`, SIGHUP) that changes the
//! configuration's tags.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use conclave_types::ErrorCode;

use crate::ApiError;
use crate::members::MCtx;

/// An agent's tags, key to value.
type Tags = BTreeMap<String, String>;

/// Most tags one agent advertises (they travel in every gossip exchange).
pub const MAX_TAGS: usize = 64;
const MAX_KEY: usize = 64;
const MAX_VALUE: usize = 256;

/// Why `tags` cannot be advertised, if it cannot.
fn check(tags: &Tags) -> Result<(), ApiError> {
    let invalid = |message: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::BadRequest,
            message,
            format!(
                "tags are at most {MAX_TAGS} pairs of a key (1 to {MAX_KEY} letters, digits, '-', '_' or '.') and a value of at most {MAX_VALUE} printable characters"
            ),
        )
    };
    if tags.len() > MAX_TAGS {
        return Err(invalid(format!(
            "{} tags, more than {MAX_TAGS}",
            tags.len()
        )));
    }
    for (k, v) in tags {
        let key_ok = !k.is_empty()
            && k.len() <= MAX_KEY
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !key_ok {
            return Err(invalid(format!("tag key {k:?} is not a valid key")));
        }
        if v.len() > MAX_VALUE || v.chars().any(char::is_control) {
            return Err(invalid(format!(
                "the value of tag {k:?} is too long or has control characters"
            )));
        }
    }
    Ok(())
}

fn own_tags(ctx: &MCtx) -> Tags {
    let view = ctx.membership.view();
    view.members
        .into_iter()
        .find(|m| m.id == view.self_id)
        .map(|m| m.tags)
        .unwrap_or_default()
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(get, put))]
pub(crate) struct Doc;

/// The schema of [`Tags`]: what [`check`] accepts.
struct TagMap;

impl utoipa::PartialSchema for TagMap {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::pairs_schema(MAX_TAGS, MAX_KEY, MAX_VALUE)
    }
}

impl utoipa::ToSchema for TagMap {}

/// The tags this agent advertises over gossip.
#[utoipa::path(get, path = "/v1/agent/tags", tag = "agent",
    responses((status = 200, body = TagMap)))]
pub(crate) async fn get(State(ctx): State<MCtx>) -> Json<Tags> {
    Json(own_tags(&ctx))
}

/// Advertise exactly these tags (the whole set).
#[utoipa::path(put, path = "/v1/agent/tags", tag = "agent",
    request_body = TagMap,
    responses((status = 200, body = TagMap),
        (status = 422, body = conclave_types::ErrorBody, description = "a key or value breaks the tag rules")))]
pub(crate) async fn put(
    State(ctx): State<MCtx>,
    body: axum::body::Bytes,
) -> Result<Json<Tags>, ApiError> {
    let tags: Tags = crate::error::parse_json(
        &body,
        "tag map",
        r#"send the whole set of tags as a JSON object of strings, e.g. {"zone": "b", "rack": "r12"}"#,
    )?;
    check(&tags)?;
    ctx.membership.set_tags(&tags).await;
    tracing::info!(?tags, "this agent's tags changed");
    Ok(Json(tags))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn tags_are_bounded_and_keys_are_plain() {
        assert!(check(&tags(&[("zone", "b"), ("rack.id", "r-12")])).is_ok());
        assert!(check(&tags(&[("", "x")])).is_err());
        assert!(check(&tags(&[("a b", "x")])).is_err());
        assert!(check(&tags(&[("k", "line\nbreak")])).is_err());
        let many: Tags = (0..=MAX_TAGS)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert_eq!(
            check(&many).unwrap_err().status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}
