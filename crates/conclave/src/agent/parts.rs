//! What every agent runs beside its API, whatever its role: gossip, health checks,
//! publishers, the seed importer, configuration sync and roles, with the coordinator they
//! reach the cluster through; and the Raft member's gossip advertisement and gauges.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use conclave_api::members::MembersContext;
use conclave_coord::{Candidate, Coordinator, VerifiedMembers};
use conclave_membership::view::keys;
use conclave_membership::{GossipOptions, Membership, checks};
use conclave_publish::Publisher;
use conclave_raft::RaftNode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::AgentConfig;

/// Gossip, health checks and publishers: what every agent runs, whatever its role.
pub(super) struct MembershipParts {
    pub(super) membership: Membership,
    pub(super) publisher: Publisher,
    pub(super) roles: conclave_roles::Roles,
    pub(super) metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub(super) secrets: std::sync::Arc<conclave_config::SecretPolicy>,
    /// What a reload changes while the agent runs.
    pub(super) checks: checks::Checks,
    pub(super) handlers: conclave_publish::handlers::Handlers,
}

/// What the API shows and changes of the agent itself (see [`MembershipParts::control`]).
pub(super) struct AgentControl {
    reload: Option<conclave_api::agent_reload::ReloadRequests>,
    settings: conclave_api::agent_view::SettingsView,
    samples: conclave_api::agent_view::SamplesFn,
}

