//! Access control at the edge: who is asking (a bearer token, checked against the cluster's
//! replicated tokens), what the request needs (`needs`: one table for the whole API), and
//! the routes that manage tokens and policies (`/v1/acl/...`).
//!
//! With `[acl] enabled`, a request without a valid token gets `401 unauthorized` (unless it
//! needs nothing: health, readiness, the one bootstrap), and one whose token lacks the
//! capability gets `403 forbidden` naming it. The caller's accessor is put on the request
//! for the handlers (and the audit log). A follower decides with its applied copy of the
//! tokens, so a revocation reaches it with replication (milliseconds).

pub mod needs;
pub mod remote;
pub mod secret;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use conclave_state::acl::{AclCommand, GLOBAL_MANAGEMENT, Need, Policy, Token};
use conclave_storage::StateHandle;
use conclave_types::ErrorCode;
use conclave_types::acl::{PolicyRequest, TokenInfo, TokenRequest, TokenSecret, TokenSelf};

use crate::audit::Acting;
use crate::{ApiError, Ctx};
use needs::Required;

/// `[acl]` as the edge needs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct AclSettings {
    pub enabled: bool,
    /// `/metrics` without a token (for a scraper that cannot send one).
    pub anonymous_metrics: bool,
}

impl AclSettings {
    /// What `req` must present, or `None` when nothing is checked (ACLs off, or a route
    /// anyone may call).
    fn required(&self, req: &Request) -> Option<Required> {
        if !self.enabled {
            return None;
        }
        let uri = req.uri();
        let required = needs::required(
            req.method(),
            uri.path(),
            uri.query(),
            self.anonymous_metrics,
        );
        (required != Required::Nothing).then_some(required)
    }
}

/// Who made a request, put on it by the guard: `None` when ACLs are off or the route needs
/// nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub accessor_id: Option<String>,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthorized,
        message,
        "send Authorization: Bearer <secret_id> (the CLI reads CONCLAVE_TOKEN or --token); an operator makes tokens with conclave acl token create",
    )
}

/// The bearer token of a request, if it sent one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Check `secret_id` against the tokens in `state` for `required`: the caller, or the
/// refusal to answer with.
pub fn check(
    state: &StateHandle,
    secret_id: &str,
    required: &Required,
    now_ms: u64,
) -> Result<Caller, ApiError> {
    let invalid =
        || unauthorized("the token is not valid: unknown, revoked or expired (it is never echoed)");
    let accessor = secret::accessor_of(secret_id).ok_or_else(invalid)?;
    // Decided under one read of the state, copying nothing but a refusal's details.
    let verdict = state.read(|a| {
        let acl = a.state.acl();
        let Some(token) = acl.tokens.get(&accessor) else {
            return Err(None);
        };
        if !secret::matches(secret_id, token) || token.expires_ms.is_some_and(|at| now_ms >= at) {
            return Err(None);
        }
        match required {
            Required::Capability(need) if !acl.allows(token, need, now_ms) => {
                Err(Some(forbidden(&token.accessor_id, &token.policies, need)))
            }
            _ => Ok(()),
        }
    });
    match verdict {
        Ok(()) => Ok(Caller {
            accessor_id: Some(accessor),
        }),
        Err(Some(refusal)) => Err(refusal),
        Err(None) => Err(invalid()),
    }
}

/// `403`: the token is valid but none of its policies grants `need`.
fn forbidden(accessor: &str, policies: &[String], need: &Need) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
        format!(
            "token {accessor} lacks {} on {} (its policies: {})",
            need.access.name(),
            need.target.describe(),
            if policies.is_empty() {
                "none".to_string()
            } else {
                policies.join(", ")
            }
        ),
        "ask an operator for a token whose policy grants it (conclave acl policy put / conclave acl token create)",
    )
}

/// What the guard checks against.
#[derive(Clone)]
pub struct AclGuard {
    pub settings: AclSettings,
    pub state: StateHandle,
}

/// `router` with every request checked by `guard` (nothing is checked when ACLs are off).
pub fn guard(router: Router, guard: AclGuard) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        Arc::new(guard),
        authorize,
    ))
}

