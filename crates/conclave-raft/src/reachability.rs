//! The leader's account of which peers answer, logged once per change.
//!
//! openraft logs a replication failure every time it retries (an ERROR and three WARNs per
//! down peer every 500 ms), which buries everything else while a node is down. conclave
//! silences those targets (see the agent's log filter) and says it here instead: a peer's loss
//! once, its recovery once, and a summary of the peers still down at most every
//! [`SUMMARY_EVERY`]. The decisions are pure ([`Reachability::observe`]); the caller logs.

use std::collections::BTreeMap;
use std::time::Duration;

use conclave_storage::NodeId;

/// How often a summary of the peers that are still down is due.
pub(crate) const SUMMARY_EVERY: Duration = Duration::from_secs(30);

/// What changed since the last observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PeerEvent {
    /// It stopped answering (silent for `silent_for`, or never answered this leader).
    Lost {
        node_id: NodeId,
        silent_for: Duration,
    },
    /// It answers again after being down for `down_for`.
    Recovered { node_id: NodeId, down_for: Duration },
    /// These peers are still down, each for this long.
    StillDown { peers: Vec<(NodeId, Duration)> },
}

/// Peers that are down, and since when, on the leader's clock (`now` as time since some
/// fixed start, so this stays free of clocks).
#[derive(Debug, Default)]
pub(crate) struct Reachability {
    down_since: BTreeMap<NodeId, Duration>,
    last_summary: Option<Duration>,
}

impl Reachability {
    /// Forget everything (this node stopped leading: another leader reports now).
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }

    /// One observation at `now`: for each peer, the time since it last answered (`None`:
    /// never, since this node leads). A peer is down when silent longer than `limit`; one
    /// that never answered counts only once this node has led for `limit`.
    pub(crate) fn observe(
        &mut self,
        now: Duration,
        leading_for: Duration,
        silence: &BTreeMap<NodeId, Option<Duration>>,
        limit: Duration,
    ) -> Vec<PeerEvent> {
        let mut events = Vec::new();
        self.down_since.retain(|id, _| silence.contains_key(id));
        for (&node_id, &silent) in silence {
            let down = match silent {
                Some(s) => s > limit,
                None => leading_for > limit,
            };
            let silent_for = silent.unwrap_or(leading_for);
            match (down, self.down_since.get(&node_id).copied()) {
                (true, None) => {
                    self.down_since
                        .insert(node_id, now.saturating_sub(silent_for));
                    events.push(PeerEvent::Lost {
                        node_id,
                        silent_for,
                    });
                }
                (false, Some(since)) => {
                    self.down_since.remove(&node_id);
                    events.push(PeerEvent::Recovered {
                        node_id,
                        down_for: now.saturating_sub(since),
                    });
                }
                _ => {}
            }
        }
        let lost_now = events.iter().any(|e| matches!(e, PeerEvent::Lost { .. }));
        if self.down_since.is_empty() {
            self.last_summary = None;
        } else if lost_now {
            // The loss itself was just reported; the next summary is due a period later.
            self.last_summary.get_or_insert(now);
        } else if self
            .last_summary
            .is_none_or(|t| now.saturating_sub(t) >= SUMMARY_EVERY)
        {
            self.last_summary = Some(now);
            events.push(PeerEvent::StillDown {
                peers: self
                    .down_since
                    .iter()
                    .map(|(id, since)| (*id, now.saturating_sub(*since)))
                    .collect(),
            });
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(2);

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn silence(entries: &[(NodeId, Option<u64>)]) -> BTreeMap<NodeId, Option<Duration>> {
        entries
            .iter()
            .map(|(id, s)| (*id, s.map(Duration::from_secs)))
            .collect()
    }

    #[test]
    fn a_loss_and_a_recovery_are_reported_once_each() {
        let mut r = Reachability::default();
        let mut events = Vec::new();
        // Node 2 goes silent at t=10; observed every 250 ms up to t=20, then answers.
        for tick in 0..=40 {
            let now = s(10) + Duration::from_millis(250 * tick);
            let silent = now - s(10);
            let obs = BTreeMap::from([(2, Some(silent)), (3, Some(Duration::ZERO))]);
            events.extend(r.observe(now, s(100), &obs, LIMIT));
        }
        events.extend(r.observe(
            s(21),
            s(100),
            &silence(&[(2, Some(0)), (3, Some(0))]),
            LIMIT,
        ));
        assert_eq!(
            events,
            [
                PeerEvent::Lost {
                    node_id: 2,
                    silent_for: Duration::from_millis(2250)
                },
                PeerEvent::Recovered {
                    node_id: 2,
                    down_for: s(11)
                },
            ]
        );
    }

    #[test]
    fn peers_still_down_are_summarised_every_period_not_every_tick() {
        let mut r = Reachability::default();
        let mut summaries = 0;
        for tick in 0..(4 * 100) {
            let now = s(100) + Duration::from_millis(250 * tick);
            let obs = silence(&[(2, Some(3 + tick / 4)), (3, None)]);
            for e in r.observe(now, s(100) + now, &obs, LIMIT) {
                if let PeerEvent::StillDown { peers } = e {
                    assert_eq!(peers.iter().map(|p| p.0).collect::<Vec<_>>(), [2, 3]);
                    summaries += 1;
                }
            }
        }
        // 100 s of observations: a summary at 30, 60 and 90 s after the losses.
        assert_eq!(summaries, 3);
    }

    #[test]
    fn a_new_leader_gives_peers_that_never_answered_a_grace_period() {
        let mut r = Reachability::default();
        let obs = silence(&[(2, None)]);
        assert!(r.observe(s(1), s(1), &obs, LIMIT).is_empty());
        assert!(matches!(
            r.observe(s(3), s(3), &obs, LIMIT)[..],
            [PeerEvent::Lost { node_id: 2, .. }]
        ));
        r.reset();
        assert!(r.observe(s(4), s(0), &obs, LIMIT).is_empty());
    }

    #[test]
    fn a_removed_peer_is_forgotten_without_a_recovery() {
        let mut r = Reachability::default();
        assert_eq!(
            r.observe(s(5), s(9), &silence(&[(2, Some(5))]), LIMIT)
                .len(),
            1
        );
        assert!(r.observe(s(6), s(10), &silence(&[]), LIMIT).is_empty());
    }
}
