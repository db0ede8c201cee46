//! The register workload: several clients read, write and compare-and-swap a few keys over
//! HTTP, recording every operation with its invoke and complete times. An answer that
//! proves the operation did not happen (no leader, no quorum, connection refused) leaves it
//! out of the history; one that leaves it open (timeout, `indeterminate`) is recorded as
//! unknown. The clients follow the retry contract: after such an answer they try the next
//! node.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclave_check::{Op, Outcome, Record};

/// How many keys each phase uses.
pub const KEYS: u32 = 3;

#[derive(Default)]
pub struct Tally {
    pub ok: u64,
    pub failed: u64,
    pub unknown: u64,
}

pub struct Workload {
    pub start: Instant,
    pub phase: AtomicU32,
    pub stop: AtomicBool,
    pub history: Mutex<Vec<Record>>,
    pub tally: Mutex<Tally>,
    /// Completion times (ns since start) of write-path operations the leader answered.
    pub write_acks: Mutex<Vec<u64>>,
    pub nodes: Vec<String>,
}

impl Workload {
    pub fn new(nodes: Vec<String>) -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            phase: AtomicU32::new(0),
            stop: AtomicBool::new(false),
            history: Mutex::new(Vec::new()),
            tally: Mutex::new(Tally::default()),
            write_acks: Mutex::new(Vec::new()),
            nodes,
        })
    }

    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// The longest stretch without an answered write within `[from, to]` (ns), counting
    /// from `from`: how long writes stopped around a fault.
    pub fn write_outage(&self, from: u64, to: u64) -> Duration {
        let acks = self.write_acks.lock().unwrap();
        let mut times: Vec<u64> = acks
            .iter()
            .copied()
            .filter(|t| *t >= from && *t <= to)
            .collect();
        times.sort_unstable();
        let mut last = from;
        let mut worst = 0;
        for t in times.iter().copied().chain(std::iter::once(to)) {
            worst = worst.max(t - last);
            last = t;
        }
        Duration::from_nanos(worst)
    }
}

/// An HTTP client whose requests end after `timeout` (connecting: at most 500 ms).
pub fn http_client(timeout: Duration) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_millis(500))
        .build()
        .expect("http client")
}

enum Answer {
    Certain(Outcome, Option<u64>),
    NotDone,
    Unknown,
}

/// One client until `stop`: operations on the current phase's keys, a short pause apart.
pub async fn client(w: Arc<Workload>, id: u32) {
    let http = http_client(Duration::from_secs(4));
    let mut node = id as usize % w.nodes.len();
    let mut counter: u64 = 0;
    // The last (value, revision) this client read of each key.
    let mut seen: HashMap<String, (Option<u64>, u64)> = HashMap::new();
    while !w.stop.load(Ordering::Relaxed) {
        let phase = w.phase.load(Ordering::Relaxed);
        let pick = rand::random_range(0..KEYS);
        let key = format!("faults/p{phase}/k{pick}");
        let url = format!("{}/v1/kv/{key}", w.nodes[node]);
        let op = match rand::random_range(0..10) {
            0..4 => Op::Read,
            4..7 => {
                counter += 1;
                Op::Write(u64::from(id) * 1_000_000_000 + counter)
            }
            _ => {
                counter += 1;
                let (from, _) = seen.get(&key).copied().unwrap_or((None, 0));
                Op::Cas {
                    from,
                    to: u64::from(id) * 1_000_000_000 + counter,
                }
            }
        };
        let invoked = w.now();
        let answer = match op {
            Op::Read => read(&http, &url).await,
            Op::Write(v) => write(&http, &url, v, None).await,
            Op::Cas { to, .. } => {
                let rev = seen.get(&key).map_or(0, |(_, r)| *r);
                write(&http, &url, to, Some(rev)).await
            }
        };
        let completed = w.now();
        match answer {
            Answer::Certain(outcome, revision) => {
                if let (Outcome::Read(v), Some(r)) = (outcome, revision) {
                    seen.insert(key.clone(), (v, r));
                }
                if !matches!(op, Op::Read) {
                    w.write_acks.lock().unwrap().push(completed);
                }
                w.tally.lock().unwrap().ok += 1;
                w.history.lock().unwrap().push(Record {
                    client: id,
                    key,
                    op,
                    outcome,
                    invoked,
                    completed: Some(completed),
                });
            }
            Answer::NotDone => {
                w.tally.lock().unwrap().failed += 1;
                node = (node + 1) % w.nodes.len();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Answer::Unknown => {
                w.tally.lock().unwrap().unknown += 1;
                if !matches!(op, Op::Read) {
                    w.history.lock().unwrap().push(Record {
                        client: id,
                        key,
                        op,
                        outcome: Outcome::Unknown,
                        invoked,
                        completed: None,
                    });
                }
                node = (node + 1) % w.nodes.len();
            }
        }
        tokio::time::sleep(Duration::from_millis(rand::random_range(5..25))).await;
    }
}

async fn read(http: &reqwest::Client, url: &str) -> Answer {
    match http.get(url).send().await {
        Ok(r) if r.status() == 200 => {
            let rev = r
                .headers()
                .get("x-conclave-revision")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            match r.text().await.ok().and_then(|t| t.parse::<u64>().ok()) {
                Some(v) => Answer::Certain(Outcome::Read(Some(v)), rev),
                None => Answer::Unknown,
            }
        }
        Ok(r) if r.status() == 404 => Answer::Certain(Outcome::Read(None), Some(0)),
        // A read changes nothing: any failure leaves it out.
        _ => Answer::NotDone,
    }
}

async fn write(http: &reqwest::Client, url: &str, value: u64, cas: Option<u64>) -> Answer {
    let url = match cas {
        Some(rev) => format!("{url}?cas={rev}"),
        None => url.to_string(),
    };
    match http.put(&url).body(value.to_string()).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let code = r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|b| b["error"]["code"].as_str().map(str::to_string));
            match (status, code.as_deref(), cas) {
                (200, _, None) => Answer::Certain(Outcome::Written, None),
                (200, _, Some(_)) => Answer::Certain(Outcome::Cas(true), None),
                (409, Some("cas_conflict"), Some(_)) => Answer::Certain(Outcome::Cas(false), None),
                (503, Some("no_leader" | "no_quorum" | "not_ready"), _) => Answer::NotDone,
                _ => Answer::Unknown,
            }
        }
        Err(e) if e.is_connect() => Answer::NotDone,
        Err(_) => Answer::Unknown,
    }
}
