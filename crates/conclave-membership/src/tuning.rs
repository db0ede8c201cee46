//! `[gossip]`: the timings of gossip and its failure detector.

use std::time::Duration;

use conclave_types::InvalidSetting;
use serde::{Deserialize, Serialize};

/// Gossip timings, `[gossip]` in the agent config. Cluster-wide in spirit: nodes with very
/// different timings judge each other's liveness differently.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GossipTuning {
    /// How often a node gossips with a few peers.
    pub interval_ms: u64,
    /// Failure detector threshold: a node is dead when the time since its last heartbeat
    /// exceeds this many mean heartbeat intervals.
    pub phi_threshold: f64,
    /// A live node whose heartbeat has not advanced for this long is shown as `suspect`.
    pub suspect_after_ms: u64,
    /// Dead and left members are forgotten after this long (`remove-dead` does it at once).
    #[serde(with = "humantime_serde")]
    pub reap_dead_after: Duration,
}

impl Default for GossipTuning {
    fn default() -> Self {
        Self {
            interval_ms: 200,
            phi_threshold: 8.0,
            suspect_after_ms: 1000,
            reap_dead_after: Duration::from_secs(72 * 3600),
        }
    }
}

impl GossipTuning {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.interval_ms < 10 {
            return Err(InvalidSetting::new(
                "gossip.interval_ms",
                "must be at least 10",
            ));
        }
        if self.phi_threshold.is_nan() || self.phi_threshold <= 1.0 {
            return Err(InvalidSetting::new(
                "gossip.phi_threshold",
                "must be above 1",
            ));
        }
        if self.suspect_after_ms < self.interval_ms {
            return Err(InvalidSetting::new(
                "gossip.suspect_after_ms",
                "must be at least gossip.interval_ms",
            ));
        }
        Ok(())
    }
}
