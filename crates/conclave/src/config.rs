//! The agent's configuration: built-in defaults < `--config FILE` (TOML) < `CONCLAVE_*`
//! environment < command-line flags.
//!
//! The file is first parsed on its own with `toml` so that a type error names the file, the
//! line and the key; figment then does the layering and names the source (file or variable)
//! of any value it rejects.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use conclave_membership::GossipTuning;
use conclave_membership::checks::CheckConfig;
use conclave_publish::SinkConfig;
use conclave_raft::RaftTuning;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything `conclave agent` can be told. Field names are the TOML keys and, upper-cased
/// with a `CONCLAVE_` prefix (nested with `__`), the environment variables.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// This node's id. Minted once (random) when the data dir is new and not given.
    pub node_id: Option<u64>,
    /// This node's readable name, unique in the cluster. Default: the name it had, else the
    /// hostname (plus `-<port>` when the HTTP port is not 7400).
    pub node_name: Option<String>,
    /// The cluster's id. Minted once when the data dir is new and not given.
    pub cluster_id: Option<String>,
    /// The cluster's readable name: shown in `status`, the dashboard and metrics; a node
    /// configured with another one is refused at join.
    pub cluster_name: Option<String>,
    /// Where the Raft log, snapshots and the node identity live.
    pub data_dir: PathBuf,
    /// HTTP API listen address.
    pub http_addr: SocketAddr,
    /// Node-to-node RPC listen address.
    pub rpc_addr: SocketAddr,
    /// API address other nodes and clients should use (defaults to `http_addr`).
    pub advertise_http_addr: Option<String>,
    /// RPC address other nodes should use (defaults to `rpc_addr`).
    pub advertise_rpc_addr: Option<String>,
    /// `text` (human-readable) or `json`.
    pub log_format: LogFormat,
    /// A tracing filter, e.g. `info` or `conclave=debug,openraft=warn`.
    pub log_level: String,
    /// Largest key accepted, bytes.
    pub max_key_bytes: usize,
    /// Largest value accepted, bytes.
    pub max_value_bytes: usize,
    /// The longest an election campaign may wait to be elected, ms (at most 300000).
    pub max_campaign_wait_ms: u64,
    /// Raft timings and compaction.
    pub raft: RaftTuning,
    /// Join secret: required on every node RPC connection when set. Never printed.
    pub cluster_token: Option<conclave_types::Secret>,
    /// A file holding the cluster token (so it shows neither in `ps` nor in the environment).
    pub cluster_token_file: Option<PathBuf>,
    /// Serve node RPC and gossip beyond loopback without a cluster token, or the HTTP API
    /// beyond loopback without TLS and ACLs (anyone who reaches the port could then take
    /// part, or read and write): refused unless this is set.
    pub insecure: bool,
    /// Node RPC addresses of members to join (or, with `bootstrap_expect`, to form with).
    pub join: AddrList,
    /// Static formation: `ID=HOST:PORT,...` of every initial voter (RPC addresses).
    pub initial_members: Option<String>,
    /// Form the cluster once this many voters (this one included) have met via `join`.
    pub bootstrap_expect: Option<u32>,
    /// Voters the leader promotes caught-up learners towards.
    pub voters: usize,
    /// `voter` (may be promoted) or `learner` (never a voter unless promoted by hand).
    pub role: NodeRole,
    /// Explicitly a single-node cluster (the default without join/initial_members).
    pub single_node: bool,
    /// Labels advertised through gossip (`[tags]` table, or `--tag key=value`).
    pub tags: Tags,
    /// `CONCLAVE_*` variables that name no setting: ignored, logged at start.
    #[serde(skip)]
    pub ignored_env: Vec<String>,
    /// DNS server (host:port) for `srv:` join entries; default: /etc/resolv.conf.
    pub dns_server: Option<SocketAddr>,
    /// Gossip timings and failure detection.
    pub gossip: GossipTuning,
    /// How much change history each node keeps for watches (`[watch]`).
    pub watch: WatchTuning,
    /// Leader-bound roles this agent may hold (`[[roles]]` tables).
    pub roles: Vec<conclave_roles::RoleConfig>,
    /// A client must send a request's headers within this time (slow clients hold no
    /// connection for longer).
    #[serde(with = "humantime_serde")]
    pub http_header_timeout: std::time::Duration,
    /// At most this many HTTP connections at once (capped further by the descriptor limit).
    pub http_max_connections: usize,
    /// Host names browsers may reach this agent's HTTP API by, besides IP literals,
    /// `localhost` and the advertised HTTP host (see `conclave_api::edge`).
    pub http_allowed_hosts: Vec<String>,
    /// What secret references in documents may resolve to on this node (`[secrets]`).
    pub secrets: conclave_config::SecretPolicy,
    /// TLS for the HTTP API (`[tls]`): once a certificate is set, only HTTPS is served.
    pub tls: TlsConfig,
    /// Tokens and policies on the HTTP API (`[acl]`).
    pub acl: AclConfig,
    /// What the replicated audit log records beyond cluster changes (`[audit]`).
    pub audit: AuditConfig,
    /// Documents imported once when the registry lacks them (`--config-seed`).
    pub config_seed: Option<PathBuf>,
    /// Which configuration documents this node renders and applies (`[config_sync]`).
    pub config_sync: conclave_publish::ConfigSyncConfig,
    /// Health checks (`[[check]]` tables).
    pub check: Vec<CheckConfig>,
    /// Peer publishing sinks (`[[publish]]` tables).
    pub publish: Vec<SinkConfig>,
    /// Programs run on membership events (`[[event_handler]]` tables).
    pub event_handler: Vec<conclave_publish::handlers::EventHandlerConfig>,
}

