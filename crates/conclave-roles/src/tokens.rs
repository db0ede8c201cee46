//! The holder's OAuth2 tokens, kept fresh by a task of their own.
//!
//! Why a task apart from the lease: a token endpoint may be slow, black-holed or down, and
//! none of that may cost the holder its lease. So the tenure's renewals never wait on a
//! fetch; fetches run concurrently, each bounded (a quarter of the role's ttl, at most
//! 10 s), and a failure is a peer's status ("error", "timed out after ..."), never a lost
//! role.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conclave_config::SecretPolicy;
use conclave_config::kinds::{OAuth2, RemotePeers};
use conclave_coord::{Coordinator, Read, bounded};
use conclave_membership::Membership;
use tokio_util::sync::CancellationToken;

use crate::RoleConfig;
use crate::oauth2::{self, PeerStatus, Token};
use crate::peers_key;
use crate::runtime::Roles;

/// How often the keeper looks for tokens that are due.
const ROUND_EVERY: Duration = Duration::from_secs(1);
/// After a failed fetch, the next try waits this long.
const RETRY_AFTER: Duration = Duration::from_secs(5);

pub(crate) struct TokenKeeper {
    pub(crate) role: String,
    /// `kind/name` of the `remote-peers` document.
    pub(crate) document: String,
    pub(crate) fetch_timeout: Duration,
    pub(crate) coord: Coordinator,
    pub(crate) http: reqwest::Client,
    pub(crate) secrets: Arc<SecretPolicy>,
    /// Hosts (`host` or `host:port`) the role's token endpoints may be on (`token_hosts`).
    pub(crate) token_hosts: Vec<String>,
    pub(crate) membership: Membership,
    pub(crate) roles: Roles,
    /// Per remote peer: its status, token, when to refresh it, and the settings it was
    /// fetched with (changed settings are fetched again at once).
    tokens: BTreeMap<String, (PeerStatus, Option<Token>, Instant, OAuth2)>,
}

impl TokenKeeper {
    pub(crate) fn new(
        cfg: &RoleConfig,
        document: String,
        coord: Coordinator,
        http: reqwest::Client,
        secrets: Arc<SecretPolicy>,
        membership: Membership,
        roles: Roles,
    ) -> Self {
        Self {
            role: cfg.name.clone(),
            document,
            fetch_timeout: (cfg.ttl / 4).min(Duration::from_secs(10)),
            coord,
            http,
            secrets,
            token_hosts: cfg.token_hosts.clone(),
            membership,
            roles,
            tokens: BTreeMap::new(),
        }
    }

    /// Keep the tokens fresh until `tenure` ends, then forget them and clear the status.
    pub(crate) async fn run(mut self, tenure: CancellationToken) {
        loop {
            tokio::select! {
                _ = tenure.cancelled() => break,
                _ = self.round() => {}
            }
            tokio::select! {
                _ = tenure.cancelled() => break,
                _ = tokio::time::sleep(ROUND_EVERY) => {}
            }
        }
        self.tokens.clear();
        self.membership.set(&peers_key(&self.role), "").await;
        self.roles.update(&self.role, |s| s.peers.clear());
    }

    /// Fetch every due token at once and publish every peer's status.
    async fn round(&mut self) {
        let (kind, name) = self
            .document
            .split_once('/')
            .unwrap_or((self.document.as_str(), ""));
        let peers: Option<RemotePeers> = bounded(
            self.fetch_timeout,
            self.coord.config_get(kind, name, Read::Stale),
        )
        .await
        .ok()
        .and_then(|d| serde_json::from_value(d.content).ok());
        let Some(peers) = peers else {
            self.publish(vec![PeerStatus {
                node_id: "-".into(),
                status: "error".into(),
                detail: format!("document {} is missing or unreadable", self.document),
                expires_in_s: None,
            }])
            .await;
            return;
        };
        let now = Instant::now();
        let due: Vec<_> = peers
            .peers
            .iter()
            .filter(|p| p.enabled)
            .filter_map(|p| Some((p.node_id.clone(), p.oauth2.as_ref()?)))
            .filter(|(node_id, settings)| {
                self.tokens
                    .get(node_id)
                    .is_none_or(|(_, _, refresh_at, with)| now >= *refresh_at || with != *settings)
            })
            .collect();
        let (http, timeout) = (&self.http, self.fetch_timeout);
        let allowed = oauth2::Allowed {
            secrets: self.secrets.clone(),
            token_hosts: &self.token_hosts,
        };
        let allowed = &allowed;
        let fetches = due.into_iter().map(|(node_id, settings)| async move {
            (
                node_id,
                settings.clone(),
                oauth2::fetch(http, settings, timeout, allowed).await,
            )
        });
        for (node_id, settings, result) in futures::future::join_all(fetches).await {
            let entry = match result {
                Ok(token) => {
                    tracing::info!(role = %self.role, peer = %node_id, "OAuth2 token fetched");
                    let status = PeerStatus {
                        node_id: node_id.clone(),
                        status: "ok".into(),
                        detail: String::new(),
                        expires_in_s: Some(token.expires_in.as_secs()),
                    };
                    let refresh_at = now + token.expires_in.mul_f32(0.8);
                    (status, Some(token), refresh_at, settings)
                }
                Err(e) => {
                    let detail = e.to_string();
                    tracing::warn!(role = %self.role, peer = %node_id, %detail, "OAuth2 token not fetched");
                    let status = PeerStatus {
                        node_id: node_id.clone(),
                        status: "error".into(),
                        detail,
                        expires_in_s: None,
                    };
                    (status, None, Instant::now() + RETRY_AFTER, settings)
                }
            };
            self.tokens.insert(node_id, entry);
        }
        let mut statuses = Vec::new();
        for peer in &peers.peers {
            if peer.oauth2.is_none() {
                continue;
            }
            if !peer.enabled {
                statuses.push(PeerStatus {
                    node_id: peer.node_id.clone(),
                    status: "disabled".into(),
                    detail: String::new(),
                    expires_in_s: None,
                });
            } else if let Some((status, ..)) = self.tokens.get(&peer.node_id) {
                statuses.push(status.clone());
            }
        }
        self.publish(statuses).await;
    }

    async fn publish(&self, peers: Vec<PeerStatus>) {
        let ok = peers.iter().filter(|p| p.status == "ok").count();
        metrics::gauge!("conclave_role_oauth2_peers_ok", "role" => self.role.clone())
            .set(ok as f64);
        metrics::gauge!("conclave_role_oauth2_peers", "role" => self.role.clone())
            .set(peers.len() as f64);
        let compact = serde_json::to_string(&peers).unwrap_or_default();
        self.membership.set(&peers_key(&self.role), &compact).await;
        self.roles.update(&self.role, |s| s.peers = peers);
    }
}
