//! Address allocations per second through a cluster's HTTP API, conclave against what a user
//! would build on etcd 3.4 instead.
//!
//! - conclave: `POST /api/v1/allocations {"network_id", "hostname"}`; the state machine picks
//!   the lowest free address and keeps the hostname's allocation (a repeat returns it).
//! - etcd: the usual compare-and-swap over a free-list key. The key holds the free ranges
//!   (`start-end,...`, address offsets in the network); a client reads it, takes the lowest
//!   address and sends one transaction: if the free list's mod revision is still the one
//!   read and the hostname has no allocation yet, write the shorter free list and
//!   `alloc/<hostname>`; else the transaction returns the current free list and the client
//!   tries again (a client keeps the free list its last transaction wrote, so without
//!   contention an allocation is one round trip). Every allocation in the network contends on that one key, which is what
//!   such a design costs; it is the design the IPAM seed's users would otherwise write.
//!
//! Every client holds one keep-alive HTTP/1.1 connection (the same client for both systems)
//! and allocates new hostnames back to back until the time is up; a refused or failed
//! request counts as an error and its latency is not kept.
//!
//! `ipam-load --system conclave|etcd --addr a,b,c -c 64 --seconds 5 [--network ID]`
//! (`--setup` first: creates the network, or the etcd free list, a /8).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum System {
    Conclave,
    Etcd,
}

#[derive(Parser)]
struct Args {
    #[arg(long, value_enum)]
    system: System,
    /// Comma-separated host:port of the nodes; clients are spread over them.
    #[arg(long)]
    addr: String,
    #[arg(short = 'c', long, default_value_t = 1)]
    concurrency: usize,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// The conclave network, or the etcd key prefix.
    #[arg(long, default_value = "bench")]
    network: String,
    /// Create the network (a /8) or the etcd free list, then exit.
    #[arg(long)]
    setup: bool,
    /// With --setup on conclave: the network's CIDR (a /8).
    #[arg(long, default_value = "10.0.0.0/8")]
    cidr: String,
    /// With --setup on conclave: then fill it with this many allocations (bulk requests).
    #[arg(long, default_value_t = 0)]
    fill: u64,
}