/// `[watch]`: the window of recent changes a node keeps, so watchers can resume after a
/// disconnect. A watcher further behind gets `410 Gone` and starts over from a fresh read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WatchTuning {
    /// Changes kept (the oldest go first).
    pub history_changes: usize,
    /// Bytes of keys and values kept, MiB.
    pub history_mib: usize,
}

impl Default for WatchTuning {
    fn default() -> Self {
        let d = conclave_storage::FeedLimits::default();
        Self {
            history_changes: d.max_changes,
            history_mib: d.max_bytes / (1024 * 1024),
        }
    }
}

impl WatchTuning {
    pub fn feed_limits(&self) -> conclave_storage::FeedLimits {
        conclave_storage::FeedLimits {
            max_changes: self.history_changes,
            max_bytes: self.history_mib.saturating_mul(1024 * 1024),
        }
    }
}

mod acl;
mod flags;

/// `[audit]`: the audit log always records membership, leadership, configuration
/// documents, ACL changes and election holders (`conclave_state::audit`); key-value writes
/// only under the prefixes named here.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Key prefixes whose writes (puts and deletes, never values) get an entry, e.g.
    /// `["prod/", "secrets-index/"]`; an empty string would name every key. Env
    /// `CONCLAVE_AUDIT__KV_PREFIXES='["prod/"]'`.
    pub kv_prefixes: Vec<String>,
}

impl AuditConfig {
    pub fn settings(&self) -> conclave_api::audit::AuditSettings {
        conclave_api::audit::AuditSettings {
            kv_prefixes: self.kv_prefixes.clone(),
        }
    }
}

mod lists;
mod tls;
pub use acl::AclConfig;
pub use flags::AgentFlags;
pub use lists::{AddrList, Tags};
pub use tls::{TlsConfig, TlsFlags};

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    #[default]
    Voter,
    Learner,
    /// Gossip only: no Raft log; forwards API calls to the cluster.
    Client,
}

impl NodeRole {
    pub fn name(self) -> &'static str {
        match self {
            NodeRole::Voter => "voter",
            NodeRole::Learner => "learner",
            NodeRole::Client => "client",
        }
    }
}

