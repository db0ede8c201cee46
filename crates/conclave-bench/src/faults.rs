//! The leader taken away (killed, or a fault a shell command injects) and the time until a
//! write is acknowledged again; and how long one write to a leader without its quorum takes
//! to be answered.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;

use crate::{System, split_addrs, write_once};

/// How the leader is taken away.
pub(crate) enum Fault {
    Kill(u32),
    Shell(String),
}

pub(crate) async fn failover(
    system: System,
    fault: Fault,
    addr: String,
    timeout: f64,
) -> anyhow::Result<serde_json::Value> {
    let addrs = split_addrs(&addr)?;
    let value = Bytes::from(vec![b'v'; 100]);
    let (what, status) = match &fault {
        Fault::Kill(pid) => (
            format!("kill -9 {pid}"),
            std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status(),
        ),
        Fault::Shell(cmd) => (
            cmd.clone(),
            std::process::Command::new("sh").args(["-c", cmd]).status(),
        ),
    };
    if !status.with_context(|| format!("run {what}"))?.success() {
        bail!("{what} failed");
    }
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs_f64(timeout);
    // A new attempt through every survivor every 50 ms, each left to run until the deadline:
    // a request that waits inside a node for the election is not cut short, and one that
    // hangs (etcd's gateway holds requests sent to a dead leader) does not delay the next.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Duration, u64)>();
    let mut attempt = 0u64;
    let mut launch = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            first = rx.recv() => {
                let Some((addr, took, n)) = first else { break };
                return Ok(serde_json::json!({
                    "system": format!("{system:?}").to_lowercase(),
                    "failover_ms": took.as_secs_f64() * 1000.0,
                    "first_ack_via": addr,
                    "attempt": n,
                }));
            }
            _ = launch.tick() => {
                if Instant::now() >= deadline {
                    break;
                }
                for addr in &addrs {
                    attempt += 1;
                    let (tx, addr, value, n) = (tx.clone(), addr.clone(), value.clone(), attempt);
                    let left = deadline.saturating_duration_since(Instant::now());
                    tokio::spawn(async move {
                        if let Ok(Ok(())) = tokio::time::timeout(left, write_once(system, &addr, &value)).await {
                            let _ = tx.send((addr, killed.elapsed(), n));
                        }
                    });
                }
            }
        }
    }
    bail!("no write was acknowledged within {timeout} s of the kill")
}

/// One write to `addr`: how long until it was answered, and the answer (or the error).
pub(crate) async fn answer(system: System, addr: String, timeout: f64) -> serde_json::Value {
    let value = Bytes::from(vec![b'v'; 100]);
    let sent = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs_f64(timeout),
        write_once(system, &addr, &value),
    )
    .await;
    let took = sent.elapsed().as_secs_f64() * 1000.0;
    let answered = outcome.is_ok();
    let answer = match outcome {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {timeout} s"),
    };
    serde_json::json!({
        "system": format!("{system:?}").to_lowercase(),
        "answer_ms": took,
        "answered": answered,
        "answer": answer,
    })
}
