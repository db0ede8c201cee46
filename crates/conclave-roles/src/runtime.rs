//! The per-role loop of one agent: campaign while eligible, hold, release.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclave_config::kinds::RemotePeers;
use conclave_coord::{Coordinator, Read, bounded};
use conclave_hook as hook;
use conclave_membership::Membership;
use conclave_types::{CampaignRequest, ElectionStatus, ErrorCode, HookResult, LeaseRequest};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::detector::{self, Claim};
use crate::oauth2::{self, PeerStatus, Token};
use crate::{RoleConfig, Stance, claim_key, election_name, live_claims, peers_key};

/// The longest one call to the coordinator may take (a campaign waits up to 2 s of it).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// This agent's view of one of its roles (`/v1/roles/local`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoleStatus {
    pub name: String,
    /// `ineligible`, `candidate` or `holder`.
    pub state: String,
    pub priority: i64,
    pub epoch: Option<u64>,
    pub peers: Vec<PeerStatus>,
    pub last_acquire: Option<HookResult>,
    pub last_release: Option<HookResult>,
    /// Times this node saw two live claimants of the role.
    pub split_brain_alerts: u64,
}

/// The roles this agent declares. Cheap to clone.
#[derive(Clone, Default)]
pub struct Roles {
    status: Arc<Mutex<BTreeMap<String, RoleStatus>>>,
}

impl Roles {
    pub fn status(&self) -> Vec<RoleStatus> {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn spawn(
        roles: Vec<RoleConfig>,
        node_id: u64,
        coord: Coordinator,
        membership: Membership,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) -> Roles {
        let this = Roles::default();
        for cfg in roles {
            this.update(&cfg.name, |s| {
                s.name = cfg.name.clone();
                s.priority = cfg.priority;
                s.state = "candidate".into();
            });
            let runner = Runner {
                cfg,
                me: node_id,
                coord: coord.clone(),
                http: reqwest::Client::new(),
                membership: membership.clone(),
                roles: this.clone(),
                shutdown: shutdown.clone(),
                tasks: tasks.clone(),
                tokens: BTreeMap::new(),
                last_alert: None,
            };
            tasks.spawn(runner.run());
        }
        this
    }

    fn update(&self, role: &str, f: impl FnOnce(&mut RoleStatus)) {
        let mut all = self.status.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(role.to_owned()).or_default());
    }
}

struct Runner {
    cfg: RoleConfig,
    me: u64,
    /// How this agent reaches the elections (its own node, or a member for a client
    /// agent); every call bounded by [`CALL_TIMEOUT`].
    coord: Coordinator,
    /// For the remote peers' token endpoints.
    http: reqwest::Client,
    membership: Membership,
    roles: Roles,
    shutdown: CancellationToken,
    /// Where hooks run, so that shutdown waits for them.
    tasks: TaskTracker,
    /// Per remote peer: its status, token and when to refresh it.
    tokens: BTreeMap<String, (PeerStatus, Option<Token>, Instant)>,
    last_alert: Option<Instant>,
}