/// How this node comes to belong to a cluster (when its data dir does not already say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Formation {
    Single,
    Static(Vec<(u64, String)>),
    Bootstrap { expect: u32, join: Vec<String> },
    Join(Vec<String>),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for AgentConfig {
    fn default() -> Self {
        let limits = conclave_state::Limits::default();
        Self {
            node_id: None,
            node_name: None,
            cluster_id: None,
            cluster_name: None,
            data_dir: PathBuf::from("./conclave-data"),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 7400)),
            rpc_addr: SocketAddr::from(([127, 0, 0, 1], 7401)),
            advertise_http_addr: None,
            advertise_rpc_addr: None,
            log_format: LogFormat::Text,
            log_level: "info".to_string(),
            max_key_bytes: limits.max_key_bytes,
            max_value_bytes: limits.max_value_bytes,
            max_campaign_wait_ms: limits.max_campaign_wait_ms,
            raft: RaftTuning::default(),
            cluster_token: None,
            cluster_token_file: None,
            insecure: false,
            join: AddrList::default(),
            initial_members: None,
            bootstrap_expect: None,
            voters: 3,
            role: NodeRole::Voter,
            single_node: false,
            tags: Tags::default(),
            ignored_env: Vec::new(),
            dns_server: None,
            gossip: GossipTuning::default(),
            watch: WatchTuning::default(),
            roles: Vec::new(),
            secrets: conclave_config::SecretPolicy::default(),
            tls: TlsConfig::default(),
            acl: AclConfig::default(),
            audit: AuditConfig::default(),
            http_allowed_hosts: Vec::new(),
            http_header_timeout: std::time::Duration::from_secs(10),
            http_max_connections: 4096,
            config_seed: None,
            config_sync: conclave_publish::ConfigSyncConfig::default(),
            check: Vec::new(),
            publish: Vec::new(),
            event_handler: Vec::new(),
        }
    }
}

impl AgentConfig {
    pub fn limits(&self) -> conclave_state::Limits {
        conclave_state::Limits {
            max_key_bytes: self.max_key_bytes,
            max_value_bytes: self.max_value_bytes,
            max_campaign_wait_ms: self.max_campaign_wait_ms,
        }
    }

    pub fn advertised_http(&self) -> String {
        self.advertise_http_addr
            .clone()
            .unwrap_or_else(|| self.http_addr.to_string())
    }

    /// The names the HTTP API answers browsers by: `http_allowed_hosts` and the advertised
    /// HTTP host (IP literals and `localhost` always pass).
    pub fn http_hosts(&self) -> Vec<String> {
        let mut hosts = self.http_allowed_hosts.clone();
        hosts.push(self.advertised_http());
        hosts
    }

    pub fn advertised_rpc(&self) -> String {
        self.advertise_rpc_addr
            .clone()
            .unwrap_or_else(|| self.rpc_addr.to_string())
    }

    /// The values of `config_sync.must_match` (dotted paths into this configuration).
    pub fn must_match_settings(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let whole = serde_json::to_value(self.redacted())?;
        let mut out = BTreeMap::new();
        for path in &self.config_sync.must_match {
            let pointer = format!("/{}", path.replace('.', "/"));
            let Some(value) = whole.pointer(&pointer) else {
                bail!(
                    "config_sync.must_match names {path:?}, which is not a setting; use dotted paths such as raft.heartbeat_ms (see conclave agent --print-config)"
                );
            };
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.insert(path.clone(), text);
        }
        Ok(out)
    }

    pub fn redacted(&self) -> AgentConfig {
        let mut c = self.clone();
        // A Secret serializes as <redacted>; clear it anyway so no copy holds the value.
        if c.cluster_token.is_some() {
            c.cluster_token = Some(conclave_types::Secret::new(
                conclave_types::secret::REDACTED,
            ));
        }
        for secret in [&mut c.acl.agent_token, &mut c.acl.initial_management_token] {
            if secret.is_some() {
                *secret = Some(conclave_types::Secret::new(
                    conclave_types::secret::REDACTED,
                ));
            }
        }
        c
    }

