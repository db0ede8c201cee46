//! Command-line surface: `conclave agent` and the client commands.
//!
//! Exit codes: 0 success, 1 error (including "key not found"), 2 usage error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::client::{Client, ClientError, RetryPolicy};
pub(crate) use crate::cmd::leader::LeaderCommand;
use crate::config::AgentFlags;

#[derive(Parser, Debug)]
#[command(
    name = "conclave",
    version,
    about = "conclave keeps a cluster in agreement about its members, its leader and its configuration.",
    after_help = "Examples:\n  conclave agent                      # single-node cluster in ./conclave-data\n  conclave kv put app/color blue\n  conclave kv get app/color\n  conclave status --output json"
)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct ClientOpts {
    /// Agent to talk to, or several agents of one cluster, comma-separated: a request that
    /// certainly did nothing (connection refused, 503 no_leader / no_quorum / not_ready) is
    /// repeated on the next one for up to 10 s; a write whose outcome is unknown never is
    /// [default: http://127.0.0.1:7400, https:// with --ca-file].
    #[arg(long, env = "CONCLAVE_ADDR", global = true)]
    pub(crate) addr: Option<String>,
    /// CA certificate (PEM) that signed the agents' certificates: for https:// agents.
    #[arg(long, env = "CONCLAVE_MTLS_CA_FILE", global = true)]
    pub(crate) ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for agents that verify clients (mutual TLS).
    #[arg(long, env = "CONCLAVE_MTLS_CERT_FILE", global = true)]
    pub(crate) cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "CONCLAVE_MTLS_KEY_FILE", global = true)]
    pub(crate) key_file: Option<PathBuf>,
    /// The ACL token to send (its secret_id); prefer the variable: flags show in `ps`.
    #[arg(long, env = "CONCLAVE_TOKEN", hide_env_values = true, global = true)]
    pub(crate) token: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Human, global = true)]
    pub(crate) output: Output,
}

