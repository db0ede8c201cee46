//! Health checks declared in the agent's config: HTTP, TCP connect, exec.
//!
//! Each check runs on its own interval with a timeout. Its status follows its first result,
//! then changes only after `rise` consecutive successes (to passing) or `fall` consecutive
//! failures (to failing), so a check that flaps inside its thresholds changes nothing. The
//! node's summary (which checks fail) is advertised through gossip and gates reload hooks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conclave_types::InvalidSetting;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One `[[check]]` table of the agent config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// Shown in `/v1/members` when failing.
    pub name: String,
    /// GET this URL; passes on 2xx (and `body_contains`, if set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// Connect to this host:port; passes when the connection opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    /// Run this program with these arguments (no shell); passes on exit status 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Vec<String>>,
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive successes to turn passing.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// For `exec`: more of the agent's environment variables the program gets, by name
    /// (it gets only `PATH`, `HOME`, `LANG` and the like otherwise; never `CONCLAVE_*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_passthrough: Vec<String>,
    /// Consecutive failures to turn failing.
    #[serde(default = "default_fall")]
    pub fall: u32,
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}

impl CheckConfig {
    /// Problems an operator must fix, naming the check.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let what = format!("check {:?}", self.name);
        let kinds = [self.http.is_some(), self.tcp.is_some(), self.exec.is_some()]
            .iter()
            .filter(|k| **k)
            .count();
        if kinds != 1 {
            return Err(InvalidSetting::new(
                what,
                "must have exactly one of http, tcp or exec",
            ));
        }
        if self.name.is_empty() || self.name.contains(',') {
            return Err(InvalidSetting::new(
                what,
                "the name must be non-empty and contain no comma",
            ));
        }
        if self.exec.as_ref().is_some_and(Vec::is_empty) {
            return Err(InvalidSetting::new(
                what,
                "exec needs a program, e.g. exec = [\"/usr/bin/test\", \"-f\", \"/ready\"]",
            ));
        }
        if self.rise == 0 || self.fall == 0 || self.interval.is_zero() || self.timeout.is_zero() {
            return Err(InvalidSetting::new(
                what,
                "rise, fall, interval and timeout must be above zero",
            ));
        }
        Ok(())
    }
}

/// Which checks fail right now, and how many have not reported yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthSummary {
    pub failing: Vec<String>,
    /// Checks without a first result yet: the node is not known to be healthy until they
    /// report (a reload hook must not run on a node whose checks have not run).
    pub pending: usize,
}

impl HealthSummary {
    pub fn passing(&self) -> bool {
        self.failing.is_empty() && self.pending == 0
    }
}

/// Hysteresis of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckState {
    pub passing: Option<bool>,
    streak: u32,
    last: Option<bool>,
}

impl CheckState {
    pub const fn new() -> Self {
        Self {
            passing: None,
            streak: 0,
            last: None,
        }
    }

    /// Record one result; returns whether the status changed.
    pub fn record(&mut self, ok: bool, rise: u32, fall: u32) -> bool {
        self.streak = if self.last == Some(ok) {
            self.streak + 1
        } else {
            1
        };
        self.last = Some(ok);
        let before = self.passing;
        self.passing = match self.passing {
            None => Some(ok),
            Some(true) if !ok && self.streak >= fall => Some(false),
            Some(false) if ok && self.streak >= rise => Some(true),
            p => p,
        };
        self.passing != before
    }
}

impl Default for CheckState {
    fn default() -> Self {
        Self::new()
    }
}

/// The running checks of this agent, changed while it runs by [`Checks::replace`] (a config
/// reload). One summary follows all of them; a check whose table did not change keeps
/// running with its state, so a reload does not send a healthy node back to "pending".
#[derive(Clone)]
pub struct Checks {
    inner: Arc<Mutex<Running>>,
    tx: Arc<watch::Sender<HealthSummary>>,
    shutdown: CancellationToken,
}

#[derive(Default)]
struct Running {
    /// By name: the table each runs and what stops it.
    checks: BTreeMap<String, (CheckConfig, CancellationToken)>,
    /// Each check's status once it has one.
    status: BTreeMap<String, bool>,
}

impl Running {
    fn summary(&self) -> HealthSummary {
        HealthSummary {
            failing: self
                .status
                .iter()
                .filter(|(_, p)| !**p)
                .map(|(n, _)| n.clone())
                .collect(),
            pending: self
                .checks
                .keys()
                .filter(|n| !self.status.contains_key(*n))
                .count(),
        }
    }
}

/// What [`Checks::replace`] changed, by check name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChecksChange {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl ChecksChange {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

