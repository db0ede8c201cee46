//! Changing a running agent: SIGHUP and `POST /v1/agent/reload` (`conclave reload`) read the
//! configuration again (the same file, environment and flags as at start) and apply what can
//! change live — health checks, publish sinks and their hooks, event handlers, tags, the log
//! level, the TLS files — and report every other setting that differs as needing a restart.
//!
//! Which settings differ is a pure function of the two configurations ([`plan`]), tested
//! without an agent. An invalid configuration changes nothing (the agent runs on with the
//! one it has; SIGHUP logs why, the API answers 422 `invalid_config`). Reloads run one at a
//! time, in the order asked for.

use std::collections::BTreeSet;
use std::sync::Arc;

use conclave_api::agent_reload::{ReloadRefused, ReloadRequest, ReloadRequests};
use conclave_membership::Membership;
use conclave_membership::checks::{Checks, ChecksChange};
use conclave_publish::handlers::Handlers;
use conclave_publish::{PublishChange, Publisher};
use conclave_types::dashboard::AgentSetting;
use conclave_types::reload::{AppliedChange, LiveSetting, ReloadReport};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::tls::Https;
use crate::config::AgentConfig;

/// Reads the agent's configuration again, as it was read at start.
pub type ConfigSource = Arc<dyn Fn() -> anyhow::Result<AgentConfig> + Send + Sync>;

/// Settings that change live, by their top-level key.
const LIVE: [(&str, LiveSetting); 5] = [
    ("check", LiveSetting::Check),
    ("publish", LiveSetting::Publish),
    ("event_handler", LiveSetting::EventHandler),
    ("tags", LiveSetting::Tags),
    ("log_level", LiveSetting::LogLevel),
];

/// Keys that are not settings of the running agent (a report of the load itself).
const NOT_SETTINGS: [&str; 1] = ["ignored_env"];

/// Which settings differ between the running configuration and the one read again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub live: BTreeSet<LiveSetting>,
    /// Top-level keys; secrets by name only.
    pub restart: Vec<String>,
}

/// `config`'s top-level settings by key, as JSON, secrets redacted.
fn top_level(config: &AgentConfig) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(config.redacted()) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

/// Compare `old` (running) with `new` (read again), key by key.
pub fn plan(old: &AgentConfig, new: &AgentConfig) -> Plan {
    let mut out = Plan::default();
    let (a, b) = (top_level(old), top_level(new));
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for key in keys {
        if NOT_SETTINGS.contains(&key.as_str()) || a.get(key) == b.get(key) {
            continue;
        }
        match LIVE.iter().find(|(k, _)| k == key) {
            Some((_, setting)) => {
                out.live.insert(*setting);
            }
            None => out.restart.push(key.clone()),
        }
    }
    // Secrets serialize redacted: compare the values themselves, report the names.
    let mut secret_changed = |name: &str, differs: bool| {
        if differs && !out.restart.iter().any(|k| k == name) {
            out.restart.push(name.to_owned());
        }
    };
    secret_changed("cluster_token", old.cluster_token != new.cluster_token);
    secret_changed("acl", old.acl != new.acl);
    out.restart.sort();
    out
}

/// The settings of `config` as `GET /v1/agent/settings` shows them: each top-level key
/// (secrets redacted) and whether a reload applies it live.
pub fn settings_of(config: &AgentConfig) -> Vec<AgentSetting> {
    top_level(config)
        .into_iter()
        .filter(|(key, _)| !NOT_SETTINGS.contains(&key.as_str()))
        .map(|(key, value)| AgentSetting {
            live: LIVE.iter().any(|(k, _)| *k == key),
            key,
            value,
        })
        .collect()
}

/// What a reload acts on.
pub(super) struct Live {
    pub checks: Checks,
    pub publisher: Publisher,
    pub handlers: Handlers,
    pub membership: Membership,
    pub https: Https,
}