    /// Which way to form or join a cluster; conflicting settings are an error.
    pub fn formation(&self) -> anyhow::Result<Formation> {
        let join = !self.join.0.is_empty();
        if self.role == NodeRole::Client {
            if self.initial_members.is_some() || self.bootstrap_expect.is_some() || self.single_node
            {
                bail!(
                    "a client holds no Raft log: it cannot be an initial member, bootstrap or run single-node; start it with --role client --join <members>"
                );
            }
            if !join {
                bail!(
                    "a client needs --join with the RPC addresses (or DNS names) of members, e.g. --role client --join 10.0.0.1:7401"
                );
            }
            return Ok(Formation::Join(self.join.0.clone()));
        }
        if self.single_node
            && (join || self.initial_members.is_some() || self.bootstrap_expect.is_some())
        {
            bail!(
                "--single-node cannot be combined with --join, --initial-members or --bootstrap-expect"
            );
        }
        if let Some(members) = &self.initial_members {
            if join || self.bootstrap_expect.is_some() {
                bail!(
                    "--initial-members lists every initial voter; do not combine it with --join or --bootstrap-expect (new nodes use --join alone)"
                );
            }
            if self.role == NodeRole::Learner {
                bail!(
                    "a learner cannot be an initial member; start it with --role learner --join <member>"
                );
            }
            let parsed = conclave_raft::formation::parse_initial_members(members)?;
            return Ok(Formation::Static(parsed));
        }
        if let Some(expect) = self.bootstrap_expect {
            if expect == 0 {
                bail!("--bootstrap-expect must be at least 1");
            }
            if !join {
                bail!(
                    "--bootstrap-expect {expect} needs --join with the other nodes' RPC addresses, e.g. --join 10.0.0.1:7401,10.0.0.2:7401"
                );
            }
            if self.role == NodeRole::Learner {
                bail!(
                    "a learner does not take part in bootstrapping; drop --bootstrap-expect and use --join"
                );
            }
            return Ok(Formation::Bootstrap {
                expect,
                join: self.join.0.clone(),
            });
        }
        if join {
            return Ok(Formation::Join(self.join.0.clone()));
        }
        Ok(Formation::Single)
    }

    /// Cross-field checks figment cannot express.
    fn validate(&self) -> anyhow::Result<()> {
        self.formation()?;
        if let Some(name) = &self.node_name {
            conclave_state::node_names::check_node_name(name).map_err(|e| {
                anyhow::anyhow!("{e} (set by node_name, --node-name or CONCLAVE_NODE_NAME)")
            })?;
        }
        if let Some(name) = &self.cluster_name {
            conclave_state::node_names::check_node_name(name).map_err(|_| {
                anyhow::anyhow!(
                    "cluster name {name:?} is not valid: use letters, digits, '.', '_' and '-', starting with a letter or digit, at most 63 characters, not only digits (set by cluster_name, --cluster-name or CONCLAVE_CLUSTER_NAME)"
                )
            })?;
        }
        for handler in &self.event_handler {
            handler.kinds()?;
        }
        if self.cluster_token.is_none() && !self.rpc_addr.ip().is_loopback() && !self.insecure {
            bail!(
                "node RPC and gossip would listen on {} without a cluster token: any process that reaches that port could join, vote and write. Set the same secret on every node in CONCLAVE_CLUSTER_TOKEN, keep --rpc-addr on loopback (127.0.0.1), or pass --insecure to accept the risk",
                self.rpc_addr
            );
        }
        let https = self.tls.cert_file.is_some();
        let protected = https && self.acl.enabled;
        if !(self.http_addr.ip().is_loopback() || self.insecure || protected) {
            let missing = match (https, self.acl.enabled) {
                (false, false) => "TLS and ACLs",
                (false, true) => "TLS",
                _ => "ACLs",
            };
            bail!(
                "the HTTP API would listen on {} without {missing}: anyone who reaches it could read and change everything. Give it a certificate ([tls] or --tls-cert-file/--tls-key-file; conclave tls cert create) and turn on tokens ([acl] enabled = true), keep --http-addr on loopback (127.0.0.1), or pass --insecure to accept the risk",
                self.http_addr
            );
        }
        self.gossip.validate()?;
        self.tls.files()?;
        self.acl.agent_token()?;
        self.acl.initial_management_token()?;
        self.must_match_settings()?;
        let mut names = std::collections::BTreeSet::new();
        for r in &self.roles {
            r.validate()?;
            if !names.insert(&r.name) {
                bail!("role {} is declared twice", r.name);
            }
        }
        if self.watch.history_changes == 0 || self.watch.history_mib == 0 {
            bail!("[watch] history_changes and history_mib must be at least 1");
        }
        let mut names = std::collections::BTreeSet::new();
        for c in &self.check {
            c.validate()?;
            if !names.insert(c.name.clone()) {
                bail!(
                    "two health checks are named {:?}; check names must be unique",
                    c.name
                );
            }
        }
        let mut paths = std::collections::BTreeSet::new();
        for p in &self.publish {
            p.validate()?;
            if !paths.insert(p.path.clone()) {
                bail!(
                    "two publish sinks write {}; give each its own path",
                    p.path.display()
                );
            }
        }
        if self.voters == 0 {
            bail!("voters must be at least 1");
        }
        if self.max_key_bytes == 0 || self.max_value_bytes == 0 {
            bail!("max_key_bytes and max_value_bytes must be at least 1");
        }
        if self.max_campaign_wait_ms > conclave_types::MAX_CAMPAIGN_WAIT_MS {
            bail!(
                "max_campaign_wait_ms is {}, above the most a campaign can wait, {} ms",
                self.max_campaign_wait_ms,
                conclave_types::MAX_CAMPAIGN_WAIT_MS
            );
        }
        let r = &self.raft;
        if r.heartbeat_ms == 0 || r.election_timeout_min_ms <= r.heartbeat_ms {
            bail!(
                "raft.election_timeout_min_ms ({}) must be greater than raft.heartbeat_ms ({}), and the heartbeat must be at least 1 ms",
                r.election_timeout_min_ms,
                r.heartbeat_ms
            );
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            bail!(
                "raft.election_timeout_max_ms ({}) must be greater than raft.election_timeout_min_ms ({})",
                r.election_timeout_max_ms,
                r.election_timeout_min_ms
            );
        }
        if self.node_id == Some(0) {
            bail!("node_id must be at least 1");
        }
        Ok(())
    }
}

