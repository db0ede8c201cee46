//! Agent settings given as command-line flags (`conclave agent --help`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;

use super::{LogFormat, NodeRole};

fn secret_flag(value: &str) -> Result<conclave_types::Secret, std::convert::Infallible> {
    Ok(conclave_types::Secret::new(value))
}

/// Agent settings that may be given as flags; only those given override other layers.
#[derive(Debug, Default, Clone, Serialize, clap::Args)]
pub struct AgentFlags {
    /// This node's id (minted once when the data dir is new).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<u64>,
    /// This node's readable name, unique in the cluster [default: the name it had, else the hostname, plus -PORT off port 7400].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The cluster's id (minted once when the data dir is new).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// The cluster's readable name; a node configured with another is refused at join.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// Data directory [default: ./conclave-data].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// HTTP API listen address [default: 127.0.0.1:7400].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<SocketAddr>,
    /// Node RPC listen address [default: 127.0.0.1:7401].
    #[arg(long, alias = "raft-addr")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc_addr: Option<SocketAddr>,
    /// API address to advertise to other nodes [default: the HTTP listen address].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise_http_addr: Option<String>,
    /// RPC address to advertise to other nodes [default: the RPC listen address].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise_rpc_addr: Option<String>,
    /// Log format [default: text].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. info or conclave=debug [default: info; openraft retries are quiet unless named].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Largest value accepted, bytes [default: 1048576].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_value_bytes: Option<usize>,
    /// Largest key accepted, bytes [default: 4096].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_key_bytes: Option<usize>,
    /// Join secret shared by all nodes (prefer the CONCLAVE_CLUSTER_TOKEN variable: flags show in `ps`).
    // Held as a Secret (its Debug redacts), so it does not go through the serialized layer:
    // `load` puts it over the other layers itself.
    #[arg(long, value_parser = secret_flag)]
    #[serde(skip)]
    pub cluster_token: Option<conclave_types::Secret>,
    /// File holding the join secret (instead of --cluster-token, which shows in `ps`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_token_file: Option<PathBuf>,
    /// Members to join, comma-separated: RPC addresses, DNS names (host:7401) or SRV records
    /// (srv:_conclave._udp.example.com); retried with backoff until one answers
    /// (--retry-join is the same flag).
    #[arg(long, value_delimiter = ',', alias = "retry-join")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub join: Vec<String>,
    /// Static formation: every initial voter as ID=HOST:PORT (RPC address), comma-separated.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_members: Option<String>,
    /// Form a new cluster once this many voters have met through --join.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap_expect: Option<u32>,
    /// Voters the cluster promotes caught-up learners towards [default: 3].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voters: Option<usize>,
    /// voter (may be promoted) or learner (stays a non-voter) [default: voter].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<NodeRole>,
    /// Run as a single-node cluster (the default when no formation flag is given).
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub single_node: bool,
    /// Serve node RPC and gossip beyond loopback without a cluster token, or the HTTP API
    /// beyond loopback without TLS and ACLs (anyone who reaches the port can take part, or
    /// read and write). Refused without this flag.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// DNS server (host:port) for srv: join entries [default: the system's].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_server: Option<SocketAddr>,
    /// Documents to import once into an empty registry (a conclave documents file, or the
    /// sync-database seed's appsettings.json with EntglDb.RemotePeers); nodes whose seed files
    /// disagree are reported, and nothing is imported for that document.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_seed: Option<PathBuf>,
    /// A label advertised through gossip, key=value (repeatable); added to the config
    /// file's `[tags]` (a flag wins for the same key).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    #[serde(skip)]
    pub tags: Vec<String>,
    #[command(flatten)]
    #[serde(skip_serializing_if = "super::TlsFlags::is_empty")]
    pub tls: super::TlsFlags,
}