async fn authorize(State(g): State<Arc<AclGuard>>, mut req: Request, next: Next) -> Response {
    let Some(required) = g.settings.required(&req) else {
        return next.run(req).await;
    };
    let Some(secret_id) = bearer(req.headers()) else {
        let bootstrapped = g.state.read(|a| a.state.acl().bootstrapped);
        return unauthorized(if bootstrapped {
            "this agent requires a token (ACLs are on)"
        } else {
            "this agent requires a token, and none exists yet: ACLs are on but not bootstrapped (conclave acl bootstrap)"
        })
        .into_response();
    };
    match check(&g.state, secret_id, &required, now_ms()) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    bootstrap,
    token_self,
    list_tokens,
    get_token,
    create_token,
    delete_token,
    list_policies,
    get_policy,
    put_policy,
    delete_policy
))]
pub(crate) struct Doc;

/// What a deletion answers: the name or accessor deleted.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Deleted {
    pub deleted: String,
}

/// The routes of `/v1/acl`.
pub fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/v1/acl/bootstrap", post(bootstrap))
        .route("/v1/acl/token/self", get(token_self))
        .route("/v1/acl/tokens", get(list_tokens).post(create_token))
        .route(
            "/v1/acl/tokens/{accessor}",
            get(get_token).delete(delete_token),
        )
        .route("/v1/acl/policies", get(list_policies))
        .route(
            "/v1/acl/policies/{name}",
            get(get_policy).put(put_policy).delete(delete_policy),
        )
        .method_not_allowed_fallback(crate::error::method_not_allowed)
        .with_state(ctx)
}

fn info(t: &Token) -> TokenInfo {
    TokenInfo {
        accessor_id: t.accessor_id.clone(),
        description: t.description.clone(),
        policies: t.policies.clone(),
        created_ms: t.created_ms,
        expires_ms: t.expires_ms,
    }
}

/// `503`: the system's random number generator failed (a token cannot be made).
fn random_failed(_: ring::error::Unspecified) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
        "the system's random number generator failed",
        "retry",
    )
}

async fn mint_and_store(
    ctx: &Ctx,
    acting: Acting,
    description: String,
    policies: Vec<String>,
    expires_ms: Option<u64>,
    bootstrap: bool,
) -> Result<Json<TokenSecret>, ApiError> {
    let minted =
        secret::mint(description, policies, now_ms(), expires_ms).map_err(random_failed)?;
    let token = minted.token.clone();
    let change = if bootstrap {
        AclCommand::Bootstrap(token)
    } else {
        AclCommand::CreateToken(token)
    };
    ctx.coord.acting(acting.0).acl(change).await?;
    Ok(Json(TokenSecret {
        accessor_id: minted.token.accessor_id,
        secret_id: minted.secret_id.expose().to_owned(),
        description: minted.token.description,
        policies: minted.token.policies,
        expires_ms: minted.token.expires_ms,
    }))
}

/// Bootstrap with an operator-chosen management secret (`acl.initial_management_token`), as
/// a leader does until the cluster is bootstrapped: `Ok(true)` once it is (by this call or
/// an earlier one), `Ok(false)` when this node cannot tell yet (not the leader).
pub async fn bootstrap_with(ctx: &crate::AppContext, chosen: &str) -> Result<bool, ApiError> {
    if ctx.state_read(|acl| acl.bootstrapped) {
        return Ok(true);
    }
    let m = ctx.node.metrics();
    if m.current_leader != Some(ctx.node.id) {
        return Ok(false);
    }
    let token = secret::from_chosen(
        chosen,
        "initial management token".into(),
        vec![GLOBAL_MANAGEMENT.into()],
        now_ms(),
    )
    .map_err(random_failed)?;
    match ctx.coord.acl(AclCommand::Bootstrap(token)).await {
        Ok(_) => Ok(true),
        Err(conclave_coord::CoordError::Acl(
            conclave_state::acl::AclRefusal::AlreadyBootstrapped,
        )) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// `POST /v1/acl/bootstrap`: the first management token, once per cluster.
/// Make the first management token (once per cluster; ACLs must be on).
#[utoipa::path(post, path = "/v1/acl/bootstrap", tag = "acl",
    responses((status = 200, body = TokenSecret, description = "the management token: its secret is shown this once"),
        (status = 409, body = conclave_types::ErrorBody, description = "already bootstrapped, or ACLs are off")))]
