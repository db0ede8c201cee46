//! `GET /v1/gossip/keys` and `POST /v1/gossip/keys`: the gossip keyring of every agent,
//! listed or changed at once, as Serf's `keys` command does.
//!
//! The agent asked applies a change to itself first (a key it refuses is refused for the
//! cluster, and nothing is sent on), then asks every other alive member to do the same with
//! `?scope=local`, passing the caller's token on so each agent checks it itself. The answer
//! lists every agent with its keys or why it failed; a rotation step is done when `failed`
//! is 0. Keys are never in an answer, a log line or an error: only their ids.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use conclave_membership::keyring::KeyStoreError;
use conclave_membership::{GossipError, Membership};
use conclave_types::gossip_keys::{KEYS_VERSION, KeyOp, KeyringAnswer, NodeKeys};
use conclave_types::{ErrorBody, ErrorCode, MemberState};

use crate::ApiError;
use crate::members::MCtx;

/// How other agents are reached: the HTTP client (with this agent's certificate when the
/// cluster serves TLS) and the scheme.
#[derive(Clone)]
pub struct PeerHttp {
    pub http: reqwest::Client,
    pub scheme: &'static str,
}

/// How long one agent has to answer.
const PER_AGENT: Duration = Duration::from_secs(5);

/// Which agents a keyring request reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Scope {
    /// This agent only.
    Local,
    /// Every alive member (the default).
    Cluster,
}

/// `?scope=local` (this agent only) or the default, every alive member.
fn local_only(query: Option<&str>) -> Result<bool, ApiError> {
    let pairs = crate::query::parse(query, &["scope"])?;
    let scope = pairs.into_iter().map(|(_, v)| v).next_back();
    let scope = match scope.as_deref() {
        None | Some("cluster") => Scope::Cluster,
        Some("local") => Scope::Local,
        Some(other) => {
            return Err(ApiError::bad_request(
                format!("scope {other:?} is not one of local, cluster"),
                "leave scope out to reach every agent",
            ));
        }
    };
    Ok(scope == Scope::Local)
}

fn refused(e: GossipError) -> ApiError {
    match e {
        GossipError::Keyring(KeyStoreError::Save { .. }) | GossipError::Stopped => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            e.to_string(),
            "check the agent's data directory and log",
        ),
        GossipError::Keyring(KeyStoreError::Keyring(
            conclave_gossip::seal::KeyringError::UnknownKey(_),
        )) => ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            e.to_string(),
            "conclave gossip keys list shows the keys each agent holds",
        ),
        GossipError::Keyring(KeyStoreError::Keyring(
            conclave_gossip::seal::KeyringError::RemovePrimary(_),
        )) => ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            e.to_string(),
            "install another key and `use` it first",
        ),
        other => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::BadRequest,
            other.to_string(),
            "a key is 32 random bytes in base64: conclave gossip keys generate",
        ),
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(list, change), components(schemas(Scope)))]
pub(crate) struct Doc;

/// The gossip keyring of every agent (ids only, never a key).
#[utoipa::path(get, path = "/v1/gossip/keys", tag = "agent", params(("scope" = Option<Scope>, Query, description = "`local`: this agent only; `cluster` (default): every alive member")),
    responses((status = 200, body = KeyringAnswer)))]
pub(crate) async fn list(
    State(ctx): State<MCtx>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Json<KeyringAnswer>, ApiError> {
    let local = local_only(query.as_deref())?;
    answer(&ctx, local, None, &headers).await
}

/// Install, use or remove a gossip key on every agent at once.
#[utoipa::path(post, path = "/v1/gossip/keys", tag = "agent", params(("scope" = Option<Scope>, Query, description = "`local`: this agent only; `cluster` (default): every alive member")),
    request_body = KeyOp,
    responses(
        (status = 200, body = KeyringAnswer, description = "each agent's keyring after the change"),
        (status = 404, body = conclave_types::ErrorBody, description = "no key with this id is held"),
        (status = 409, body = conclave_types::ErrorBody, description = "removing the key in use"),
        (status = 422, body = conclave_types::ErrorBody, description = "not a key (32 bytes in base64)"),
    ))]
