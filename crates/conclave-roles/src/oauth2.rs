//! OAuth2 client credentials for a role holder's remote peers (RFC 6749 §4.4).
//!
//! The secret is resolved from its reference on this node, when the token is fetched, and is
//! sent only to the token endpoint. Neither the secret nor the token is logged, returned or
//! put in an error: a failure says which reference or which HTTP status, nothing more.

use std::time::Duration;

use std::sync::Arc;

use conclave_config::kinds::OAuth2;
use conclave_config::{SecretPolicy, SecretRef};
use serde::{Deserialize, Serialize};

/// A token, kept in memory only. `Debug` does not show it.
pub struct Token {
    access_token: String,
    pub expires_in: Duration,
}

impl Token {
    /// For the one use it has: an `Authorization: Bearer` header towards the peer.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.access_token)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: String,
}

/// What `/v1/roles` shows about one remote peer of the holder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PeerStatus {
    pub node_id: String,
    /// `ok` (a token is held), `error`, or `disabled`.
    pub status: String,
    /// Why not ok; never contains a secret.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Seconds until the held token expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_s: Option<u64>,
}

/// Why no token was fetched. No variant holds the secret: a reference that does not parse
/// is reported by what is wrong with it, never by its text.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("client_secret: {0}")]
    NotAReference(#[from] conclave_config::secret::NotAReference),
    #[error(transparent)]
    Unresolved(#[from] conclave_config::secret::ResolveError),
    /// reqwest's message without the URL (the URL is named once, here; it holds no secret).
    #[error("token endpoint {url} unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("token endpoint {url} did not answer within {after:?}")]
    TimedOut { url: String, after: Duration },
    #[error("token endpoint {url} answered {status}{}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Refused {
        url: String,
        status: reqwest::StatusCode,
        code: Option<String>,
    },
    #[error("token endpoint {url} sent no access_token")]
    NoToken { url: String },
    #[error(
        "token endpoint {url} is not on this role's token_hosts ({allowed}); no secret was sent. Add its host to token_hosts of the role in the agent's config if it is trusted"
    )]
    HostNotAllowed { url: String, allowed: String },
}

/// What this node lets a token fetch use: its secret policy and the role's token hosts.
pub struct Allowed<'a> {
    pub secrets: Arc<SecretPolicy>,
    pub token_hosts: &'a [String],
}

/// Whether `url`'s host (or `host:port`) is one of `hosts`.
pub fn host_allowed(url: &str, hosts: &[String]) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(host) = parsed.host_str() else {
        return false;
    };
    let with_port = parsed
        .port_or_known_default()
        .map(|p| format!("{host}:{p}"));
    hosts.iter().any(|h| {
        h.eq_ignore_ascii_case(host)
            || with_port
                .as_deref()
                .is_some_and(|hp| h.eq_ignore_ascii_case(hp))
    })
}

/// Fetch a token with the client-credentials grant, the whole exchange (connecting, the
/// request, the answer's body) within `timeout`.
pub async fn fetch(
    http: &reqwest::Client,
    settings: &OAuth2,
    timeout: Duration,
    allowed: &Allowed<'_>,
) -> Result<Token, FetchError> {
    if !host_allowed(&settings.token_url, allowed.token_hosts) {
        return Err(FetchError::HostNotAllowed {
            url: settings.token_url.clone(),
            allowed: if allowed.token_hosts.is_empty() {
                "none listed".into()
            } else {
                allowed.token_hosts.join(", ")
            },
        });
    }
    let reference = SecretRef::parse(&settings.client_secret)?;
    let policy = allowed.secrets.clone();
    // A file read: off the async runtime.
    let secret = tokio::task::spawn_blocking(move || reference.resolve(&policy))
        .await
        .map_err(|e| FetchError::Unreachable {
            url: settings.token_url.clone(),
            reason: format!("the secret could not be read: {e}"),
        })??;
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_id", settings.client_id.as_str()),
        ("client_secret", secret.expose()),
    ];
    if let Some(scope) = &settings.scope {
        form.push(("scope", scope.as_str()));
    }
    let resp = http
        .post(&settings.token_url)
        .form(&form)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| failed(settings, timeout, e))?;
    let status = resp.status();
    if !status.is_success() {
        let code = resp.json::<ErrorResponse>().await.ok().map(|e| e.error);
        return Err(FetchError::Refused {
            url: settings.token_url.clone(),
            status,
            code,
        });
    }
    let body: TokenResponse = resp.json().await.map_err(|e| {
        if e.is_timeout() {
            failed(settings, timeout, e)
        } else {
            FetchError::NoToken {
                url: settings.token_url.clone(),
            }
        }
    })?;
    Ok(Token {
        access_token: body.access_token,
        expires_in: Duration::from_secs(body.expires_in.unwrap_or(3600).max(1)),
    })
}

/// A request that failed on the way: a timeout says so, anything else is unreachable.
fn failed(settings: &OAuth2, timeout: Duration, e: reqwest::Error) -> FetchError {
    if e.is_timeout() {
        FetchError::TimedOut {
            url: settings.token_url.clone(),
            after: timeout,
        }
    } else {
        FetchError::Unreachable {
            url: settings.token_url.clone(),
            reason: e.without_url().to_string(),
        }
    }
}