/// A /8 has 2^24 - 2 usable addresses: offsets 1 to 2^24 - 2.
const LAST_OFFSET: u64 = (1 << 24) - 2;

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(addr: &str) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// `POST path body` → (status, JSON body).
async fn post(
    sender: &mut Sender,
    addr: &str,
    path: &str,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let req = Request::builder()
        .method("POST")
        .uri(path)
        .header("host", addr)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(body)?)))?;
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unb64(v: &Value) -> String {
    v.as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The lowest free offset of a free list, and the list without it.
fn take_lowest(free: &str) -> Option<(u64, String)> {
    let (first, rest) = free.split_once(',').map_or((free, ""), |(f, r)| (f, r));
    let (start, end) = first.split_once('-')?;
    let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
    let left = if start == end {
        rest.to_owned()
    } else if rest.is_empty() {
        format!("{}-{end}", start + 1)
    } else {
        format!("{}-{end},{rest}", start + 1)
    };
    Some((start, left))
}

fn address(offset: u64) -> String {
    let ip = (10u64 << 24) + offset;
    format!(
        "{}.{}.{}.{}",
        ip >> 24,
        (ip >> 16) & 255,
        (ip >> 8) & 255,
        ip & 255
    )
}

/// One etcd allocation: read the free list, then CAS until it takes. Returns the tries.
async fn etcd_allocate(
    sender: &mut Sender,
    addr: &str,
    prefix: &str,
    hostname: &str,
    cached: &mut Option<(String, String)>,
) -> anyhow::Result<u64> {
    let free_key = format!("{prefix}/free");
    let alloc_key = format!("{prefix}/alloc/{hostname}");
    let mut tries = 0;
    loop {
        tries += 1;
        let (value, mod_revision) = match cached.take() {
            Some(c) => c,
            None => {
                let (_, r) = post(
                    sender,
                    addr,
                    "/v3/kv/range",
                    &json!({"key": b64(&free_key)}),
                )
                .await?;
                let kv = &r["kvs"][0];
                (
                    unb64(&kv["value"]),
                    kv["mod_revision"].as_str().unwrap_or("0").to_owned(),
                )
            }
        };
        let Some((offset, left)) = take_lowest(&value) else {
            bail!("the free list is empty or unreadable: {value:?}");
        };
        let txn = json!({
            "compare": [
                {"key": b64(&free_key), "target": "MOD", "result": "EQUAL", "mod_revision": mod_revision},
                {"key": b64(&alloc_key), "target": "VERSION", "result": "EQUAL", "version": "0"},
            ],
            "success": [
                {"request_put": {"key": b64(&free_key), "value": b64(&left)}},
                {"request_put": {"key": b64(&alloc_key), "value": b64(&address(offset))}},
            ],
            "failure": [{"request_range": {"key": b64(&free_key)}}],
        });
        let (status, r) = post(sender, addr, "/v3/kv/txn", &txn).await?;
        if status != 200 {
            bail!("txn answered {status}: {r}");
        }
        if r["succeeded"] == true {
            // The free list as this transaction left it, at the transaction's revision: the
            // next allocation of this client tries it without reading first.
            if let Some(revision) = r["header"]["revision"].as_str() {
                *cached = Some((left, revision.to_owned()));
            }
            return Ok(tries);
        }
        // Lost the race: the failure branch read the current free list.
        let kv = &r["responses"][0]["response_range"]["kvs"][0];
        *cached = Some((
            unb64(&kv["value"]),
            kv["mod_revision"].as_str().unwrap_or("0").to_owned(),
        ));
    }
}

struct Shared {
    deadline: Instant,
    errors: AtomicU64,
    tries: AtomicU64,
}

async fn worker(
    args: Arc<Args>,
    shared: Arc<Shared>,
    addr: String,
    id: usize,
) -> anyhow::Result<Vec<u32>> {
    let mut sender = connect(&addr).await?;
    let mut lat = Vec::with_capacity(100_000);
    let mut cached = None;
    let run = std::process::id();
    let mut n = 0u64;
    while Instant::now() < shared.deadline {
        n += 1;
        let hostname = format!("h{run}-{id}-{n}");
        let start = Instant::now();
        let ok = match args.system {
            System::Conclave => {
                let body = json!({"network_id": args.network, "hostname": hostname});
                let (status, _) = post(&mut sender, &addr, "/api/v1/allocations", &body).await?;
                status == 201
            }
            System::Etcd => {
                match etcd_allocate(&mut sender, &addr, &args.network, &hostname, &mut cached).await
                {
                    Ok(tries) => {
                        shared.tries.fetch_add(tries, Ordering::Relaxed);
                        true
                    }
                    Err(_) => false,
                }
            }
        };
        if ok {
            lat.push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
        } else {
            shared.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(lat)
}

fn percentile(sorted: &[u32], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    u64::from(sorted[idx])
}

async fn setup(args: &Args, addr: &str) -> anyhow::Result<()> {
    let mut sender = connect(addr).await?;
    match args.system {
        System::Conclave => {
            let (status, r) = post(
                &mut sender,
                addr,
                "/api/v1/networks",
                &json!({"id": args.network, "cidr": args.cidr}),
            )
            .await?;
            if status != 201 {
                bail!("creating the network answered {status}: {r}");
            }
            let mut filled = 0;
            while filled < args.fill {
                let count = (args.fill - filled).min(1024);
                let body = json!({"network_id": args.network, "count": count});
                let (status, r) = post(&mut sender, addr, "/api/v1/allocations", &body).await?;
                if status != 201 {
                    bail!("filling answered {status}: {r}");
                }
                filled += count;
            }
        }
        System::Etcd => {
            let put = json!({"key": b64(&format!("{}/free", args.network)), "value": b64(&format!("1-{LAST_OFFSET}"))});
            let (status, r) = post(&mut sender, addr, "/v3/kv/put", &put).await?;
            if status != 200 {
                bail!("writing the free list answered {status}: {r}");
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let addrs: Vec<String> = args
        .addr
        .split(',')
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect();
    let Some(first) = addrs.first() else {
        bail!("--addr needs at least one host:port");
    };
    if args.setup {
        return setup(&args, first).await;
    }
    if args.concurrency == 0 {
        bail!("-c must be at least 1");
    }
    let started = Instant::now();
    let shared = Arc::new(Shared {
        deadline: started + Duration::from_secs_f64(args.seconds),
        errors: AtomicU64::new(0),
        tries: AtomicU64::new(0),
    });
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|id| {
            tokio::spawn(worker(
                args.clone(),
                shared.clone(),
                addrs[id % addrs.len()].clone(),
                id,
            ))
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let ops = all.len() as u64;
    let report = json!({
        "system": format!("{:?}", args.system).to_lowercase(),
        "op": "allocate",
        "concurrency": args.concurrency,
        "ops": ops,
        "errors": shared.errors.load(Ordering::Relaxed),
        "seconds": seconds,
        "ops_per_sec": ops as f64 / seconds,
        "p50_us": percentile(&all, 0.50),
        "p99_us": percentile(&all, 0.99),
        "max_us": all.last().copied().unwrap_or(0),
        "cas_tries_per_allocation": if args.system == System::Etcd && ops > 0 {
            Some(shared.tries.load(Ordering::Relaxed) as f64 / ops as f64)
        } else {
            None
        },
    });
    println!("{report}");
    Ok(())
}
