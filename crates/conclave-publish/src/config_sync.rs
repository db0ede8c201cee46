//! Configuration sync: this node renders the configuration documents it subscribes to,
//! records what it has *applied*, and advertises that over gossip, so the cluster can tell
//! who runs which revision (drift).
//!
//! Why through the agent's own HTTP API: every agent, Raft member or client, serves the same
//! `/v1/config` and `/v1/watch` (clients forward them), so one code path follows the registry
//! everywhere. The sync lists the documents once, then watches `_conclave/config/` from the
//! listing's revision; a watch refused with 410 (history compacted) lists again.
//!
//! A document is *applied* once its file is written (atomically) and the `on_change` hook,
//! if any, succeeded. The ledger of applied documents is kept in `<dir>/.applied.json`, so a
//! restart does not rewrite or re-run anything for documents that did not change. Every few
//! seconds the rendered files are hashed again: a file changed by hand is advertised as
//! `modified` until the next revision replaces it (or the file is restored).
//!
//! Gossip keys: `cfg-subscribe` (the patterns), `cfg:<kind>/<name>` = `<revision> <hash> <status>`
//! with status `ok`, `modified` or `error`, and `setting:<name>` for each `must_match` setting.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use conclave_config::content_hash as sha256_hex;

use conclave_membership::Membership;
use conclave_types::{ErrorCode, WatchEvent};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use conclave_coord::{CoordError, Coordinator, Read};
use conclave_hook::{self as hook, HookConfig};
use futures::StreamExt;

pub use conclave_membership::view::keys::{
    CONFIG_APPLIED_PREFIX as APPLIED_PREFIX, CONFIG_SUBSCRIBE as SUBSCRIBE_KEY, SETTING_PREFIX,
};
const WATCH_PREFIX: &str = "_conclave/config/";
const LEDGER: &str = ".applied.json";
/// The longest a listing or a document read may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// `[config_sync]` of the agent config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigSyncConfig {
    /// Documents to apply, as `kind/name` patterns (`*` matches a whole part):
    /// `["*"]` (all), `["remote-peers/*"]`; empty turns the sync off.
    #[serde(deserialize_with = "list_or_csv")]
    pub documents: Vec<String>,
    /// Where rendered files go (`<dir>/<kind>/<name>.json`); default `<data_dir>/config`.
    pub dir: Option<PathBuf>,
    /// Run after a document's file changed; the document is applied once it succeeds.
    pub on_change: Option<HookConfig>,
    /// A node that has not applied the committed revision for this long counts as drifted.
    #[serde(with = "humantime_serde")]
    pub drift_after: Duration,
    /// Settings of this agent's configuration (dotted paths such as `raft.heartbeat_ms`)
    /// that must be equal on every node; `GET /v1/config/status` reports mismatches.
    #[serde(deserialize_with = "list_or_csv")]
    pub must_match: Vec<String>,
}

/// A TOML array, or one comma-separated string (environment variables, flags).
fn list_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Many(Vec<String>),
        One(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::Many(v) => v,
        Either::One(s) => s
            .split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect(),
    })
}

impl Default for ConfigSyncConfig {
    fn default() -> Self {
        Self {
            documents: vec!["*".into()],
            dir: None,
            on_change: None,
            drift_after: Duration::from_secs(10),
            must_match: Vec::new(),
        }
    }
}

/// Whether `kind/name` matches one of `patterns`. A kind or name that breaks the naming
/// rules never matches, whatever the registry holds: its file, `<dir>/<kind>/<name>.json`,
/// could lie outside the directory (`..`, an absolute path).
pub fn subscribed(patterns: &[String], kind: &str, name: &str) -> bool {
    if !safe_name(kind, name) {
        return false;
    }
    patterns.iter().any(|p| {
        if p == "*" {
            return true;
        }
        let (pk, pn) = p.split_once('/').unwrap_or((p.as_str(), "*"));
        (pk == "*" || pk == kind) && (pn == "*" || pn == name)
    })
}

/// `kind/name` follows the naming rules, so its file stays inside the config directory.
fn safe_name(kind: &str, name: &str) -> bool {
    conclave_config::kinds::check_kind_name(kind).is_ok()
        && conclave_config::kinds::check_doc_name(name).is_ok()
}

