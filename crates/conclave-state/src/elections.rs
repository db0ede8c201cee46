//! Named elections with leases and fencing epochs, for applications.
//!
//! Why here: who holds an election must be decided once, in log order, so that no two nodes
//! can believe in different holders. Time never comes from a clock read here: the Raft leader
//! stamps its cluster clock into a [`crate::Command::Clock`] placed before every command that
//! needs time, and [`crate::State`] keeps the newest stamp.
//!
//! Rules (the fencing contract):
//! - The **epoch** of an election grows by one at every grant and is never reused, even after
//!   the holder resigns or its lease expires: a resource guarded by the epoch can refuse a
//!   write carrying an older one.
//! - A lease ends only when the cluster clock reaches its deadline, or by resignation. When a
//!   new Raft leader stamps its first clock, every lease is extended to at least `now + ttl`:
//!   leadership changes lengthen leases, never shorten them.
//! - A grant of an expired lease counts as a new grant, even to the same candidate, so a
//!   holder that lost its lease always sees a new epoch.
//! - A planned handover names the holder's epoch and a target. It never ends a lease: the
//!   holder resigns when it sees it. Until its window closes, only the target can be granted
//!   the election, so the candidate the operator chose is the one that takes over.

use serde::{Deserialize, Serialize};

/// Smallest and largest lease a campaign may ask for.
pub const MIN_TTL_MS: u64 = 500;
pub const MAX_TTL_MS: u64 = 3_600_000;

/// The current holder of an election.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub candidate: String,
    pub epoch: u64,
    pub ttl_ms: u64,
    /// Cluster-clock deadline: the lease ends when the clock reaches it.
    pub expires_at_ms: u64,
    /// Cluster clock and leader wall clock of the grant.
    pub acquired_at_ms: u64,
    pub acquired_wall_ms: u64,
    /// Store revision of the grant.
    pub acquired_revision: u64,
}

/// A planned handover: the holder of `from_epoch` was asked to step down for `target`, and
/// until `until_ms` on the cluster clock only `target` may be granted the election.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedHandover {
    pub target: String,
    pub from_epoch: u64,
    pub until_ms: u64,
}

/// One election: its current holder, the last epoch ever granted, and a planned handover.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Election {
    pub last_epoch: u64,
    pub holder: Option<Holder>,
    /// Cleared by the next grant; ignored once its window has passed.
    pub handover: Option<PlannedHandover>,
}

impl Election {
    /// The holder whose lease has not ended at cluster time `now_ms`.
    pub fn live_holder(&self, now_ms: u64) -> Option<&Holder> {
        self.holder.as_ref().filter(|h| now_ms < h.expires_at_ms)
    }

    /// The handover still standing at cluster time `now_ms`: its window is open and no
    /// epoch has been granted since it was asked for.
    pub fn pending_handover(&self, now_ms: u64) -> Option<&PlannedHandover> {
        self.handover
            .as_ref()
            .filter(|h| now_ms < h.until_ms && self.last_epoch <= h.from_epoch)
    }
}

/// Why an election's holder changed, as shown to watchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    Elected,
    Resigned,
    Expired,
    /// A handover was asked for; the holder is unchanged until it resigns.
    HandoverRequested,
}

/// The JSON value watchers see under `_conclave/elections/<name>` at every transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectionEvent {
    pub election: String,
    pub transition: Transition,
    /// The holder after the transition (`None` once resigned or expired).
    pub holder: Option<String>,
    /// The epoch granted (`Elected`), ended (`Resigned`, `Expired`) or asked to step down
    /// (`HandoverRequested`).
    pub epoch: u64,
    pub ttl_ms: u64,
    /// `HandoverRequested`: the candidate that may take over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// The cluster clock as the state machine last saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterClock {
    /// Milliseconds on the cluster clock: each leader continues it from its applied state with
    /// its monotonic clock, so it never jumps with wall-clock changes and never goes back.
    pub now_ms: u64,
    /// The stamping leader's wall clock (Unix ms), for display only.
    pub wall_ms: u64,
    /// The Raft term of the leader that stamped it.
    pub term: u64,
}
