//! A running sink: follows the member list, writes its file, runs its hook, reports status.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use conclave_membership::View;
use conclave_membership::checks::HealthSummary;
use conclave_membership::view::MemberFilter;
use conclave_types::{HookResult, MemberState, SinkStatus};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::destination::Destination;
use crate::guard::{Decision, Guard, GuardConfig, Surroundings};
use crate::render::{Address, Format, Peer};

/// Where a sink publishes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// A file on this node (`path`, `format`).
    #[default]
    File,
    /// A Kubernetes ConfigMap (`namespace`, `configmap`, `keys`), written by one agent at a
    /// time: the holder of the sink's election.
    ConfigMap,
}

/// One `[[publish]]` table of the agent config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Shown in `/v1/publish/status`; defaults to the file (or ConfigMap) name.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kind: SinkKind,
    /// `file` only: where.
    #[serde(default)]
    pub path: PathBuf,
    /// `file` only: how (default json).
    #[serde(default)]
    pub format: Format,
    /// `configmap` only: the ConfigMap's namespace.
    #[serde(default)]
    pub namespace: String,
    /// `configmap` only: the ConfigMap's name.
    #[serde(default)]
    pub configmap: String,
    /// `configmap` only: which keys it holds (default all three).
    #[serde(default = "all_keys")]
    pub keys: Vec<crate::configmap::ConfigMapKey>,
    /// `configmap` only: a kubeconfig file; default the pod's service account, else the
    /// usual kubeconfig (`KUBECONFIG`, `~/.kube/config`).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// JSON only: rename keys, e.g. `{ role = "nodeType", peer_string = "peerString" }`.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// `env` only: the variable name.
    #[serde(default = "default_env_var")]
    pub env_var: String,
    /// Which address to publish: `api` (default) or `rpc`.
    #[serde(default)]
    pub address: Address,
    /// Only these roles (empty: all).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Only members with all these tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Only healthy members (alive, checks passing). Default true.
    #[serde(default = "yes")]
    pub healthy_only: bool,
    #[serde(default)]
    pub exclude_self: bool,
    #[serde(default = "default_debounce", with = "humantime_serde")]
    pub debounce: Duration,
    /// Shrinking below this many peers (or to none) must last `confirm_after`.
    #[serde(default)]
    pub min_peers: usize,
    #[serde(default = "default_confirm", with = "humantime_serde")]
    pub confirm_after: Duration,
    #[serde(default)]
    pub hook: Option<conclave_hook::HookConfig>,
}

fn all_keys() -> Vec<crate::configmap::ConfigMapKey> {
    crate::configmap::ConfigMapKey::ALL.to_vec()
}

fn default_env_var() -> String {
    "PEERS".into()
}
fn yes() -> bool {
    true
}
fn default_debounce() -> Duration {
    Duration::from_secs(2)
}
fn default_confirm() -> Duration {
    Duration::from_secs(30)
}

impl SinkConfig {
    pub fn display_name(&self) -> String {
        if self.name.is_empty() && self.kind == SinkKind::ConfigMap {
            self.configmap.clone()
        } else if self.name.is_empty() {
            self.path.file_name().map_or_else(
                || self.path.display().to_string(),
                |f| f.to_string_lossy().into(),
            )
        } else {
            self.name.clone()
        }
    }

    pub fn validate(&self) -> Result<(), conclave_types::InvalidSetting> {
        let what = format!("publish sink {:?}", self.display_name());
        let invalid = |problem| Err(conclave_types::InvalidSetting::new(what.clone(), problem));
        match self.kind {
            SinkKind::File => {
                if self.path.as_os_str().is_empty() || self.path.file_name().is_none() {
                    return invalid("path must name a file");
                }
                if !self.namespace.is_empty() || !self.configmap.is_empty() {
                    return invalid(
                        "namespace and configmap are for kind = \"configmap\"; a file sink takes path and format",
                    );
                }
            }
            SinkKind::ConfigMap => {
                if !dns_label(&self.namespace) || !dns_subdomain(&self.configmap) {
                    return invalid(
                        "kind = \"configmap\" needs namespace (a DNS label) and configmap (a DNS subdomain name), e.g. namespace = \"conclave\", configmap = \"conclave-peers\"",
                    );
                }
                if !self.path.as_os_str().is_empty() {
                    return invalid("a configmap sink has no path (it writes the ConfigMap)");
                }
                if self.keys.is_empty() {
                    return invalid(
                        "keys must name at least one of peers.json, peers.txt, peer_count",
                    );
                }
            }
        }
        if let Some(h) = &self.hook {
            if h.exec.is_some() == h.url.is_some() {
                return invalid("a hook needs exactly one of exec or url");
            }
            if h.exec.as_ref().is_some_and(Vec::is_empty) {
                return invalid("hook exec needs a program");
            }
            if h.attempts == 0 {
                return invalid("hook attempts must be at least 1");
            }
        }
        Ok(())
    }

