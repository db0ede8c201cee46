//! `conclave watch` and `conclave elect`: following changes and running a command only
//! while holding an election.
//!
//! `elect` is the fencing side of elections: the child runs only between a grant and the
//! moment the lease could end. The lease is renewed every `ttl/5`; if renewals fail, the
//! child is stopped (SIGTERM, then SIGKILL after the grace period) so that it is gone
//! `safety` before the lease can end, by this machine's clock, counted from the *sending*
//! of the last successful renewal (the leader stamps the lease later than that, so the real
//! lease ends no earlier). A lost lease (`not_holder`) stops the child at once. The epoch is
//! passed to the child as `CONCLAVE_ELECTION_EPOCH` for fencing writes elsewhere.

use std::process::Stdio;
use std::time::{Duration, Instant};

use conclave_types::{CampaignRequest, ElectionStatus, ErrorCode, LeaseRequest, WatchEvent};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

use crate::client::retry::Failure;
use crate::client::{ApiError, Client, ClientError};

/// How long a reconnecting watcher waits between attempts.
const RECONNECT: Duration = Duration::from_millis(500);

/// Which stream [`follow`] reads.
enum Stream<'a> {
    Watch {
        prefix: &'a str,
        from_revision: Option<u64>,
    },
    Observe {
        name: &'a str,
    },
}

/// Follow an event stream, printing each event with `show`, reconnecting and resuming
/// (Last-Event-ID) whenever the stream breaks; ends on an `error` event or a 4xx.
async fn follow(
    client: &Client,
    stream: Stream<'_>,
    what: &str,
    mut show: impl FnMut(&crate::client::SseEvent),
) -> Result<(), ClientError> {
    let mut last_id: Option<String> = None;
    loop {
        let opened = match &stream {
            Stream::Watch {
                prefix,
                from_revision,
            } => {
                client
                    .watch(prefix, *from_revision, last_id.as_deref())
                    .await
            }
            Stream::Observe { name } => client.observe(name, last_id.as_deref()).await,
        };
        let mut events = match opened {
            Ok(e) => e,
            Err(e @ ClientError::Api(_)) => return Err(e),
            Err(e) => {
                eprintln!("{what}: {e}; reconnecting");
                tokio::time::sleep(RECONNECT).await;
                continue;
            }
        };
        while let Ok(Some(ev)) = events.next().await {
            if ev.event == "error" {
                return Err(ClientError::Local(format!("{what} ended: {}", ev.data)));
            }
            if ev.id.is_some() {
                last_id.clone_from(&ev.id);
            }
            show(&ev);
        }
        eprintln!("{what}: the stream ended; resuming");
        tokio::time::sleep(RECONNECT).await;
    }
}

/// `conclave watch PREFIX`: print every change, reconnecting (and resuming) on failures.
pub async fn watch(
    client: &Client,
    prefix: &str,
    from_revision: Option<u64>,
    json: bool,
) -> Result<(), ClientError> {
    let stream = Stream::Watch {
        prefix,
        from_revision,
    };
    follow(client, stream, "watch", |ev| {
        if json {
            out!("{}", ev.data);
        } else if let Ok(w) = serde_json::from_str::<WatchEvent>(&ev.data) {
            let value = w
                .value
                .or(w.value_base64.map(|b| format!("base64:{b}")))
                .unwrap_or_default();
            out!("{} {} {} {}", w.revision, w.kind, w.key, value);
        }
    })
    .await
}

/// `conclave elect NAME --observe`.
pub async fn observe(client: &Client, name: &str, json: bool) -> Result<(), ClientError> {
    follow(client, Stream::Observe { name }, "observe", |ev| {
        if json {
            out!("{}", ev.data);
            return;
        }
        let v: serde_json::Value = serde_json::from_str(&ev.data).unwrap_or_default();
        let holder = v["holder"].as_str().unwrap_or("none");
        match v["target"].as_str() {
            Some(target) => out!(
                "{} holder={holder} epoch={} target={target}",
                ev.event,
                v["epoch"]
            ),
            None => out!("{} holder={holder} epoch={}", ev.event, v["epoch"]),
        }
    })
    .await
}

pub struct ElectOptions {
    pub name: String,
    pub candidate: String,
    pub ttl: Duration,
    pub grace: Duration,
    pub command: Vec<String>,
}

/// How the child's tenure ended.
enum Ended {
    /// The child exited by itself with this code.
    Exited(i32),
    /// Leadership was lost or could not be confirmed in time.
    Lost,
    /// `elect` itself was asked to stop.
    Stopped,
}

