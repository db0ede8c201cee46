//! The agent's log: one filter from `log_level`, text or JSON, and openraft's network noise
//! left out.
//!
//! openraft reports every failed RPC to a peer that is down: the replication stream an
//! ERROR and three WARNs every 500 ms, an election an ERROR per unanswered vote, a read an
//! ERROR per peer that missed a leadership confirmation. While one node is down that buries
//! everything else, and in a clean shutdown of a whole cluster the last nodes always log it.
//! conclave reports what an operator needs instead (a peer lost and back once, a summary of
//! peers still down: `conclave_raft::reachability`), so these events are dropped unless the
//! filter names `openraft` itself. Everything else openraft says still passes.

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;
use crate::telemetry::Telemetry;

/// Targets whose every event is a retry of an RPC to a peer.
const QUIET_TARGETS: &str =
    "openraft::replication=off,openraft::engine::handler::replication_handler=off";

/// `openraft::core::raft_core` messages that only say a peer did not answer.
const NETWORK_NOISE: &[&str] = &[
    "while requesting vote",
    "timeout",
    "timeout while confirming leadership for read request",
];

/// openraft's ERROR when `initialize` finds that this node already voted for a peer that
/// started the cluster first: in a static formation every member calls `initialize`, and
/// `RaftNode::initialize` takes that refusal (`NotAllowed`) as success.
const INITIALIZED_BY_A_PEER: (&str, &str) = ("openraft::engine::engine_impl", "Can not initialize");

/// The filter for `log_level`: as given when it names openraft, else with openraft at `warn`
/// and its retry targets off.
pub fn filter_directives(log_level: &str) -> String {
    if log_level.contains("openraft") {
        return log_level.to_string();
    }
    format!("{log_level},openraft=warn,{QUIET_TARGETS}")
}

/// How the installed filter is changed while the agent runs (a config reload).
static FILTER: std::sync::OnceLock<
    tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>,
> = std::sync::OnceLock::new();

fn parse_filter(log_level: &str) -> Result<EnvFilter, LogLevelError> {
    EnvFilter::try_new(filter_directives(log_level)).map_err(|e| LogLevelError {
        level: log_level.to_owned(),
        problem: e.to_string(),
    })
}

/// A `log_level` that is not a tracing filter.
#[derive(Debug, thiserror::Error)]
#[error("invalid log_level {level:?}: {problem}")]
pub struct LogLevelError {
    level: String,
    problem: String,
}

/// Change the filter of the installed logger to `log_level`. A level that names openraft
/// shows its network retries only when the agent started with such a level (the layer that
/// drops them is chosen at start).
pub fn set_level(log_level: &str) -> Result<(), LogLevelError> {
    let filter = parse_filter(log_level)?;
    match FILTER.get() {
        Some(handle) => handle.reload(filter).map_err(|e| LogLevelError {
            level: log_level.to_owned(),
            problem: e.to_string(),
        }),
        // No logger of ours is installed (an agent run inside a test): nothing to change.
        None => Ok(()),
    }
}

/// Install the global subscriber, with the OpenTelemetry export when this build has it and
/// the environment names a collector (`crate::telemetry`); keep the returned guard until
/// exit. Errors name what was wrong with `log_level` or the export settings.
pub fn init(log_level: &str, format: LogFormat) -> Result<Telemetry, String> {
    let quiet = !log_level.contains("openraft");
    let filter = parse_filter(log_level).map_err(|e| e.to_string())?;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let _ = FILTER.set(handle);
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(quiet.then_some(DropNetworkNoise));
    let (export, telemetry) = crate::telemetry::layer()?;
    let registry = registry.with(export);
    match format {
        LogFormat::Json => registry.with(fmt.json()).try_init(),
        LogFormat::Text => registry.with(fmt).try_init(),
    }
    .map_err(|e| format!("cannot install the logger: {e}"))?;
    telemetry.report();
    Ok(telemetry)
}

/// Drops openraft's per-peer network failures (see the module docs).
struct DropNetworkNoise;

impl<S: Subscriber> Layer<S> for DropNetworkNoise {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let target = event.metadata().target();
        if target != "openraft::core::raft_core" && target != INITIALIZED_BY_A_PEER.0 {
            return true;
        }
        let mut message = Message(None);
        event.record(&mut message);
        !message.0.is_some_and(|m| is_noise(target, &m))
    }
}

fn is_noise(target: &str, message: &str) -> bool {
    if target == INITIALIZED_BY_A_PEER.0 {
        return message.starts_with(INITIALIZED_BY_A_PEER.1);
    }
    NETWORK_NOISE.contains(&message)
}

struct Message(Option<String>);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openraft_retries_are_quiet_unless_the_filter_names_openraft() {
        let d = filter_directives("info");
        assert!(d.starts_with("info,openraft=warn,") && d.contains("openraft::replication=off"));
        assert_eq!(
            filter_directives("debug,openraft=debug"),
            "debug,openraft=debug"
        );
        assert!(EnvFilter::try_new(filter_directives("info")).is_ok());
    }

    #[test]
    fn only_peer_failures_count_as_noise() {
        assert!(is_noise(
            "openraft::core::raft_core",
            "while requesting vote"
        ));
        assert!(!is_noise(
            "openraft::core::raft_core",
            "quit RaftCore::main on error"
        ));
        assert!(is_noise(
            "openraft::engine::engine_impl",
            "Can not initialize last_log_id=None vote=T1-N2:uncommitted"
        ));
        assert!(!is_noise("openraft::engine::engine_impl", "anything else"));
    }
}
