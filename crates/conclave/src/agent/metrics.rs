//! Every metric family the agent exports, described once: the catalogue gives `/metrics` its
//! `# HELP` and `# TYPE` lines (a family is described before it is first set), and the tests
//! check that every family an alert rule or the Grafana dashboard names is one of these.
//!
//! Also the samplers that are the binary's own: Raft and cluster gauges on the leader
//! (replication lag per node, nodes by state and role, leader changes, elections), HTTP
//! requests by route template, and the process's CPU, memory and descriptors.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use conclave_membership::Membership;
use conclave_raft::RaftNode;
use tokio_util::sync::CancellationToken;

/// What kind of family a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every family: name, kind, help.
pub const FAMILIES: &[(&str, Kind, &str)] = &[
    // Raft and the replicated store.
    (
        "conclave_raft_term",
        Kind::Gauge,
        "The Raft term this node is in.",
    ),
    (
        "conclave_raft_is_leader",
        Kind::Gauge,
        "1 when this node is the Raft leader.",
    ),
    (
        "conclave_raft_has_leader",
        Kind::Gauge,
        "1 when this node knows a Raft leader.",
    ),
    (
        "conclave_raft_last_log_index",
        Kind::Gauge,
        "The last index of this node's Raft log.",
    ),
    (
        "conclave_raft_applied_index",
        Kind::Gauge,
        "The last log index this node has applied.",
    ),
    (
        "conclave_raft_entries_applied_total",
        Kind::Counter,
        "Log entries applied on this node (the seed's replication events).",
    ),
    (
        "conclave_raft_elections_total",
        Kind::Counter,
        "Raft elections this node has seen (term changes).",
    ),
    (
        "conclave_leader_changes_total",
        Kind::Counter,
        "Times the Raft leader this node knows changed.",
    ),
    (
        "conclave_cluster_nodes",
        Kind::Gauge,
        "Raft members by gossip state and Raft role (the seed's nodes count).",
    ),
    (
        "conclave_cluster_info",
        Kind::Gauge,
        "1, labelled with the cluster's id and name (empty when none is configured).",
    ),
    (
        "conclave_node_info",
        Kind::Gauge,
        "1 per Raft member, labelled with its node id and name (0 for a name it no longer has).",
    ),
    (
        "conclave_replication_lag_entries",
        Kind::Gauge,
        "On the leader: log entries each member is behind.",
    ),
    (
        "conclave_replication_lag_seconds",
        Kind::Gauge,
        "On the leader: how long each member has been behind.",
    ),
    (
        "conclave_store_revision",
        Kind::Gauge,
        "The key-value store's revision.",
    ),
    (
        "conclave_store_keys",
        Kind::Gauge,
        "Keys in the key-value store.",
    ),
    (
        "conclave_storage_writes_per_fsync",
        Kind::Gauge,
        "Commands made durable per log fsync (group commit).",
    ),
    (
        "conclave_storage_log_fsyncs_total",
        Kind::Counter,
        "fdatasync calls on the Raft log.",
    ),
    (
        "conclave_storage_fsync_duration_seconds",
        Kind::Histogram,
        "How long each fdatasync of the Raft log took.",
    ),
    (
        "conclave_snapshot_build_duration_seconds",
        Kind::Histogram,
        "How long building (copying, encoding, writing) a snapshot took.",
    ),
    (
        "conclave_snapshot_size_bytes",
        Kind::Gauge,
        "Size of the last snapshot this node built.",
    ),
    (
        "conclave_watch_streams",
        Kind::Gauge,
        "Streams open on this agent: key watches, member and audit watches, election observers.",
    ),
    (
        "conclave_audit_entries",
        Kind::Gauge,
        "Entries in the audit log.",
    ),
    (
        "conclave_audit_entries_dropped_total",
        Kind::Counter,
        "Audit entries dropped to keep the log within its bound.",
    ),
    // HTTP.
    (
        "conclave_http_requests_total",
        Kind::Counter,
        "HTTP requests answered, by route template, method and status code.",
    ),
    (
        "conclave_http_request_duration_seconds",
        Kind::Histogram,
        "HTTP request durations, by route template and method.",
    ),
    // Gossip.
    (
        "conclave_members",
        Kind::Gauge,
        "Agents in this agent's gossip view, by state.",
    ),
    (
        "conclave_gossip_foreign_members",
        Kind::Gauge,
        "Agents of another cluster met through gossip (refused).",
    ),
    (
        "conclave_gossip_datagrams_total",
        Kind::Counter,
        "Gossip datagrams, by direction.",
    ),
    (
        "conclave_gossip_bytes_total",
        Kind::Counter,
        "Gossip bytes, by direction.",
    ),
    (
        "conclave_gossip_refused_total",
        Kind::Counter,
        "Gossip datagrams refused, by reason.",
    ),
    (
        "conclave_gossip_send_errors_total",
        Kind::Counter,
        "Gossip datagrams that could not be sent.",
    ),
    // Publishing, configuration, roles.
    (
        "conclave_publish_writes_total",
        Kind::Counter,
        "Peer publications written, by sink.",
    ),
    (
        "conclave_publish_holds_total",
        Kind::Counter,
        "Times a sink held its last publication, by sink.",
    ),
    (
        "conclave_publish_hook_failures_total",
        Kind::Counter,
        "Reload hooks that failed, by sink.",
    ),
    (
        "conclave_config_applied_revision",
        Kind::Gauge,
        "The revision of each configuration document this agent applied.",
    ),
    (
        "conclave_config_apply_failures_total",
        Kind::Counter,
        "Configuration documents this agent failed to apply.",
    ),
    (
        "conclave_config_file_modified",
        Kind::Gauge,
        "1 when a rendered configuration file was changed by hand (drift).",
    ),
    (
        "conclave_role_holder",
        Kind::Gauge,
        "1 while this agent holds the role.",
    ),
    (
        "conclave_role_epoch",
        Kind::Gauge,
        "The epoch of the role's election this agent holds.",
    ),
    (
        "conclave_role_split_brain_alerts_total",
        Kind::Counter,
        "Times two agents were seen claiming one role.",
    ),
    // IPAM.
    ("conclave_ipam_networks", Kind::Gauge, "IPAM networks."),
    (
        "conclave_ipam_addresses",
        Kind::Gauge,
        "IPAM addresses by network and state.",
    ),
    (
        "conclave_ipam_allocations_total",
        Kind::Counter,
        "IPAM allocations this node served, by network.",
    ),
    (
        "conclave_ipam_releases_total",
        Kind::Counter,
        "IPAM releases this node served, by network.",
    ),
    (
        "conclave_ipam_exhausted_total",
        Kind::Counter,
        "IPAM allocations refused for a full network, by network.",
    ),
    // TLS.
    (
        "conclave_tls_certificate_expiry_timestamp_seconds",
        Kind::Gauge,
        "When the certificate the HTTP API serves expires (Unix seconds).",
    ),
    (
        "conclave_tls_reloads_total",
        Kind::Counter,
        "TLS file reloads, by outcome.",
    ),
    (
        "conclave_tls_handshake_failures_total",
        Kind::Counter,
        "HTTPS connections whose TLS handshake failed or timed out.",
    ),
    // The process.
    (
        "process_cpu_seconds_total",
        Kind::Counter,
        "CPU time the agent used (user and system).",
    ),
    (
        "process_resident_memory_bytes",
        Kind::Gauge,
        "The agent's resident memory.",
    ),
    (
        "process_open_fds",
        Kind::Gauge,
        "File descriptors the agent has open.",
    ),
    (
        "process_max_fds",
        Kind::Gauge,
        "The agent's descriptor limit.",
    ),
];