pub(crate) async fn change(
    State(ctx): State<MCtx>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<KeyringAnswer>, ApiError> {
    let local = local_only(query.as_deref())?;
    let op: KeyOp = crate::error::parse_json(
        &body,
        "keyring change",
        r#"send {"op": "install", "key": "<base64>"}, or "use" / "remove" with a key or its id"#,
    )?;
    answer(&ctx, local, Some(op), &headers).await
}

async fn answer(
    ctx: &MCtx,
    local: bool,
    op: Option<KeyOp>,
    headers: &HeaderMap,
) -> Result<Json<KeyringAnswer>, ApiError> {
    let m = &ctx.membership;
    let keys = m.keys(op.clone()).await.map_err(refused)?;
    if let Some(op) = &op {
        let ids: Vec<String> = keys.iter().map(|k| k.id.clone()).collect();
        tracing::info!(op = op.name(), keys = ?ids, "gossip keyring changed");
    }
    let own = NodeKeys {
        api_addr: own_api(m),
        keys,
        error: None,
    };
    let mut nodes = BTreeMap::from([(m.node_id(), own)]);
    if !local {
        nodes.extend(ask_others(ctx, op.as_ref(), headers).await);
    }
    let failed = nodes.values().filter(|n| n.error.is_some()).count();
    Ok(Json(KeyringAnswer {
        version: KEYS_VERSION,
        nodes,
        failed,
    }))
}

fn own_api(m: &Membership) -> String {
    let view = m.view();
    view.members
        .iter()
        .find(|x| x.id == view.self_id)
        .map(|x| x.api_addr.clone())
        .unwrap_or_default()
}

/// Every other alive member's keyring after `op`, asked at once.
async fn ask_others(
    ctx: &MCtx,
    op: Option<&KeyOp>,
    headers: &HeaderMap,
) -> BTreeMap<u64, NodeKeys> {
    let view = ctx.membership.view();
    let mut out = BTreeMap::new();
    let mut asks = tokio::task::JoinSet::new();
    for member in view.members.into_iter().filter(|x| x.id != view.self_id) {
        match member.state {
            MemberState::Alive => {}
            // Gone on purpose: not a member to keep in step.
            MemberState::Left => continue,
            // It would miss the change: say so, so the step is run again once it is back.
            MemberState::Suspect | MemberState::Dead => {
                let state = member.state.as_str();
                out.insert(
                    member.id,
                    NodeKeys {
                        api_addr: member.api_addr,
                        keys: Vec::new(),
                        error: Some(format!(
                            "{state} in gossip, not asked: run this again once it is back"
                        )),
                    },
                );
                continue;
            }
        }
        let url = format!(
            "{}://{}/v1/gossip/keys?scope=local",
            ctx.peers.scheme, member.api_addr
        );
        let mut req = match op {
            Some(op) => ctx.peers.http.post(url).json(op),
            None => ctx.peers.http.get(url),
        };
        if let Some(auth) = headers.get(header::AUTHORIZATION) {
            req = req.header(header::AUTHORIZATION, auth.clone());
        }
        let req = req.timeout(PER_AGENT);
        asks.spawn(async move {
            let result = ask(req).await;
            let (keys, error) = match result {
                Ok(keys) => (keys, None),
                Err(why) => (Vec::new(), Some(why)),
            };
            (
                member.id,
                NodeKeys {
                    api_addr: member.api_addr,
                    keys,
                    error,
                },
            )
        });
    }
    while let Some(joined) = asks.join_next().await {
        if let Ok((id, keys)) = joined {
            out.insert(id, keys);
        }
    }
    out
}

/// Why an agent's keyring could not be read or changed, for the answer.
type Failure = String;

async fn ask(
    req: reqwest::RequestBuilder,
) -> Result<Vec<conclave_types::gossip_keys::GossipKey>, Failure> {
    let resp = req.send().await.map_err(|e| {
        if e.is_timeout() {
            format!("no answer within {} s", PER_AGENT.as_secs())
        } else {
            "unreachable (connection refused or failed)".to_string()
        }
    })?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("answer cut off: {e}"))?;
    if !status.is_success() {
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| "no error message".into());
        return Err(format!("refused ({status}): {message}"));
    }
    let answer: KeyringAnswer = serde_json::from_slice(&body)
        .map_err(|e| format!("an answer this agent does not understand: {e}"))?;
    Ok(answer
        .nodes
        .into_values()
        .next()
        .map(|n| n.keys)
        .unwrap_or_default())
}
