//! What each request needs: a pure map from method, path and query to a capability, so the
//! whole API's access rules are one table, unit-tested without a server.
//!
//! Unknown paths need `cluster:read`: an anonymous caller learns nothing (401), a caller
//! with a token gets the router's 404.

use axum::http::Method;
use conclave_state::acl::{Access, Need, Target};
use percent_encoding::percent_decode_str;

/// What a request must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Required {
    /// Anyone: health, readiness, the one bootstrap.
    Nothing,
    /// Any valid token (what a token may see of itself).
    AnyToken,
    Capability(Need),
}

fn cap(target: Target, access: Access) -> Required {
    Required::Capability(Need { target, access })
}

/// Read for GET and HEAD, write for everything else.
fn by_method(method: &Method) -> Access {
    if method == Method::GET || method == Method::HEAD {
        Access::Read
    } else {
        Access::Write
    }
}

fn decoded(raw: &str) -> String {
    percent_decode_str(raw).decode_utf8_lossy().into_owned()
}

/// The value of query parameter `name` (decoded), or `""`.
fn query_param(query: Option<&str>, name: &str) -> String {
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(|p| p.split_once('='))
        .filter(|(n, _)| decoded(n) == name)
        .map(|(_, v)| decoded(&v.replace('+', " ")))
        .next_back()
        .unwrap_or_default()
}