async fn bootstrap(State(ctx): State<Ctx>, acting: Acting) -> Result<Json<TokenSecret>, ApiError> {
    if !ctx.acl.enabled {
        return Err(acls_off(
            "ACLs are not enabled on this agent",
            "set [acl] enabled = true (or CONCLAVE_ACL__ENABLED=true) on every node and restart them, then bootstrap",
        ));
    }
    mint_and_store(
        &ctx,
        acting,
        "bootstrap token".into(),
        vec![GLOBAL_MANAGEMENT.into()],
        None,
        true,
    )
    .await
}

/// The caller's own token and its policies.
#[utoipa::path(get, path = "/v1/acl/token/self", tag = "acl",
    responses((status = 200, body = TokenSelf), (status = 404, body = conclave_types::ErrorBody, description = "the token was deleted"),
        (status = 409, body = conclave_types::ErrorBody, description = "ACLs are off: requests carry no token")))]
async fn token_self(
    State(ctx): State<Ctx>,
    caller: Option<axum::Extension<Caller>>,
) -> Result<Json<TokenSelf>, ApiError> {
    let accessor = caller.and_then(|c| c.0.accessor_id).ok_or_else(|| {
        acls_off(
            "ACLs are off: requests carry no token",
            "enable [acl] to use tokens",
        )
    })?;
    ctx.state_read(|acl| {
        let token = acl.tokens.get(&accessor)?;
        Some(TokenSelf {
            token: info(token),
            policies: token
                .policies
                .iter()
                .filter_map(|p| acl.policy(p))
                .collect(),
        })
    })
    .map(Json)
    .ok_or_else(|| not_found("token", &accessor))
}

/// 409: the request is well formed, but this agent's ACLs are off.
fn acls_off(message: &str, hint: &str) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message, hint)
}

fn not_found(what: &str, name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!("no {what} {name}"),
        "list them with GET /v1/acl/tokens or GET /v1/acl/policies",
    )
}

impl crate::AppContext {
    fn state_read<T>(&self, f: impl FnOnce(&conclave_state::acl::AclState) -> T) -> T {
        self.node.state().read(|a| f(a.state.acl()))
    }
}

/// Every token (never a secret).
#[utoipa::path(get, path = "/v1/acl/tokens", tag = "acl", responses((status = 200, body = Vec<TokenInfo>)))]
async fn list_tokens(State(ctx): State<Ctx>) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    ctx.node.read_barrier().await?;
    Ok(Json(
        ctx.state_read(|acl| acl.tokens.values().map(info).collect()),
    ))
}

/// One token (never its secret).
#[utoipa::path(get, path = "/v1/acl/tokens/{accessor}", tag = "acl", params(("accessor" = String, Path, description = "the token's accessor id")),
    responses((status = 200, body = TokenInfo), (status = 404, body = conclave_types::ErrorBody, description = "no such token")))]
async fn get_token(
    State(ctx): State<Ctx>,
    Path(accessor): Path<String>,
) -> Result<Json<TokenInfo>, ApiError> {
    ctx.node.read_barrier().await?;
    ctx.state_read(|acl| acl.tokens.get(&accessor).map(info))
        .map(Json)
        .ok_or_else(|| not_found("token", &accessor))
}

/// Make a token with these policies.
#[utoipa::path(post, path = "/v1/acl/tokens", tag = "acl", request_body = TokenRequest,
    responses((status = 200, body = TokenSecret, description = "its secret is shown this once"),
        (status = 404, body = conclave_types::ErrorBody, description = "a named policy does not exist")))]