impl ClientOpts {
    /// The client every command uses: the `--addr` endpoints, over TLS with the given
    /// files, following the retry contract (`conclave_client::retry`).
    pub(crate) fn client(&self) -> Result<Client, ClientError> {
        let files = conclave_tls::ClientFiles {
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
        };
        let addr = match (&self.addr, &files.ca_file) {
            (Some(addr), _) => addr.as_str(),
            (None, Some(_)) => "https://127.0.0.1:7400",
            (None, None) => "http://127.0.0.1:7400",
        };
        Ok(Client::with_files(addr, &files)?
            .with_token(self.token.as_deref())?
            .with_retry(RetryPolicy::default()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run the agent (a single-node cluster with no flags).
    #[command(
        after_help = "Examples:\n  conclave agent\n  conclave agent --data-dir /var/lib/conclave --http-addr 127.0.0.1:7500\n  conclave agent --config /etc/conclave.toml --print-config"
    )]
    Agent(Box<AgentArgs>),
    /// Read and write keys.
    #[command(subcommand)]
    Kv(crate::cmd::kv::KvCommand),
    /// Every agent as gossip sees it (no subcommand), or list and change the Raft members.
    #[command(
        after_help = "Examples:\n  conclave members                          # all agents: state, health, tags\n  conclave members --role client --healthy\n  conclave members --tag zone=eu-1 -o json\n  conclave members list                     # the Raft voters and learners\n  conclave members remove-dead"
    )]
    Members(MembersArgs),
    /// Hand leadership to another voter.
    #[command(subcommand)]
    Leader(LeaderCommand),
    /// Gossip's keyring: list, generate, install, use, remove (on every agent).
    Gossip(crate::cmd::gossip::GossipArgs),
    /// Show this agent's peer publishing sinks: last write, content hash, hook result, holds.
    #[command(after_help = "Examples:\n  conclave publish\n  conclave publish -o json")]
    Publish {
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Save the cluster's state to a file, or restore a file into a new data directory.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Quorum lost for good: turn a stopped surviving node into a single-voter cluster.
    #[command(
        after_help = "Examples:\n  conclave recover --data-dir /var/lib/conclave\n  conclave recover --data-dir ./conclave-data --yes\n\nStop the agent first. The node keeps all its data (its whole log is applied), becomes the\nonly voter, and the other nodes re-join it with fresh data directories and --join."
    )]
    Recover {
        /// The stopped node's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Read, validate and delete configuration documents (kind/name).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Apply configuration documents from a file: show the diff, write with compare-and-swap.
    #[command(
        after_help = "Examples:\n  conclave apply -f peers.yaml --dry-run\n  conclave apply -f cluster-config.toml\n\nA file holds documents {kind, name, content}: JSON (one or a list), YAML (--- between\ndocuments) or TOML ([[document]] tables). Each changed document is written only if it has\nnot changed since its diff was shown; a conflict is reported, never overwritten."
    )]
    Apply {
        /// The file (.json, .yaml, .yml or .toml).
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// Validate and show the diff; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Ask before writing (after the diffs are shown).
        #[arg(long)]
        confirm: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Follow every change under a key prefix (configuration under _conclave/config/,
    /// elections under _conclave/elections/), resuming after disconnects.
    #[command(
        after_help = "Examples:\n  conclave watch app/\n  conclave watch _conclave/config/ --from-revision 0 -o json"
    )]
    Watch {
        /// Key prefix ("" for everything).
        prefix: String,
        /// Start after this revision (default: only new changes).
        #[arg(long)]
        from_revision: Option<u64>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Run a command only while holding an election (or --observe it).
    #[command(
        after_help = "Examples:\n  conclave elect backup-job -- /usr/local/bin/backup --serve\n  conclave elect gw --ttl 10s --grace 3s -- ./gateway\n  conclave elect gw --observe\n\nThe command gets CONCLAVE_ELECTION_NAME and CONCLAVE_ELECTION_EPOCH (a fencing token that\ngrows at every new holder). It is stopped (SIGTERM, then SIGKILL after --grace) before the\nlease can end if renewals fail, and at once if the election is lost; then elect campaigns\nagain. When the command exits by itself, elect resigns and exits with its code."
    )]
    Elect {
        /// The election's name.
        name: String,
        /// Candidate id (default: hostname-pid).
        #[arg(long)]
        candidate: Option<String>,
        /// Lease length.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        ttl: std::time::Duration,
        /// Time between SIGTERM and SIGKILL when the command must stop.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
        grace: std::time::Duration,
        /// Print the holder and every change instead of campaigning.
        #[arg(long)]
        observe: bool,
        /// The command and its arguments (after --).
        #[arg(last = true)]
        command: Vec<String>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Leader-bound roles: holder, epoch, candidates, OAuth2 peers; planned handovers.
    #[command(
        after_help = "Examples:\n  conclave roles\n  conclave roles handover cloud-gateway\n  conclave roles handover cloud-gateway --to 1234"
    )]
    Roles(RolesArgs),
    /// Show this node and the cluster: leader, term, and every member's health and lag.
    #[command(
        after_help = "Examples:\n  conclave status\n  conclave status --output json --addr http://10.0.0.2:7400"
    )]
    Status {
        #[command(flatten)]
        client: ClientOpts,
    },
    /// A CA and certificates for HTTPS (mutual TLS) between agents and clients.
    #[command(
        subcommand,
        after_help = "Examples:\n  conclave tls ca create --dir tls\n  conclave tls cert create --dir tls --name node-1 --ip 10.0.0.1"
    )]
    Tls(crate::cmd::tls::TlsCommand),
    /// Tokens and policies: who may do what through the API ([acl] enabled).
    #[command(
        subcommand,
        after_help = "Examples:\n  conclave acl bootstrap\n  conclave acl policy put app-writer --rule kv:app/:write\n  conclave acl token create --policy app-writer"
    )]
    Acl(crate::cmd::acl::AclCommand),
    /// The cluster's audit log: who changed what, when, from where, and how it ended.
    #[command(
        after_help = "Examples:\n  conclave audit\n  conclave audit --kind acl --since 1h\n  conclave audit --actor token:3f2a9c -o json\n  conclave audit --follow"
    )]
    Audit(crate::cmd::audit::AuditArgs),
    /// Networks and address allocations: network create|list|show|delete, alloc, release, list, usage.
    Ipam(crate::cmd::ipam::IpamArgs),
    /// Show or change this agent's tags while it runs (set KEY=VALUE..., unset KEY...).
    Tags(crate::cmd::tags::TagsArgs),
    /// Make the agent re-read its configuration (as SIGHUP does); shows what applied live.
    Reload(crate::cmd::reload::ReloadArgs),
    /// Exit 0 when the agent answers healthy (or degraded), 1 when not: for scripts and probes.
    Health(crate::cmd::shell::HealthArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(crate::cmd::shell::CompletionsArgs),
    /// Write man pages for conclave and every subcommand into a directory.
    Man(crate::cmd::shell::ManArgs),
}

