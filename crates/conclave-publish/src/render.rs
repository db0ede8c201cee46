//! Formats of a peers file. Pure: members in, bytes out, same input → same bytes.

use std::collections::BTreeMap;

use conclave_types::GossipMember;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A JSON array of `{id, name, role, ip, port, peer_string, tags, healthy}`.
    #[default]
    Json,
    /// One `ip:port` per line.
    Lines,
    /// One integer: how many peers.
    Count,
    /// `PEERS=ip:port,ip:port` (the variable name is `env_var`).
    Env,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Lines => "lines",
            Format::Count => "count",
            Format::Env => "env",
        }
    }
}

/// Which of a member's addresses to publish.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Address {
    /// The HTTP API address.
    #[default]
    Api,
    /// The node RPC address.
    Rpc,
}

/// One published peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: u64,
    pub name: String,
    pub role: String,
    /// An IP literal, or the DNS name the member advertises (a container's service name):
    /// published as given, for the reader to resolve. Keyed `ip` in JSON, as the
    /// operator seed's peer list is.
    pub ip: String,
    pub port: u16,
    pub tags: BTreeMap<String, String>,
    pub healthy: bool,
}

impl Peer {
    pub fn from_member(m: &GossipMember, address: Address) -> Option<Peer> {
        let addr = match address {
            Address::Api => &m.api_addr,
            Address::Rpc => &m.rpc_addr,
        };
        let (host, port) = host_and_port(addr)?;
        Some(Peer {
            id: m.id,
            // A `name` tag (how names were given before nodes had them) still wins.
            name: m
                .tags
                .get("name")
                .or(m.name.as_ref())
                .cloned()
                .unwrap_or_else(|| format!("node-{}", m.id)),
            role: m.role.clone(),
            ip: host,
            port,
            tags: m.tags.clone(),
            healthy: m.healthy,
        })
    }

    /// `host:port`, with brackets for an IPv6 literal.
    pub fn peer_string(&self) -> String {
        if self.ip.contains(':') {
            format!("[{}]:{}", self.ip, self.port)
        } else {
            format!("{}:{}", self.ip, self.port)
        }
    }
}

/// An advertised `ip:port`, `[v6]:port` or `name:port`; `None` for anything else (a member
/// whose address has no port is not a peer anyone could reach).
fn host_and_port(addr: &str) -> Option<(String, u16)> {
    if let Ok(sock) = addr.parse::<std::net::SocketAddr>() {
        return Some((sock.ip().to_string(), sock.port()));
    }
    let (host, port) = addr.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    name_ok.then(|| (host.to_owned(), port))
}

/// Render `peers` (already filtered and sorted). `fields` renames JSON keys
/// (e.g. `role = "nodeType"`, `peer_string = "peerString"`).
pub fn render(
    peers: &[Peer],
    format: Format,
    fields: &BTreeMap<String, String>,
    env_var: &str,
) -> Vec<u8> {
    match format {
        Format::Json => {
            let key = |k: &str| fields.get(k).cloned().unwrap_or_else(|| k.to_string());
            let items: Vec<serde_json::Value> = peers
                .iter()
                .map(|p| {
                    let mut o = serde_json::Map::new();
                    o.insert(key("id"), p.id.into());
                    o.insert(key("name"), p.name.clone().into());
                    o.insert(key("role"), p.role.clone().into());
                    o.insert(key("ip"), p.ip.clone().into());
                    o.insert(key("port"), p.port.into());
                    o.insert(key("peer_string"), p.peer_string().into());
                    o.insert(
                        key("tags"),
                        serde_json::to_value(&p.tags).unwrap_or_default(),
                    );
                    o.insert(key("healthy"), p.healthy.into());
                    serde_json::Value::Object(o)
                })
                .collect();
            let mut out = serde_json::to_vec_pretty(&items).unwrap_or_default();
            out.push(b'\n');
            out
        }
        Format::Lines => peers
            .iter()
            .map(|p| format!("{}\n", p.peer_string()))
            .collect::<String>()
            .into_bytes(),
        Format::Count => format!("{}\n", peers.len()).into_bytes(),
        Format::Env => format!(
            "{env_var}={}\n",
            peers
                .iter()
                .map(Peer::peer_string)
                .collect::<Vec<_>>()
                .join(",")
        )
        .into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers() -> Vec<Peer> {
        vec![
            Peer {
                id: 1,
                name: "node-1".into(),
                role: "voter".into(),
                ip: "10.0.0.1".into(),
                port: 7400,
                tags: BTreeMap::new(),
                healthy: true,
            },
            Peer {
                id: 2,
                name: "v2".into(),
                role: "client".into(),
                ip: "fd00::2".into(),
                port: 7400,
                tags: BTreeMap::from([("zone".into(), "b".into())]),
                healthy: true,
            },
        ]
    }

    /// Members that advertise a DNS name (Compose service names, a StatefulSet's pod
    /// names) are peers too, published by name.
    #[test]
    fn names_and_literals_are_addresses_and_garbage_is_not() {
        assert_eq!(
            host_and_port("voter-1:7400"),
            Some(("voter-1".into(), 7400))
        );
        assert_eq!(
            host_and_port("conclave-0.conclave.ns.svc.cluster.local:7400"),
            Some(("conclave-0.conclave.ns.svc.cluster.local".into(), 7400))
        );
        assert_eq!(host_and_port("[::1]:7400"), Some(("::1".into(), 7400)));
        assert_eq!(
            host_and_port("10.0.0.1:7400"),
            Some(("10.0.0.1".into(), 7400))
        );
        for bad in ["voter-1", ":7400", "a b:1", "x:99999", "::1", "a/b:1"] {
            assert_eq!(host_and_port(bad), None, "{bad}");
        }
        let peer = Peer {
            ip: "voter-1".into(),
            port: 7400,
            ..peers()[0].clone()
        };
        assert_eq!(peer.peer_string(), "voter-1:7400");
    }

    #[test]
    fn every_format() {
        let none = BTreeMap::new();
        assert_eq!(
            render(&peers(), Format::Lines, &none, "PEERS"),
            b"10.0.0.1:7400\n[fd00::2]:7400\n"
        );
        assert_eq!(render(&peers(), Format::Count, &none, "PEERS"), b"2\n");
        assert_eq!(
            render(&peers(), Format::Env, &none, "VALIDATORS"),
            b"VALIDATORS=10.0.0.1:7400,[fd00::2]:7400\n"
        );
        let json: serde_json::Value =
            serde_json::from_slice(&render(&peers(), Format::Json, &none, "PEERS")).unwrap();
        assert_eq!(json[1]["peer_string"], "[fd00::2]:7400");
        assert_eq!(json[1]["tags"]["zone"], "b");
    }

    #[test]
    fn json_keys_can_be_renamed_like_the_operator_seed() {
        let fields = BTreeMap::from([
            ("role".to_string(), "nodeType".to_string()),
            ("peer_string".to_string(), "peerString".to_string()),
        ]);
        let json: serde_json::Value =
            serde_json::from_slice(&render(&peers(), Format::Json, &fields, "PEERS")).unwrap();
        assert_eq!(json[0]["nodeType"], "voter");
        assert_eq!(json[0]["peerString"], "10.0.0.1:7400");
        assert!(json[0].get("role").is_none());
    }
}