/// Why a tenure ended.
#[derive(Debug)]
enum Released {
    Resigned(&'static str),
    Lost(String),
    Shutdown,
}

impl Runner {
    async fn run(mut self) {
        loop {
            if self.shutdown.is_cancelled() {
                return;
            }
            let eligible = self.eligible();
            self.advertise(if eligible { "candidate" } else { "ineligible" }, 0)
                .await;
            self.watch_for_split_brain(None);
            if !eligible || self.handover_elsewhere(None).await {
                if self.pause(Duration::from_millis(500)).await {
                    return;
                }
                continue;
            }
            match self.campaign().await {
                Some((epoch, sent)) => {
                    let why = self.hold(epoch, sent).await;
                    if matches!(why, Released::Shutdown) {
                        return;
                    }
                    // Let a handover target or another candidate take it first.
                    if self.pause(Duration::from_millis(300)).await {
                        return;
                    }
                }
                None => {
                    if self.pause(Duration::from_millis(200)).await {
                        return;
                    }
                }
            }
        }
    }

    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => true,
            _ = tokio::time::sleep(d) => false,
        }
    }

    fn eligible(&self) -> bool {
        let view = self.membership.view();
        view.members
            .iter()
            .find(|m| m.id == self.me)
            .is_some_and(|m| self.cfg.eligible(&m.tags, m.healthy))
    }

    async fn advertise(&self, state: &str, epoch: u64) {
        let stance = Stance {
            state: state.to_owned(),
            priority: self.cfg.priority,
            epoch,
        };
        self.membership
            .set(&claim_key(&self.cfg.name), &stance.encode())
            .await;
        self.roles.update(&self.cfg.name, |s| {
            s.state = state.to_owned();
            s.epoch = (epoch > 0).then_some(epoch);
        });
        let holding = if state == "holder" { 1.0 } else { 0.0 };
        metrics::gauge!("conclave_role_holder", "role" => self.cfg.name.clone()).set(holding);
        metrics::gauge!("conclave_role_epoch", "role" => self.cfg.name.clone()).set(epoch as f64);
    }

    /// Alert on two live claimants; `Some(epoch)` when this node holds: whether it must
    /// release because another claims a newer epoch.
    fn watch_for_split_brain(&mut self, mine: Option<u64>) -> bool {
        let mut claims = live_claims(&self.membership.view().members, &self.cfg.name);
        if let Some(epoch) = mine
            && !claims.iter().any(|c| c.node_id == self.me)
        {
            claims.push(Claim {
                node_id: self.me,
                epoch,
            });
        }
        let verdict = detector::judge(&claims);
        if verdict.split_brain {
            let now = Instant::now();
            if self
                .last_alert
                .is_none_or(|t| now - t > Duration::from_secs(10))
            {
                self.last_alert = Some(now);
                tracing::error!(role = %self.cfg.name, claims = ?claims, "split brain: more than one node claims this role; the older epoch must release");
                self.roles
                    .update(&self.cfg.name, |s| s.split_brain_alerts += 1);
                metrics::counter!("conclave_role_split_brain_alerts_total", "role" => self.cfg.name.clone())
                    .increment(1);
            }
        }
        mine.is_some_and(|epoch| detector::must_release(self.me, epoch, &claims))
    }

    /// A planned handover to another node stands (`held`: the epoch this node holds). The
    /// state machine keeps the election for the target anyway; this spares pointless
    /// campaigns, and tells the holder to step down.
    async fn handover_elsewhere(&self, held: Option<u64>) -> bool {
        let Some(h) = self.election().await.and_then(|e| e.handover) else {
            return false;
        };
        h.target != self.me.to_string() && held.is_none_or(|epoch| h.from_epoch == epoch)
    }

    /// The election from this agent's own copy; `None` when it cannot be read.
    async fn election(&self) -> Option<ElectionStatus> {
        let name = election_name(&self.cfg.name);
        bounded(CALL_TIMEOUT, self.coord.election(&name, Read::Stale))
            .await
            .ok()
    }

    fn lease(&self, epoch: u64) -> LeaseRequest {
        LeaseRequest {
            candidate: self.me.to_string(),
            epoch,
        }
    }

    /// Resign `epoch`; a failure only means the lease runs out instead.
    async fn resign(&self, epoch: u64) {
        let name = election_name(&self.cfg.name);
        let lease = self.lease(epoch);
        if let Err(e) = bounded(CALL_TIMEOUT, self.coord.resign(&name, &lease)).await {
            tracing::debug!(role = %self.cfg.name, epoch, error = %e, "resign failed; the lease will expire");
        }
    }

    /// One campaign round (waits up to 2 s): the epoch and when the request was sent.
    async fn campaign(&self) -> Option<(u64, Instant)> {
        let sent = Instant::now();
        let req = CampaignRequest {
            candidate: self.me.to_string(),
            ttl_ms: self.cfg.ttl.as_millis() as u64,
            wait_ms: 2000,
        };
        let name = election_name(&self.cfg.name);
        match bounded(CALL_TIMEOUT, self.coord.campaign(&name, &req)).await {
            Ok(s) if s.elected == Some(true) => Some((s.epoch, sent)),
            _ => None,
        }
    }

    fn hook_env(
        &self,
        epoch: u64,
        event: &str,
    ) -> (Vec<(&'static str, String)>, serde_json::Value) {
        (
            vec![
                ("CONCLAVE_ROLE", self.cfg.name.clone()),
                ("CONCLAVE_ROLE_EPOCH", epoch.to_string()),
                ("CONCLAVE_ROLE_EVENT", event.to_owned()),
                ("CONCLAVE_NODE_ID", self.me.to_string()),
            ],
            serde_json::json!({
                "role": self.cfg.name, "epoch": epoch, "event": event, "node_id": self.me,
            }),
        )
    }

    async fn hold(&mut self, epoch: u64, granted_sent: Instant) -> Released {
        tracing::info!(role = %self.cfg.name, epoch, "role acquired");
        self.advertise("holder", epoch).await;
        if let Some(h) = self.cfg.on_acquire.clone() {
            let (env, body) = self.hook_env(epoch, "acquire");
            let name = format!("role {} acquire", self.cfg.name);
            let (roles, role, shutdown) = (
                self.roles.clone(),
                self.cfg.name.clone(),
                self.shutdown.clone(),
            );
            // Run beside the renewals: a slow hook must not cost the lease.
            self.tasks.spawn(async move {
                let result = hook::run(&h, &name, &env, &body, &shutdown).await;
                roles.update(&role, |s| s.last_acquire = Some(result));
            });
        }
        let ttl = self.cfg.ttl;
        let margin = ttl / 5;
        let mut deadline = granted_sent + ttl - margin;
        let why = loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    self.resign(epoch).await;
                    break Released::Shutdown;
                }
                _ = tokio::time::sleep(ttl / 4) => {}
            }
            if Instant::now() >= deadline {
                break Released::Lost("the lease could not be renewed in time".into());
            }
            let sent = Instant::now();
            let name = election_name(&self.cfg.name);
            let lease = self.lease(epoch);
            match bounded(CALL_TIMEOUT, self.coord.keepalive(&name, &lease)).await {
                Ok(_) => deadline = sent + ttl - margin,
                Err(e) if e.code() == ErrorCode::NotHolder => {
                    break Released::Lost(e.to_string());
                }
                // Unreachable or unavailable: try again until the deadline.
                Err(_) => {}
            }
            if self.watch_for_split_brain(Some(epoch)) {
                break Released::Lost("another node holds a newer epoch (split brain)".into());
            }
            if !self.eligible() {
                self.resign(epoch).await;
                break Released::Resigned("no longer eligible");
            }
            if self.handover_elsewhere(Some(epoch)).await {
                self.resign(epoch).await;
                break Released::Resigned("planned handover");
            }
            if self.cfg.oauth2.is_some() {
                self.refresh_tokens().await;
            }
        };
        match &why {
            Released::Lost(reason) => {
                tracing::warn!(role = %self.cfg.name, epoch, %reason, "role lost")
            }
            Released::Resigned(reason) => {
                tracing::info!(role = %self.cfg.name, epoch, %reason, "role resigned")
            }
            Released::Shutdown => {}
        }
        self.tokens.clear();
        let _ = self.membership.set(&peers_key(&self.cfg.name), "").await;
        self.roles.update(&self.cfg.name, |s| s.peers.clear());
        self.advertise("candidate", 0).await;
        if let Some(h) = &self.cfg.on_release {
            let (env, body) = self.hook_env(epoch, "release");
            let name = format!("role {} release", self.cfg.name);
            // Bounded by the hook's own timeout and attempts; at shutdown it still runs once.
            let result = hook::run(h, &name, &env, &body, &CancellationToken::new()).await;
            self.roles
                .update(&self.cfg.name, |s| s.last_release = Some(result));
        }
        why
    }

    /// Fetch or refresh the token of every enabled peer that has OAuth2 settings.
    async fn refresh_tokens(&mut self) {
        let Some(doc) = self.cfg.oauth2.clone() else {
            return;
        };
        let (kind, name) = doc.split_once('/').unwrap_or((doc.as_str(), ""));
        let peers: Option<RemotePeers> =
            bounded(CALL_TIMEOUT, self.coord.config_get(kind, name, Read::Stale))
                .await
                .ok()
                .and_then(|d| serde_json::from_value(d.content).ok());
        let Some(peers) = peers else {
            self.set_peers(vec![PeerStatus {
                node_id: "-".into(),
                status: "error".into(),
                detail: format!("document {doc} is missing or unreadable"),
                expires_in_s: None,
            }])
            .await;
            return;
        };
        let now = Instant::now();
        let mut statuses = Vec::new();
        for peer in &peers.peers {
            let Some(settings) = peer.oauth2.as_ref() else {
                continue;
            };
            if !peer.enabled {
                statuses.push(PeerStatus {
                    node_id: peer.node_id.clone(),
                    status: "disabled".into(),
                    detail: String::new(),
                    expires_in_s: None,
                });
                continue;
            }
            let due = self
                .tokens
                .get(&peer.node_id)
                .is_none_or(|(_, _, refresh_at)| now >= *refresh_at);
            if due {
                let entry = match oauth2::fetch(&self.http, settings).await {
                    Ok(token) => {
                        let refresh_at = now + token.expires_in.mul_f32(0.8);
                        let status = PeerStatus {
                            node_id: peer.node_id.clone(),
                            status: "ok".into(),
                            detail: String::new(),
                            expires_in_s: Some(token.expires_in.as_secs()),
                        };
                        tracing::info!(role = %self.cfg.name, peer = %peer.node_id, "OAuth2 token fetched");
                        (status, Some(token), refresh_at)
                    }
                    Err(e) => {
                        let detail = e.to_string();
                        tracing::warn!(role = %self.cfg.name, peer = %peer.node_id, %detail, "OAuth2 token not fetched");
                        let status = PeerStatus {
                            node_id: peer.node_id.clone(),
                            status: "error".into(),
                            detail,
                            expires_in_s: None,
                        };
                        (status, None, now + Duration::from_secs(5))
                    }
                };
                self.tokens.insert(peer.node_id.clone(), entry);
            }
            if let Some((status, _, _)) = self.tokens.get(&peer.node_id) {
                statuses.push(status.clone());
            }
        }
        self.set_peers(statuses).await;
    }

    async fn set_peers(&self, peers: Vec<PeerStatus>) {
        let ok = peers.iter().filter(|p| p.status == "ok").count();
        metrics::gauge!("conclave_role_oauth2_peers_ok", "role" => self.cfg.name.clone())
            .set(ok as f64);
        metrics::gauge!("conclave_role_oauth2_peers", "role" => self.cfg.name.clone())
            .set(peers.len() as f64);
        let compact = serde_json::to_string(&peers).unwrap_or_default();
        self.membership
            .set(&peers_key(&self.cfg.name), &compact)
            .await;
        self.roles.update(&self.cfg.name, |s| s.peers = peers);
    }
}