impl Checks {
    /// Run every check until `shutdown`; the summary changes only when a status changes.
    pub fn spawn(
        checks: Vec<CheckConfig>,
        shutdown: CancellationToken,
    ) -> (Self, watch::Receiver<HealthSummary>) {
        let (tx, rx) = watch::channel(HealthSummary {
            failing: Vec::new(),
            pending: checks.len(),
        });
        let me = Self {
            inner: Arc::default(),
            tx: Arc::new(tx),
            shutdown,
        };
        me.replace(checks);
        (me, rx)
    }

    /// Run exactly `checks` from now on: new and changed tables start afresh (a changed
    /// one is pending until its first result), removed ones stop, the others run on.
    pub fn replace(&self, checks: Vec<CheckConfig>) -> ChecksChange {
        let mut change = ChecksChange::default();
        let mut running = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let wanted: BTreeMap<String, CheckConfig> =
            checks.into_iter().map(|c| (c.name.clone(), c)).collect();
        let gone: Vec<String> = running
            .checks
            .keys()
            .filter(|n| !wanted.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            if let Some((_, stop)) = running.checks.remove(&name) {
                stop.cancel();
            }
            running.status.remove(&name);
            change.removed.push(name);
        }
        for (name, check) in wanted {
            match running.checks.get(&name) {
                Some((old, _)) if *old == check => continue,
                Some((_, stop)) => {
                    stop.cancel();
                    running.status.remove(&name);
                    change.changed.push(name.clone());
                }
                None => change.added.push(name.clone()),
            }
            let stop = self.shutdown.child_token();
            running.checks.insert(name, (check.clone(), stop.clone()));
            tokio::spawn(run_check(check, self.clone(), stop));
        }
        self.tx.send_replace(running.summary());
        change
    }

    /// Record a check's new status, unless it was replaced meanwhile (`stop` cancelled).
    fn record(&self, name: &str, passing: bool, stop: &CancellationToken) {
        let mut running = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if stop.is_cancelled() {
            return;
        }
        running.status.insert(name.to_owned(), passing);
        self.tx.send_replace(running.summary());
    }
}

async fn run_check(check: CheckConfig, checks: Checks, stop: CancellationToken) {
    let client = reqwest::Client::builder()
        .timeout(check.timeout)
        .build()
        .unwrap_or_default();
    let mut state = CheckState::new();
    loop {
        let ok = tokio::select! {
            _ = stop.cancelled() => return,
            ok = run_once(&check, &client) => ok,
        };
        if state.record(ok.is_ok(), check.rise, check.fall) {
            let passing = state.passing == Some(true);
            match &ok {
                Ok(()) => tracing::info!(check = %check.name, "health check passes"),
                Err(why) => tracing::warn!(check = %check.name, %why, "health check fails"),
            }
            checks.record(&check.name, passing, &stop);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(check.interval) => {}
        }
    }
}

/// Why one run of a check failed (its text is the check's reported detail).
#[derive(Debug, thiserror::Error)]
enum CheckFailure {
    #[error("GET {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("GET {url} answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("GET {url}: the body does not contain {want:?}")]
    Body { url: String, want: String },
    #[error("connect {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("exec is empty")]
    EmptyExec,
    #[error("run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} exited with {status}")]
    Exited {
        program: String,
        status: std::process::ExitStatus,
    },
    #[error("no check kind")]
    NoKind,
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
}