/// Histogram buckets for request durations (seconds).
pub const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Give every family its help and type (after the recorder is installed).
pub fn describe_all() {
    for (name, kind, help) in FAMILIES {
        match kind {
            Kind::Counter => metrics::describe_counter!(*name, *help),
            Kind::Gauge => metrics::describe_gauge!(*name, *help),
            Kind::Histogram => metrics::describe_histogram!(*name, *help),
        }
    }
}

/// Middleware: count and time every request by its route template (`/v1/kv/{*key}`, never
/// the raw path, so the label set stays small).
pub async fn record_http(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    if let Some(kind) = conclave_api::agent_view::traffic(request.method(), &route) {
        super::history::count(kind);
    }
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let code = response.status().as_u16().to_string();
    metrics::counter!("conclave_http_requests_total", "route" => route.clone(), "method" => method.clone(), "code" => code)
        .increment(1);
    metrics::histogram!("conclave_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// What the sampler remembers between rounds.
#[derive(Default)]
pub(super) struct Sampled {
    term: Option<u64>,
    leader: Option<u64>,
    lag_labels: BTreeSet<String>,
    /// (node id, name) of every `conclave_node_info` series reported so far.
    name_labels: BTreeSet<(String, String)>,
    node_labels: BTreeSet<(String, String)>,
}

/// One round of the Raft and cluster gauges (the caller runs it every second).
pub(super) fn sample_raft(node: &RaftNode, membership: &Membership, seen: &mut Sampled) {
    let m = node.metrics();
    if seen.term.is_none() {
        // Exported from the first round, at 0, so a rate over them is defined.
        metrics::counter!("conclave_raft_elections_total").increment(0);
        metrics::counter!("conclave_leader_changes_total").increment(0);
    }
    if let Some(before) = seen.term
        && m.current_term > before
    {
        metrics::counter!("conclave_raft_elections_total").increment(m.current_term - before);
    }
    seen.term = Some(m.current_term);
    if m.current_leader.is_some() && m.current_leader != seen.leader {
        metrics::counter!("conclave_leader_changes_total").increment(1);
    }
    if m.current_leader.is_some() {
        seen.leader = m.current_leader;
    }
    metrics::counter!("conclave_raft_entries_applied_total")
        .absolute(m.last_applied.map_or(0, |l| l.index));
    let fsyncs = node
        .log_stats()
        .fsyncs
        .load(std::sync::atomic::Ordering::Relaxed);
    let commands = node
        .batch_stats()
        .commands
        .load(std::sync::atomic::Ordering::Relaxed);
    metrics::counter!("conclave_storage_log_fsyncs_total").absolute(fsyncs);
    if fsyncs > 0 {
        metrics::gauge!("conclave_storage_writes_per_fsync").set(commands as f64 / fsyncs as f64);
    }

    // Raft members by their gossip state and Raft role, as every node sees them.
    let states: BTreeMap<u64, &'static str> = membership
        .view()
        .members
        .iter()
        .map(|g| (g.id, g.state.as_str()))
        .collect();
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    let members = node.local_members();
    if let Some(id) = node.cluster_id() {
        let name = node.cluster_name().unwrap_or_default().to_owned();
        metrics::gauge!("conclave_cluster_info", "cluster_id" => id, "cluster_name" => name)
            .set(1.0);
    }
    // Names as an info series: the lag and other per-node series keep the id alone, so a
    // rename does not split them; a query joins on `node` for the name.
    let mut names: BTreeMap<(String, String), f64> =
        seen.name_labels.iter().map(|k| (k.clone(), 0.0)).collect();
    for member in &members {
        if let Some(name) = &member.name {
            names.insert((member.node_id.to_string(), name.clone()), 1.0);
        }
    }
    for ((id, name), value) in names {
        metrics::gauge!("conclave_node_info", "node" => id.clone(), "name" => name.clone())
            .set(value);
        seen.name_labels.insert((id, name));
    }
    for member in members {
        let state = states.get(&member.node_id).copied().unwrap_or("unknown");
        *counts
            .entry((state.to_owned(), member.role.as_str().to_owned()))
            .or_default() += 1;
    }
    for key in seen.node_labels.iter() {
        counts.entry(key.clone()).or_default();
    }
    for ((state, role), n) in &counts {
        metrics::gauge!("conclave_cluster_nodes", "state" => state.clone(), "role" => role.clone())
            .set(*n as f64);
        seen.node_labels.insert((state.clone(), role.clone()));
    }

    // Replication lag: the leader's view; elsewhere the series read 0.
    let report = node.replication_report();
    let mut lag: BTreeMap<String, (f64, f64)> = seen
        .lag_labels
        .iter()
        .map(|n| (n.clone(), (0.0, 0.0)))
        .collect();
    for member in report.iter().flat_map(|r| r.members.iter()) {
        if let Some(rep) = &member.replication {
            lag.insert(
                member.node_id.to_string(),
                (rep.lag_entries.unwrap_or(0) as f64, rep.lag_seconds),
            );
        }
    }
    for (node_label, (entries, seconds)) in lag {
        metrics::gauge!("conclave_replication_lag_entries", "node" => node_label.clone())
            .set(entries);
        metrics::gauge!("conclave_replication_lag_seconds", "node" => node_label.clone())
            .set(seconds);
        seen.lag_labels.insert(node_label);
    }
}

/// The process's CPU time, resident memory and descriptors, from /proc (Linux).
pub(super) fn sample_process() {
    // utime and stime are fields 14 and 15 of /proc/self/stat, in clock ticks (100 a second
    // on Linux); the command name (field 2) may hold spaces, so count after its ')'.
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        && let Some((_, rest)) = stat.rsplit_once(')')
    {
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // `rest` starts at field 3, so utime (14) is at 11 and stime (15) at 12.
        let seconds = (ticks(11) + ticks(12)) / 100.0;
        metrics::counter!("process_cpu_seconds_total").absolute(seconds as u64);
    }
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
        && let Some(pages) = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<f64>().ok())
    {
        metrics::gauge!("process_resident_memory_bytes").set(pages * 4096.0);
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("process_open_fds").set(dir.count() as f64);
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits")
        && let Some(line) = limits.lines().find(|l| l.starts_with("Max open files"))
        && let Some(soft) = line
            .split_whitespace()
            .nth(3)
            .and_then(|s| s.parse::<f64>().ok())
    {
        metrics::gauge!("process_max_fds").set(soft);
    }
}

/// Sample the process every second until `shutdown` (every agent, clients too).
pub(super) async fn process_gauges(shutdown: CancellationToken) {
    loop {
        sample_process();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_named_by_prometheus_conventions_once() {
        let mut names = BTreeSet::new();
        for (name, kind, help) in FAMILIES {
            assert!(names.insert(*name), "{name} twice");
            assert!(!help.is_empty() && help.ends_with('.'), "{name}: {help:?}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}"
            );
            match kind {
                Kind::Counter => assert!(name.ends_with("_total"), "{name}"),
                Kind::Gauge => assert!(!name.ends_with("_total"), "{name}"),
                Kind::Histogram => assert!(name.ends_with("_seconds"), "{name}"),
            }
        }
    }
}