    /// Where it publishes, for status and hooks: the path, or `configmap:NS/NAME`.
    pub fn target(&self) -> String {
        match self.kind {
            SinkKind::File => self.path.display().to_string(),
            SinkKind::ConfigMap => format!("configmap:{}/{}", self.namespace, self.configmap),
        }
    }

    fn filter(&self, self_id: u64) -> MemberFilter {
        MemberFilter {
            roles: self.roles.clone(),
            healthy: self.healthy_only.then_some(true),
            tags: self.tags.clone(),
            // Dead and left members are never peers.
            states: vec![MemberState::Alive, MemberState::Suspect],
            exclude_id: self.exclude_self.then_some(self_id),
        }
    }
}

/// All sinks of this agent; `status()` is `GET /v1/publish/status`. [`Publisher::replace`]
/// changes them while the agent runs (a config reload).
#[derive(Clone, Default)]
pub struct Publisher {
    inner: Arc<Mutex<Sinks>>,
}

#[derive(Default)]
struct Sinks {
    running: Vec<RunningSink>,
    /// What a sink started later follows; `None` for a publisher that publishes nothing.
    inputs: Option<Inputs>,
}

struct RunningSink {
    config: SinkConfig,
    status: Arc<Mutex<SinkStatus>>,
    stop: CancellationToken,
}

#[derive(Clone)]
struct Inputs {
    view: watch::Receiver<View>,
    health: watch::Receiver<HealthSummary>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// How a ConfigMap sink campaigns to be the one writer, and as whom.
    coord: Option<conclave_coord::Coordinator>,
    candidate: String,
}

/// What [`Publisher::replace`] did, by sink name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishChange {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
}

impl PublishChange {
    pub fn is_empty(&self) -> bool {
        self.started.is_empty() && self.stopped.is_empty()
    }
}

impl Publisher {
    /// `coord`: how ConfigMap sinks reach the cluster for their writer's election, as
    /// `candidate` (this agent).
    pub fn spawn(
        configs: Vec<SinkConfig>,
        view: watch::Receiver<View>,
        health: watch::Receiver<HealthSummary>,
        (coord, candidate): (Option<conclave_coord::Coordinator>, String),
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) -> Self {
        let me = Self {
            inner: Arc::new(Mutex::new(Sinks {
                running: Vec::new(),
                inputs: Some(Inputs {
                    view,
                    health,
                    shutdown,
                    tasks: tasks.clone(),
                    coord,
                    candidate,
                }),
            })),
        };
        me.replace(configs);
        me
    }

    /// Publish exactly `configs` from now on. A sink whose table did not change runs on; a
    /// changed one is stopped and started again (it reads what its file holds, so an
    /// unchanged list is not rewritten and its hook does not run again); a removed one
    /// stops and leaves its last file in place.
    pub fn replace(&self, configs: Vec<SinkConfig>) -> PublishChange {
        let mut sinks = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Some(inputs) = sinks.inputs.clone() else {
            return PublishChange::default();
        };
        let mut old: Vec<Option<RunningSink>> = std::mem::take(&mut sinks.running)
            .into_iter()
            .map(Some)
            .collect();
        let mut change = PublishChange::default();
        for cfg in configs {
            let kept = old
                .iter_mut()
                .find(|s| s.as_ref().is_some_and(|s| s.config == cfg))
                .and_then(Option::take);
            let sink = match kept {
                Some(s) => s,
                None => {
                    change.started.push(cfg.display_name());
                    start(cfg, &inputs)
                }
            };
            sinks.running.push(sink);
        }
        for gone in old.into_iter().flatten() {
            gone.stop.cancel();
            change.stopped.push(gone.config.display_name());
        }
        change
    }