async fn run_once(check: &CheckConfig, client: &reqwest::Client) -> Result<(), CheckFailure> {
    let work = async {
        if let Some(url) = &check.http {
            let http = |e: reqwest::Error| CheckFailure::Http {
                url: url.clone(),
                source: e.without_url(),
            };
            let resp = client.get(url).send().await.map_err(http)?;
            let status = resp.status();
            if !status.is_success() {
                return Err(CheckFailure::Status {
                    url: url.clone(),
                    status,
                });
            }
            if let Some(want) = &check.body_contains {
                let body = resp.text().await.map_err(http)?;
                if !body.contains(want.as_str()) {
                    return Err(CheckFailure::Body {
                        url: url.clone(),
                        want: want.clone(),
                    });
                }
            }
            Ok(())
        } else if let Some(addr) = &check.tcp {
            tokio::net::TcpStream::connect(addr)
                .await
                .map(drop)
                .map_err(|source| CheckFailure::Connect {
                    addr: addr.clone(),
                    source,
                })
        } else if let Some(argv) = &check.exec {
            let (program, args) = argv.split_first().ok_or(CheckFailure::EmptyExec)?;
            let status = tokio::process::Command::new(program)
                .args(args)
                .env_clear()
                .envs(conclave_hook::child_env(&check.env_passthrough))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .map_err(|source| CheckFailure::Spawn {
                    program: program.clone(),
                    source,
                })?;
            if status.success() {
                Ok(())
            } else {
                Err(CheckFailure::Exited {
                    program: program.clone(),
                    status,
                })
            }
        } else {
            Err(CheckFailure::NoKind)
        }
    };
    match tokio::time::timeout(check.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(CheckFailure::TimedOut(check.timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flapping_inside_the_thresholds_changes_nothing() {
        let mut s = CheckState::new();
        assert!(s.record(true, 2, 3));
        for ok in [false, true, false, false, true, false, true] {
            assert!(!s.record(ok, 2, 3), "changed on {ok}");
        }
        assert_eq!(s.passing, Some(true));
        assert!(!s.record(false, 2, 3));
        assert!(!s.record(false, 2, 3));
        assert!(s.record(false, 2, 3), "three failures in a row fail it");
        assert!(!s.record(true, 2, 3));
        assert!(s.record(true, 2, 3), "two successes in a row pass it");
    }

    #[test]
    fn a_check_needs_exactly_one_kind() {
        let mut c: CheckConfig = toml_like("api");
        assert!(c.validate().is_err());
        c.tcp = Some("127.0.0.1:1".into());
        assert!(c.validate().is_ok());
        c.http = Some("http://x".into());
        assert!(c.validate().unwrap_err().problem.contains("exactly one"));
    }

    /// An exec check sees only what a program needs and what it was given by name: the
    /// agent's environment (the cluster token, referenced secrets) stays out. The test
    /// process has CARGO_* variables; only the one passed through may be seen.
    #[tokio::test]
    async fn an_exec_check_gets_a_cleared_environment() {
        assert!(
            std::env::var("CARGO_PKG_NAME").is_ok() && std::env::var("CARGO_PKG_VERSION").is_ok()
        );
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::new();
        let script = |cond: &str| CheckConfig {
            exec: Some(vec!["sh".into(), "-c".into(), cond.into()]),
            env_passthrough: vec!["CARGO_PKG_VERSION".into()],
            ..toml_like("env")
        };
        let hidden = script(r#"test -z "$CARGO_PKG_NAME" && test -n "$PATH""#);
        assert!(run_once(&hidden, &client).await.is_ok());
        let passed = script(r#"test -n "$CARGO_PKG_VERSION""#);
        assert!(run_once(&passed, &client).await.is_ok());
    }

    /// A reload keeps an unchanged check's status, restarts a changed one (pending until it
    /// reports again) and forgets a removed one.
    #[tokio::test]
    async fn replacing_checks_keeps_the_unchanged_ones_and_their_status() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let exec = |name: &str, program: &str| CheckConfig {
            exec: Some(vec![program.into()]),
            interval: Duration::from_millis(20),
            ..toml_like(name)
        };
        let stop = CancellationToken::new();
        let (checks, mut rx) =
            Checks::spawn(vec![exec("ok", "true"), exec("bad", "false")], stop.clone());
        let settled = |rx: &mut watch::Receiver<HealthSummary>| {
            let mut rx = rx.clone();
            async move {
                tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|s| s.pending == 0))
                    .await
                    .expect("checks report")
                    .expect("sender alive")
                    .clone()
            }
        };
        assert_eq!(settled(&mut rx).await.failing, vec!["bad".to_string()]);
        let change = checks.replace(vec![
            exec("ok", "true"),
            exec("bad", "true"),
            exec("new", "false"),
        ]);
        assert_eq!(
            change,
            ChecksChange {
                added: vec!["new".into()],
                changed: vec!["bad".into()],
                removed: vec![],
            }
        );
        assert_eq!(rx.borrow_and_update().pending, 2, "ok keeps its status");
        assert_eq!(settled(&mut rx).await.failing, vec!["new".to_string()]);
        let change = checks.replace(vec![exec("ok", "true")]);
        assert_eq!(change.removed, vec!["bad".to_string(), "new".to_string()]);
        assert!(rx.borrow().passing());
        assert!(checks.replace(vec![exec("ok", "true")]).is_empty());
        stop.cancel();
    }

    fn toml_like(name: &str) -> CheckConfig {
        CheckConfig {
            name: name.into(),
            http: None,
            body_contains: None,
            tcp: None,
            exec: None,
            interval: default_interval(),
            timeout: default_timeout(),
            rise: 2,
            fall: 3,
            env_passthrough: Vec::new(),
        }
    }
}
