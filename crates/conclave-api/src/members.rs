//! The gossip view and peer publishing over HTTP, served by every agent (clients included):
//! `GET /v1/members`, `POST /v1/members/remove-dead`, `GET /v1/publish/status`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::routing::{get, post};
use conclave_membership::Membership;
use conclave_membership::view::MemberFilter;
use conclave_publish::Publisher;
use conclave_types::{GossipMember, MemberState, RemoveDeadResponse, SinkStatus};

use crate::{ApiError, query};

/// What the membership endpoints need.
#[derive(Clone)]
pub struct MembersContext {
    pub membership: Membership,
    pub publisher: Publisher,
}

/// The membership routes, with their own state, to merge into an agent's router.
pub fn router(ctx: MembersContext) -> Router {
    Router::new()
        .route("/v1/members", get(list))
        .route("/v1/members/remove-dead", post(remove_dead))
        .route("/v1/publish/status", get(publish_status))
        .with_state(Arc::new(ctx))
}

type MCtx = Arc<MembersContext>;

const LIST_PARAMS: &[&str] = &["role", "healthy", "tag", "state"];

/// `?role=voter,client&healthy=true&tag=zone=a&tag=rack=1&state=alive,suspect`.
fn filter_from(raw: Option<&str>) -> Result<MemberFilter, ApiError> {
    let mut f = MemberFilter::default();
    for (name, value) in query::parse(raw, LIST_PARAMS)? {
        match name.as_str() {
            "role" => f.roles.extend(value.split(',').map(str::to_string)),
            "healthy" => {
                f.healthy_only = match value.as_str() {
                    "true" | "1" => true,
                    "false" | "0" | "" => false,
                    other => {
                        return Err(ApiError::bad_request(
                            format!("healthy={other:?} is not a boolean"),
                            "use healthy=true or healthy=false",
                        ));
                    }
                }
            }
            "tag" => {
                let Some((k, v)) = value.split_once('=') else {
                    return Err(ApiError::bad_request(
                        format!("tag={value:?} is not key=value"),
                        "filter by tag as tag=zone=eu-1 (repeat for several)",
                    ));
                };
                f.tags.insert(k.to_string(), v.to_string());
            }
            "state" => {
                for s in value.split(',') {
                    let state = match s {
                        "alive" => MemberState::Alive,
                        "suspect" => MemberState::Suspect,
                        "dead" => MemberState::Dead,
                        "left" => MemberState::Left,
                        other => {
                            return Err(ApiError::bad_request(
                                format!("state={other:?} is not a member state"),
                                "states are alive, suspect, dead and left",
                            ));
                        }
                    };
                    f.states.push(state);
                }
            }
            _ => {}
        }
    }
    Ok(f)
}

async fn list(
    State(ctx): State<MCtx>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<GossipMember>>, ApiError> {
    let filter = filter_from(raw.as_deref())?;
    Ok(Json(
        ctx.membership
            .view()
            .members
            .into_iter()
            .filter(|m| filter.matches(m))
            .collect(),
    ))
}

async fn remove_dead(State(ctx): State<MCtx>) -> Json<RemoveDeadResponse> {
    let removed = ctx.membership.remove_dead().await;
    if !removed.is_empty() {
        tracing::info!(?removed, "removed dead and left members on request");
    }
    Json(RemoveDeadResponse { removed })
}

async fn publish_status(State(ctx): State<MCtx>) -> Json<Vec<SinkStatus>> {
    Json(ctx.publisher.status())
}