/// One document as this node applied it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppliedDoc {
    pub revision: u64,
    /// Content hash (the registry's).
    pub hash: String,
    /// Hash of the rendered file's bytes.
    pub file_hash: String,
}

#[derive(Default, Serialize, Deserialize)]
struct Ledger {
    /// The registry revision the sync has followed up to.
    revision: u64,
    applied: BTreeMap<String, AppliedDoc>,
}

/// The configuration sync of this agent.
pub struct ConfigSync;

impl ConfigSync {
    /// Start following the registry through the API at `api` (`http://host:port`), unless
    /// `config.documents` is empty. `settings` are the `must_match` values to advertise.
    pub fn spawn(
        config: ConfigSyncConfig,
        dir: PathBuf,
        coord: Coordinator,
        membership: Membership,
        settings: BTreeMap<String, String>,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) {
        if config.documents.is_empty() {
            return;
        }
        let runner = Runner {
            config,
            dir,
            coord,
            membership,
            ledger: Ledger::default(),
            failed: BTreeMap::new(),
            modified: BTreeSet::new(),
            shutdown,
        };
        tasks.spawn(runner.run(settings));
    }
}

struct Runner {
    config: ConfigSyncConfig,
    dir: PathBuf,
    /// How this agent reaches the registry (its own node, or a member for a client agent).
    coord: Coordinator,
    membership: Membership,
    ledger: Ledger,
    /// Documents whose apply failed: their content, retried on the next tick.
    failed: BTreeMap<String, (u64, Vec<u8>)>,
    /// Applied documents whose rendered file no longer matches what was written.
    modified: BTreeSet<String>,
    shutdown: CancellationToken,
}

/// The file a document is rendered to: pretty JSON with sorted keys and a final newline.
fn render(content: &[u8]) -> Vec<u8> {
    let value: serde_json::Value = serde_json::from_slice(content).unwrap_or_default();
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text.into_bytes()
}

enum WatchEnd {
    /// History was compacted: list again.
    Relist,
    /// The connection ended or failed: reconnect.
    Reconnect,
    Shutdown,
}

impl Runner {
    fn file_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn load_ledger(&mut self) {
        if let Ok(bytes) = std::fs::read(self.dir.join(LEDGER))
            && let Ok(ledger) = serde_json::from_slice::<Ledger>(&bytes)
        {
            self.ledger = ledger;
        }
    }

    fn save_ledger(&self) {
        let bytes = serde_json::to_vec_pretty(&self.ledger).unwrap_or_default();
        if let Err(e) = crate::file::write_atomically(&self.dir.join(LEDGER), &bytes) {
            tracing::warn!(error = %e, "cannot save the applied-config ledger");
        }
    }

