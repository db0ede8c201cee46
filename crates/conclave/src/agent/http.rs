//! The HTTP server: the API's router behind hyper's HTTP/1.1 connections, with the limits a
//! server reachable from a network needs.
//!
//! Why not `axum::serve`: it has no header-read timeout and no connection cap, so a client
//! that opens connections and sends headers slowly (slowloris) holds a descriptor each for
//! as long as it likes, until the agent cannot accept, or open a file. Here every
//! connection must deliver a request's headers within `header_timeout` (also between
//! requests on a kept-alive connection), and at most `max_connections` are open at once
//! (further clients wait in the listen backlog). The descriptor limit is raised to its hard
//! limit at start, and the cap leaves room below it for storage, node RPC and gossip.
//!
//! With TLS, each connection's handshake must also finish within `header_timeout`, and
//! uses the material current when it was accepted (`conclave_tls::Reloadable`), so rotated
//! certificates reach new connections without a restart.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;

/// How long in-flight HTTP requests may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(4);

/// Descriptors kept free for everything but HTTP clients.
const RESERVED_DESCRIPTORS: u64 = 512;

/// Limits of the HTTP server (`http_header_timeout`, `http_max_connections`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpLimits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

pub(crate) type HttpTask = tokio::task::JoinHandle<io::Result<()>>;

/// Raise the soft descriptor limit to the hard one; returns the soft limit now in force.
pub(crate) fn raise_descriptor_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// The limits `config` asks for, the connection cap within the descriptor limit (raised
/// to its hard limit here, once per agent start).
pub(crate) fn limits(config: &crate::config::AgentConfig) -> HttpLimits {
    HttpLimits {
        header_timeout: config.http_header_timeout,
        max_connections: connection_cap(config.http_max_connections, raise_descriptor_limit()),
    }
}

/// At most `wanted` connections, and never so many that storage and node RPC run out of
/// descriptors under `soft_limit`.
pub(crate) fn connection_cap(wanted: usize, soft_limit: u64) -> usize {
    let room = soft_limit.saturating_sub(RESERVED_DESCRIPTORS).max(64);
    wanted.min(room as usize).max(1)
}

/// Serve `app` until `shutdown`, then finish the requests in flight; HTTPS only when `tls`
/// is given.
pub(crate) fn serve(
    listener: TcpListener,
    app: axum::Router,
    shutdown: &CancellationToken,
    limits: HttpLimits,
    tls: Option<Arc<conclave_tls::Reloadable>>,
) -> HttpTask {
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let graceful = GracefulShutdown::new();
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        let mut last_full_warning: Option<std::time::Instant> = None;
        loop {
            if permits.available_permits() == 0
                && last_full_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60))
            {
                last_full_warning = Some(std::time::Instant::now());
                tracing::warn!(
                    max = limits.max_connections,
                    "the HTTP server has as many connections as it allows; new clients wait"
                );
            }
            let permit = tokio::select! {
                _ = stop.cancelled() => break,
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let stream = tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors or a connection reset before accept: wait a
                        // moment rather than spin.
                        tracing::warn!(error = %e, "accepting an HTTP connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let (stream, peer) = stream;
            // The caller's address, for the audit log (`conclave_api::audit::Acting`).
            let with_peer = tower::ServiceExt::map_request(
                app.clone(),
                move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    req
                },
            );
            let service = TowerToHyperService::new(with_peer);
            let Some(tls) = &tls else {
                let conn = graceful.watch(http1.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    // A client that goes away or times out is its own business.
                    let _ = conn.await;
                    drop(permit);
                });
                continue;
            };
            let acceptor = tls.acceptor();
            let (http1, watcher) = (http1.clone(), graceful.watcher());
            tokio::spawn(async move {
                // A failed handshake (no client certificate, a plain-HTTP client, a scanner)
                // is the client's problem; it is counted, not logged per connection.
                let handshake = async {
                    let mut stream = stream;
                    if !starts_with_tls(&mut stream).await? {
                        refuse_plain_http(&mut stream).await;
                        return Err(io::Error::other("plain HTTP on the HTTPS port"));
                    }
                    acceptor.accept(stream).await
                };
                match tokio::time::timeout(limits.header_timeout, handshake).await {
                    Ok(Ok(stream)) => {
                        let conn = http1.serve_connection(TokioIo::new(stream), service);
                        let _ = watcher.watch(conn).await;
                    }
                    _ => metrics::counter!("conclave_tls_handshake_failures_total").increment(1),
                }
                drop(permit);
            });
        }
        drop(listener);
        graceful.shutdown().await;
        Ok(())
    })
}

