//! What the driver task and the `Membership` handles share: the published view, the
//! counters, when each member was last heard, and the rate limits of the warnings.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use conclave_gossip::Counters;
use conclave_gossip::seal::OpenError;
use tokio::sync::watch;

use crate::View;

/// What the driver task and the handles share.
pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) view: watch::Sender<View>,
    pub(crate) latest: RwLock<View>,
    pub(crate) counters: Mutex<Counters>,
    pub(crate) send_errors: AtomicU64,
    /// When a datagram from each node last opened here.
    pub(crate) heard: Mutex<HashMap<u64, Instant>>,
    /// The cluster this agent was started for, if it was told (a client agent learns it).
    pub(crate) configured_cluster: Option<String>,
    /// Gossip members of another cluster in the last view, and when that was last logged.
    pub(crate) foreign: Mutex<(usize, Option<Instant>)>,
    /// When a refused datagram or a failed send was last logged.
    pub(crate) last_warning: Mutex<Option<Instant>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(crate) fn heard(&self, node_id: u64) {
        lock(&self.heard).insert(node_id, Instant::now());
    }

    pub(crate) fn heard_snapshot(&self) -> HashMap<u64, Instant> {
        lock(&self.heard).clone()
    }

    pub(crate) fn set_counters(&self, counters: Counters) {
        *lock(&self.counters) = counters;
    }

    /// One warning per 10 s is enough to point at a misconfigured node; every refusal is
    /// counted (`/v1/gossip/stats`, metrics).
    fn warn_limited(&self) -> bool {
        let mut last = lock(&self.last_warning);
        let due = last.is_none_or(|t| t.elapsed() > Duration::from_secs(10));
        if due {
            *last = Some(Instant::now());
        }
        due
    }

    pub(crate) fn note_refusal(&self, from: SocketAddr, why: &OpenError) {
        if self.warn_limited() {
            tracing::warn!(
                %from,
                "refused a gossip datagram: {why}; a node of another cluster, with another cluster token or a gossip key rotated away, or with a clock off by minutes is gossiping here"
            );
        }
    }

    pub(crate) fn note_send_error(&self, to: SocketAddr, e: &std::io::Error) {
        self.send_errors.fetch_add(1, Ordering::Relaxed);
        if self.warn_limited() {
            tracing::warn!(%to, error = %e, "a gossip datagram could not be sent");
        }
    }

    pub(crate) fn note_foreign(&self, n: usize) {
        let mut f = lock(&self.foreign);
        f.0 = n;
        let now = Instant::now();
        if n > 0
            && f.1
                .is_none_or(|t| now.duration_since(t) > Duration::from_secs(60))
        {
            f.1 = Some(now);
            tracing::warn!(
                foreign = n,
                "gossip met members of another cluster; they are left out (two clusters share a seed or a client agent?)"
            );
        }
    }
}
