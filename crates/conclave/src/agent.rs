//! `conclave agent`: wire storage, Raft and the HTTP API together, run until a signal, and
//! shut down in order.
//!
//! Start-up order: listeners first (a taken port fails before any data is touched), then the
//! identity and the stores, then Raft, then HTTP. Shutdown order: stop accepting HTTP and
//! drain in-flight requests, stop Raft (which stops node RPC), exit. Every acknowledged write
//! is already fsync'd, so nothing needs flushing at exit.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use conclave_api::AppContext;
use conclave_raft::formation::{self, FormError};
use conclave_raft::{NodeOptions, RaftNode};
use conclave_storage::{NodeInfo, StorageOptions, identity};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{AgentConfig, Formation, NodeRole};

/// How long in-flight HTTP requests may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(4);

async fn bind(addr: std::net::SocketAddr, what: &str, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr} ({what}); another process (perhaps another conclave agent) may be using it — choose another address with {flag}"
        )
    })
}

/// The node id to use: the flag, else the data dir's, else (static formation) the entry of
/// `--initial-members` whose address is this node's RPC address.
fn choose_node_id(
    config: &AgentConfig,
    formation: &Formation,
    existing: Option<&identity::Identity>,
) -> anyhow::Result<Option<u64>> {
    if config.node_id.is_some() || existing.is_some() {
        return Ok(config.node_id);
    }
    if let Formation::Static(members) = formation {
        let me = config.advertised_rpc();
        return match members.iter().find(|(_, addr)| *addr == me) {
            Some((id, _)) => Ok(Some(*id)),
            None => bail!(
                "this node's RPC address {me} is not in --initial-members; give its id with --node-id, or list it as ID={me}"
            ),
        };
    }
    Ok(None)
}

pub async fn run(config: AgentConfig) -> anyhow::Result<()> {
    let formation = config.formation()?;
    let http_listener = bind(config.http_addr, "HTTP API", "--http-addr").await?;
    let rpc_listener = bind(config.rpc_addr, "node RPC", "--rpc-addr").await?;

    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create data directory {}; choose another with --data-dir or fix its permissions",
            config.data_dir.display()
        )
    })?;
    // One agent per data directory: a second one would corrupt the log.
    let _lock = conclave_storage::offline::lock_dir(&config.data_dir)?;
    let existing = identity::load(&config.data_dir)?;
    if let Some(why) = existing.as_ref().and_then(|i| i.removed.clone()) {
        bail!(
            "{why}. This data directory no longer belongs to a cluster member; to bring the node back, start it with a fresh --data-dir and --join a member"
        );
    }
    let want_node = choose_node_id(&config, &formation, existing.as_ref())?;
    // The cluster id a brand-new cluster gets; joining nodes adopt theirs later.
    let new_cluster = match &formation {
        Formation::Single => Some(
            config
                .cluster_id
                .clone()
                .unwrap_or_else(identity::mint_cluster_id),
        ),
        Formation::Static(members) => Some(
            config
                .cluster_id
                .clone()
                .unwrap_or_else(|| formation::derived_cluster_id(members)),
        ),
        Formation::Bootstrap { .. } | Formation::Join(_) => config.cluster_id.clone(),
    };
    let (mut identity, created) = identity::load_or_create(
        &config.data_dir,
        want_node,
        config.cluster_id.as_deref(),
        new_cluster.clone(),
    )?;
    if identity.cluster_id.is_none() && new_cluster.is_some() {
        identity.cluster_id = new_cluster;
        identity::save(&config.data_dir, &identity)?;
    }
    if let Formation::Static(members) = &formation
        && !members.iter().any(|(id, _)| *id == identity.node_id)
    {
        bail!(
            "this node is node {}, which is not in --initial-members; list it there or drop --initial-members to --join instead",
            identity.node_id
        );
    }
    let (log, sm) = conclave_storage::open(&config.data_dir, &StorageOptions::default())
        .with_context(|| format!("cannot open the stores in {}", config.data_dir.display()))?;

    let shutdown = CancellationToken::new();
    let me = NodeInfo {
        rpc_addr: config.advertised_rpc(),
        api_addr: config.advertised_http(),
        learner_only: config.role == NodeRole::Learner,
    };
    let node = RaftNode::start(
        NodeOptions {
            node_id: identity.node_id,
            cluster_id: identity.cluster_id.clone(),
            cluster_token: config.cluster_token.clone(),
            tuning: config.raft.clone(),
            data_dir: config.data_dir.clone(),
            info: me,
            voters_wanted: config.voters,
            bootstrap_expect: match &formation {
                Formation::Bootstrap { expect, .. } => Some(*expect),
                _ => None,
            },
        },
        log,
        sm,
        rpc_listener,
        shutdown.clone(),
    )
    .await?;

    // Formation failures that retrying cannot fix (refusals) stop the agent.
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::channel::<FormError>(1);
    if node.is_initialized().await {
        if let Formation::Join(addrs) | Formation::Bootstrap { join: addrs, .. } = &formation {
            let (node, addrs, tx) = (node.clone(), addrs.clone(), fatal_tx.clone());
            tokio::spawn(async move {
                if let Err(e) = formation::check_join_targets(&node, &addrs).await {
                    let _ = tx.send(e).await;
                }
            });
        }
    } else {
        match &formation {
            Formation::Single => node.initialize_single().await?,
            Formation::Static(members) => formation::form_static(&node, members).await?,
            Formation::Bootstrap { expect, join } => {
                let (node, join, tx, stop) = (
                    node.clone(),
                    join.clone(),
                    fatal_tx.clone(),
                    shutdown.clone(),
                );
                let expect = *expect;
                tokio::spawn(async move {
                    if let Err(e) = formation::bootstrap(&node, expect, &join, &stop).await {
                        let _ = tx.send(e).await;
                    }
                });
            }
            Formation::Join(addrs) => {
                let (node, addrs, tx, stop) = (
                    node.clone(),
                    addrs.clone(),
                    fatal_tx.clone(),
                    shutdown.clone(),
                );
                tokio::spawn(async move {
                    if let Err(e) = formation::join(&node, &addrs, &stop).await {
                        let _ = tx.send(e).await;
                    }
                });
            }
        }
    }
    drop(fatal_tx);

    tracing::info!(
        node_id = identity.node_id,
        cluster_id = identity.cluster_id.as_deref().unwrap_or("(joining)"),
        new = created,
        data_dir = %config.data_dir.display(),
        http = %config.http_addr,
        rpc = %config.rpc_addr,
        "conclave agent started"
    );

    let ctx = Arc::new(AppContext {
        node: node.clone(),
        limits: config.limits(),
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
        Some(e) = fatal_rx.recv() => {
            if !matches!(e, FormError::Stopped) {
                shutdown.cancel();
                http.abort();
                node.shutdown().await;
                return Err(anyhow::anyhow!(e));
            }
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