/// Load the layered configuration. `flags` holds only the values given on the command line.
pub fn load(file: Option<&Path>, flags: &AgentFlags) -> anyhow::Result<AgentConfig> {
    let mut figment = Figment::from(Serialized::defaults(AgentConfig::default()));
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        // Parse once on its own for an error with line, column and key.
        if let Err(e) = toml::from_str::<AgentConfig>(&text) {
            bail!(
                "invalid config file {}: {}",
                path.display(),
                e.to_string().trim_end()
            );
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    let known = setting_names();
    let ignored_env = crate::env_vars::unknown(std::env::vars(), &known);
    figment = figment
        // Only variables that name a setting; the others are reported (`ignored_env`).
        .merge(
            Env::prefixed(crate::env_vars::PREFIX)
                .filter(move |k| known.contains(&crate::env_vars::section(k.as_str())))
                .split("__"),
        )
        .merge(Serialized::globals(flags));
    let mut config: AgentConfig = figment.extract().map_err(|e| {
        let mut msg = String::from("invalid configuration");
        for err in e {
            msg.push_str(&format!("\n  - {err}"));
        }
        anyhow::anyhow!(msg)
    })?;
    // Tags given as flags add to (and override by key) the file's and environment's tags.
    for tag in &flags.tags {
        let Some((k, v)) = tag.split_once('=') else {
            bail!("--tag {tag:?} is not key=value (e.g. --tag zone=eu-1)");
        };
        config
            .tags
            .0
            .insert(k.trim().to_owned(), v.trim().to_owned());
    }
    if let Some(token) = &flags.cluster_token {
        config.cluster_token = Some(token.clone());
    }
    if let Some(path) = &config.cluster_token_file {
        if config.cluster_token.is_some() {
            bail!(
                "both a cluster token and cluster_token_file {} are set; keep one",
                path.display()
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the cluster token file {}", path.display()))?;
        let token = text.trim_end_matches(['\n', '\r']);
        if token.is_empty() {
            bail!("the cluster token file {} is empty", path.display());
        }
        config.cluster_token = Some(conclave_types::Secret::new(token));
    }
    config.ignored_env = ignored_env;
    config.validate()?;
    Ok(config)
}

/// The top-level settings, as TOML keys (and `CONCLAVE_*` variables, lower-cased).
fn setting_names() -> std::collections::BTreeSet<String> {
    match serde_json::to_value(AgentConfig::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Default::default(),
    }
}

#[cfg(test)]
mod tests;
