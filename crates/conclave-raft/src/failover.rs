//! Fast failover when the leader's process is gone.
//!
//! Raft finds a dead leader by silence: a follower waits out its election timeout. openraft
//! 0.9 makes that wait long — a follower that has heard from a leader first honours a
//! leader lease of `election_timeout_max`, then waits its randomized election timeout, and
//! rejects other candidates' votes while its lease runs — so with the default timings
//! (300–600 ms) a silent leader is replaced after 0.9–1.2 s of silence plus an election.
//!
//! Most leader losses in practice are a process dying (crash, OOM kill, `kill -9`, a
//! restart), and that leaves evidence faster than silence: the leader's RPC port refuses
//! connections. This detector watches for it. When a voter has not heard from its leader
//! for three heartbeats, it tries to connect to the leader's RPC address; only a *refused*
//! connection (nothing listens there) counts as proof. Then the voter campaigns at once,
//! and re-campaigns at staggered intervals: surviving voters that saw the same proof all
//! campaign, and a voter that has campaigned itself no longer holds the dead leader's lease,
//! so the next round between them finds a majority.
//!
//! This only changes *when* elections start, never what they decide: votes, terms and log
//! checks are openraft's, so safety is untouched. A timeout, a reset or an unreachable host
//! proves nothing (a partition looks like that) and leaves the ordinary election timer in
//! charge. A campaign gives up after a few rounds, so a node that cannot reach a quorum does
//! not inflate terms.

use std::net::SocketAddr;
use std::time::Duration;

use openraft::ServerState;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::{NodeId, RaftNode};

/// Campaign rounds after the proof, before leaving it to the election timer.
const MAX_ROUNDS: u32 = 6;

/// Watch the leader and campaign at once when its process is gone; ends with `shutdown`.
pub(crate) async fn watch_leader(node: RaftNode, shutdown: CancellationToken) {
    let heartbeat = Duration::from_millis(node.inner.tuning.heartbeat_ms.max(10));
    let silence = heartbeat * 3;
    // The leader (and term) already proven dead, so one proof starts one campaign.
    let mut proven: Option<(NodeId, u64)> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(heartbeat) => {}
        }
        if node.removed().is_some() {
            continue;
        }
        let m = node.metrics();
        node.note_leadership(&m);
        if m.state != ServerState::Follower
            || !m
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == node.id)
        {
            continue;
        }
        let Some(leader) = m.current_leader.filter(|l| *l != node.id) else {
            continue;
        };
        if proven == Some((leader, m.current_term)) || node.leader_heard_within(silence) {
            continue;
        }
        let Some(addr) = node.inner.peers.addr(leader) else {
            continue;
        };
        if !refuses_connections(&addr, heartbeat * 2).await {
            continue;
        }
        proven = Some((leader, m.current_term));
        tracing::warn!(
            leader,
            term = m.current_term,
            %addr,
            "the leader's RPC port refuses connections: its process is gone; campaigning now instead of waiting out the election timeout"
        );
        campaign(&node, leader, heartbeat, &shutdown).await;
    }
}

/// Whether nothing listens at `addr` (connection refused). Any other outcome — accepted,
/// timed out, unreachable — is not proof that the leader died.
async fn refuses_connections(addr: &str, wait: Duration) -> bool {
    let Ok(sock) = addr.parse::<SocketAddr>() else {
        return false;
    };
    match tokio::time::timeout(wait, TcpStream::connect(sock)).await {
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

async fn campaign(
    node: &RaftNode,
    dead: NodeId,
    heartbeat: Duration,
    shutdown: &CancellationToken,
) {
    for round in 0..MAX_ROUNDS {
        let m = node.metrics();
        if m.state == ServerState::Leader || m.current_leader.is_some_and(|l| l != dead) {
            return;
        }
        if node.raft().trigger().elect().await.is_err() {
            return;
        }
        // Stagger the rounds: a random part breaks ties between survivors, the growing part
        // leaves room for a vote round trip (and an fsync of the vote) on slow disks.
        let jitter = rand::random_range(0..=heartbeat.as_millis() as u64);
        let pause = heartbeat + Duration::from_millis(jitter) + heartbeat * round;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
    tracing::info!(
        dead,
        "fast failover found no majority; the election timer takes over"
    );
}