/// `conclave elect NAME -- CMD ARGS...`: campaign, run CMD while elected, repeat.
/// Returns the child's exit code when it exits by itself.
pub async fn elect(client: &Client, opts: ElectOptions) -> Result<i32, ClientError> {
    let safety = Duration::from_millis(500);
    if opts.ttl < opts.grace + safety * 2 {
        return Err(ClientError::Local(format!(
            "--ttl ({:?}) must exceed --grace ({:?}) by at least 1s, so the command can be stopped before the lease ends",
            opts.ttl, opts.grace
        )));
    }
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| ClientError::Local(format!("cannot watch SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| ClientError::Local(format!("cannot watch SIGINT: {e}")))?;
    loop {
        // Campaign until elected (or told to stop).
        let status = tokio::select! {
            s = campaign_until_elected(client, &opts) => s?,
            _ = term.recv() => return Ok(143),
            _ = int.recv() => return Ok(130),
        };
        let epoch = status.epoch;
        eprintln!(
            "elect: {} holds {:?} with epoch {epoch}; starting the command",
            opts.candidate, opts.name
        );
        let mut child = Command::new(&opts.command[0])
            .args(&opts.command[1..])
            .env("CONCLAVE_ELECTION_NAME", &opts.name)
            .env("CONCLAVE_ELECTION_EPOCH", epoch.to_string())
            .env("CONCLAVE_ELECTION_CANDIDATE", &opts.candidate)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| ClientError::Local(format!("cannot start {:?}: {e}", opts.command[0])))?;
        let ended = hold(
            client,
            &opts,
            epoch,
            status.sent_at,
            &mut child,
            &mut term,
            &mut int,
        )
        .await;
        let lease = LeaseRequest {
            candidate: opts.candidate.clone(),
            epoch,
        };
        match ended {
            Ended::Exited(code) => {
                eprintln!("elect: the command exited with {code}");
                resign(client, &opts.name, &lease, epoch, opts.ttl).await;
                return Ok(code);
            }
            Ended::Stopped => {
                conclave_hook::stop_child(&mut child, opts.grace).await;
                eprintln!("elect: stopped");
                resign(client, &opts.name, &lease, epoch, opts.ttl).await;
                return Ok(143);
            }
            Ended::Lost => {
                conclave_hook::stop_child(&mut child, opts.grace).await;
                eprintln!("elect: epoch {epoch} is over; campaigning again");
            }
        }
    }
}

struct Elected {
    epoch: u64,
    /// When the winning request was sent: the lease runs from no earlier than this.
    sent_at: Instant,
}

async fn campaign_until_elected(
    client: &Client,
    opts: &ElectOptions,
) -> Result<Elected, ClientError> {
    loop {
        let sent_at = Instant::now();
        let body = CampaignRequest {
            candidate: opts.candidate.clone(),
            ttl_ms: opts.ttl.as_millis() as u64,
            wait_ms: 10_000,
        };
        let result: Result<ElectionStatus, _> = client.campaign(&opts.name, &body).await;
        match result {
            Ok(s) if s.elected == Some(true) => {
                return Ok(Elected {
                    epoch: s.epoch,
                    sent_at,
                });
            }
            Ok(_) => {}
            Err(
                e @ ClientError::Api(ApiError {
                    status: 400..=499, ..
                }),
            ) => return Err(e),
            Err(e) => {
                eprintln!("elect: campaign failed ({e}); retrying");
                tokio::time::sleep(RECONNECT).await;
            }
        }
    }
}

/// Keep the lease while the child runs; returns why the tenure ended.
async fn hold(
    client: &Client,
    opts: &ElectOptions,
    epoch: u64,
    granted_sent_at: Instant,
    child: &mut Child,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) -> Ended {
    let lease = LeaseRequest {
        candidate: opts.candidate.clone(),
        epoch,
    };
    let every = opts.ttl / 5;
    // The child must be gone `safety` before the lease could end: start stopping it `grace`
    // earlier still.
    let margin = opts.grace + Duration::from_millis(500);
    let mut stop_at = granted_sent_at + opts.ttl - margin;
    let mut next = Instant::now() + every;
    loop {
        let renew_at = next.min(stop_at);
        tokio::select! {
            status = child.wait() => {
                return Ended::Exited(status.ok().and_then(|s| s.code()).unwrap_or(1));
            }
            _ = term.recv() => return Ended::Stopped,
            _ = int.recv() => return Ended::Stopped,
            _ = tokio::time::sleep_until(renew_at.into()) => {}
        }
        if Instant::now() >= stop_at {
            eprintln!("elect: could not renew the lease in time; stopping the command");
            return Ended::Lost;
        }
        let sent_at = Instant::now();
        let renewal = tokio::time::timeout(
            stop_at.saturating_duration_since(sent_at),
            client.keepalive(&opts.name, &lease),
        )
        .await;
        match renewal {
            Ok(Ok(_)) => {
                stop_at = sent_at + opts.ttl - margin;
                next = sent_at + every;
            }
            Ok(Err(ClientError::Api(ApiError {
                code: ErrorCode::NotHolder,
                message,
                ..
            }))) => {
                eprintln!("elect: lost the election: {message}");
                return Ended::Lost;
            }
            Ok(Err(e)) => {
                eprintln!("elect: renewal failed ({e}); retrying");
                next = Instant::now() + Duration::from_millis(200);
            }
            Err(_) => {} // timed out at stop_at; the loop stops the child
        }
    }
}

/// Resign, and say whether it worked: a failed resign is not fatal (the lease ends by itself
/// within its TTL) but must not be reported as done.
///
/// Resigning a given epoch is harmless to repeat (a second one answers `not_holder`), so an
/// answer that leaves it uncertain — a timeout, a 503 while the cluster elects a leader — is
/// retried until the lease would have ended anyway.
async fn resign(client: &Client, name: &str, lease: &LeaseRequest, epoch: u64, ttl: Duration) {
    let deadline = Instant::now() + ttl.max(Duration::from_secs(1));
    loop {
        let error = match client.resign(name, lease).await {
            Ok(_) => {
                eprintln!("elect: resigned epoch {epoch}");
                return;
            }
            Err(e) if e.code() == Some(ErrorCode::NotHolder) => {
                eprintln!("elect: epoch {epoch} had already ended");
                return;
            }
            Err(e) => e,
        };
        let uncertain = matches!(
            error.as_failure(),
            Failure::TimedOut | Failure::Refused | Failure::Answered { status: 503, .. }
        );
        if !uncertain || Instant::now() >= deadline {
            eprintln!(
                "elect: could not resign epoch {epoch} ({error}); the lease ends by itself within its TTL"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
