//! Requests refused at the edge, before any handler: what a browser could be made to send.
//!
//! Why: the API has side effects reachable with plain HTTP, so a web page the operator opens
//! could drive it: a cross-site form or `fetch` (CSRF) carries the page's `Origin`, and DNS
//! rebinding makes the browser send the page's own host name in `Host` to this agent. A
//! browser always marks its requests (`Origin` on every non-GET request, `Sec-Fetch-Site`
//! on every request of a current browser); curl, the CLI and services do not. So a marked
//! request is served only when its `Host` is a name this agent answers to (an IP literal,
//! `localhost`, its advertised HTTP host, or one listed in `http_allowed_hosts`) and, for a
//! request that changes something, when it comes from the same origin. Unmarked requests
//! are not affected. (A request with both `Content-Length` and `Transfer-Encoding` never
//! reaches this layer ambiguous: hyper frames it by `Transfer-Encoding` and drops
//! `Content-Length`, as RFC 9112 §6.3 allows.)

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use conclave_types::ErrorCode;

use crate::error::ApiError;

/// Why a request is refused at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdgeRefusal {
    #[error("a browser request for host {host:?}, which this agent does not answer to")]
    UnknownHost { host: String },
    #[error("a browser request from another origin ({origin}) may not change anything here")]
    ForeignOrigin { origin: String },
    #[error("a cross-site browser request may not change anything here")]
    CrossSite,
}

impl EdgeRefusal {
    fn response(&self) -> Response {
        let (status, code, hint) = match self {
            EdgeRefusal::UnknownHost { .. } => (
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "reach the agent by IP or localhost, or list the name in http_allowed_hosts",
            ),
            EdgeRefusal::ForeignOrigin { .. } | EdgeRefusal::CrossSite => (
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "change the cluster from the CLI, curl or a service, not from a web page of another site",
            ),
        };
        ApiError::new(status, code, self.to_string(), hint).into_response()
    }
}

/// The host part of a `Host` header or an origin's authority (`[::1]:80` → `::1`).
fn host_part(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.split(':').next().unwrap_or(authority)
}

fn is_answered_name(host: &str, allowed: &[String]) -> bool {
    let name = host_part(host);
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok()
        || allowed
            .iter()
            .any(|a| host_part(a).eq_ignore_ascii_case(name))
}

/// The edge rules (pure): `allowed` are the host names this agent answers to besides IP
/// literals and `localhost`.
pub fn check(method: &Method, headers: &HeaderMap, allowed: &[String]) -> Result<(), EdgeRefusal> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let origin = text("origin");
    let fetch_site = text("sec-fetch-site");
    if origin.is_none() && fetch_site.is_none() {
        return Ok(());
    }
    let host = text("host").unwrap_or_default();
    if !is_answered_name(host, allowed) {
        return Err(EdgeRefusal::UnknownHost {
            host: host.to_owned(),
        });
    }
    let changes = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !changes {
        return Ok(());
    }
    if fetch_site == Some("cross-site") {
        return Err(EdgeRefusal::CrossSite);
    }
    if let Some(origin) = origin {
        let authority = origin
            .split_once("://")
            .map_or(origin, |(_, rest)| rest)
            .trim_end_matches('/');
        if !authority.eq_ignore_ascii_case(host) {
            return Err(EdgeRefusal::ForeignOrigin {
                origin: origin.to_owned(),
            });
        }
    }
    Ok(())
}

/// Apply [`check`] to every request of `router`.
pub fn guard(router: axum::Router, allowed: Vec<String>) -> axum::Router {
    let allowed = std::sync::Arc::new(allowed);
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let allowed = allowed.clone();
            async move {
                match check(req.method(), req.headers(), &allowed) {
                    Ok(()) => next.run(req).await,
                    Err(refusal) => {
                        tracing::debug!(%refusal, "request refused at the edge");
                        refusal.response()
                    }
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn clients_that_are_not_browsers_pass_whatever_their_host() {
        let h = headers(&[("host", "voter-1:7400"), ("content-type", "text/plain")]);
        assert_eq!(check(&Method::PUT, &h, &[]), Ok(()));
    }

    #[test]
    fn browsers_may_read_and_change_only_from_the_agents_own_origin() {
        let allowed = vec!["conclave.internal".to_string()];
        let same = headers(&[
            ("host", "10.0.0.1:7400"),
            ("origin", "http://10.0.0.1:7400"),
        ]);
        assert_eq!(check(&Method::PUT, &same, &allowed), Ok(()));
        let named = headers(&[
            ("host", "conclave.internal:7400"),
            ("origin", "https://conclave.internal:7400"),
        ]);
        assert_eq!(check(&Method::DELETE, &named, &allowed), Ok(()));
        let v6 = headers(&[("host", "[::1]:7400"), ("sec-fetch-site", "same-origin")]);
        assert_eq!(check(&Method::GET, &v6, &allowed), Ok(()));

        // CSRF: a page elsewhere posts to the agent.
        let csrf = headers(&[
            ("host", "127.0.0.1:7400"),
            ("origin", "https://evil.example"),
        ]);
        assert!(matches!(
            check(&Method::PUT, &csrf, &allowed),
            Err(EdgeRefusal::ForeignOrigin { .. })
        ));
        // A cross-site read is left to the browser (no CORS headers: the page cannot read it).
        assert_eq!(check(&Method::GET, &csrf, &allowed), Ok(()));
        let cross = headers(&[("host", "127.0.0.1:7400"), ("sec-fetch-site", "cross-site")]);
        assert_eq!(
            check(&Method::POST, &cross, &allowed),
            Err(EdgeRefusal::CrossSite)
        );
        // DNS rebinding: same origin as far as the browser knows, but not our name.
        let rebound = headers(&[
            ("host", "evil.example:7400"),
            ("origin", "http://evil.example:7400"),
        ]);
        assert!(matches!(
            check(&Method::GET, &rebound, &allowed),
            Err(EdgeRefusal::UnknownHost { .. })
        ));
        assert!(matches!(
            check(&Method::PUT, &rebound, &allowed),
            Err(EdgeRefusal::UnknownHost { .. })
        ));
    }
}
