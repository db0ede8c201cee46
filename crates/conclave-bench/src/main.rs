//! conclave-bench: drive conclave or etcd with the same HTTP/1.1 keep-alive load, and probe
//! the disk's fsync ceiling, so numbers can be compared in one run on one machine.
//!
//! `conclave-bench load --system conclave|etcd --op put|get|stale-get -c 64 --seconds 5`
//! prints one JSON line: ops/s, latency percentiles (µs), errors.
//! `conclave-bench fsync --dir D` prints the single-thread 4 KiB write + fdatasync rate.
//! `conclave-bench failover --system S --kill-pid P --addr a,b` kills the leader's process and
//! prints how long it took until a write was acknowledged again; `--inject CMD` runs a
//! shell command instead (a firewall rule, SIGSTOP: `bench/faults.sh`).
//! `conclave-bench answer --system S --addr a` times how long one write takes to be answered
//! (a leader that lost its quorum), and with what.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
mod fanout;
mod faults;
mod tls;

use tls::TlsArgs;

use clap::{Parser, Subcommand, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(about = "Load generator for conclave and etcd, and a disk fsync probe")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one load point and print a JSON line.
    Load {
        #[arg(long, value_enum)]
        system: System,
        /// host:port of the HTTP endpoint; a comma-separated list spreads clients over nodes.
        #[arg(long)]
        addr: String,
        #[arg(long, value_enum)]
        op: Op,
        /// Concurrent clients, each with its own keep-alive connection.
        #[arg(long, short = 'c')]
        concurrency: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Distinct keys written/read.
        #[arg(long, default_value_t = 1000)]
        keys: usize,
        #[arg(long, default_value_t = 100)]
        value_size: usize,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// SIGKILL a process (the leader), then write through the other nodes until one write is
    /// acknowledged; prints the time from the kill to that acknowledgement.
    Failover {
        #[arg(long, value_enum)]
        system: System,
        /// PID of the leader's process, killed with SIGKILL.
        #[arg(long, conflicts_with = "inject", required_unless_present = "inject")]
        kill_pid: Option<u32>,
        /// A shell command that injects the fault instead (e.g. an iptables rule).
        #[arg(long)]
        inject: Option<String>,
        /// Comma-separated host:port of the surviving nodes' HTTP endpoints.
        #[arg(long)]
        addr: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 20.0)]
        timeout: f64,
    },
    /// Send one write to `addr` and print how long the answer took, and what it was.
    Answer {
        #[arg(long, value_enum)]
        system: System,
        /// host:port of the HTTP endpoint.
        #[arg(long)]
        addr: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
    },
    /// Poll `/v1/members` on every agent until all of them show member `id` in `state`;
    /// prints when each agent first saw it (ms since the start).
    Watch {
        /// A file with one agent HTTP address (host:port) per line.
        #[arg(long)]
        addrs_file: PathBuf,
        #[arg(long)]
        id: u64,
        /// alive, suspect, dead or left.
        #[arg(long)]
        state: String,
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
    },
    /// Poll `/v1/members` on every agent for `seconds` and count members seen as suspect or
    /// dead (false positives when no agent was stopped).
    Steady {
        #[arg(long)]
        addrs_file: PathBuf,
        #[arg(long)]
        seconds: f64,
    },
    /// Many SSE watchers on one prefix under a steady write load: delivery latency.
    SseFanout {
        /// Comma-separated host:port of the agents (watchers are spread over them; writes
        /// go to the first).
        #[arg(long)]
        addr: String,
        #[arg(long, default_value_t = 1000)]
        watchers: usize,
        #[arg(long, default_value_t = 100.0)]
        writes_per_sec: f64,
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
    },
    /// Measure 4 KiB write + fdatasync per op, single thread.
    Fsync {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum System {
    Conclave,
    Etcd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum Op {
    Put,
    Get,
    StaleGet,
}

#[derive(Serialize)]
struct Report {
    system: String,
    op: String,
    concurrency: usize,
    ops: u64,
    errors: u64,
    seconds: f64,
    ops_per_sec: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
}

fn key_name(i: usize) -> String {
    format!("bench/{i:08}")
}

fn build_request(
    system: System,
    op: Op,
    addr: &str,
    key: &str,
    value: &Bytes,
) -> Request<Full<Bytes>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let builder = Request::builder().header("host", addr);
    let result = match (system, op) {
        (System::Conclave, Op::Put) => builder
            .method("PUT")
            .uri(format!("/v1/kv/{key}"))
            .body(Full::new(value.clone())),
        (System::Conclave, Op::Get) => builder
            .method("GET")
            .uri(format!("/v1/kv/{key}"))
            .body(Full::new(Bytes::new())),
        (System::Conclave, Op::StaleGet) => builder
            .method("GET")
            .uri(format!("/v1/kv/{key}?consistency=stale"))
            .body(Full::new(Bytes::new())),
        (System::Etcd, Op::Put) => builder
            .method("POST")
            .uri("/v3/kv/put")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(format!(
                r#"{{"key":"{}","value":"{}"}}"#,
                b64.encode(key),
                b64.encode(value)
            )))),
        (System::Etcd, Op::Get | Op::StaleGet) => builder
            .method("POST")
            .uri("/v3/kv/range")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(format!(
                r#"{{"key":"{}"{}}}"#,
                b64.encode(key),
                if op == Op::StaleGet {
                    r#","serializable":true"#
                } else {
                    ""
                }
            )))),
    };
    result.expect("static request parts are valid")
}

