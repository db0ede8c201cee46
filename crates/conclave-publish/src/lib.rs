//! Peer publishing: the member list, written where other software reads it.
//!
//! The Kubernetes-operator seed wrote a peers file (JSON, `ip:port` lines, a count) and
//! reloaded validators when it changed; it also wrote empty lists during blips and reloaded
//! unhealthy nodes. Here every sink is declared in the agent config and:
//! - renders the filtered member list in one format (`render`);
//! - writes only when the content changes, after it has been stable for a debounce, and
//!   atomically (temp file, fsync, rename, fsync of the directory), so a reader never sees a
//!   partial or empty file;
//! - is guarded (`guard`): a shrink to nothing or below `min_peers` waits `confirm_after`;
//!   while the cluster has no Raft leader or this node has lost sight of most members, the
//!   last good publication is held;
//! - runs its reload hook (exec or HTTP POST) after a write, only while this node's own
//!   health checks pass, with exponential backoff; failures are logged and counted, never
//!   fatal.

pub mod config_sync;
pub mod configmap;
mod destination;
mod file;
pub mod guard;
pub mod handlers;
pub mod render;
pub mod sink;

pub use conclave_hook::HookConfig;
pub use config_sync::{ConfigSync, ConfigSyncConfig};
pub use sink::{PublishChange, Publisher, SinkConfig, SinkKind};
