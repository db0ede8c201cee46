//! `conclave agent`: wire storage, Raft and the HTTP API together, run until a signal, and
//! shut down in order.
//!
//! Start-up order: listeners first (a taken port fails before any data is touched), then the
//! identity and the stores, then Raft, then HTTP.
//!
//! Shutdown order (each step logged), so that a planned stop fails no client's write:
//! 1. stop accepting HTTP and drain the requests in flight (node RPC still serves, so other
//!    nodes' forwarded requests are still answered; watch streams end);
//! 2. if this node leads, hand leadership to the most caught-up healthy voter (new
//!    proposals wait for the next leader meanwhile, as during an election);
//! 3. leave gossip, so others show this node as left rather than dead;
//! 4. stop the background tasks and node RPC;
//! 5. stop Raft.
//!
//! Every acknowledged write is already fsync'd, so nothing needs flushing at exit.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use conclave_api::AppContext;
use conclave_coord::Coordinator;
use conclave_membership::discovery::Discovery;
use conclave_raft::formation::{self, FormError};
use conclave_raft::transport::Credentials;
use conclave_raft::{NodeOptions, RaftNode};
use conclave_storage::{NodeInfo, StorageOptions, identity};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{AgentConfig, Formation, NodeRole};

mod history;
mod http;
pub mod metrics;
mod node_name;
mod parts;
pub mod reload;
mod systemd;
mod tls;

use parts::{remote_coordinator, start_membership, verify_members};

async fn bind(addr: std::net::SocketAddr, what: &str, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr} ({what}); another process (perhaps another conclave agent) may be using it — choose another address with {flag}"
        )
    })
}

/// The gossip seeds: every address this node was told about, except its own.
fn gossip_seeds(config: &AgentConfig, formation: &Formation) -> Vec<String> {
    let me = config.advertised_rpc();
    let mut seeds: Vec<String> = match formation {
        Formation::Static(members) => members.iter().map(|(_, a)| a.clone()).collect(),
        Formation::Bootstrap { join, .. } | Formation::Join(join) => join.clone(),
        Formation::Single => Vec::new(),
    };
    seeds.retain(|s| *s != me);
    seeds
}

/// Create the data directory and take its lock (one agent per directory).
fn prepare_data_dir(config: &AgentConfig) -> anyhow::Result<std::fs::File> {
    // Owner only (0700): the log holds every value ever written.
    conclave_storage::Disk::create_dir_all(&conclave_storage::OsDisk, &config.data_dir).with_context(|| {
        format!(
            "cannot create data directory {}; choose another with --data-dir or fix its permissions",
            config.data_dir.display()
        )
    })?;
    Ok(conclave_storage::offline::lock_dir(&config.data_dir)?)
}

/// `--join` entries with `srv:` records expanded now; other entries as given (names in them
/// are resolved on every connection attempt).
async fn resolved_seeds(discovery: &Discovery, seeds: &[String]) -> Vec<String> {
    let (srv, plain): (Vec<String>, Vec<String>) =
        seeds.iter().cloned().partition(|s| Discovery::is_srv(s));
    let mut out = plain;
    out.extend(discovery.expand_all(&srv).await);
    out
}

/// Join (or bootstrap with) the cluster behind `seeds`. SRV entries are looked up afresh
/// every 15 s until it works: the records may change while a cluster starts.
async fn form_with_seeds(
    node: &RaftNode,
    discovery: &Discovery,
    seeds: &[String],
    expect: Option<u32>,
    stop: &CancellationToken,
) -> Result<(), FormError> {
    let has_srv = seeds.iter().any(|s| Discovery::is_srv(s));
    loop {
        let list = resolved_seeds(discovery, seeds).await;
        if list.is_empty() {
            tracing::warn!(
                ?seeds,
                "no --join entry resolves to an address yet; looking again in 2 s"
            );
            tokio::select! {
                _ = stop.cancelled() => return Err(FormError::Stopped),
                _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
            }
        }
        let round = stop.child_token();
        let timer = has_srv.then(|| {
            let round = round.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(15)).await;
                round.cancel();
            })
        });
        let result = match expect {
            Some(e) => formation::bootstrap(node, e, &list, &round).await,
            None => formation::join(node, &list, &round).await,
        };
        if let Some(t) = timer {
            t.abort();
        }
        match result {
            Err(FormError::Stopped) if !stop.is_cancelled() => continue,
            other => return other,
        }
    }
}