/// The capability a request needs. `anonymous_metrics`: `/metrics` is open to all.
pub fn required(
    method: &Method,
    path: &str,
    query: Option<&str>,
    anonymous_metrics: bool,
) -> Required {
    let access = by_method(method);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["v1", "health"] | ["v1", "ready"] | ["api", "v1", "health"] => Required::Nothing,
        // The dashboard's page and assets hold no data: its requests carry the token.
        ["ui", ..] | ["dashboard"] => Required::Nothing,
        ["metrics"] if anonymous_metrics => Required::Nothing,
        ["metrics"] => cap(Target::Cluster, Access::Read),
        ["v1", "acl", "bootstrap"] => Required::Nothing,
        ["v1", "acl", "token", "self"] => Required::AnyToken,
        ["v1", "acl", ..] => cap(Target::Acl, access),
        ["v1", "kv"] => cap(Target::Kv(query_param(query, "prefix")), Access::Read),
        ["v1", "kv", ..] => {
            let key = path.strip_prefix("/v1/kv/").unwrap_or_default();
            cap(Target::Kv(decoded(key)), access)
        }
        ["v1", "watch"] => cap(Target::Kv(query_param(query, "prefix")), Access::Read),
        ["v1", "config"] | ["v1", "config", "status"] => cap(Target::Config(None), Access::Read),
        ["v1", "config", kind, ..] => cap(Target::Config(Some(decoded(kind))), access),
        ["v1", "elections", ..] | ["v1", "roles", ..] | ["v1", "agent", "roles"] => {
            cap(Target::Elections, access)
        }
        ["v1", "snapshot"] => cap(Target::Snapshot, access),
        ["v1", "audit", ..] | ["api", "v1", "audit"] => cap(Target::Audit, Access::Read),
        // Asks this node to read its secrets (within its policy): an operator's question.
        ["v1", "agent", "secrets", "check"] => cap(Target::Cluster, Access::Admin),
        ["v1", "agent", "tags"] => cap(Target::Cluster, access),
        // Re-reading the configuration (hooks run programs) is an operator's act.
        ["v1", "agent", "reload"] => cap(Target::Cluster, Access::Admin),
        // Changing the keys that admit an agent to gossip is an operator's act.
        ["v1", "gossip", "keys"] if access != Access::Read => cap(Target::Cluster, Access::Admin),
        ["v1", "cluster", ..]
        | ["api", "v1", "cluster", ..]
        | ["v1", "status"]
        | ["v1", "members", ..]
        | ["v1", "publish", "status"]
        | ["v1", "gossip", "stats"] => cap(Target::Cluster, access),
        ["api", "v1", ..] | ["v1", "ipam", ..] => cap(Target::Ipam, access),
        _ => cap(Target::Cluster, Access::Read),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(method: Method, path_and_query: &str) -> Required {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        required(&method, path, query, false)
    }

    #[test]
    fn every_route_needs_the_capability_its_resource_names() {
        use Access::*;
        let cases = [
            (Method::GET, "/v1/health", Required::Nothing),
            (Method::GET, "/ui", Required::Nothing),
            (Method::GET, "/ui/app.js", Required::Nothing),
            (Method::GET, "/dashboard", Required::Nothing),
            (Method::GET, "/v1/agent/samples", cap(Target::Cluster, Read)),
            (
                Method::GET,
                "/v1/agent/settings",
                cap(Target::Cluster, Read),
            ),
            (Method::GET, "/api/v1/health", Required::Nothing),
            (Method::POST, "/v1/acl/bootstrap", Required::Nothing),
            (Method::GET, "/v1/acl/token/self", Required::AnyToken),
            (Method::GET, "/v1/acl/tokens", cap(Target::Acl, Read)),
            (
                Method::DELETE,
                "/v1/acl/tokens/abc",
                cap(Target::Acl, Write),
            ),
            (Method::PUT, "/v1/acl/policies/ops", cap(Target::Acl, Write)),
            (
                Method::GET,
                "/v1/kv/app/color",
                cap(Target::Kv("app/color".into()), Read),
            ),
            (
                Method::PUT,
                "/v1/kv/app/c%C3%A9",
                cap(Target::Kv("app/cé".into()), Write),
            ),
            (
                Method::DELETE,
                "/v1/kv/app/x",
                cap(Target::Kv("app/x".into()), Write),
            ),
            (
                Method::GET,
                "/v1/kv?prefix=app%2F&limit=3",
                cap(Target::Kv("app/".into()), Read),
            ),
            (Method::GET, "/v1/kv", cap(Target::Kv(String::new()), Read)),
            (
                Method::GET,
                "/v1/watch?prefix=app/",
                cap(Target::Kv("app/".into()), Read),
            ),
            (Method::GET, "/v1/config", cap(Target::Config(None), Read)),
            (
                Method::GET,
                "/v1/config/status",
                cap(Target::Config(None), Read),
            ),
            (
                Method::PUT,
                "/v1/config/remote-peers/default",
                cap(Target::Config(Some("remote-peers".into())), Write),
            ),
            (
                Method::GET,
                "/v1/config/remote-peers/default/history",
                cap(Target::Config(Some("remote-peers".into())), Read),
            ),
            (
                Method::POST,
                "/v1/elections/lock/campaign",
                cap(Target::Elections, Write),
            ),
            (Method::GET, "/v1/roles", cap(Target::Elections, Read)),
            (
                Method::POST,
                "/v1/roles/gw/handover",
                cap(Target::Elections, Write),
            ),
            (Method::GET, "/v1/snapshot", cap(Target::Snapshot, Read)),
            (Method::GET, "/v1/status", cap(Target::Cluster, Read)),
            (
                Method::GET,
                "/api/v1/cluster/status",
                cap(Target::Cluster, Read),
            ),
            (
                Method::POST,
                "/v1/cluster/members",
                cap(Target::Cluster, Write),
            ),
            (
                Method::DELETE,
                "/v1/cluster/members/7",
                cap(Target::Cluster, Write),
            ),
            (
                Method::POST,
                "/v1/cluster/leader/transfer",
                cap(Target::Cluster, Write),
            ),
            (
                Method::POST,
                "/v1/members/remove-dead",
                cap(Target::Cluster, Write),
            ),
            (Method::GET, "/v1/members", cap(Target::Cluster, Read)),
            (Method::GET, "/v1/members/watch", cap(Target::Cluster, Read)),
            (Method::PUT, "/v1/agent/tags", cap(Target::Cluster, Write)),
            (Method::GET, "/v1/agent/tags", cap(Target::Cluster, Read)),
            (
                Method::POST,
                "/v1/agent/reload",
                cap(Target::Cluster, Admin),
            ),
            (Method::GET, "/v1/gossip/keys", cap(Target::Cluster, Read)),
            (
                Method::POST,
                "/v1/gossip/keys?scope=local",
                cap(Target::Cluster, Admin),
            ),
            (
                Method::POST,
                "/v1/agent/secrets/check",
                cap(Target::Cluster, Admin),
            ),
            (Method::GET, "/v1/audit?limit=5", cap(Target::Audit, Read)),
            (Method::GET, "/api/v1/audit", cap(Target::Audit, Read)),
            (Method::GET, "/v1/audit/watch", cap(Target::Audit, Read)),
            (Method::GET, "/metrics", cap(Target::Cluster, Read)),
            (Method::GET, "/nowhere", cap(Target::Cluster, Read)),
        ];
        for (method, path, want) in cases {
            assert_eq!(need(method.clone(), path), want, "{method} {path}");
        }
        assert_eq!(
            required(&Method::GET, "/metrics", None, true),
            Required::Nothing
        );
    }
}