#[derive(Args, Debug)]
pub(crate) struct RolesArgs {
    #[command(subcommand)]
    pub(crate) cmd: Option<RolesCommand>,
    #[command(flatten)]
    pub(crate) client: ClientOpts,
}

#[derive(Subcommand, Debug)]
pub(crate) enum RolesCommand {
    /// The holder steps down for the highest-priority live candidate (or --to).
    Handover {
        name: String,
        /// The Raft member to hand over to, by name or node id.
        #[arg(long, value_name = "NODE")]
        to: Option<String>,
        /// How long to wait for the new holder.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
        wait: std::time::Duration,
        #[command(flatten)]
        client: ClientOpts,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum ConfigCommand {
    /// Print a document's content (the header goes to stderr).
    Get {
        /// KIND/NAME, e.g. remote-peers/default.
        id: String,
        /// The version in force at this revision.
        #[arg(long)]
        revision: Option<u64>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// List the live documents.
    #[command(alias = "ls")]
    List {
        #[arg(long)]
        kind: Option<String>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// A document's versions, newest first.
    History {
        id: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Check a file's documents offline; with --addr, also against the cluster (its
    /// registered schemas and rules) without writing anything.
    #[command(
        after_help = "Examples:\n  conclave config validate -f peers.yaml\n  conclave config validate -f peers.yaml --addr http://127.0.0.1:7400"
    )]
    Validate {
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// Check against the agent of --addr too (offline without --addr).
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Desired against applied configuration on every node: drift, lag, hand-edited files,
    /// and declared settings that differ between nodes.
    #[command(
        after_help = "Examples:\n  conclave config status\n  conclave config status --fail-on-drift   # exit 1 on drift (for monitoring)"
    )]
    Status {
        /// Exit 1 when any node has drifted or a must_match setting differs.
        #[arg(long)]
        fail_on_drift: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Delete a document (its history is kept).
    Delete {
        id: String,
        /// Only if its revision is this one.
        #[arg(long)]
        cas: Option<u64>,
        #[command(flatten)]
        client: ClientOpts,
    },
}

#[derive(Args, Debug)]
pub(crate) struct AgentArgs {
    /// TOML configuration file (defaults < file < CONCLAVE_* env < flags).
    #[arg(long, short = 'c')]
    pub(crate) config: Option<PathBuf>,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    pub(crate) print_config: bool,
    #[command(flatten)]
    pub(crate) flags: AgentFlags,
}

#[derive(Args, Debug)]
pub(crate) struct MembersArgs {
    #[command(subcommand)]
    pub(crate) cmd: Option<MembersCommand>,
    /// Only these roles (voter, learner, client; comma-separated).
    #[arg(long)]
    pub(crate) role: Option<String>,
    /// Only healthy members (alive, health checks passing).
    #[arg(long, conflicts_with = "unhealthy")]
    pub(crate) healthy: bool,
    /// Only members that are not healthy (a check fails, or not alive).
    #[arg(long)]
    pub(crate) unhealthy: bool,
    /// Only members with this tag, key=value (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub(crate) tags: Vec<String>,
    #[command(flatten)]
    pub(crate) client: ClientOpts,
}

#[derive(Subcommand, Debug)]
pub(crate) enum MembersCommand {
    /// List the Raft members with their role, addresses, lag and health (asks the leader).
    #[command(after_help = "Examples:\n  conclave members list\n  conclave members list -o json")]
    List {
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Add a node as a learner (or as a voter once it has caught up, with --voter).
    #[command(
        after_help = "Examples:\n  conclave members add 4 10.0.0.4:7401\n  conclave members add 4 10.0.0.4:7401 --voter"
    )]
    Add {
        node_id: u64,
        /// The node's RPC address (host:7401).
        rpc_addr: String,
        /// Make it a voter once it has caught up.
        #[arg(long)]
        voter: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Remove a member. Refused if the remaining voters would have no healthy quorum.
    #[command(
        after_help = "Examples:\n  conclave members remove db-4\n  conclave members remove db-3 --force   # db-3 is gone for good\n  conclave members remove db-3 --dry-run # what it would do, or why it would be refused\n  conclave members remove 8329513455031959   # by node id"
    )]
    Remove {
        /// The member's node id or name.
        #[arg(value_name = "NODE")]
        node: String,
        /// Remove even if the remaining voters would have no healthy quorum.
        #[arg(long)]
        force: bool,
        /// Only say what the change would do (the leader's checks), change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Forget dead and left agents now, on every node (otherwise after gossip.reap_dead_after).
    #[command(
        name = "remove-dead",
        after_help = "Examples:\n  conclave members remove-dead"
    )]
    RemoveDead {
        /// Only list the members it would forget.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Print membership changes as they happen (join, update, suspect, dead, left, reaped).
    #[command(
        after_help = "Examples:\n  conclave members watch\n  conclave members watch --events join,dead -o json"
    )]
    Watch {
        /// Only these kinds, comma-separated (Serf's names work too: member-failed).
        #[arg(long)]
        events: Option<String>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Make a learner a voter.
    #[command(after_help = "Examples:\n  conclave members promote db-4")]
    Promote {
        /// The member's node id or name.
        #[arg(value_name = "NODE")]
        node: String,
        /// Only say what the change would do (the leader's checks), change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Make a voter a learner (it stays one until promoted by hand).
    #[command(after_help = "Examples:\n  conclave members demote db-3")]
    Demote {
        /// The member's node id or name.
        #[arg(value_name = "NODE")]
        node: String,
        /// Demote even if the remaining voters would have no healthy quorum.
        #[arg(long)]
        force: bool,
        /// Only say what the change would do (the leader's checks), change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum SnapshotCommand {
    /// Write the state (read at a linearizable point) to FILE, checksummed.
    #[command(
        after_help = "Examples:\n  conclave snapshot save backup.snap\n  conclave snapshot save /backups/$(date +%F).snap --addr http://10.0.0.2:7400"
    )]
    Save {
        file: PathBuf,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Create a new single-node cluster in an empty data directory from FILE (offline).
    #[command(
        after_help = "Examples:\n  conclave snapshot restore backup.snap --data-dir ./restored\n  conclave agent --data-dir ./restored"
    )]
    Restore {
        file: PathBuf,
        /// The new data directory (must not hold a node yet).
        #[arg(long)]
        data_dir: PathBuf,
        /// The restored node's id [default: minted].
        #[arg(long)]
        node_id: Option<u64>,
        /// The restored node's RPC address, as other nodes will reach it.
        #[arg(long, default_value = "127.0.0.1:7401")]
        rpc_addr: String,
        /// The restored node's HTTP API address.
        #[arg(long, default_value = "127.0.0.1:7400")]
        http_addr: String,
    },
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Agent(args) => crate::cmd::agent::run_agent(*args),
        Command::Members(cmd) => client_command(|| crate::cmd::members::members(cmd)),
        Command::Publish { client } => client_command(|| crate::cmd::members::publish(client)),
        Command::Leader(cmd) => client_command(|| crate::cmd::leader::leader(cmd)),
        Command::Snapshot(cmd) => client_command(|| crate::cmd::snapshot::snapshot(cmd)),
        Command::Recover { data_dir, yes } => {
            client_command(|| crate::cmd::snapshot::recover(data_dir, yes))
        }
        Command::Kv(cmd) => client_command(|| crate::cmd::kv::kv(cmd)),
        Command::Status { client } => client_command(|| crate::cmd::status::status(&client)),
        Command::Tls(command) => crate::cmd::tls::run(command),
        Command::Acl(command) => client_command(|| crate::cmd::acl::run(command)),
        Command::Audit(args) => client_command(|| crate::cmd::audit::run(args)),
        Command::Ipam(args) => client_command(|| crate::cmd::ipam::run(args)),
        Command::Health(args) => client_command(|| crate::cmd::shell::health(args)),
        Command::Tags(args) => client_command(|| crate::cmd::tags::run(args)),
        Command::Reload(args) => client_command(|| crate::cmd::reload::run(args)),
        Command::Completions(args) => crate::cmd::shell::completions(&args),
        Command::Man(args) => crate::cmd::shell::man(&args),
        Command::Gossip(args) => client_command(|| crate::cmd::gossip::run(args)),
        Command::Config(cmd) => client_command(|| crate::cmd::config::run(cmd)),
        Command::Roles(args) => client_command(|| async move {
            match args.cmd {
                None => {
                    let json = args.client.output == Output::Json;
                    crate::cmd::roles::list(&args.client.client()?, json).await
                }
                Some(RolesCommand::Handover {
                    name,
                    to,
                    wait,
                    client,
                }) => crate::cmd::roles::handover(&client.client()?, &name, to, wait).await,
            }
        }),
        Command::Apply {
            file,
            dry_run,
            confirm,
            client,
        } => client_command(|| async move {
            crate::cmd::config::apply(&client.client()?, &file, dry_run, confirm).await
        }),
        Command::Watch {
            prefix,
            from_revision,
            client,
        } => client_command(|| async move {
            let json = client.output == Output::Json;
            crate::cmd::elect::watch(&client.client()?, &prefix, from_revision, json).await
        }),
        Command::Elect {
            name,
            candidate,
            ttl,
            grace,
            observe,
            command,
            client,
        } => {
            if observe {
                return client_command(|| async move {
                    let json = client.output == Output::Json;
                    crate::cmd::elect::observe(&client.client()?, &name, json).await
                });
            }
            if command.is_empty() {
                eprintln!(
                    "error: give the command to run after --, e.g. conclave elect {name} -- ./serve, or pass --observe"
                );
                return ExitCode::from(2);
            }
            let candidate = candidate.unwrap_or_else(default_candidate);
            let mut code = 1;
            let exit = client_command(|| async {
                let opts = crate::cmd::elect::ElectOptions {
                    name,
                    candidate,
                    ttl,
                    grace,
                    command,
                };
                code = crate::cmd::elect::elect(&client.client()?, opts).await?;
                Ok(())
            });
            if exit == ExitCode::SUCCESS {
                ExitCode::from(u8::try_from(code).unwrap_or(1))
            } else {
                exit
            }
        }
    }
}

/// `hostname-pid`: unique per running `conclave elect`.
fn default_candidate() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    format!("{host}-{}", std::process::id())
}

/// Run a client command on a small runtime and turn its error into a message and exit 1.
fn client_command<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), ClientError>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(f()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::output::report(&e, crate::output::json_requested(std::env::args().skip(1)))
        }
    }
}