/// A client agent: gossip, checks and publishers, and an API that forwards to the cluster.
async fn run_client(
    config: AgentConfig,
    as_loaded: AgentConfig,
    source: Option<reload::ConfigSource>,
    http_listener: TcpListener,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let formation = config.formation()?;
    let https = tls::Https::load(&config)?;
    let agent_token = config.acl.agent_token()?;
    let _lock = prepare_data_dir(&config)?;
    // A client keeps only its identity, so a restart is the same member.
    let (mut identity, created) =
        identity::load_or_create(&config.data_dir, config.node_id, None, None)?;
    node_name::settle(
        config.node_name.as_deref(),
        config.http_addr.port(),
        &config.data_dir,
        &mut identity,
    )?;
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let verified = conclave_coord::VerifiedMembers::new(Credentials::client_agent(
        identity.node_id,
        config.cluster_id.clone(),
        config.cluster_token.as_ref().map(|t| t.expose()),
    ));
    let parts = start_membership(
        &config,
        &identity,
        config.cluster_id.clone(),
        gossip_seeds(&config, &formation),
        |_| remote_coordinator(verified.clone(), &https, agent_token.as_ref()),
        &shutdown,
        &tasks,
    )
    .await?;
    tasks.spawn(verify_members(
        verified,
        parts.membership.clone(),
        config.cluster_id.clone(),
        shutdown.clone(),
    ));
    tracing::info!(
        node_id = identity.node_id,
        name = identity.name.as_deref().unwrap_or_default(),
        new = created,
        http = %config.http_addr,
        gossip = %config.rpc_addr,
        join = ?config.join.0,
        "conclave client agent started"
    );
    https.follow(&config, &shutdown, &tasks)?;
    let peers = https.peer_http()?;
    let ctx = conclave_api::client::ClientContext {
        membership: parts.membership.clone(),
        http: peers.http.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        api_addr: config.advertised_http(),
        rpc_addr: config.advertised_rpc(),
        max_body: config.max_value_bytes + 64 * 1024,
        scheme: https.scheme(),
        tls: https.status_fn(),
    };
    let control = parts.control(source, as_loaded, &https, None, &shutdown, &tasks);
    let stopping = CancellationToken::new();
    let router = conclave_api::client::router(
        ctx,
        parts.api_context(None, stopping.clone(), peers, control),
        config.acl.settings(),
    );
    let app = http::app(router, &config, &stopping, identity.node_id, None);
    let http_stop = CancellationToken::new();
    let limits = http::limits(&config);
    let mut http = http::serve(http_listener, app, &http_stop, limits, https.server());
    systemd::ready(identity.node_id);
    tasks.spawn(systemd::watchdog(shutdown.clone()));
    tokio::select! {
        _ = stop.cancelled() => {
            tracing::info!("shutting down: releasing roles, then draining in-flight requests");
            systemd::stopping();
        }
        res = &mut http => return http::ended(res),
    }
    // Stop before start: a held role is released (on_release, then the resign) while the
    // API still forwards to the cluster.
    parts.roles.stop().await;
    http::stop(&stopping, &http_stop, &mut http).await;
    tracing::info!("leaving gossip");
    parts.membership.leave().await;
    shutdown.cancel();
    wait_for_tasks(&tasks).await;
    tracing::info!("conclave client agent stopped");
    Ok(())
}

/// The sockets an agent serves on, bound before anything else happens (so a taken port
/// changes nothing). A test binds them on port 0 and hands them to [`run`].
pub struct Listeners {
    pub http: TcpListener,
    /// Node RPC; a client agent has none.
    pub rpc: Option<TcpListener>,
}

impl Listeners {
    /// Bind the addresses `config` names.
    pub async fn bind(config: &AgentConfig) -> anyhow::Result<Self> {
        let http = bind(config.http_addr, "HTTP API", "--http-addr").await?;
        let rpc = match config.role {
            NodeRole::Client => None,
            _ => Some(bind(config.rpc_addr, "node RPC", "--rpc-addr").await?),
        };
        Ok(Self { http, rpc })
    }
}