/// Whether the client's first byte opens a TLS handshake record (0x16), as opposed to,
/// say, a plain-HTTP request line.
async fn starts_with_tls(stream: &mut tokio::net::TcpStream) -> io::Result<bool> {
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await?;
    Ok(n == 1 && first[0] == 0x16)
}

/// Tell a plain-HTTP client what it did wrong, in the API's error shape, then close.
async fn refuse_plain_http(stream: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = serde_json::json!({"error": {
        "code": conclave_types::ErrorCode::BadRequest,
        "message": "this agent serves HTTPS only; the request came as plain HTTP",
        "hint": "use https:// (and --ca-file with the CLI)",
    }})
    .to_string();
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The API as served: refusals while stopping, then edge checks, then the token check
/// (`[acl]`; a member checks against its applied tokens), then the routes.
pub(super) fn app(
    routes: axum::Router,
    config: &AgentConfig,
    stopping: &CancellationToken,
    id: u64,
    acl_state: Option<conclave_storage::StateHandle>,
) -> axum::Router {
    let routes = match acl_state {
        Some(state) => conclave_api::acl::guard(
            routes,
            conclave_api::acl::AclGuard {
                settings: config.acl.settings(),
                state,
            },
        ),
        None => routes,
    };
    let routes = conclave_api::edge::guard(routes, config.http_hosts());
    let routes = conclave_api::refuse_while_stopping(routes, stopping.clone(), id);
    let routes = routes.layer(axum::middleware::from_fn(super::metrics::record_http));
    // Every answer, refusals included, carries the request's id.
    let routes = routes.layer(axum::middleware::from_fn(conclave_api::audit::request_id));
    // Outermost in a build that exports traces: the request's server span.
    #[cfg(feature = "otel")]
    let routes = routes.layer(axum::middleware::from_fn_with_state(
        id,
        crate::telemetry::server_span,
    ));
    routes
}

/// How long a stopping agent answers new requests with `503 not_ready` before it closes its
/// listener (see `conclave_api::refuse_while_stopping`): long enough for clients that
/// follow the retry contract to have moved to another node.
const REFUSE_BEFORE_CLOSING: Duration = Duration::from_millis(250);

/// Stop serving HTTP: turn new requests away for [`REFUSE_BEFORE_CLOSING`], then close the
/// listener and finish the requests in flight.
pub(super) async fn stop(
    stopping: &CancellationToken,
    http_stop: &CancellationToken,
    http: &mut HttpTask,
) {
    stopping.cancel();
    tokio::time::sleep(REFUSE_BEFORE_CLOSING).await;
    http_stop.cancel();
    drain(http).await;
}

/// Wait for the HTTP server to finish the requests in flight (at most [`DRAIN_TIMEOUT`]).
async fn drain(http: &mut HttpTask) {
    match tokio::time::timeout(DRAIN_TIMEOUT, &mut *http).await {
        Ok(_) => tracing::info!("HTTP drained"),
        Err(_) => {
            tracing::warn!("in-flight requests did not finish in time; closing them");
            http.abort();
        }
    }
}

/// The HTTP server returned on its own: it failed (or was told to stop).
pub(super) fn ended(
    res: Result<std::io::Result<()>, tokio::task::JoinError>,
) -> anyhow::Result<()> {
    match res {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(anyhow::anyhow!("HTTP server failed: {e}")),
        Err(e) => Err(anyhow::anyhow!("HTTP server task failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_the_rest_of_the_agent() {
        assert_eq!(connection_cap(4096, 20_000), 4096);
        assert_eq!(connection_cap(4096, 1024), 512);
        assert_eq!(connection_cap(4096, 100), 64);
        assert_eq!(connection_cap(0, 100), 1);
    }
}
