//! Tokens on a client agent, which holds none: for the routes it serves itself (its status,
//! the gossip view, its publications, `/metrics`) it asks a member who the caller is
//! (`GET /v1/acl/token/self`, with the caller's own token) and decides with the policies
//! the member returns. Everything it forwards is decided by the member that serves it.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use conclave_state::acl::policy_grants;
use conclave_types::ErrorCode;
use conclave_types::acl::TokenSelf;

use super::needs::Required;
use super::{AclSettings, Caller, bearer, now_ms, unauthorized};
use crate::ApiError;

/// Where a client agent asks, and with what.
#[derive(Clone)]
pub struct RemoteGuard {
    pub settings: AclSettings,
    /// The members' API URLs, the leader first.
    pub targets: Arc<dyn Fn() -> Vec<String> + Send + Sync>,
    pub http: reqwest::Client,
    /// Whether this agent answers `path` itself (otherwise it forwards it).
    pub served_locally: fn(&str) -> bool,
}

/// `router` with the client agent's own routes checked through a member.
pub fn guard_remote(router: Router, guard: RemoteGuard) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        Arc::new(guard),
        authorize_remote,
    ))
}

async fn authorize_remote(
    State(g): State<Arc<RemoteGuard>>,
    mut req: Request,
    next: Next,
) -> Response {
    if !(g.served_locally)(req.uri().path()) {
        return next.run(req).await;
    }
    let Some(required) = g.settings.required(&req) else {
        return next.run(req).await;
    };
    let Some(secret_id) = bearer(req.headers()).map(str::to_owned) else {
        return unauthorized("this agent requires a token (ACLs are on)").into_response();
    };
    match ask(&g, &secret_id, &required).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

async fn ask(g: &RemoteGuard, secret_id: &str, required: &Required) -> Result<Caller, ApiError> {
    let unavailable = |why: String| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            format!("cannot check the token with a member: {why}"),
            "retry; the client agent asks a Raft member found through gossip",
        )
    };
    let mut last = "gossip shows no Raft member yet".to_string();
    for base in (g.targets)() {
        let resp = match g
            .http
            .get(format!("{base}/v1/acl/token/self"))
            .header(header::AUTHORIZATION, format!("Bearer {secret_id}"))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                last = format!("{base} is unreachable");
                continue;
            }
            Err(e) => return Err(unavailable(e.without_url().to_string())),
        };
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(unauthorized(
                "the token is not valid: unknown, revoked or expired (it is never echoed)",
            ));
        }
        if !resp.status().is_success() {
            last = format!("{base} answered {}", resp.status());
            continue;
        }
        let me: TokenSelf = resp
            .json()
            .await
            .map_err(|e| unavailable(format!("unexpected answer: {e}")))?;
        if me.token.expires_ms.is_some_and(|at| now_ms() >= at) {
            return Err(unauthorized("the token has expired"));
        }
        if let Required::Capability(need) = required
            && !me.policies.iter().any(|p| policy_grants(p, need))
        {
            return Err(super::forbidden(
                &me.token.accessor_id,
                &me.token.policies,
                need,
            ));
        }
        return Ok(Caller {
            accessor_id: Some(me.token.accessor_id),
        });
    }
    Err(unavailable(last))
}
