//! `conclave agent`: wire storage, Raft and the HTTP API together, run until a signal, and
//! shut down in order.
//!
//! Start-up order: listeners first (a taken port fails before any data is touched), then the
//! identity and the stores, then Raft, then HTTP. Shutdown order: stop accepting HTTP and
//! drain in-flight requests, stop Raft (which stops node RPC), exit. Every acknowledged write
//! is already fsync'd, so nothing needs flushing at exit.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use conclave_api::AppContext;
use conclave_raft::RaftNode;
use conclave_storage::{NodeInfo, StorageOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::identity;

/// How long in-flight HTTP requests may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(4);

async fn bind(addr: std::net::SocketAddr, what: &str, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr} ({what}); another process (perhaps another conclave agent) may be using it — choose another address with {flag}"
        )
    })
}

pub async fn run(config: AgentConfig) -> anyhow::Result<()> {
    let http_listener = bind(config.http_addr, "HTTP API", "--http-addr").await?;
    let rpc_listener = bind(config.rpc_addr, "node RPC", "--rpc-addr").await?;

    let (identity, created) = identity::load_or_create(
        &config.data_dir,
        config.node_id,
        config.cluster_id.as_deref(),
    )?;
    let (log, sm) = conclave_storage::open(&config.data_dir, &StorageOptions::default())
        .with_context(|| format!("cannot open the stores in {}", config.data_dir.display()))?;

    let shutdown = CancellationToken::new();
    let node = RaftNode::start(
        identity.node_id,
        &identity.cluster_id,
        &config.raft,
        log,
        sm,
        rpc_listener,
        shutdown.clone(),
    )
    .await?;
    let me = NodeInfo {
        rpc_addr: config.advertised_rpc(),
        api_addr: config.advertised_http(),
    };
    node.initialize_single(me).await?;

    tracing::info!(
        node_id = identity.node_id,
        cluster_id = %identity.cluster_id,
        new = created,
        data_dir = %config.data_dir.display(),
        http = %config.http_addr,
        rpc = %config.rpc_addr,
        "conclave agent started"
    );

    let ctx = Arc::new(AppContext {
        node: node.clone(),
        limits: config.limits(),
        cluster_id: identity.cluster_id.clone(),
        api_addr: config.advertised_http(),
        rpc_addr: config.advertised_rpc(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    });
    let app = conclave_api::router(ctx);

    let http_shutdown = shutdown.clone();
    let mut http = tokio::spawn(async move {
        axum::serve(http_listener, app)
            .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
            .await
    });

    tokio::select! {
        signal = wait_for_signal() => {
            tracing::info!(signal, "shutting down: no new requests, draining in-flight ones");
        }
        res = &mut http => {
            // The server only returns on its own when it failed.
            node.shutdown().await;
            return match res {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(anyhow::anyhow!("HTTP server failed: {e}")),
                Err(e) => Err(anyhow::anyhow!("HTTP server task failed: {e}")),
            };
        }
    }
    shutdown.cancel();
    match tokio::time::timeout(DRAIN_TIMEOUT, &mut http).await {
        Ok(_) => tracing::info!("HTTP drained"),
        Err(_) => {
            tracing::warn!("in-flight requests did not finish in time; closing them");
            http.abort();
        }
    }
    node.shutdown().await;
    tracing::info!("conclave agent stopped");
    Ok(())
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            // Without signal handlers, fall back to Ctrl-C only.
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
