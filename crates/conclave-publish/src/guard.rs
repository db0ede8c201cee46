//! When a new publication may replace the last one. Pure: the caller passes the time.
//!
//! - Unchanged content is never written.
//! - New content must be stable for `debounce` first (a burst of changes writes once).
//! - While the cluster has no Raft leader, or this node sees most other members as not alive
//!   (it is probably the one cut off), the last publication is *held*.
//! - A shrink to an empty list, or below `min_peers`, is held until it has lasted
//!   `confirm_after`: a blip must not empty a peers file.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct GuardConfig {
    pub debounce: Duration,
    pub min_peers: usize,
    pub confirm_after: Duration,
}

/// What the cluster looks like from here, beyond the list itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Surroundings {
    /// Raft members are known but none leads.
    pub no_raft_leader: bool,
    /// Most other members look suspect or dead from here.
    pub lost_sight: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Same as the last publication.
    Unchanged,
    /// Changed, waiting for the debounce.
    Settling,
    /// Changed, but the last publication is kept; why.
    Hold(String),
    Write,
}

#[derive(Debug)]
pub struct Guard {
    cfg: GuardConfig,
    published: Option<(Vec<u8>, usize)>,
    candidate: Option<(Vec<u8>, Instant)>,
    shrink_since: Option<Instant>,
}

impl Guard {
    /// `existing`: what the file holds already (so a restart does not rewrite it).
    pub fn new(cfg: GuardConfig, existing: Option<(Vec<u8>, usize)>) -> Self {
        Self {
            cfg,
            published: existing,
            candidate: None,
            shrink_since: None,
        }
    }

    pub fn observe(
        &mut self,
        now: Instant,
        content: &[u8],
        count: usize,
        around: Surroundings,
    ) -> Decision {
        if self.published.as_ref().is_some_and(|(c, _)| c == content) {
            self.candidate = None;
            self.shrink_since = None;
            return Decision::Unchanged;
        }
        if self.candidate.as_ref().is_none_or(|(c, _)| c != content) {
            self.candidate = Some((content.to_vec(), now));
        }
        let stable_since = self.candidate.as_ref().map_or(now, |(_, t)| *t);
        if let Some((_, published_count)) = &self.published {
            if around.no_raft_leader {
                return Decision::Hold(
                    "the Raft cluster has no leader (an election is running); keeping the last publication"
                        .into(),
                );
            }
            if around.lost_sight {
                return Decision::Hold(
                    "this node sees most other members as suspect or dead (probably cut off from them); keeping the last publication"
                        .into(),
                );
            }
            if count < *published_count && (count == 0 || count < self.cfg.min_peers) {
                let since = *self.shrink_since.get_or_insert(now);
                if now.duration_since(since) < self.cfg.confirm_after {
                    let why = if count == 0 {
                        "to none".to_string()
                    } else {
                        format!("to {count}, below min_peers {}", self.cfg.min_peers)
                    };
                    return Decision::Hold(format!(
                        "the list would shrink from {published_count} peers {why}; it is published only if that lasts {:?}",
                        self.cfg.confirm_after
                    ));
                }
            } else {
                self.shrink_since = None;
            }
        }
        if now.duration_since(stable_since) < self.cfg.debounce {
            return Decision::Settling;
        }
        Decision::Write
    }

    /// The write succeeded.
    pub fn written(&mut self, content: Vec<u8>, count: usize) {
        self.published = Some((content, count));
        self.candidate = None;
        self.shrink_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: GuardConfig = GuardConfig {
        debounce: Duration::from_secs(2),
        min_peers: 2,
        confirm_after: Duration::from_secs(30),
    };
    const CALM: Surroundings = Surroundings {
        no_raft_leader: false,
        lost_sight: false,
    };

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn a_burst_of_changes_writes_once_after_the_debounce() {
        let t0 = Instant::now();
        let mut g = Guard::new(CFG, None);
        assert_eq!(g.observe(t0, b"a", 1, CALM), Decision::Settling);
        assert_eq!(g.observe(secs(t0, 1), b"ab", 2, CALM), Decision::Settling);
        assert_eq!(g.observe(secs(t0, 2), b"abc", 3, CALM), Decision::Settling);
        assert_eq!(g.observe(secs(t0, 4), b"abc", 3, CALM), Decision::Write);
        g.written(b"abc".to_vec(), 3);
        assert_eq!(g.observe(secs(t0, 5), b"abc", 3, CALM), Decision::Unchanged);
    }

    #[test]
    fn an_empty_list_waits_for_confirmation_and_a_recovery_cancels_it() {
        let t0 = Instant::now();
        let mut g = Guard::new(CFG, Some((b"abc".to_vec(), 3)));
        assert!(matches!(g.observe(t0, b"", 0, CALM), Decision::Hold(_)));
        assert!(matches!(
            g.observe(secs(t0, 29), b"", 0, CALM),
            Decision::Hold(_)
        ));
        assert_eq!(g.observe(secs(t0, 30), b"", 0, CALM), Decision::Write);
        // A blip that recovers never writes the empty list.
        let mut g = Guard::new(CFG, Some((b"abc".to_vec(), 3)));
        assert!(matches!(g.observe(t0, b"", 0, CALM), Decision::Hold(_)));
        assert_eq!(g.observe(secs(t0, 5), b"abc", 3, CALM), Decision::Unchanged);
    }

    #[test]
    fn a_shrink_that_stays_at_or_above_min_peers_only_debounces() {
        let t0 = Instant::now();
        let mut g = Guard::new(CFG, Some((b"abc".to_vec(), 3)));
        assert_eq!(g.observe(t0, b"ab", 2, CALM), Decision::Settling);
        assert_eq!(g.observe(secs(t0, 2), b"ab", 2, CALM), Decision::Write);
    }

    #[test]
    fn elections_and_partitions_hold_the_last_publication() {
        let t0 = Instant::now();
        let mut g = Guard::new(CFG, Some((b"abc".to_vec(), 3)));
        let election = Surroundings {
            no_raft_leader: true,
            ..CALM
        };
        assert!(
            matches!(g.observe(secs(t0, 9), b"abcd", 4, election), Decision::Hold(r) if r.contains("leader"))
        );
        let cut_off = Surroundings {
            lost_sight: true,
            ..CALM
        };
        assert!(
            matches!(g.observe(secs(t0, 9), b"abcd", 4, cut_off), Decision::Hold(r) if r.contains("cut off"))
        );
        // The very first publication is not held: there is nothing to keep.
        let mut g = Guard::new(CFG, None);
        assert_eq!(g.observe(t0, b"a", 1, election), Decision::Settling);
        assert_eq!(g.observe(secs(t0, 2), b"a", 1, election), Decision::Write);
    }
}
