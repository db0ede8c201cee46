//! `[gossip]`: the timings of SWIM's failure detector and of dissemination.

use std::time::Duration;

use conclave_gossip::GossipConfig;
use conclave_types::InvalidSetting;
use serde::{Deserialize, Serialize};

/// Gossip timings, `[gossip]` in the agent config. Cluster-wide in spirit: agents with very
/// different timings judge each other's liveness differently. The defaults detect a crashed
/// agent in about 1.5 s (the measurements are in ARCHITECTURE.md and BENCHMARKS.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GossipTuning {
    /// Each agent probes one member this often.
    pub probe_interval_ms: u64,
    /// How long a probe waits for its answer before other members are asked to probe.
    pub probe_timeout_ms: u64,
    /// A member that failed a probe is `suspect`; if it does not refute the suspicion
    /// within this, it is declared `dead`.
    pub suspicion_ms: u64,
    /// Pending updates (joins, suspicions, adverts) are pushed to a few members this often.
    pub gossip_interval_ms: u64,
    /// Dead and left members are forgotten after this long (`remove-dead` does it at once).
    #[serde(with = "humantime_serde")]
    pub reap_dead_after: Duration,
}

impl Default for GossipTuning {
    fn default() -> Self {
        let lan = GossipConfig::lan();
        Self {
            probe_interval_ms: lan.probe_period.as_millis() as u64,
            probe_timeout_ms: lan.probe_rtt.as_millis() as u64,
            suspicion_ms: lan.suspect_to_down_after.as_millis() as u64,
            gossip_interval_ms: lan.gossip_every.as_millis() as u64,
            reap_dead_after: Duration::from_secs(72 * 3600),
        }
    }
}

impl GossipTuning {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        for (name, ms) in [
            ("gossip.probe_interval_ms", self.probe_interval_ms),
            ("gossip.probe_timeout_ms", self.probe_timeout_ms),
            ("gossip.suspicion_ms", self.suspicion_ms),
            ("gossip.gossip_interval_ms", self.gossip_interval_ms),
        ] {
            if !(10..=600_000).contains(&ms) {
                return Err(InvalidSetting::new(name, "must be from 10 to 600000"));
            }
        }
        if self.probe_timeout_ms >= self.probe_interval_ms {
            return Err(InvalidSetting::new(
                "gossip.probe_timeout_ms",
                "must be below gossip.probe_interval_ms (a probe is answered or given up within its period)",
            ));
        }
        if self.reap_dead_after < Duration::from_secs(1) {
            return Err(InvalidSetting::new(
                "gossip.reap_dead_after",
                "must be at least 1s",
            ));
        }
        Ok(())
    }

    /// The gossip core's configuration for these timings.
    pub fn config(&self) -> GossipConfig {
        GossipConfig {
            probe_period: Duration::from_millis(self.probe_interval_ms),
            probe_rtt: Duration::from_millis(self.probe_timeout_ms),
            suspect_to_down_after: Duration::from_millis(self.suspicion_ms),
            gossip_every: Duration::from_millis(self.gossip_interval_ms),
            remove_down_after: self.reap_dead_after,
            ..GossipConfig::lan()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_lan_profile_and_valid() {
        let t = GossipTuning::default();
        t.validate().unwrap();
        let c = t.config();
        assert_eq!(c.probe_period, GossipConfig::lan().probe_period);
        assert_eq!(c.remove_down_after, t.reap_dead_after);
    }

    #[test]
    fn a_probe_timeout_not_below_the_period_is_refused_by_name() {
        let t = GossipTuning {
            probe_timeout_ms: 300,
            ..GossipTuning::default()
        };
        assert!(
            t.validate()
                .unwrap_err()
                .to_string()
                .contains("probe_timeout_ms")
        );
        let t = GossipTuning {
            suspicion_ms: 5,
            ..GossipTuning::default()
        };
        assert!(
            t.validate()
                .unwrap_err()
                .to_string()
                .contains("suspicion_ms")
        );
    }
}