async fn create_token(
    State(ctx): State<Ctx>,
    acting: Acting,
    body: axum::body::Bytes,
) -> Result<Json<TokenSecret>, ApiError> {
    let req: TokenRequest = crate::error::parse_json(
        &body,
        "token request",
        r#"send {"policies": ["NAME"], "description": "...", "ttl": "24h"}"#,
    )?;
    let expires_ms = match &req.ttl {
        None => None,
        Some(ttl) => {
            let ms = crate::query::duration_ms(ttl).ok_or_else(|| {
                ApiError::bad_request(
                    format!("ttl {ttl:?} is not a duration"),
                    "numbers with a unit, e.g. \"24h\", \"30m\" or \"1d12h\" (units: ms, s, m, h, d)",
                )
            })?;
            Some(now_ms().saturating_add(ms))
        }
    };
    mint_and_store(
        &ctx,
        acting,
        req.description,
        req.policies,
        expires_ms,
        false,
    )
    .await
}

/// Delete a token: requests carrying it are refused from now on.
#[utoipa::path(delete, path = "/v1/acl/tokens/{accessor}", tag = "acl", params(("accessor" = String, Path, description = "the token's accessor id")),
    responses((status = 200, body = Deleted), (status = 404, body = conclave_types::ErrorBody, description = "no such token")))]
async fn delete_token(
    State(ctx): State<Ctx>,
    acting: Acting,
    Path(accessor): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    ctx.coord
        .acting(acting.0)
        .acl(AclCommand::DeleteToken {
            accessor_id: accessor.clone(),
        })
        .await?;
    Ok(Json(Deleted { deleted: accessor }))
}

/// Every policy, `global-management` included.
#[utoipa::path(get, path = "/v1/acl/policies", tag = "acl", responses((status = 200, body = Vec<Policy>)))]
async fn list_policies(State(ctx): State<Ctx>) -> Result<Json<Vec<Policy>>, ApiError> {
    ctx.node.read_barrier().await?;
    Ok(Json(ctx.state_read(|acl| {
        std::iter::once(conclave_state::acl::global_management())
            .chain(acl.policies.values().cloned())
            .collect()
    })))
}

/// One policy.
#[utoipa::path(get, path = "/v1/acl/policies/{name}", tag = "acl", params(("name" = String, Path, description = "the policy's name")),
    responses((status = 200, body = Policy), (status = 404, body = conclave_types::ErrorBody, description = "no such policy")))]
async fn get_policy(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
) -> Result<Json<Policy>, ApiError> {
    ctx.node.read_barrier().await?;
    ctx.state_read(|acl| acl.policy(&name))
        .map(Json)
        .ok_or_else(|| not_found("policy", &name))
}

/// Create or replace a policy.
#[utoipa::path(put, path = "/v1/acl/policies/{name}", tag = "acl", params(("name" = String, Path, description = "the policy's name")), request_body = PolicyRequest,
    responses((status = 200, body = Policy), (status = 409, body = conclave_types::ErrorBody, description = "`global-management` cannot be changed")))]
async fn put_policy(
    State(ctx): State<Ctx>,
    acting: Acting,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Policy>, ApiError> {
    let req: PolicyRequest = crate::error::parse_json(
        &body,
        "policy",
        r#"send {"description": "...", "rules": [{"resource": "kv", "prefix": "app/", "access": "write"}]}"#,
    )?;
    let policy = Policy {
        name,
        description: req.description,
        rules: req.rules,
    };
    ctx.coord
        .acting(acting.0)
        .acl(AclCommand::PutPolicy(policy.clone()))
        .await?;
    Ok(Json(policy))
}

/// Delete a policy (refused while a token uses it).
#[utoipa::path(delete, path = "/v1/acl/policies/{name}", tag = "acl", params(("name" = String, Path, description = "the policy's name")),
    responses((status = 200, body = Deleted), (status = 404, body = conclave_types::ErrorBody, description = "no such policy"),
        (status = 409, body = conclave_types::ErrorBody, description = "a token still uses it, or it is `global-management`")))]
async fn delete_policy(
    State(ctx): State<Ctx>,
    acting: Acting,
    Path(name): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    ctx.coord
        .acting(acting.0)
        .acl(AclCommand::DeletePolicy { name: name.clone() })
        .await?;
    Ok(Json(Deleted { deleted: name }))
}
