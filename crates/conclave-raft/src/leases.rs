//! The leader ends leases whose deadline has passed.
//!
//! Why a timer on the leader: `apply()` never reads a clock, so a lease cannot end by
//! itself. The leader watches the earliest deadline in its applied state and, once its
//! estimate of the cluster clock reaches it, proposes `ExpireLeases`; the command's clock
//! stamp decides, in log order, which leases really ended. The estimate lags the leader's
//! own clock a little, so leases end late rather than early.

use std::time::Duration;

use conclave_state::Command;
use openraft::ServerState;
use tokio_util::sync::CancellationToken;

use crate::RaftNode;

/// How often the leader looks for ended leases; also the worst extra lease time.
const TICK: Duration = Duration::from_millis(100);

pub(crate) async fn expire_leases(node: RaftNode, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if node.metrics().state != ServerState::Leader {
            continue;
        }
        let state = node.state();
        let due = state
            .read(|a| a.state.next_lease_deadline())
            .is_some_and(|deadline| deadline <= state.cluster_clock_estimate());
        if due && let Err(e) = node.propose(Command::ExpireLeases).await {
            tracing::debug!(error = %e, "could not propose the expiry of ended leases");
        }
    }
}
