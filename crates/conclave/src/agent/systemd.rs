//! systemd's notify protocol (`Type=notify`, `deploy/systemd/conclave.service`): READY once
//! the API serves, STOPPING when the ordered shutdown begins, and WATCHDOG pings at half the
//! unit's `WatchdogSec` while the runtime runs, through the `sd-notify` crate. Without
//! `NOTIFY_SOCKET` (not started by systemd) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// A failed notification is logged, never fatal: the agent serves either way, and systemd
/// reports a unit that never said READY by itself.
fn send(what: &str, state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot tell systemd the agent is {what}");
    }
}

/// The API serves.
pub(super) fn ready(node_id: u64) {
    let status = format!("serving as node {node_id}");
    send("ready", &[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// The ordered shutdown has begun (roles released, requests drained, leadership handed over).
pub(super) fn stopping() {
    send(
        "stopping",
        &[NotifyState::Stopping, NotifyState::Status("stopping")],
    );
}

/// Ping the watchdog at half its interval until `shutdown`, when the unit asks for one.
pub(super) async fn watchdog(shutdown: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = (interval / 2).max(Duration::from_millis(100));
    loop {
        send("alive", &[NotifyState::Watchdog]);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
