//! Reusable authenticated connections to peers.

use super::*;

/// Reusable authenticated connections, keyed by address; safe for concurrent callers (each
/// call takes its own connection).
pub struct Pool {
    creds: Arc<Credentials>,
    idle: Mutex<HashMap<String, Vec<Conn>>>,
}

impl Pool {
    pub fn new(creds: Arc<Credentials>) -> Self {
        Self {
            creds,
            idle: Mutex::new(HashMap::new()),
        }
    }

    /// An idle connection to `addr` that the peer has not closed meanwhile.
    fn take(&self, addr: &str) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(addr)?;
        while let Some(conn) = list.pop() {
            if conn.looks_open() {
                return Some(conn);
            }
        }
        None
    }

    fn give_back(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(conn.addr.clone()).or_default();
        if list.len() < MAX_IDLE_PER_PEER {
            list.push(conn);
        }
    }

    /// Drop every idle connection to `addr` (its node restarted or moved).
    pub fn forget(&self, addr: &str) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(addr);
    }

    /// One request/response on a pooled connection, within `timeout`.
    ///
    /// A pooled connection may have been closed by the peer since its last use; for requests
    /// that are safe to repeat (`idempotent`), a failure on a reused connection is retried
    /// once on a fresh one.
    pub async fn call<Req: Serialize, Resp: for<'de> Deserialize<'de>>(
        &self,
        addr: &str,
        req: &Req,
        timeout: Duration,
        idempotent: bool,
    ) -> Result<Resp, CallError> {
        // Whether the request left this node: a timeout before that (a slow connect or
        // handshake) is "unreachable", never "outcome unknown".
        let sent = std::sync::atomic::AtomicBool::new(false);
        let attempt = async {
            let reused = self.take(addr);
            let was_reused = reused.is_some();
            let mut conn = match reused {
                Some(c) => c,
                None => Conn::connect(addr, &self.creds).await?,
            };
            sent.store(true, std::sync::atomic::Ordering::Relaxed);
            match conn.call(req).await {
                Ok(resp) => {
                    self.give_back(conn);
                    Ok(resp)
                }
                Err(e) if was_reused && idempotent => {
                    tracing::debug!(%addr, error = %e, "pooled connection failed; reconnecting");
                    self.forget(addr);
                    let mut conn = Conn::connect(addr, &self.creds).await?;
                    let resp = conn.call(req).await?;
                    self.give_back(conn);
                    Ok(resp)
                }
                Err(e) => {
                    self.forget(addr);
                    Err(e)
                }
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) if !sent.load(std::sync::atomic::Ordering::Relaxed) => {
                Err(CallError::Unreachable {
                    addr: addr.to_owned(),
                    source: io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no connection within {timeout:?}"),
                    ),
                })
            }
            Err(_) => Err(CallError::Lost {
                addr: addr.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no reply within {timeout:?}"),
                ),
            }),
        }
    }
}
