//! The per-role loop of one agent: campaign while eligible, hold, release.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclave_config::SecretPolicy;
use conclave_coord::{Coordinator, Read, bounded};
use conclave_hook as hook;
use conclave_membership::Membership;
use conclave_types::{CampaignRequest, ElectionStatus, ErrorCode, HookResult, LeaseRequest};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::detector::{self, Claim};
use crate::oauth2::PeerStatus;
use crate::tokens::TokenKeeper;
use crate::{RoleConfig, Stance, claim_key, election_name, live_claims};

/// The longest one call to the coordinator may take (a campaign waits up to 2 s of it).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a resign may take; after it the lease simply runs out.
const RESIGN_TIMEOUT: Duration = Duration::from_secs(3);

/// This agent's view of one of its roles (`/v1/roles/local`).
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
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
    /// Tells the runners to release and stop.
    stop: CancellationToken,
    /// The runners and the hooks they started.
    tasks: TaskTracker,
    /// The longest release among the roles (on_release's grace plus the resign).
    longest_release: Duration,
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

    /// Start a runner per role. They stop when [`Roles::stop`] is called or `shutdown` is
    /// cancelled, releasing what they hold first.
    pub fn spawn(
        roles: Vec<RoleConfig>,
        secrets: Arc<SecretPolicy>,
        node_id: u64,
        coord: Coordinator,
        membership: Membership,
        shutdown: &CancellationToken,
    ) -> Roles {
        let this = Roles {
            stop: shutdown.child_token(),
            longest_release: roles
                .iter()
                .map(|r| r.release_grace + RESIGN_TIMEOUT)
                .max()
                .unwrap_or_default(),
            ..Roles::default()
        };
        for cfg in roles {
            // Exported from the start, so that an alert rule sees 0 rather than nothing.
            metrics::counter!("conclave_role_split_brain_alerts_total", "role" => cfg.name.clone())
                .increment(0);
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
                secrets: secrets.clone(),
                membership: membership.clone(),
                roles: this.clone(),
                shutdown: this.stop.clone(),
                tasks: this.tasks.clone(),
                last_alert: None,
            };
            this.tasks.spawn(runner.run());
        }
        this
    }

    /// Release every role this agent holds (on_release to completion within its grace,
    /// then the resign) and stop the runners. The agent awaits this first on shutdown,
    /// while its HTTP API and node RPC still serve, so the resign reaches the cluster.
    pub async fn stop(&self) {
        self.stop.cancel();
        self.tasks.close();
        let bound = self.longest_release + Duration::from_secs(1);
        if tokio::time::timeout(bound, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?bound,
                "roles did not finish releasing in time; stopping without them"
            );
        }
    }

    pub(crate) fn update(&self, role: &str, f: impl FnOnce(&mut RoleStatus)) {
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
    /// This agent's local rules for secret references (`[secrets]`).
    secrets: Arc<SecretPolicy>,
    membership: Membership,
    roles: Roles,
    shutdown: CancellationToken,
    /// Where hooks and the token keeper run, so that [`Roles::stop`] waits for them.
    tasks: TaskTracker,
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
            if !eligible || self.cut_off() || self.handover_elsewhere(None).await {
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

    /// A node cut off from the other members cannot see their claims, so it must not start
    /// a campaign; a holder keeps its lease through Raft meanwhile (a gossip hiccup is not a
    /// reason to hand the role over).
    fn cut_off(&self) -> bool {
        self.membership.join_problem().is_some()
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
        if let Err(e) = bounded(RESIGN_TIMEOUT, self.coord.resign(&name, &lease)).await {
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

    /// One tenure, from the grant to the release. The lease is renewed by a task of its own
    /// ([`renew`]) whose every call is bounded by a quarter of the ttl, and this loop waits
    /// on nothing but the lease's local deadline and cheap local checks; so whatever the
    /// token endpoint, the API or the network do, the holder starts releasing at
    /// `last renewal sent + ttl - margin`, before the lease can end on the cluster clock.
    async fn hold(&mut self, epoch: u64, granted_sent: Instant) -> Released {
        tracing::info!(role = %self.cfg.name, epoch, "role acquired");
        self.advertise("holder", epoch).await;
        let ttl = self.cfg.ttl;
        let margin = stop_margin(ttl);
        // Ends what runs only while holding: the acquire hook, the token keeper.
        let tenure = CancellationToken::new();
        // Run beside the renewals: a slow hook must not cost the lease. A hook still running
        // when the tenure ends is stopped (SIGTERM, then SIGKILL after the grace) before
        // on_release runs.
        let acquiring = self.cfg.on_acquire.clone().map(|h| {
            let (env, body) = self.hook_env(epoch, "acquire");
            let name = format!("role {} acquire", self.cfg.name);
            let (roles, role, tenure) = (self.roles.clone(), self.cfg.name.clone(), tenure.clone());
            let grace = acquire_stop_grace(ttl, self.cfg.release_grace);
            self.tasks.spawn(async move {
                let result = hook::run_until(&h, &name, &env, &body, &tenure, grace).await;
                roles.update(&role, |s| s.last_acquire = Some(result));
            })
        });
        if let Some(document) = self.cfg.oauth2.clone() {
            let keeper = TokenKeeper::new(
                &self.cfg,
                document,
                self.coord.clone(),
                self.http.clone(),
                self.secrets.clone(),
                self.membership.clone(),
                self.roles.clone(),
            );
            self.tasks.spawn(keeper.run(tenure.clone()));
        }
        let (lease_tx, mut lease) = watch::channel(Lease {
            release_at: granted_sent + ttl - margin,
            lost: None,
            handover: false,
        });
        let renewer = tokio::spawn(renew(
            self.coord.clone(),
            election_name(&self.cfg.name),
            self.lease(epoch),
            ttl,
            lease_tx,
        ));
        let why = loop {
            let release_at = lease.borrow().release_at;
            tokio::select! {
                _ = self.shutdown.cancelled() => break Released::Shutdown,
                _ = tokio::time::sleep_until(release_at.into()) => {
                    break Released::Lost("the lease could not be renewed in time".into());
                }
                changed = lease.changed() => {
                    if changed.is_err() {
                        break Released::Lost("the renewals stopped".into());
                    }
                    let now = lease.borrow().clone();
                    if let Some(reason) = now.lost {
                        break Released::Lost(reason);
                    }
                    if now.handover {
                        break Released::Resigned("planned handover");
                    }
                }
                _ = tokio::time::sleep(CHECK_EVERY) => {
                    if self.watch_for_split_brain(Some(epoch)) {
                        break Released::Lost("another node holds a newer epoch (split brain)".into());
                    }
                    if !self.eligible() {
                        break Released::Resigned("no longer eligible");
                    }
                }
            }
        };
        match &why {
            Released::Lost(reason) => {
                tracing::warn!(role = %self.cfg.name, epoch, %reason, "role lost; releasing")
            }
            Released::Resigned(reason) => {
                tracing::info!(role = %self.cfg.name, epoch, %reason, "releasing the role")
            }
            Released::Shutdown => {
                tracing::info!(role = %self.cfg.name, epoch, "shutting down: releasing the role")
            }
        }
        // Stop before start: first what runs for the tenure, then on_release, and only then
        // the lease, so that no other node can acquire while this one still runs.
        tenure.cancel();
        if let Some(acquiring) = acquiring {
            let _ = acquiring.await;
        }
        let planned = !matches!(why, Released::Lost(_));
        if !planned {
            renewer.abort();
        }
        // Planned: the lease is still renewed while on_release runs. Lost: on_release was
        // started `stop_margin` before the lease can end; it still runs to completion
        // (only it stops the service), and an overrun is reported.
        let lease_end = lease.borrow().release_at + margin;
        self.release_hook(epoch, self.cfg.release_grace).await;
        if !planned && Instant::now() > lease_end {
            tracing::warn!(role = %self.cfg.name, epoch, "on_release finished after the lease could have ended; another node may have started meanwhile (keep on_release under a quarter of the ttl)");
        }
        renewer.abort();
        if planned {
            self.resign(epoch).await;
        }
        self.advertise("candidate", 0).await;
        why
    }

    /// Run `on_release` within `budget`; one that does not finish is stopped and reported,
    /// and the release goes on.
    async fn release_hook(&self, epoch: u64, budget: Duration) {
        let Some(h) = &self.cfg.on_release else {
            return;
        };
        let (env, body) = self.hook_env(epoch, "release");
        let name = format!("role {} release", self.cfg.name);
        let result = hook::run_within(h, &name, &env, &body, budget).await;
        if !result.ok {
            tracing::warn!(role = %self.cfg.name, epoch, detail = %result.detail, "on_release failed; the role is released anyway");
        }
        self.roles
            .update(&self.cfg.name, |s| s.last_release = Some(result));
    }
}

/// How often the holder checks eligibility and the split-brain detector.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// How long before the lease can end the holder starts releasing when it cannot renew: a
/// quarter of the ttl, the time on_release has left in that case.
pub(crate) fn stop_margin(ttl: Duration) -> Duration {
    ttl / 4
}

/// How long an `on_acquire` still running at the end of a tenure may take to exit after
/// SIGTERM: an eighth of the ttl (half the time a lost lease leaves), at most the grace.
fn acquire_stop_grace(ttl: Duration, release_grace: Duration) -> Duration {
    (ttl / 8).min(release_grace)
}

/// What the renewals have learnt about the lease.
#[derive(Debug, Clone)]
struct Lease {
    /// When the holder must start releasing: the send time of the last successful renewal
    /// (or the campaign) plus ttl minus [`stop_margin`].
    release_at: Instant,
    /// The cluster said this node no longer holds it.
    lost: Option<String>,
    /// A handover to another node stands.
    handover: bool,
}

/// Renew the lease every quarter ttl, each call bounded by a quarter ttl, and look for a
/// planned handover; report to the tenure through `lease`. Runs until aborted.
async fn renew(
    coord: Coordinator,
    election: String,
    request: LeaseRequest,
    ttl: Duration,
    lease: watch::Sender<Lease>,
) {
    let every = ttl / 4;
    let margin = stop_margin(ttl);
    loop {
        tokio::time::sleep(every).await;
        let sent = Instant::now();
        match bounded(every, coord.keepalive(&election, &request)).await {
            Ok(_) => lease.send_modify(|l| l.release_at = sent + ttl - margin),
            Err(e) if e.code() == ErrorCode::NotHolder => {
                lease.send_modify(|l| l.lost = Some(e.to_string()));
                return;
            }
            // Unreachable or unavailable: the deadline decides.
            Err(_) => {}
        }
        if let Ok(status) = bounded(every, coord.election(&election, Read::Stale)).await {
            let elsewhere = status
                .handover
                .is_some_and(|h| h.target != request.candidate && h.from_epoch == request.epoch);
            if elsewhere {
                lease.send_modify(|l| l.handover = true);
            }
        }
    }
}