    async fn run(mut self, settings: BTreeMap<String, String>) {
        self.load_ledger();
        self.membership
            .set(SUBSCRIBE_KEY, &self.config.documents.join(","))
            .await;
        for (name, value) in &settings {
            self.membership
                .set(&format!("{SETTING_PREFIX}{name}"), value)
                .await;
        }
        self.check_files().await;
        let mut need_list = true;
        loop {
            if need_list {
                match self.list().await {
                    Ok(()) => need_list = false,
                    Err(e) => {
                        tracing::debug!(error = %e, "config sync: cannot list documents yet");
                        if self.pause(Duration::from_secs(1)).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            match self.watch().await {
                WatchEnd::Relist => need_list = true,
                WatchEnd::Reconnect => {
                    if self.pause(Duration::from_millis(500)).await {
                        return;
                    }
                }
                WatchEnd::Shutdown => return,
            }
        }
    }

    /// Sleep, unless shutting down (then `true`).
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => true,
            _ = tokio::time::sleep(d) => false,
        }
    }

    /// `call`, failing as unreachable after [`READ_TIMEOUT`].
    async fn bounded<T>(
        call: impl std::future::Future<Output = Result<T, CoordError>>,
    ) -> Result<T, CoordError> {
        conclave_coord::bounded(READ_TIMEOUT, call).await
    }

    /// Bring every subscribed document up to date from a full listing.
    async fn list(&mut self) -> Result<(), CoordError> {
        let (items, index) = Self::bounded(self.coord.config_list(None)).await?;
        let mut live = Vec::new();
        for item in items {
            if !self.follows(&item.kind, &item.name) {
                continue;
            }
            let id = format!("{}/{}", item.kind, item.name);
            live.push(id.clone());
            let current = self.ledger.applied.get(&id);
            if current.is_some_and(|a| a.revision == item.revision && a.hash == item.hash) {
                continue;
            }
            let doc = Self::bounded(self.coord.config_get(
                &item.kind,
                &item.name,
                Read::Linearizable,
            ))
            .await?;
            let content = conclave_config::canonical_bytes(&doc.content);
            self.apply(&id, doc.revision, content).await;
        }
        let gone: Vec<String> = self
            .ledger
            .applied
            .keys()
            .filter(|id| !live.contains(id))
            .cloned()
            .collect();
        for id in gone {
            self.remove(&id).await;
        }
        self.ledger.revision = index.max(self.ledger.revision);
        self.save_ledger();
        Ok(())
    }

    async fn watch(&mut self) -> WatchEnd {
        let opened = self.coord.watch(WATCH_PREFIX, self.ledger.revision).await;
        let mut events = match opened {
            Ok(events) => events,
            Err(e) if e.code() == ErrorCode::Compacted => return WatchEnd::Relist,
            Err(e) => {
                tracing::debug!(error = %e, "config sync: cannot watch yet");
                return WatchEnd::Reconnect;
            }
        };
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            let event = tokio::select! {
                _ = self.shutdown.cancelled() => return WatchEnd::Shutdown,
                _ = tick.tick() => {
                    self.retry_failed().await;
                    self.check_files().await;
                    continue;
                }
                // Cancel-safe: a partly received event stays in the stream's parser.
                event = events.next() => event,
            };
            match event {
                Some(Ok(change)) => self.on_change(change).await,
                // The watcher fell behind the feed: list again.
                Some(Err(e)) if e.code() == ErrorCode::Compacted => return WatchEnd::Relist,
                Some(Err(_)) | None => return WatchEnd::Reconnect,
            }
        }
    }

    /// Whether this sync applies `kind/name`: subscribed, and named so that its file stays
    /// inside the directory (a document that breaks the naming rules is refused, and said so).
    fn follows(&self, kind: &str, name: &str) -> bool {
        if !safe_name(kind, name) {
            tracing::error!(
                kind,
                name,
                "the registry holds a document whose name could escape the config directory; not applied"
            );
            return false;
        }
        subscribed(&self.config.documents, kind, name)
    }

    async fn on_change(&mut self, change: WatchEvent) {
        let Some(id) = change.key.strip_prefix(WATCH_PREFIX).map(str::to_owned) else {
            return;
        };
        let Some((kind, name)) = id.split_once('/') else {
            return;
        };
        if self.follows(kind, name) {
            match change.value {
                Some(v) => self.apply(&id, change.revision, v.into_bytes()).await,
                None => self.remove(&id).await,
            }
        }
        self.ledger.revision = change.revision;
        self.save_ledger();
    }

    /// Render, run the hook, and record the document as applied when both worked.
    async fn apply(&mut self, id: &str, revision: u64, content: Vec<u8>) {
        let hash = sha256_hex(&content);
        let bytes = render(&content);
        let file = self.file_of(id);
        if let Err(e) = crate::file::write_atomically(&file, &bytes) {
            tracing::warn!(document = %id, error = %e, "cannot write the rendered document");
            self.fail(
                id,
                revision,
                content,
                format!("cannot write {}: {e}", file.display()),
            )
            .await;
            return;
        }
        if let Some(hook) = &self.config.on_change {
            let (kind, name) = id.split_once('/').unwrap_or((id, ""));
            let env = [
                ("CONCLAVE_CONFIG_KIND", kind.to_owned()),
                ("CONCLAVE_CONFIG_NAME", name.to_owned()),
                ("CONCLAVE_CONFIG_REVISION", revision.to_string()),
                ("CONCLAVE_CONFIG_HASH", hash.clone()),
                ("CONCLAVE_CONFIG_FILE", file.display().to_string()),
            ];
            let body = serde_json::json!({
                "kind": kind, "name": name, "revision": revision, "hash": hash,
                "file": file.display().to_string(),
            });
            let result = hook::run(hook, id, &env, &body, &self.shutdown).await;
            if !result.ok {
                self.fail(id, revision, content, result.detail).await;
                return;
            }
        }
        self.failed.remove(id);
        let applied = AppliedDoc {
            revision,
            hash: hash.clone(),
            file_hash: sha256_hex(&bytes),
        };
        self.ledger.applied.insert(id.to_owned(), applied);
        if self.modified.remove(id) {
            // A new revision replaced the hand-edited file.
            metrics::gauge!("conclave_config_file_modified", "document" => id.to_owned()).set(0.0);
        }
        self.advertise(id, revision, &hash, "ok").await;
        metrics::gauge!("conclave_config_applied_revision", "document" => id.to_owned())
            .set(revision as f64);
        tracing::info!(document = %id, revision, "configuration applied");
    }

