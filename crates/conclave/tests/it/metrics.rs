//! `/metrics` as an SRE reads it: every family with `# HELP` and `# TYPE`, only families of
//! the agent's catalogue (`src/agent/metrics.rs`), the seed's figures (nodes by state, lag per
//! node, events), HTTP by route template; and every metric the shipped alert rules and
//! Grafana dashboard (`deploy/observability/`) name is one the agent exports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use crate::cluster::{cluster_env, eventually, leader_of, start_static};
use crate::support::http;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The families of the agent's catalogue, read from its source (the binary's modules are not
/// a library the tests can import).
fn catalogue() -> BTreeSet<String> {
    let text =
        std::fs::read_to_string(repo().join("crates/conclave/src/agent/metrics.rs")).unwrap();
    let start = text.find("pub const FAMILIES").expect("the catalogue");
    let end = start + text[start..].find("\n];").expect("its end");
    names_in(&text[start..end])
}

/// Metric names in a PromQL-bearing text (alert rules, a dashboard), histogram suffixes
/// taken off.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["conclave_", "process_"] {
        for (i, _) in text.match_indices(prefix) {
            if i > 0 && text.as_bytes()[i - 1].is_ascii_alphanumeric() {
                continue;
            }
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            out.insert(base.to_owned());
        }
    }
    out
}

struct Scrape {
    help: BTreeSet<String>,
    types: BTreeMap<String, String>,
    /// Sample lines: name with labels → value.
    samples: BTreeMap<String, f64>,
}

fn parse(text: &str) -> Scrape {
    let mut s = Scrape {
        help: BTreeSet::new(),
        types: BTreeMap::new(),
        samples: BTreeMap::new(),
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            s.help.insert(rest.split(' ').next().unwrap().to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            s.types
                .insert(it.next().unwrap().to_owned(), it.next().unwrap().to_owned());
        } else if !line.is_empty() {
            let (series, value) = line.rsplit_once(' ').unwrap();
            s.samples
                .insert(series.to_owned(), value.parse().unwrap_or(f64::NAN));
        }
    }
    s
}

fn family(series: &str) -> String {
    let name = series.split('{').next().unwrap();
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
        .to_owned()
}

async fn scrape(url: &str) -> Scrape {
    parse(&http().get(url).send().await.unwrap().text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_is_described_and_the_seed_figures_and_alerts_are_there() {
    let known = catalogue();
    assert!(known.len() > 40, "{known:?}");
    for file in ["alerts.yml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(repo().join("deploy/observability").join(file)).unwrap();
        let used = names_in(&text);
        assert!(used.len() >= 8, "{file}: {used:?}");
        let unknown: Vec<_> = used.difference(&known).collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics the agent does not export: {unknown:?}"
        );
    }
    // The rules file is well-formed: groups of rules, each an alert with an expression.
    let rules: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo().join("deploy/observability/alerts.yml")).unwrap(),
    )
    .unwrap();
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        assert!(
            rule["alert"].is_string() && rule["expr"].is_string(),
            "{rule}"
        );
    }

    let root = tempfile::tempdir().unwrap();
    let nodes = start_static(root.path(), 3, &[], &cluster_env(&[])).await;
    let l = leader_of(&nodes, &[0, 1, 2]).await;
    let r = http()
        .put(nodes[l].agent.url("/v1/kv/metrics-test"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let leader_url = nodes[l].agent.url("/metrics");
    eventually(
        "the leader reports every node's lag and the cluster's nodes",
        Duration::from_secs(20),
        || async {
            let s = scrape(&leader_url).await;
            s.samples
                .keys()
                .filter(|k| k.starts_with("conclave_replication_lag_entries{"))
                .count()
                == 3
                && s.samples
                    .iter()
                    .filter(|(k, v)| k.starts_with("conclave_node_info{") && **v == 1.0)
                    .count()
                    == 3
                && s.samples
                    .get("conclave_cluster_nodes{state=\"alive\",role=\"voter\"}")
                    == Some(&3.0)
        },
    )
    .await;
    for (i, node) in nodes.iter().enumerate() {
        let s = scrape(&node.agent.url("/metrics")).await;
        let families: BTreeSet<String> = s.samples.keys().map(|k| family(k)).collect();
        for f in &families {
            assert!(s.help.contains(f), "node {i}: {f} has no # HELP");
            assert!(s.types.contains_key(f), "node {i}: {f} has no # TYPE");
            assert!(known.contains(f), "node {i}: {f} is not in the catalogue");
        }
        for want in [
            "conclave_raft_entries_applied_total",
            "conclave_leader_changes_total",
            "conclave_raft_elections_total",
            "conclave_http_requests_total",
            "conclave_http_request_duration_seconds",
            "process_resident_memory_bytes",
            "process_open_fds",
        ] {
            assert!(families.contains(want), "node {i} lacks {want}");
        }
        assert_eq!(
            s.types["conclave_http_request_duration_seconds"],
            "histogram"
        );
        // Routes are templates, never raw paths (the key would be a label value otherwise).
        assert!(
            s.samples.keys().all(|k| !k.contains("metrics-test")),
            "a raw path in a label on node {i}"
        );
    }
    let s = scrape(&leader_url).await;
    assert!(
        s.samples.keys().any(|k| k.starts_with(
            "conclave_http_requests_total{route=\"/v1/kv/{*key}\",method=\"PUT\",code=\"200\""
        )),
        "{:?}",
        s.samples
            .keys()
            .filter(|k| k.contains("http_requests"))
            .collect::<Vec<_>>()
    );
}
