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

use crate::Outcome;

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

/// The election rules, applied (called from [`State::apply`](crate::State::apply)).
impl crate::State {
    pub(crate) fn stamp_clock(&mut self, term: u64, now_ms: u64, wall_ms: u64) {
        let now_ms = now_ms.max(self.clock.now_ms);
        if term > self.clock.term {
            // A new leader: its clock may run ahead of the old one's, so extend every lease
            // to a full TTL from now. Leases only ever get longer across leader changes.
            for election in self.elections.values_mut() {
                if let Some(h) = election.holder.as_mut() {
                    h.expires_at_ms = h.expires_at_ms.max(now_ms.saturating_add(h.ttl_ms));
                }
            }
            self.extend_ipam_leases(now_ms);
            self.clock.term = term;
        }
        self.clock.now_ms = now_ms;
        self.clock.wall_ms = wall_ms.max(self.clock.wall_ms);
    }

    pub(crate) fn campaign(&mut self, name: &str, candidate: &str, ttl_ms: u64) -> Outcome {
        let now = self.clock.now_ms;
        let election = self.elections.entry(name.to_owned()).or_default();
        if let Some(h) = election.holder.as_mut().filter(|h| now < h.expires_at_ms) {
            if h.candidate == candidate {
                h.ttl_ms = ttl_ms;
                h.expires_at_ms = h.expires_at_ms.max(now.saturating_add(ttl_ms));
                return Outcome::Elected {
                    revision: self.revision,
                    epoch: h.epoch,
                    expires_at_ms: h.expires_at_ms,
                    now_ms: now,
                    renewed: true,
                };
            }
            return Outcome::Busy {
                revision: self.revision,
                holder: h.candidate.clone(),
                epoch: h.epoch,
                expires_at_ms: h.expires_at_ms,
                now_ms: now,
            };
        }
        if let Some(h) = election
            .pending_handover(now)
            .filter(|h| h.target != candidate)
        {
            return Outcome::Reserved {
                revision: self.revision,
                target: h.target.clone(),
                until_ms: h.until_ms,
                now_ms: now,
            };
        }
        if election.holder.is_some() {
            // The previous lease ran out and its expiry was not proposed yet: record it first,
            // so every epoch's end is a change of its own.
            self.end_lease(name, Transition::Expired);
        }
        let election = self.elections.entry(name.to_owned()).or_default();
        let epoch = election.last_epoch + 1;
        let event = ElectionEvent {
            election: name.to_owned(),
            transition: Transition::Elected,
            holder: Some(candidate.to_owned()),
            epoch,
            ttl_ms,
            target: None,
        };
        let revision = self.record_election(event, None);
        let expires_at_ms = now.saturating_add(ttl_ms);
        let election = self.elections.entry(name.to_owned()).or_default();
        election.last_epoch = epoch;
        election.handover = None;
        election.holder = Some(Holder {
            candidate: candidate.to_owned(),
            epoch,
            ttl_ms,
            expires_at_ms,
            acquired_at_ms: now,
            acquired_wall_ms: self.clock.wall_ms,
            acquired_revision: revision,
        });
        Outcome::Elected {
            revision,
            epoch,
            expires_at_ms,
            now_ms: now,
            renewed: false,
        }
    }

    /// The holder of `name` if it is `candidate` with `epoch`, whatever its lease.
    fn holder_mut(
        &mut self,
        name: &str,
        candidate: &str,
        epoch: u64,
    ) -> Result<&mut Holder, Outcome> {
        let revision = self.revision;
        let current = self
            .elections
            .get(name)
            .and_then(|e| e.holder.as_ref())
            .map(|h| (h.candidate.clone(), h.epoch));
        match self.elections.get_mut(name).and_then(|e| e.holder.as_mut()) {
            Some(h) if h.candidate == candidate && h.epoch == epoch => Ok(h),
            _ => Err(Outcome::NotHolder {
                revision,
                epoch: current.as_ref().map_or(0, |c| c.1),
                holder: current.map(|c| c.0),
            }),
        }
    }

    pub(crate) fn keepalive(&mut self, name: &str, candidate: &str, epoch: u64) -> Outcome {
        let now = self.clock.now_ms;
        let revision = self.revision;
        match self.holder_mut(name, candidate, epoch) {
            Ok(h) if now < h.expires_at_ms => {
                h.expires_at_ms = h.expires_at_ms.max(now.saturating_add(h.ttl_ms));
                Outcome::Renewed {
                    revision,
                    expires_at_ms: h.expires_at_ms,
                    now_ms: now,
                }
            }
            // The lease ran out before this keepalive: too late, whether or not the leader
            // has proposed the expiry yet.
            Ok(h) => Outcome::NotHolder {
                revision,
                holder: None,
                epoch: h.epoch,
            },
            Err(not_holder) => not_holder,
        }
    }

    pub(crate) fn resign(&mut self, name: &str, candidate: &str, epoch: u64) -> Outcome {
        if let Err(not_holder) = self.holder_mut(name, candidate, epoch) {
            return not_holder;
        }
        let revision = self.end_lease(name, Transition::Resigned);
        Outcome::Resigned { revision }
    }

    pub(crate) fn handover(
        &mut self,
        name: &str,
        target: &str,
        from_epoch: u64,
        window_ms: u64,
    ) -> Outcome {
        let now = self.clock.now_ms;
        let revision = self.revision;
        let Some(election) = self.elections.get_mut(name) else {
            return Outcome::NotHolder {
                revision,
                holder: None,
                epoch: 0,
            };
        };
        let ttl_ms = match election.live_holder(now) {
            Some(h) if h.epoch == from_epoch && h.candidate != target => h.ttl_ms,
            other => {
                return Outcome::NotHolder {
                    revision,
                    holder: other.map(|h| h.candidate.clone()),
                    epoch: other.map_or(election.last_epoch, |h| h.epoch),
                };
            }
        };
        let until_ms = now.saturating_add(window_ms);
        election.handover = Some(PlannedHandover {
            target: target.to_owned(),
            from_epoch,
            until_ms,
        });
        let event = ElectionEvent {
            election: name.to_owned(),
            transition: Transition::HandoverRequested,
            holder: self
                .elections
                .get(name)
                .and_then(|e| e.holder.as_ref())
                .map(|h| h.candidate.clone()),
            epoch: from_epoch,
            ttl_ms,
            target: Some(target.to_owned()),
        };
        let revision = self.record_election(event, None);
        Outcome::HandoverPlanned { revision, until_ms }
    }

    pub(crate) fn expire_leases(&mut self) -> Outcome {
        let now = self.clock.now_ms;
        let ended: Vec<String> = self
            .elections
            .iter()
            .filter(|(_, e)| e.holder.as_ref().is_some_and(|h| h.expires_at_ms <= now))
            .map(|(name, _)| name.clone())
            .collect();
        for name in &ended {
            self.end_lease(name, Transition::Expired);
        }
        // Address leases run on the same clock and end with the same command.
        let addresses = self.expire_ipam_leases();
        Outcome::Expired {
            revision: self.revision,
            ended: ended.len() as u32 + addresses,
        }
    }

    /// Clear the holder of `name` (which must exist) and record the change.
    pub(crate) fn end_lease(&mut self, name: &str, transition: Transition) -> u64 {
        let Some(holder) = self.elections.get_mut(name).and_then(|e| e.holder.take()) else {
            return self.revision;
        };
        let event = ElectionEvent {
            election: name.to_owned(),
            transition,
            holder: None,
            epoch: holder.epoch,
            ttl_ms: holder.ttl_ms,
            target: None,
        };
        self.record_election(event, Some(holder.candidate))
    }
}