    pub fn status(&self) -> Vec<SinkStatus> {
        let sinks = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        sinks
            .running
            .iter()
            .map(|s| s.status.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }
}

fn start(cfg: SinkConfig, inputs: &Inputs) -> RunningSink {
    let status = Arc::new(Mutex::new(SinkStatus {
        name: cfg.display_name(),
        path: cfg.target(),
        format: match cfg.kind {
            SinkKind::File => cfg.format.name().into(),
            SinkKind::ConfigMap => "configmap".into(),
        },
        published_count: 0,
        content_hash: None,
        last_write: None,
        writes: 0,
        held: None,
        last_hook: None,
        hook_failures: 0,
    }));
    let stop = inputs.shutdown.child_token();
    let destination = Destination::new(&cfg, inputs.coord.clone(), inputs.candidate.clone());
    inputs.tasks.spawn(run(
        cfg.clone(),
        inputs.view.clone(),
        inputs.health.clone(),
        status.clone(),
        destination,
        stop.clone(),
    ));
    RunningSink {
        config: cfg,
        status,
        stop,
    }
}

fn surroundings(view: &View) -> Surroundings {
    let raft: Vec<_> = view
        .members
        .iter()
        .filter(|m| m.raft_role.is_some() && m.state == MemberState::Alive)
        .collect();
    let others: Vec<_> = view
        .members
        .iter()
        .filter(|m| m.id != view.self_id && m.state != MemberState::Left)
        .collect();
    let not_alive = others
        .iter()
        .filter(|m| m.state != MemberState::Alive)
        .count();
    Surroundings {
        no_raft_leader: !raft.is_empty()
            && !raft
                .iter()
                .any(|m| m.raft_role.as_deref() == Some("leader")),
        lost_sight: others.len() >= 2 && not_alive * 2 > others.len(),
    }
}

/// A Kubernetes namespace name: an RFC 1123 label.
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A ConfigMap name: an RFC 1123 subdomain.
fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(dns_label)
}

fn hash_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

