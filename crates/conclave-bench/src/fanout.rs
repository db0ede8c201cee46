//! Watch fan-out: many SSE watchers on one prefix while a writer puts timestamped values;
//! each watcher measures delivery latency (value's send time → event received).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::percentile;

#[derive(Serialize)]
pub struct FanoutReport {
    watchers: usize,
    writes: u64,
    writes_per_sec: f64,
    expected_events: u64,
    received_events: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

async fn connect(addr: &str) -> anyhow::Result<http1::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One watcher: connect, then record latencies until `stop`.
async fn watcher(
    addr: String,
    ready: Arc<AtomicU64>,
    stop: CancellationToken,
) -> anyhow::Result<Vec<u32>> {
    let stream = TcpStream::connect(&addr).await?;
    let (mut sender, conn) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::get(format!("http://{addr}/v1/watch?prefix=fanout/"))
        .header("host", &addr)
        .body(Empty::new())?;
    let resp = sender.send_request(req).await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "watch refused: {}",
        resp.status()
    );
    ready.fetch_add(1, Ordering::Relaxed);
    let mut body = resp.into_body();
    let mut buf = String::new();
    let mut lat = Vec::new();
    loop {
        let frame = tokio::select! {
            _ = stop.cancelled() => break,
            f = body.frame() => f,
        };
        let Some(Ok(frame)) = frame else { break };
        let Some(data) = frame.data_ref() else {
            continue;
        };
        let received = now_us();
        buf.push_str(&String::from_utf8_lossy(data));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let Some(line) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if let Some(sent) = v["value"].as_str().and_then(|s| s.parse::<u64>().ok()) {
                lat.push(received.saturating_sub(sent).min(u32::MAX as u64) as u32);
            }
        }
    }
    Ok(lat)
}

pub async fn run(
    addrs: Vec<String>,
    watchers: usize,
    writes_per_sec: f64,
    seconds: f64,
) -> anyhow::Result<FanoutReport> {
    let ready = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    for i in 0..watchers {
        let addr = addrs[i % addrs.len()].clone();
        tasks.push(tokio::spawn(watcher(addr, ready.clone(), stop.clone())));
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let connect_deadline = Instant::now() + Duration::from_secs(60);
    while (ready.load(Ordering::Relaxed) as usize) < watchers {
        anyhow::ensure!(
            Instant::now() < connect_deadline,
            "only {} of {watchers} watchers connected",
            ready.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The writer: timestamped values at a steady rate, through the first address.
    let mut sender = connect(&addrs[0]).await?;
    let interval = Duration::from_secs_f64(1.0 / writes_per_sec.max(0.1));
    let mut tick = tokio::time::interval(interval);
    let start = Instant::now();
    let mut writes = 0u64;
    while start.elapsed() < Duration::from_secs_f64(seconds) {
        tick.tick().await;
        let req = Request::put(format!("http://{}/v1/kv/fanout/{}", addrs[0], writes % 100))
            .header("host", &addrs[0])
            .body(Full::new(Bytes::from(now_us().to_string())))?;
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        let _ = resp.into_body().collect().await?;
        writes += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let mut all = Vec::new();
    for t in tasks {
        if let Ok(Ok(lat)) = t.await {
            all.extend(lat);
        }
    }
    all.sort_unstable();
    let ms = |us: u64| us as f64 / 1000.0;
    Ok(FanoutReport {
        watchers,
        writes,
        writes_per_sec: writes as f64 / elapsed,
        expected_events: writes * watchers as u64,
        received_events: all.len() as u64,
        p50_ms: ms(percentile(&all, 0.50)),
        p99_ms: ms(percentile(&all, 0.99)),
        max_ms: ms(all.last().copied().map_or(0, u64::from)),
    })
}