/// Start taking reloads: SIGHUP, and the requests sent to the returned sender (the API's).
/// `running` is the configuration as loaded at start (before listeners on port 0 were given
/// their ports), so an unchanged file shows no difference.
pub(super) fn spawn(
    source: Option<ConfigSource>,
    running: AgentConfig,
    live: Live,
    settings: tokio::sync::watch::Sender<Vec<AgentSetting>>,
    shutdown: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> Option<ReloadRequests> {
    let source = source?;
    let (tx, mut requests) = mpsc::channel::<ReloadRequest>(4);
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload with `conclave reload`");
            None
        }
    };
    tasks.spawn(async move {
        let mut running = running;
        loop {
            let answer = tokio::select! {
                _ = shutdown.cancelled() => return,
                Some(()) = async { hangup.as_mut()?.recv().await } => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    None
                }
                request = requests.recv() => match request {
                    Some(r) => Some(r),
                    None => return,
                },
            };
            let outcome = reload(&source, &mut running, &live).await;
            settings.send_replace(settings_of(&running));
            match &outcome {
                Ok(report) => tracing::info!(
                    applied = ?report.applied.iter().map(|a| a.setting.key()).collect::<Vec<_>>(),
                    needs_restart = ?report.needs_restart,
                    "configuration reloaded"
                ),
                Err(e) => tracing::error!(
                    error = %e,
                    "the configuration read again is invalid; nothing changed"
                ),
            }
            if let Some(answer) = answer {
                let _ = answer.send(outcome);
            }
        }
    });
    Some(tx)
}

/// Read the configuration again and apply it; `running` becomes what is now in effect.
async fn reload(
    source: &ConfigSource,
    running: &mut AgentConfig,
    live: &Live,
) -> Result<ReloadReport, ReloadRefused> {
    // The TLS files are read again whatever the configuration holds (SIGHUP always did).
    let tls = live.https.reload_files().await;
    let source = source.clone();
    let new = tokio::task::spawn_blocking(move || source())
        .await
        .map_err(|e| ReloadRefused::Invalid(format!("reading the configuration failed: {e}")))?
        .map_err(|e| ReloadRefused::Invalid(format!("{e:#}")))?;
    let plan = plan(running, &new);
    let mut report = ReloadReport {
        applied: Vec::new(),
        needs_restart: plan.restart.clone(),
    };
    let mut applied = |setting, detail: String| {
        report.applied.push(AppliedChange { setting, detail });
    };
    for setting in &plan.live {
        match setting {
            LiveSetting::LogLevel => {
                crate::logging::set_level(&new.log_level)
                    .map_err(|e| ReloadRefused::Invalid(e.to_string()))?;
                running.log_level = new.log_level.clone();
                applied(*setting, format!("now {:?}", new.log_level));
            }
            LiveSetting::Tags => {
                live.membership.set_tags(&new.tags.0).await;
                running.tags = new.tags.clone();
                let keys: Vec<&str> = new.tags.0.keys().map(String::as_str).collect();
                applied(*setting, format!("now {}", or_none(&keys.join(", "))));
            }
            LiveSetting::Check => {
                let change = live.checks.replace(new.check.clone());
                running.check = new.check.clone();
                applied(*setting, describe_checks(&change));
            }
            LiveSetting::Publish => {
                let change = live.publisher.replace(new.publish.clone());
                running.publish = new.publish.clone();
                applied(*setting, describe_sinks(&change));
            }
            LiveSetting::EventHandler => {
                live.handlers
                    .replace(new.event_handler.clone())
                    .map_err(|e| ReloadRefused::Invalid(e.to_string()))?;
                running.event_handler = new.event_handler.clone();
                applied(
                    *setting,
                    format!("{} handler(s) now", new.event_handler.len()),
                );
            }
            LiveSetting::TlsFiles => {}
        }
    }
    if let Some(detail) = tls {
        applied(LiveSetting::TlsFiles, detail);
    }
    Ok(report)
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "none" } else { s }
}

fn describe_checks(c: &ChecksChange) -> String {
    let mut parts = Vec::new();
    for (what, names) in [
        ("added", &c.added),
        ("changed", &c.changed),
        ("removed", &c.removed),
    ] {
        if !names.is_empty() {
            parts.push(format!("{what} {}", names.join(", ")));
        }
    }
    joined(parts)
}

