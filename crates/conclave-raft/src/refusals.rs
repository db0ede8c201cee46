//! Refused node-RPC messages: each kind of refusal from each peer is logged at most once a
//! minute (a hostile or broken peer must not flood the log), and all are counted.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often one peer's refusals of one kind are logged.
const LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(crate) struct Refusals {
    last_logged: Mutex<HashMap<(String, &'static str), Instant>>,
    total: AtomicU64,
}

impl Refusals {
    /// Count a refusal of `what` from `peer` and log it unless it was logged recently.
    pub(crate) fn record(&self, peer: impl Display, what: &'static str, why: &dyn Display) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let key = (peer.to_string(), what);
        let now = Instant::now();
        let mut last = self.last_logged.lock().unwrap_or_else(|p| p.into_inner());
        if last
            .get(&key)
            .is_some_and(|t| now.duration_since(*t) < LOG_EVERY)
        {
            return;
        }
        if last.len() > 10_000 {
            last.clear();
        }
        last.insert(key, now);
        tracing::warn!(peer = %peer, message = what, reason = %why, "refused a node-RPC message");
    }

    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_counts_but_repeats_are_not_logged_again() {
        let r = Refusals::default();
        for _ in 0..5 {
            r.record(7, "vote", &"not a voter");
        }
        r.record(8, "vote", &"not a voter");
        assert_eq!(r.total(), 6);
        assert_eq!(r.last_logged.lock().unwrap().len(), 2);
    }
}