/// Run an agent on `listeners` until `stop` is cancelled (the binary cancels it on SIGTERM
/// or SIGINT), then shut down in order: release held roles, stop accepting HTTP and drain
/// it while node RPC still serves, hand leadership over if this node leads, leave gossip,
/// stop the background tasks, stop Raft. The configured addresses are replaced by the listeners' own, so
/// listeners bound on port 0 are advertised with the ports they got. `source` reads the
/// configuration again for a reload (SIGHUP, `POST /v1/agent/reload`); without it the
/// agent takes no reloads.
pub async fn run(
    mut config: AgentConfig,
    listeners: Listeners,
    stop: CancellationToken,
    source: Option<reload::ConfigSource>,
) -> anyhow::Result<()> {
    let as_loaded = config.clone();
    config.http_addr = listeners.http.local_addr().context("HTTP listener")?;
    if config.role == NodeRole::Client {
        return run_client(config, as_loaded, source, listeners.http, stop).await;
    }
    let http_listener = listeners.http;
    let rpc_listener = listeners
        .rpc
        .context("a Raft member needs a node RPC listener")?;
    config.rpc_addr = rpc_listener.local_addr().context("node RPC listener")?;
    let formation = config.formation()?;
    let https = tls::Https::load(&config)?;

    // One agent per data directory: a second one would corrupt the log.
    let _lock = prepare_data_dir(&config)?;
    let existing = identity::load(&config.data_dir)?;
    if let Some(why) = existing.as_ref().and_then(|i| i.removed.clone()) {
        bail!(
            "{why}. This data directory no longer belongs to a cluster member; to bring the node back, start it with a fresh --data-dir and --join a member"
        );
    }
    let want_node = node_name::choose_node_id(&config, &formation, existing.as_ref())?;
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
    let name = node_name::settle(
        config.node_name.as_deref(),
        config.http_addr.port(),
        &config.data_dir,
        &mut identity,
    )?;
    if let Formation::Static(members) = &formation
        && !members.iter().any(|(id, _)| *id == identity.node_id)
    {
        bail!(
            "this node is node {}, which is not in --initial-members; list it there or drop --initial-members to --join instead",
            identity.node_id
        );
    }
    let storage = StorageOptions {
        feed: config.watch.feed_limits(),
        ..StorageOptions::default()
    };
    let (log, sm) = conclave_storage::open(&config.data_dir, &storage)
        .with_context(|| format!("cannot open the stores in {}", config.data_dir.display()))?;

    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
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
            name,
            name_given: config.node_name.is_some(),
            cluster_name: config.cluster_name.clone(),
            voters_wanted: config.voters,
            bootstrap_expect: match &formation {
                Formation::Bootstrap { expect, .. } => Some(*expect),
                _ => None,
            },
            // A peer's forwarded proposal is checked as if it had entered here.
            proposal_gate: Some(Arc::new(conclave_coord::ForwardedProposals::new(
                config.limits(),
                sm.handle(),
            ))),
        },
        log,
        sm,
        rpc_listener,
        shutdown.clone(),
    )
    .await?;

    // Formation failures that retrying cannot fix (refusals) stop the agent.
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::channel::<FormError>(1);
    let discovery = Arc::new(Discovery::new(config.dns_server));
    if node.is_initialized().await {
        if let Formation::Join(addrs) | Formation::Bootstrap { join: addrs, .. } = &formation {
            let (node, addrs, tx, d) = (
                node.clone(),
                addrs.clone(),
                fatal_tx.clone(),
                discovery.clone(),
            );
            tokio::spawn(async move {
                let addrs = resolved_seeds(&d, &addrs).await;
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
                let (node, join, tx, stop, d) = (
                    node.clone(),
                    join.clone(),
                    fatal_tx.clone(),
                    shutdown.clone(),
                    discovery.clone(),
                );
                let expect = *expect;
                tokio::spawn(async move {
                    if let Err(e) = form_with_seeds(&node, &d, &join, Some(expect), &stop).await {
                        let _ = tx.send(e).await;
                    }
                });
            }
            Formation::Join(addrs) => {
                let (node, addrs, tx, stop, d) = (
                    node.clone(),
                    addrs.clone(),
                    fatal_tx.clone(),
                    shutdown.clone(),
                    discovery.clone(),
                );
                tokio::spawn(async move {
                    if let Err(e) = form_with_seeds(&node, &d, &addrs, None, &stop).await {
                        let _ = tx.send(e).await;
                    }
                });
            }
        }
    }
    drop(fatal_tx);

    tracing::info!(
        node_id = identity.node_id,
        name = node.name(),
        cluster_id = identity.cluster_id.as_deref().unwrap_or("(joining)"),
        new = created,
        data_dir = %config.data_dir.display(),
        http = %config.http_addr,
        rpc = %config.rpc_addr,
        "conclave agent started"
    );

    let local = conclave_coord::Local::new(node.clone(), config.limits());
    let parts = start_membership(
        &config,
        &identity,
        node.cluster_id(),
        gossip_seeds(&config, &formation),
        |_| Ok(Coordinator::Local(local.clone())),
        &shutdown,
        &tasks,
    )
    .await?;
    parts.spawn_member_tasks(&node, &shutdown, &tasks);
    https.follow(&config, &shutdown, &tasks)?;

    let http_stop = CancellationToken::new();
    let ctx = Arc::new(AppContext {
        node: node.clone(),
        limits: config.limits(),
        coord: local,
        api_addr: config.advertised_http(),
        rpc_addr: config.advertised_rpc(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        membership: parts.membership.clone(),
        drift_after: config.config_sync.drift_after,
        drift: Default::default(),
        closing: http_stop.clone(),
        tls: https.status_fn(),
        acl: config.acl.settings(),
        audit: config.audit.settings(),
    });
    if let Some(chosen) = config.acl.initial_management_token()?
        && config.acl.enabled
    {
        tasks.spawn(parts::bootstrap_initial(
            ctx.clone(),
            chosen,
            shutdown.clone(),
        ));
    }
    let control = parts.control(
        source,
        as_loaded,
        &https,
        Some(node.clone()),
        &shutdown,
        &tasks,
    );
    let stopping = CancellationToken::new();
    let router = conclave_api::router(
        ctx,
        parts.api_context(
            Some(node.clone()),
            stopping.clone(),
            https.peer_http()?,
            control,
        ),
    );
    let app = http::app(
        router,
        &config,
        &stopping,
        node.id,
        Some(node.state().clone()),
    );
    let limits = http::limits(&config);
    let mut http = http::serve(http_listener, app, &http_stop, limits, https.server());
    systemd::ready(node.id);
    tasks.spawn(systemd::watchdog(shutdown.clone()));

    // Why the agent stops: `None` for a planned stop, else the reason it can no longer
    // serve (removed, or Raft down), after which it exits non-zero so that a supervisor
    // restarts or alerts. Both go through the same ordered shutdown.
    let fatal = tokio::select! {
        _ = stop.cancelled() => {
            tracing::info!("shutting down: releasing roles, then draining in-flight requests");
            systemd::stopping();
            None
        }
        Some(e) = fatal_rx.recv() => {
            if !matches!(e, FormError::Stopped) {
                shutdown.cancel();
                http.abort();
                node.shutdown().await;
                return Err(anyhow::anyhow!(e));
            }
            None
        }
        res = &mut http => {
            // The server only returns on its own when it failed.
            node.shutdown().await;
            return http::ended(res);
        }
        why = node.fatal() => {
            tracing::error!(reason = %why, "this node can no longer serve; shutting down");
            systemd::stopping();
            Some(why)
        }
    };
    // Stop before start: a held role is released (on_release, then the resign through the
    // in-process layer) while HTTP and node RPC still serve.
    parts.roles.stop().await;
    http::stop(&stopping, &http_stop, &mut http).await;
    // A node that can no longer serve has no leadership to hand over.
    if fatal.is_none()
        && let Some(to) = node.step_down().await
    {
        tracing::info!(to, "handed leadership over");
    }
    tracing::info!("leaving gossip");
    parts.membership.leave().await;
    shutdown.cancel();
    wait_for_tasks(&tasks).await;
    node.shutdown().await;
    if let Some(why) = fatal {
        bail!("{why}");
    }
    tracing::info!("conclave agent stopped");
    Ok(())
}

/// The longest shutdown waits for background tasks (a role's `on_release` hook, a sink's
/// last write) once they have been told to stop.
const TASKS_TIMEOUT: Duration = Duration::from_secs(10);

/// Wait for the tracked background tasks to finish, at most [`TASKS_TIMEOUT`].
async fn wait_for_tasks(tasks: &TaskTracker) {
    tasks.close();
    tracing::info!(running = tasks.len(), "waiting for background tasks");
    if tokio::time::timeout(TASKS_TIMEOUT, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            still_running = tasks.len(),
            "background tasks did not stop within {TASKS_TIMEOUT:?}; stopping without them"
        );
    }
}

/// The first SIGTERM or SIGINT.
pub async fn wait_for_signal() -> &'static str {
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

#[cfg(test)]
mod embedded_tests;