/// The parts of a change, or what an empty change means (a table moved in the file).
fn joined(parts: Vec<String>) -> String {
    if parts.is_empty() {
        "reordered only".into()
    } else {
        parts.join("; ")
    }
}

fn describe_sinks(c: &PublishChange) -> String {
    // A sink whose table changed is stopped and started under the same name.
    let changed: Vec<String> = c
        .started
        .iter()
        .filter(|n| c.stopped.contains(n))
        .cloned()
        .collect();
    let only = |names: &[String]| -> Vec<String> {
        names
            .iter()
            .filter(|n| !changed.contains(n))
            .cloned()
            .collect()
    };
    let mut parts = Vec::new();
    for (what, names) in [
        ("started", only(&c.started)),
        ("changed", changed.clone()),
        ("stopped", only(&c.stopped)),
    ] {
        if !names.is_empty() {
            parts.push(format!("{what} {}", names.join(", ")));
        }
    }
    joined(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identical_configuration_changes_nothing() {
        let c = AgentConfig::default();
        assert_eq!(plan(&c, &c.clone()), Plan::default());
        let mut warned = c.clone();
        warned.ignored_env = vec!["CONCLAVE_TYPO is not a setting".into()];
        assert_eq!(plan(&c, &warned), Plan::default());
    }

    #[test]
    fn live_settings_and_restart_settings_are_told_apart() {
        let old = AgentConfig::default();
        let mut new = old.clone();
        new.log_level = "debug".into();
        new.tags.0.insert("zone".into(), "b".into());
        new.raft.heartbeat_ms += 1;
        new.http_addr = "127.0.0.1:9".parse().unwrap();
        let p = plan(&old, &new);
        assert_eq!(
            p.live,
            BTreeSet::from([LiveSetting::LogLevel, LiveSetting::Tags])
        );
        assert_eq!(p.restart, vec!["http_addr".to_string(), "raft".into()]);
    }

    #[test]
    fn settings_say_which_apply_live_and_show_no_secret() {
        let c = AgentConfig {
            cluster_token: Some(conclave_types::Secret::new("s3cret-token")),
            ..AgentConfig::default()
        };
        let settings = settings_of(&c);
        let live = |key: &str| settings.iter().find(|s| s.key == key).map(|s| s.live);
        assert_eq!(live("check"), Some(true));
        assert_eq!(live("log_level"), Some(true));
        assert_eq!(live("raft"), Some(false));
        assert_eq!(live("ignored_env"), None);
        let shown = serde_json::to_string(&settings).unwrap();
        assert!(!shown.contains("s3cret-token"), "{shown}");
    }

    #[test]
    fn a_sink_whose_table_changed_is_reported_as_changed() {
        let change = PublishChange {
            started: vec!["peers.json".into(), "new.txt".into()],
            stopped: vec!["peers.json".into(), "old.txt".into()],
        };
        assert_eq!(
            describe_sinks(&change),
            "started new.txt; changed peers.json; stopped old.txt"
        );
        assert_eq!(describe_sinks(&PublishChange::default()), "reordered only");
    }

    /// A changed secret is reported by name, though it serializes redacted.
    #[test]
    fn a_changed_secret_needs_a_restart_and_is_named_only() {
        let old = AgentConfig {
            cluster_token: Some(conclave_types::Secret::new("first-token-value")),
            ..AgentConfig::default()
        };
        let mut new = old.clone();
        new.cluster_token = Some(conclave_types::Secret::new("second-token-value"));
        new.acl.agent_token = Some(conclave_types::Secret::new("agent-secret"));
        let p = plan(&old, &new);
        assert_eq!(p.restart, vec!["acl".to_string(), "cluster_token".into()]);
        assert!(p.live.is_empty());
        let shown = format!("{p:?}");
        assert!(!shown.contains("token-value") && !shown.contains("agent-secret"));
    }
}