/// Start gossip, checks, publishers, the seed importer, configuration sync and roles; the
/// last three reach the cluster through the coordinator `coordinator` makes (this node's own
/// Raft node, or, for a client agent, the members gossip finds).
pub(super) async fn start_membership(
    config: &AgentConfig,
    identity: &conclave_storage::identity::Identity,
    cluster_id: Option<String>,
    seeds: Vec<String>,
    coordinator: impl FnOnce(&Membership) -> anyhow::Result<Coordinator>,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> anyhow::Result<MembershipParts> {
    let node_id = identity.node_id;
    // One recorder per process (a second agent in the same process, in tests, goes
    // without), installed before anything registers a metric: a counter registered earlier
    // (the split-brain alerts at 0) would be lost.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            super::metrics::DURATION_BUCKETS,
        )
        .ok()
        .and_then(|b| b.install_recorder().ok());
    super::metrics::describe_all();
    tasks.spawn(super::metrics::process_gauges(shutdown.clone()));
    let advertised = config.advertised_rpc();
    let advertise = match advertised.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => tokio::net::lookup_host(&advertised)
            .await
            .ok()
            .and_then(|mut it| it.next())
            .with_context(|| {
                format!("cannot resolve the advertised RPC address {advertised}; fix --advertise-rpc-addr")
            })?,
    };
    let membership = Membership::start(
        GossipOptions {
            node_id,
            name: identity.name.clone().unwrap_or_default(),
            role: config.role.name().into(),
            listen: config.rpc_addr,
            advertise,
            api_addr: config.advertised_http(),
            rpc_addr: advertised,
            seeds,
            tags: config.tags.0.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            cluster_id,
            token: config.cluster_token.clone(),
            keyring_file: Some(config.data_dir.join("gossip-keyring.json")),
            tuning: config.gossip.clone(),
            dns_server: config.dns_server,
        },
        shutdown.clone(),
    )
    .await?;
    let (checks, health) = checks::Checks::spawn(config.check.clone(), shutdown.clone());
    {
        let (membership, mut health, shutdown) =
            (membership.clone(), health.clone(), shutdown.clone());
        tasks.spawn(async move {
            loop {
                let summary = health.borrow_and_update().clone();
                membership.set_health(&summary).await;
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = health.changed() => if r.is_err() { return },
                }
            }
        });
    }
    let handlers = conclave_publish::handlers::Handlers::spawn(
        config.event_handler.clone(),
        membership.clone(),
        shutdown.clone(),
        tasks,
    )?;
    let coord = coordinator(&membership)?;
    let publisher = Publisher::spawn(
        config.publish.clone(),
        membership.subscribe(),
        health,
        (Some(coord.clone()), node_id.to_string()),
        shutdown.clone(),
        tasks,
    );
    if let Some(path) = &config.config_seed {
        let docs = crate::seed::load(path)?;
        tasks.spawn(crate::seed::run(
            docs,
            coord.clone(),
            membership.clone(),
            shutdown.clone(),
        ));
    }
    conclave_publish::ConfigSync::spawn(
        config.config_sync.clone(),
        config
            .config_sync
            .dir
            .clone()
            .unwrap_or_else(|| config.data_dir.join("config")),
        coord.clone(),
        membership.clone(),
        config.must_match_settings()?,
        shutdown.clone(),
        tasks,
    );
    let roles = conclave_roles::Roles::spawn(
        config.roles.clone(),
        std::sync::Arc::new(config.secrets.clone()),
        node_id,
        coord,
        membership.clone(),
        shutdown,
    );
    {
        let (membership, shutdown) = (membership.clone(), shutdown.clone());
        tasks.spawn(async move {
            loop {
                use conclave_types::MemberState;
                let counts = membership.view().counts();
                for (state, label) in [
                    (MemberState::Alive, "alive"),
                    (MemberState::Suspect, "suspect"),
                    (MemberState::Dead, "dead"),
                    (MemberState::Left, "left"),
                ] {
                    let n = counts.get(&state).copied().unwrap_or(0);
                    metrics::gauge!("conclave_members", "state" => label).set(n as f64);
                }
                metrics::gauge!("conclave_gossip_foreign_members")
                    .set(membership.foreign_members() as f64);
                let c = membership.counters();
                for (direction, datagrams, bytes) in [
                    ("sent", c.core.sent, c.core.sent_bytes),
                    ("received", c.core.received, c.core.received_bytes),
                ] {
                    metrics::counter!("conclave_gossip_datagrams_total", "direction" => direction)
                        .absolute(datagrams);
                    metrics::counter!("conclave_gossip_bytes_total", "direction" => direction)
                        .absolute(bytes);
                }
                for (reason, n) in [
                    ("forged", c.core.refused_forged),
                    ("replayed", c.core.refused_replayed),
                    ("unknown_key", c.core.refused_unknown_key),
                    ("other", c.core.refused_other),
                    ("undecodable", c.core.undecodable),
                ] {
                    metrics::counter!("conclave_gossip_refused_total", "reason" => reason)
                        .absolute(n);
                }
                metrics::counter!("conclave_gossip_send_errors_total").absolute(c.send_errors);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }
    Ok(MembershipParts {
        membership,
        publisher,
        roles,
        metrics,
        secrets: std::sync::Arc::new(config.secrets.clone()),
        checks,
        handlers,
    })
}

impl MembershipParts {
    /// A member's background work beside its API: its Raft state in gossip, its gauges.
    pub(super) fn spawn_member_tasks(
        &self,
        node: &RaftNode,
        shutdown: &CancellationToken,
        tasks: &TaskTracker,
    ) {
        let membership = self.membership.clone();
        tasks.spawn(advertise_raft(
            node.clone(),
            membership.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(raft_gauges(node.clone(), membership, shutdown.clone()));
    }

    /// Start what the API shows of the agent itself: reloads of what these parts run (see
    /// [`super::reload`]), the settings in effect and the sampler behind the dashboard's
    /// charts (see [`super::history`]). `node`: this agent's Raft node (`None`: a client).
    pub(super) fn control(
        &self,
        source: Option<super::reload::ConfigSource>,
        as_loaded: AgentConfig,
        https: &super::tls::Https,
        node: Option<RaftNode>,
        shutdown: &CancellationToken,
        tasks: &TaskTracker,
    ) -> AgentControl {
        let (settings, view) = tokio::sync::watch::channel(super::reload::settings_of(&as_loaded));
        let history = super::history::History::new(self.membership.node_id());
        tasks.spawn(super::history::sample(
            history.clone(),
            node,
            shutdown.clone(),
        ));
        let reload = super::reload::spawn(
            source,
            as_loaded,
            super::reload::Live {
                checks: self.checks.clone(),
                publisher: self.publisher.clone(),
                handlers: self.handlers.clone(),
                membership: self.membership.clone(),
                https: https.clone(),
            },
            settings,
            shutdown.clone(),
            tasks,
        );
        AgentControl {
            reload,
            settings: view,
            samples: Arc::new(move |since| history.samples(since)),
        }
    }

    /// `node`: this agent's Raft node (`None` on a client agent); `closing` ends the
    /// membership event streams when the agent starts to stop.
    pub(super) fn api_context(
        &self,
        node: Option<RaftNode>,
        closing: CancellationToken,
        peers: conclave_api::gossip_keys::PeerHttp,
        control: AgentControl,
    ) -> MembersContext {
        MembersContext {
            peers,
            node,
            closing,
            membership: self.membership.clone(),
            publisher: self.publisher.clone(),
            roles: self.roles.clone(),
            metrics: self.metrics.clone(),
            secrets: self.secrets.clone(),
            reload: control.reload,
            samples: control.samples,
            settings: control.settings,
        }
    }
}

/// Raft and store gauges for `/metrics`, refreshed every second.
async fn raft_gauges(node: RaftNode, membership: Membership, shutdown: CancellationToken) {
    let mut networks = std::collections::BTreeSet::new();
    let mut sampled = super::metrics::Sampled::default();
    loop {
        super::metrics::sample_raft(&node, &membership, &mut sampled);
        let m = node.metrics();
        metrics::gauge!("conclave_raft_term").set(m.current_term as f64);
        metrics::gauge!("conclave_raft_is_leader").set(if m.current_leader == Some(node.id) {
            1.0
        } else {
            0.0
        });
        metrics::gauge!("conclave_raft_has_leader").set(if m.current_leader.is_some() {
            1.0
        } else {
            0.0
        });
        metrics::gauge!("conclave_raft_last_log_index").set(m.last_log_index.unwrap_or(0) as f64);
        metrics::gauge!("conclave_raft_applied_index")
            .set(m.last_applied.map_or(0, |l| l.index) as f64);
        let (revision, keys, audit_entries, audit_dropped) = node.state().read(|a| {
            let log = a.state.audit_log();
            (a.state.revision(), a.state.len(), log.len(), log.dropped())
        });
        metrics::gauge!("conclave_store_revision").set(revision as f64);
        metrics::gauge!("conclave_store_keys").set(keys as f64);
        metrics::gauge!("conclave_audit_entries").set(audit_entries as f64);
        // Replicated, so every node reports the cluster's count (a counter that only grows).
        metrics::counter!("conclave_audit_entries_dropped_total").absolute(audit_dropped);
        node.state()
            .read(|a| ipam_gauges(a.state.ipam(), &mut networks));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// How each network's addresses are used, from the replicated state (so every node shows
/// the cluster's figures). A deleted network's gauges drop to zero; `seen` remembers which
/// networks had gauges.
fn ipam_gauges(ipam: &conclave_state::ipam::Ipam, seen: &mut std::collections::BTreeSet<String>) {
    metrics::gauge!("conclave_ipam_networks").set(ipam.network_count() as f64);
    let mut now = std::collections::BTreeSet::new();
    for n in ipam.networks() {
        let u = ipam.usage(&n.id).unwrap_or_default();
        for (state, count) in [
            ("allocated", u128::from(u.allocated)),
            ("free", u.free),
            ("reserved", u.reserved),
        ] {
            metrics::gauge!("conclave_ipam_addresses", "network" => n.id.clone(), "state" => state)
                .set(count as f64);
        }
        now.insert(n.id.clone());
    }
    for gone in seen.difference(&now) {
        for state in ["allocated", "free", "reserved"] {
            metrics::gauge!("conclave_ipam_addresses", "network" => gone.clone(), "state" => state)
                .set(0.0);
        }
    }
    *seen = now;
}

/// Keep this node's Raft role and cluster id current in its gossip state, and gossip's
/// list of the other members' addresses current with the applied membership.
async fn advertise_raft(node: RaftNode, membership: Membership, shutdown: CancellationToken) {
    loop {
        let m = node.metrics();
        let role = if node.removed().is_some() {
            ""
        } else {
            conclave_api::role_name(m.state)
        };
        membership.set(keys::RAFT_ROLE, role).await;
        membership
            .set(keys::CLUSTER, node.cluster_id().as_deref().unwrap_or(""))
            .await;
        // Gossip is sought at the other members' addresses too, as Raft knows them.
        let others = m
            .membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != node.id)
            .map(|(_, info)| info.rpc_addr.clone())
            .collect();
        membership.set_member_addresses(others);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// A client agent's coordinator: calls go to the members of the membership a member proved
/// over node RPC, the leader first (its users bound their calls; a watch stream has no
/// timeout).
pub(super) fn remote_coordinator(
    verified: Arc<VerifiedMembers>,
    https: &super::tls::Https,
    agent_token: Option<&conclave_types::Secret>,
) -> anyhow::Result<Coordinator> {
    let scheme = https.scheme();
    let targets: conclave_coord::Targets = Arc::new(move || verified.targets(scheme));
    // The base address is replaced by each member's; the pool is shared.
    let client = conclave_client::Client::with_tls("http://127.0.0.1", https.client_config()?)
        .and_then(|c| c.with_token(agent_token.map(|t| t.expose())))
        .map_err(|e| anyhow::anyhow!("an HTTP client for the cluster: {e}"))?;
    Ok(Coordinator::Remote(conclave_coord::Remote::new(
        targets, client,
    )))
}

/// Keep a client agent's verified membership current: ask the Raft members gossip shows
/// (the leader first) over node RPC, every 5 s once one answered, every second until then.
pub(super) async fn verify_members(
    verified: Arc<VerifiedMembers>,
    membership: Membership,
    configured_cluster: Option<String>,
    shutdown: CancellationToken,
) {
    loop {
        let members = membership.view().raft_members();
        let cluster = configured_cluster.clone().or_else(|| {
            members
                .iter()
                .find(|m| !m.cluster_id.is_empty())
                .map(|m| m.cluster_id.clone())
        });
        let candidates: Vec<Candidate> = members
            .iter()
            .map(|m| Candidate {
                id: m.id,
                rpc_addr: m.rpc_addr.clone(),
            })
            .collect();
        let wait = match verified.refresh(&candidates, cluster.as_deref()).await {
            Ok(_) => Duration::from_secs(5),
            Err(_) => Duration::from_secs(1),
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Bootstrap ACLs with the operator's initial management token once this node leads and
/// the cluster has none; ends when the cluster is bootstrapped (by anyone).
pub(super) async fn bootstrap_initial(
    ctx: Arc<conclave_api::AppContext>,
    chosen: conclave_types::Secret,
    shutdown: CancellationToken,
) {
    loop {
        match conclave_api::acl::bootstrap_with(&ctx, chosen.expose()).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => tracing::warn!(
                error = %e.message,
                "bootstrapping ACLs with the initial management token failed; retrying"
            ),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}
