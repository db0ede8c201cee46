//! A running sink: follows the member list, writes its file, runs its hook, reports status.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
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

use crate::guard::{Decision, Guard, GuardConfig, Surroundings};
use crate::render::{Address, Format, Peer, render};

/// One `[[publish]]` table of the agent config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Shown in `/v1/publish/status`; defaults to the file name.
    #[serde(default)]
    pub name: String,
    pub path: PathBuf,
    pub format: Format,
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
        if self.name.is_empty() {
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
        if self.path.as_os_str().is_empty() || self.path.file_name().is_none() {
            return invalid("path must name a file");
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
    pub fn spawn(
        configs: Vec<SinkConfig>,
        view: watch::Receiver<View>,
        health: watch::Receiver<HealthSummary>,
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
        path: cfg.path.display().to_string(),
        format: cfg.format.name().into(),
        published_count: 0,
        content_hash: None,
        last_write: None,
        writes: 0,
        held: None,
        last_hook: None,
        hook_failures: 0,
    }));
    let stop = inputs.shutdown.child_token();
    inputs.tasks.spawn(run(
        cfg.clone(),
        inputs.view.clone(),
        inputs.health.clone(),
        status.clone(),
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

/// The file's current content and the count it holds, when it was written by a sink of the
/// same format (so a restart does not rewrite an identical file).
fn existing(path: &Path, format: Format) -> Option<(Vec<u8>, usize)> {
    let bytes = std::fs::read(path).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let count = match format {
        Format::Json => serde_json::from_str::<Vec<serde_json::Value>>(text)
            .ok()?
            .len(),
        Format::Lines => text.lines().filter(|l| !l.trim().is_empty()).count(),
        Format::Count => text.trim().parse().ok()?,
        Format::Env => {
            let (_, list) = text.trim().split_once('=')?;
            list.split(',').filter(|p| !p.is_empty()).count()
        }
    };
    Some((bytes, count))
}

/// Write atomically: temp file in the same directory, fsync, rename, fsync the directory.
/// The temp file gets a fresh random name and is created exclusively (`O_EXCL`), so a file
/// or symlink planted at a predictable name is never written through.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    // Other processes read what is published (a service's peer list).
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

async fn run(
    cfg: SinkConfig,
    mut view: watch::Receiver<View>,
    mut health: watch::Receiver<HealthSummary>,
    status: Arc<Mutex<SinkStatus>>,
    shutdown: CancellationToken,
) {
    let name = cfg.display_name();
    let mut guard = Guard::new(
        GuardConfig {
            debounce: cfg.debounce,
            min_peers: cfg.min_peers,
            confirm_after: cfg.confirm_after,
        },
        existing(&cfg.path, cfg.format),
    );
    let set =
        |f: &dyn Fn(&mut SinkStatus)| f(&mut status.lock().unwrap_or_else(|p| p.into_inner()));
    if let Some((bytes, count)) = existing(&cfg.path, cfg.format) {
        set(&|s| {
            s.content_hash = Some(hash_hex(&bytes));
            s.published_count = count;
        });
    }
    // A publication whose hook has not run yet (this node was unhealthy, or it failed).
    let mut hook_pending: Option<(String, usize)> = None;
    let tick = Duration::from_millis(250);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
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
        let content = render(&peers, cfg.format, &cfg.fields, &cfg.env_var);
        match guard.observe(Instant::now(), &content, peers.len(), surroundings(&v)) {
            Decision::Unchanged | Decision::Settling => set(&|s| s.held = None),
            Decision::Hold(why) => {
                let changed = status
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .held
                    .as_deref()
                    != Some(why.as_str());
                if changed {
                    tracing::warn!(sink = %name, "holding the last publication: {why}");
                }
                set(&|s| s.held = Some(why.clone()));
            }
            Decision::Write => match write_atomically(&cfg.path, &content) {
                Ok(()) => {
                    let hash = hash_hex(&content);
                    tracing::info!(sink = %name, peers = peers.len(), path = %cfg.path.display(), "published peers");
                    guard.written(content, peers.len());
                    set(&|s| {
                        s.held = None;
                        s.content_hash = Some(hash.clone());
                        s.last_write = Some(now_rfc3339());
                        s.writes += 1;
                        s.published_count = peers.len();
                    });
                    if cfg.hook.is_some() {
                        hook_pending = Some((hash, peers.len()));
                    }
                }
                Err(e) => {
                    tracing::error!(sink = %name, path = %cfg.path.display(), error = %e, "cannot write the peers file; will retry");
                    set(&|s| s.held = Some(format!("write failed: {e}")));
                }
            },
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
                ("CONCLAVE_PEERS_FILE", cfg.path.display().to_string()),
                ("CONCLAVE_PEERS_COUNT", count.to_string()),
                ("CONCLAVE_SINK", name.clone()),
            ];
            let body = serde_json::json!({
                "sink": name, "path": cfg.path, "count": count, "hash": hash,
            });
            let result = conclave_hook::run(hook, &name, &env, &body, &shutdown).await;
            if !result.ok {
                tracing::error!(sink = %name, detail = %result.detail, attempts = result.attempts, "reload hook failed");
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/peers.txt");
        write_atomically(&path, b"a:1\n").unwrap();
        write_atomically(&path, b"a:1\nb:2\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"a:1\nb:2\n");
        assert_eq!(existing(&path, Format::Lines).map(|e| e.1), Some(2));
        // No temp files are left behind.
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1
        );
    }

    #[test]
    fn a_planted_symlink_at_the_old_temp_name_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let path = dir.path().join("peers.txt");
        // The name the temp file used to have, and a few guesses around it.
        for name in [
            format!(".peers.txt.tmp-{}", std::process::id()),
            ".peers.txt.tmp".to_string(),
        ] {
            std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
        }
        write_atomically(&path, b"a:1\n").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&path).unwrap(), b"a:1\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "readers of the published file can read it");
    }
}
