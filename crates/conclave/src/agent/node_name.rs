//! Which id and name this node goes by. The name: the one configured, else the one it had
//! (kept in the identity file), else one made from the hostname. The leader checks that no
//! other member holds it (`conclave_raft::naming`); here it is only chosen and remembered.

use std::path::Path;

use anyhow::{Context, bail};
use conclave_state::node_names::{MAX_NODE_NAME, check_node_name, with_suffix};
use conclave_storage::identity::{self, Identity};

use crate::config::{AgentConfig, Formation};

/// The node id to use: the flag, else the data dir's, else (static formation) the entry of
/// `--initial-members` whose address is this node's RPC address.
pub(crate) fn choose_node_id(
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

/// The HTTP port of an agent started with the defaults: its name is the bare hostname.
const DEFAULT_HTTP_PORT: u16 = 7400;

/// The name to go by (see the module docs); `hostname` is read by the caller.
pub(crate) fn choose(
    configured: Option<&str>,
    recorded: Option<&str>,
    hostname: Option<&str>,
    http_port: u16,
) -> String {
    if let Some(name) = configured.or(recorded) {
        return name.to_owned();
    }
    let host = hostname.map(host_label).unwrap_or_default();
    let host = if host.is_empty() { "node".into() } else { host };
    if http_port == DEFAULT_HTTP_PORT {
        return host;
    }
    // A second agent on one host listens elsewhere: its port tells the two apart.
    with_suffix(&host, &http_port.to_string())
}

/// A hostname as a node name: characters names do not take become `-`, at most
/// [`MAX_NODE_NAME`] bytes, starting with a letter or digit.
fn host_label(hostname: &str) -> String {
    let mapped: String = hostname
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_start_matches(['.', '_', '-']);
    let mut label = trimmed[..trimmed.len().min(MAX_NODE_NAME)].to_owned();
    if check_node_name(&label).is_err() {
        // All digits (or nothing left): still a name, never an id.
        label = format!("node-{label}");
        label.truncate(MAX_NODE_NAME);
    }
    label
}

/// The kernel's hostname, when it can be read.
fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Choose this node's name and record it in the identity file when it changed.
pub(crate) fn settle(
    configured: Option<&str>,
    http_port: u16,
    data_dir: &Path,
    identity: &mut Identity,
) -> anyhow::Result<String> {
    let name = choose(
        configured,
        identity.name.as_deref(),
        hostname().as_deref(),
        http_port,
    );
    if identity.name.as_deref() != Some(name.as_str()) {
        if let Some(old) = &identity.name {
            tracing::info!(
                old,
                new = name,
                "this node was renamed; the cluster learns it from the leader"
            );
        }
        identity.name = Some(name.clone());
        identity::save(data_dir, identity).context("cannot record this node's name")?;
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_beats_recorded_beats_hostname() {
        assert_eq!(choose(Some("db-1"), Some("old"), Some("h"), 7400), "db-1");
        assert_eq!(choose(None, Some("old"), Some("h"), 9000), "old");
        assert_eq!(choose(None, None, Some("web01"), 7400), "web01");
        assert_eq!(choose(None, None, Some("web01"), 17400), "web01-17400");
        assert_eq!(choose(None, None, None, 7400), "node");
    }

    #[test]
    fn any_hostname_becomes_a_valid_name() {
        for host in [
            "web01.example.com",
            "my host",
            "_weird",
            "12345",
            "é",
            "",
            &"a".repeat(80),
        ] {
            for port in [7400, 65535] {
                let name = choose(None, None, Some(host), port);
                assert!(check_node_name(&name).is_ok(), "{host:?} gave {name:?}");
            }
        }
        assert_eq!(choose(None, None, Some("12345"), 7400), "node-12345");
        assert_eq!(choose(None, None, Some("my host"), 7400), "my-host");
    }
}