    async fn fail(&mut self, id: &str, revision: u64, content: Vec<u8>, detail: String) {
        tracing::warn!(document = %id, revision, %detail, "configuration not applied");
        metrics::counter!("conclave_config_apply_failures_total", "document" => id.to_owned())
            .increment(1);
        self.failed.insert(id.to_owned(), (revision, content));
        let (rev, hash) = self
            .ledger
            .applied
            .get(id)
            .map_or((0, String::new()), |a| (a.revision, a.hash.clone()));
        self.advertise(id, rev, &hash, "error").await;
    }

    async fn retry_failed(&mut self) {
        let failed = std::mem::take(&mut self.failed);
        for (id, (revision, content)) in failed {
            self.apply(&id, revision, content).await;
        }
    }

    async fn remove(&mut self, id: &str) {
        let _ = std::fs::remove_file(self.file_of(id));
        self.ledger.applied.remove(id);
        self.failed.remove(id);
        self.modified.remove(id);
        self.membership
            .set(&format!("{APPLIED_PREFIX}{id}"), "0 - deleted")
            .await;
    }

    /// Hash the rendered files again; a hand-edited one is advertised as `modified`.
    async fn check_files(&mut self) {
        let applied = self.ledger.applied.clone();
        for (id, doc) in applied {
            let on_disk = std::fs::read(self.file_of(&id))
                .ok()
                .map(|b| sha256_hex(&b));
            let modified = on_disk.as_deref() != Some(doc.file_hash.as_str());
            let known = self.modified.contains(&id);
            if modified != known {
                metrics::gauge!("conclave_config_file_modified", "document" => id.clone())
                    .set(if modified { 1.0 } else { 0.0 });
                if modified {
                    tracing::warn!(document = %id, "the rendered file was changed by hand");
                    self.modified.insert(id.clone());
                } else {
                    self.modified.remove(&id);
                }
            }
            if !self.failed.contains_key(&id) {
                let status = if modified { "modified" } else { "ok" };
                self.advertise(&id, doc.revision, &doc.hash, status).await;
            }
        }
    }

    async fn advertise(&self, id: &str, revision: u64, hash: &str, status: &str) {
        let short = &hash[..hash.len().min(16)];
        let short = if short.is_empty() { "-" } else { short };
        self.membership
            .set(
                &format!("{APPLIED_PREFIX}{id}"),
                &format!("{revision} {short} {status}"),
            )
            .await;
    }
}

/// Parse an advertised `cfg:` value: `(revision, short hash, status)`.
pub fn parse_applied(value: &str) -> Option<(u64, &str, &str)> {
    let mut parts = value.split(' ');
    let revision = parts.next()?.parse().ok()?;
    Some((revision, parts.next()?, parts.next()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_kind_and_name() {
        let p = vec!["remote-peers/*".to_string(), "*/default".to_string()];
        assert!(subscribed(&p, "remote-peers", "x"));
        assert!(subscribed(&p, "gateway-settings", "default"));
        assert!(!subscribed(&p, "gateway-settings", "other"));
        assert!(subscribed(&["*".into()], "a", "b"));
        assert!(subscribed(&["a".into()], "a", "b"));
        assert!(!subscribed(&[], "a", "b"));
        // Ids that would put the file outside the directory match nothing, not even "*".
        for (kind, name) in [
            ("", "x"),
            ("a", "/etc/passwd"),
            ("a", ".."),
            ("..", "x"),
            ("a", "b/../../c"),
        ] {
            assert!(!subscribed(&["*".into()], kind, name), "{kind}/{name}");
        }
        assert_eq!(parse_applied("12 abcd ok"), Some((12, "abcd", "ok")));
    }
}