async fn run(
    cfg: SinkConfig,
    mut view: watch::Receiver<View>,
    mut health: watch::Receiver<HealthSummary>,
    status: Arc<Mutex<SinkStatus>>,
    mut destination: Destination,
    shutdown: CancellationToken,
) {
    let name = cfg.display_name();
    let target = cfg.target();
    let set =
        |f: &dyn Fn(&mut SinkStatus)| f(&mut status.lock().unwrap_or_else(|p| p.into_inner()));
    let hold = |why: String| {
        let changed = status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .held
            .as_deref()
            != Some(why.as_str());
        if changed {
            tracing::warn!(sink = %name, "holding the last publication: {why}");
            metrics::counter!("conclave_publish_holds_total", "sink" => name.clone()).increment(1);
        }
        set(&|s| s.held = Some(why.clone()));
    };
    let tick = Duration::from_millis(250);
    // What was published before: read once it can be (a ConfigMap needs the API).
    let published = loop {
        match destination.published().await {
            Ok(p) => break p,
            Err(why) => hold(why.to_string()),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    };
    if let Some((bytes, count)) = &published {
        set(&|s| {
            s.held = None;
            s.content_hash = Some(hash_hex(bytes));
            s.published_count = *count;
        });
    }
    let mut guard = Guard::new(
        GuardConfig {
            debounce: cfg.debounce,
            min_peers: cfg.min_peers,
            confirm_after: cfg.confirm_after,
        },
        published,
    );
    // A publication whose hook has not run yet (this node was unhealthy, or it failed).
    let mut hook_pending: Option<(String, usize)> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = view.changed() => {}
            _ = health.changed() => {}
            _ = tokio::time::sleep(tick) => {}
        }
        let v = view.borrow().clone();
        let leaving = v
            .members
            .iter()
            .any(|m| m.id == v.self_id && m.state == MemberState::Left);
        if v.members.is_empty() || leaving {
            continue;
        }
        let filter = cfg.filter(v.self_id);
        let mut peers: Vec<Peer> = v
            .members
            .iter()
            .filter(|m| filter.matches(m))
            .filter_map(|m| Peer::from_member(m, cfg.address))
            .collect();
        peers.sort_by_key(|p| p.id);
        let content = destination.render(&peers, &cfg);
        match guard.observe(Instant::now(), &content, peers.len(), surroundings(&v)) {
            Decision::Unchanged | Decision::Settling => set(&|s| s.held = None),
            Decision::Hold(why) => hold(why),
            Decision::Write => {
                let own = match destination.may_write().await {
                    Ok(()) => match destination.write(&content).await {
                        Ok(done) => {
                            tracing::info!(sink = %name, peers = peers.len(), "published peers: {done}");
                            true
                        }
                        Err(e) => {
                            tracing::error!(sink = %name, target = %target, error = %e, "cannot publish; will retry");
                            set(&|s| s.held = Some(format!("write failed: {e}")));
                            continue;
                        }
                    },
                    // Another agent writes; once it has published this list, it is this
                    // agent's publication too (its hook runs, below).
                    Err(_) if destination.holds(&content).await => false,
                    Err(why) => {
                        hold(why.to_string());
                        continue;
                    }
                };
                let hash = hash_hex(&content);
                guard.written(content, peers.len());
                set(&|s| {
                    s.held = None;
                    s.content_hash = Some(hash.clone());
                    s.published_count = peers.len();
                    if own {
                        s.last_write = Some(now_rfc3339());
                        s.writes += 1;
                    }
                });
                if own {
                    metrics::counter!("conclave_publish_writes_total", "sink" => name.clone())
                        .increment(1);
                }
                if cfg.hook.is_some() {
                    hook_pending = Some((hash, peers.len()));
                }
            }
        }
        let healthy = health.borrow().passing();
        if let (Some(hook), Some((hash, count))) = (&cfg.hook, &hook_pending) {
            if !healthy {
                let failing = health.borrow().failing.join(",");
                set(&|s| {
                    s.last_hook = Some(HookResult {
                        at: now_rfc3339(),
                        ok: false,
                        detail: format!(
                            "not run: this node's health checks fail ({failing}); it runs when they pass"
                        ),
                        attempts: 0,
                    })
                });
                continue;
            }
            let env = [
                ("CONCLAVE_PEERS_FILE", target.clone()),
                ("CONCLAVE_PEERS_COUNT", count.to_string()),
                ("CONCLAVE_SINK", name.clone()),
            ];
            let body = serde_json::json!({
                "sink": name, "path": target, "count": count, "hash": hash,
            });
            let result = conclave_hook::run(hook, &name, &env, &body, &shutdown).await;
            if !result.ok {
                tracing::error!(sink = %name, detail = %result.detail, attempts = result.attempts, "reload hook failed");
                metrics::counter!("conclave_publish_hook_failures_total", "sink" => name.clone())
                    .increment(1);
            }
            set(&|s| {
                if !result.ok {
                    s.hook_failures += 1;
                }
                s.last_hook = Some(result.clone());
            });
            hook_pending = None;
        }
    }
    destination.finish().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> SinkConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn a_sink_is_a_file_or_a_configmap_and_says_what_it_lacks() {
        let file = parse("path = \"/run/peers.json\"\nformat = \"lines\"\n");
        assert_eq!(file.kind, SinkKind::File);
        assert!(file.validate().is_ok());
        assert_eq!(file.target(), "/run/peers.json");

        let cm = parse(
            "kind = \"configmap\"\nnamespace = \"conclave\"\nconfigmap = \"conclave-peers\"\n",
        );
        assert!(cm.validate().is_ok());
        assert_eq!(cm.keys, crate::configmap::ConfigMapKey::ALL.to_vec());
        assert_eq!(cm.display_name(), "conclave-peers");
        assert_eq!(cm.target(), "configmap:conclave/conclave-peers");

        for (bad, says) in [
            ("kind = \"configmap\"\nconfigmap = \"p\"\n", "namespace"),
            (
                "kind = \"configmap\"\nnamespace = \"Upper\"\nconfigmap = \"p\"\n",
                "DNS label",
            ),
            (
                "kind = \"configmap\"\nnamespace = \"n\"\nconfigmap = \"p\"\npath = \"/x\"\n",
                "no path",
            ),
            (
                "kind = \"configmap\"\nnamespace = \"n\"\nconfigmap = \"p\"\nkeys = []\n",
                "at least one",
            ),
            ("path = \"/x\"\nnamespace = \"n\"\n", "are for kind"),
            ("format = \"json\"\n", "path must name a file"),
        ] {
            let problem = parse(bad).validate().unwrap_err().to_string();
            assert!(problem.contains(says), "{bad}: {problem}");
        }
        let unknown: Result<SinkConfig, _> =
            toml::from_str("kind = \"configmap\"\nkeys = [\"peers.yaml\"]\n");
        assert!(unknown.is_err());
    }
}