/// What every client of one load point sends.
#[derive(Clone)]
struct Workload {
    system: System,
    op: Op,
    /// Distinct keys written/read.
    keys: usize,
    value: Bytes,
    deadline: Instant,
    tls: Option<tokio_rustls::TlsConnector>,
    authorization: Option<hyper::header::HeaderValue>,
}

/// One client: a keep-alive connection to `addr`, requests back to back until the deadline.
async fn worker(w: Workload, addr: String, id: usize) -> anyhow::Result<(Vec<u32>, u64)> {
    let Workload {
        system,
        op,
        keys,
        value,
        deadline,
        tls,
        authorization,
    } = w;
    let stream = TcpStream::connect(&addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    stream.set_nodelay(true)?;
    let mut sender = match tls {
        None => {
            let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            sender
        }
        Some(connector) => {
            let name = rustls::pki_types::ServerName::try_from("localhost")?;
            let stream = connector.connect(name, stream).await?;
            let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            sender
        }
    };
    let mut lat = Vec::with_capacity(100_000);
    let mut errors = 0u64;
    let mut i = id * 7919;
    while Instant::now() < deadline {
        let key = key_name(i % keys);
        i += 1;
        let mut req = build_request(system, op, &addr, &key, &value);
        if let Some(auth) = &authorization {
            req.headers_mut()
                .insert(hyper::header::AUTHORIZATION, auth.clone());
        }
        let start = Instant::now();
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        let ok = resp.status().is_success();
        let _ = resp.into_body().collect().await?;
        lat.push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
        if !ok {
            errors += 1;
        }
    }
    Ok((lat, errors))
}

fn percentile(sorted: &[u32], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    u64::from(sorted[idx])
}

/// One load point: `concurrency` clients spread over `addr` for `seconds`.
async fn load(
    (system, op): (System, Op),
    addr: String,
    concurrency: usize,
    seconds: f64,
    (keys, value_size): (usize, usize),
    tls: TlsArgs,
) -> anyhow::Result<Report> {
    if concurrency == 0 {
        bail!("concurrency must be at least 1");
    }
    let addrs = split_addrs(&addr)?;
    let start = Instant::now();
    let workload = Workload {
        system,
        op,
        keys,
        value: Bytes::from(vec![b'v'; value_size]),
        deadline: start + Duration::from_secs_f64(seconds),
        tls: tls.connector()?,
        authorization: tls.authorization()?,
    };
    let tasks: Vec<_> = (0..concurrency)
        .map(|id| {
            tokio::spawn(worker(
                workload.clone(),
                addrs[id % addrs.len()].clone(),
                id,
            ))
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await??;
        all.extend(lat);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    Ok(Report {
        system: format!("{system:?}").to_lowercase(),
        op: format!("{op:?}").to_lowercase(),
        concurrency,
        ops: all.len() as u64,
        errors,
        seconds: elapsed,
        ops_per_sec: all.len() as f64 / elapsed,
        p50_us: percentile(&all, 0.50),
        p99_us: percentile(&all, 0.99),
        p999_us: percentile(&all, 0.999),
        max_us: all.last().map_or(0, |v| u64::from(*v)),
    })
}

fn split_addrs(list: &str) -> anyhow::Result<Vec<String>> {
    let addrs: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(String::from)
        .collect();
    if addrs.is_empty() {
        bail!("--addr needs at least one host:port");
    }
    Ok(addrs)
}

/// One acknowledged write through `addr`, or an error (refused, timed out, non-2xx).
async fn write_once(system: System, addr: &str, value: &Bytes) -> anyhow::Result<()> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = build_request(system, Op::Put, addr, "bench/failover", value);
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    // etcd's gateway can answer 200 with an error object while it has no leader.
    if !status.is_success() || body.starts_with(b"{\"error\"") {
        bail!("{status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

async fn http_get_json(addr: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await??;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(path)
        .header("host", addr)
        .body(Full::new(Bytes::new()))?;
    let resp = tokio::time::timeout(Duration::from_secs(2), sender.send_request(req)).await??;
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&body)?)
}

fn read_addrs(file: &PathBuf) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// The state each agent reports for member `id` (None: not listed or unreachable).
async fn states_of(addrs: &[String], id: u64) -> Vec<Option<String>> {
    let polls = addrs.iter().cloned().map(move |a| async move {
        let m = http_get_json(&a, &format!("/v1/members/{id}")).await.ok()?;
        m["state"].as_str().map(String::from)
    });
    futures::future::join_all(polls).await
}

async fn watch(
    addrs: Vec<String>,
    id: u64,
    state: String,
    timeout: f64,
) -> anyhow::Result<serde_json::Value> {
    let start = Instant::now();
    let mut seen: Vec<Option<f64>> = vec![None; addrs.len()];
    let deadline = start + Duration::from_secs_f64(timeout);
    while seen.iter().any(Option::is_none) && Instant::now() < deadline {
        let round = states_of(&addrs, id).await;
        let at = start.elapsed().as_secs_f64() * 1000.0;
        for (slot, st) in seen.iter_mut().zip(round) {
            if slot.is_none() && st.as_deref() == Some(state.as_str()) {
                *slot = Some(at);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut times: Vec<f64> = seen.iter().flatten().copied().collect();
    times.sort_by(f64::total_cmp);
    let pick = |p: f64| {
        if times.is_empty() {
            0.0
        } else {
            times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1]
        }
    };
    Ok(serde_json::json!({
        "id": id, "state": state, "agents": addrs.len(),
        "missing": seen.iter().filter(|s| s.is_none()).count(),
        "p50_ms": pick(0.5), "p99_ms": pick(0.99), "all_ms": pick(1.0),
    }))
}

async fn steady(addrs: Vec<String>, seconds: f64) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut polls = 0u64;
    let mut suspect = std::collections::BTreeSet::new();
    let mut dead = std::collections::BTreeSet::new();
    while Instant::now() < deadline {
        let lists = futures::future::join_all(
            addrs
                .iter()
                .cloned()
                .map(|a| async move { (a.clone(), http_get_json(&a, "/v1/members").await.ok()) }),
        )
        .await;
        for (observer, list) in lists {
            polls += 1;
            for m in list
                .as_ref()
                .and_then(|l| l.as_array())
                .into_iter()
                .flatten()
            {
                let id = m["id"].as_u64().unwrap_or(0);
                match m["state"].as_str() {
                    Some("suspect") => {
                        suspect.insert((observer.clone(), id));
                    }
                    Some("dead") => {
                        dead.insert((observer.clone(), id));
                    }
                    _ => {}
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(serde_json::json!({
        "agents": addrs.len(), "seconds": seconds, "polls": polls,
        "suspect_pairs": suspect.len(), "dead_pairs": dead.len(),
        "dead_examples": dead.iter().take(5).map(|(o, id)| format!("{o} saw {id}")).collect::<Vec<_>>(),
    }))
}

fn fsync_probe(dir: PathBuf, seconds: f64) -> anyhow::Result<serde_json::Value> {
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("fsync-probe.bin");
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let block = vec![0xabu8; 4096];
    let mut lat = Vec::new();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut offset = 0u64;
    while Instant::now() < deadline {
        let t = Instant::now();
        f.write_all_at(&block, offset)?;
        f.sync_data()?;
        lat.push(t.elapsed().as_micros() as u32);
        offset += 4096;
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    lat.sort_unstable();
    Ok(serde_json::json!({
        "probe": "4KiB write + fdatasync, single thread",
        "ops": lat.len(),
        "ops_per_sec": lat.len() as f64 / elapsed,
        "p50_us": percentile(&lat, 0.5),
        "p99_us": percentile(&lat, 0.99),
    }))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new()?;
    match cli.cmd {
        Cmd::Load {
            system,
            addr,
            op,
            concurrency,
            seconds,
            keys,
            value_size,
            tls,
        } => {
            let report = rt.block_on(load(
                (system, op),
                addr,
                concurrency,
                seconds,
                (keys, value_size),
                tls,
            ))?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Cmd::Failover {
            system,
            kill_pid,
            inject,
            addr,
            timeout,
        } => {
            let fault = match (kill_pid, inject) {
                (Some(pid), _) => faults::Fault::Kill(pid),
                (None, Some(cmd)) => faults::Fault::Shell(cmd),
                (None, None) => bail!("pass --kill-pid or --inject"),
            };
            println!(
                "{}",
                rt.block_on(faults::failover(system, fault, addr, timeout))?
            );
        }
        Cmd::Answer {
            system,
            addr,
            timeout,
        } => {
            println!("{}", rt.block_on(faults::answer(system, addr, timeout)));
        }
        Cmd::Watch {
            addrs_file,
            id,
            state,
            timeout,
        } => {
            let addrs = read_addrs(&addrs_file)?;
            println!("{}", rt.block_on(watch(addrs, id, state, timeout))?);
        }
        Cmd::Steady {
            addrs_file,
            seconds,
        } => {
            let addrs = read_addrs(&addrs_file)?;
            println!("{}", rt.block_on(steady(addrs, seconds))?);
        }
        Cmd::SseFanout {
            addr,
            watchers,
            writes_per_sec,
            seconds,
        } => {
            let addrs = split_addrs(&addr)?;
            let report = rt.block_on(fanout::run(addrs, watchers, writes_per_sec, seconds))?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Cmd::Fsync { dir, seconds } => println!("{}", fsync_probe(dir, seconds)?),
    }
    Ok(())
}
