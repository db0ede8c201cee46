//! Command-line surface: `conclave agent` and the client commands.
//!
//! Exit codes: 0 success, 1 error (including "key not found"), 2 usage error.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use conclave_types::ErrorCode;

use crate::client::{Client, ClientError};
use crate::config::{self, AgentFlags};

#[derive(Parser, Debug)]
#[command(
    name = "conclave",
    version,
    about = "conclave keeps a cluster in agreement about its members, its leader and its configuration.",
    after_help = "Examples:\n  conclave agent                      # single-node cluster in ./conclave-data\n  conclave kv put app/color blue\n  conclave kv get app/color\n  conclave status --output json"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct ClientOpts {
    /// Agent to talk to.
    #[arg(
        long,
        env = "CONCLAVE_ADDR",
        default_value = "http://127.0.0.1:7400",
        global = true
    )]
    addr: String,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Human, global = true)]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the agent (a single-node cluster with no flags).
    #[command(
        after_help = "Examples:\n  conclave agent\n  conclave agent --data-dir /var/lib/conclave --http-addr 0.0.0.0:7400\n  conclave agent --config /etc/conclave.toml --print-config"
    )]
    Agent(Box<AgentArgs>),
    /// Read and write keys.
    #[command(subcommand)]
    Kv(KvCommand),
    /// Every agent as gossip sees it (no subcommand), or list and change the Raft members.
    #[command(
        after_help = "Examples:\n  conclave members                          # all agents: state, health, tags\n  conclave members --role client --healthy\n  conclave members --tag zone=eu-1 -o json\n  conclave members list                     # the Raft voters and learners\n  conclave members remove-dead"
    )]
    Members(MembersArgs),
    /// Hand leadership to another voter.
    #[command(subcommand)]
    Leader(LeaderCommand),
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
}

#[derive(Args, Debug)]
struct RolesArgs {
    #[command(subcommand)]
    cmd: Option<RolesCommand>,
    #[command(flatten)]
    client: ClientOpts,
}

#[derive(Subcommand, Debug)]
enum RolesCommand {
    /// The holder steps down for the highest-priority live candidate (or --to).
    Handover {
        name: String,
        /// The node id to hand over to.
        #[arg(long)]
        to: Option<u64>,
        /// How long to wait for the new holder.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
        wait: std::time::Duration,
        #[command(flatten)]
        client: ClientOpts,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
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
        /// An agent to check against (offline when absent).
        #[arg(long, env = "CONCLAVE_ADDR")]
        addr: Option<String>,
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
struct AgentArgs {
    /// TOML configuration file (defaults < file < CONCLAVE_* env < flags).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    print_config: bool,
    #[command(flatten)]
    flags: AgentFlags,
}

#[derive(Args, Debug)]
struct MembersArgs {
    #[command(subcommand)]
    cmd: Option<MembersCommand>,
    /// Only these roles (voter, learner, client; comma-separated).
    #[arg(long)]
    role: Option<String>,
    /// Only healthy members (alive, health checks passing).
    #[arg(long, conflicts_with = "unhealthy")]
    healthy: bool,
    /// Only members that are not healthy (a check fails, or not alive).
    #[arg(long)]
    unhealthy: bool,
    /// Only members with this tag, key=value (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,
    #[command(flatten)]
    client: ClientOpts,
}

#[derive(Subcommand, Debug)]
enum MembersCommand {
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
        after_help = "Examples:\n  conclave members remove 4\n  conclave members remove 3 --force   # node 3 is gone for good"
    )]
    Remove {
        node_id: u64,
        /// Remove even if the remaining voters would have no healthy quorum.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Forget dead and left agents now, on every node (otherwise after gossip.reap_dead_after).
    #[command(
        name = "remove-dead",
        after_help = "Examples:\n  conclave members remove-dead"
    )]
    RemoveDead {
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Make a learner a voter.
    #[command(after_help = "Examples:\n  conclave members promote 4")]
    Promote {
        node_id: u64,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Make a voter a learner (it stays one until promoted by hand).
    #[command(after_help = "Examples:\n  conclave members demote 3")]
    Demote {
        node_id: u64,
        /// Demote even if the remaining voters would have no healthy quorum.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
}

#[derive(Subcommand, Debug)]
enum SnapshotCommand {
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

#[derive(Subcommand, Debug)]
enum LeaderCommand {
    /// Hand leadership to a voter (the most caught-up healthy one when none is named).
    #[command(
        after_help = "Examples:\n  conclave leader transfer\n  conclave leader transfer --to 2"
    )]
    Transfer {
        /// The node to hand leadership to.
        #[arg(long)]
        to: Option<u64>,
        #[command(flatten)]
        client: ClientOpts,
    },
}

#[derive(Subcommand, Debug)]
enum KvCommand {
    /// Store a value (from the argument, or from stdin when it is omitted or `-`).
    #[command(
        after_help = "Examples:\n  conclave kv put app/color blue\n  conclave kv put app/config - < config.json\n  conclave kv put lock/a me --cas 0   # only if absent"
    )]
    Put {
        key: String,
        value: Option<String>,
        /// Only if the key's revision is this (0 = must not exist).
        #[arg(long)]
        cas: Option<u64>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Print a value.
    #[command(
        after_help = "Examples:\n  conclave kv get app/color\n  conclave kv get app/color --stale -o json"
    )]
    Get {
        key: String,
        /// Read this node's copy instead of a linearizable read.
        #[arg(long)]
        stale: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Delete a key.
    #[command(
        after_help = "Examples:\n  conclave kv del app/color\n  conclave kv del app/color --cas 7"
    )]
    Del {
        key: String,
        /// Only if the key's revision is this.
        #[arg(long)]
        cas: Option<u64>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// List keys under a prefix.
    #[command(after_help = "Examples:\n  conclave kv ls app/\n  conclave kv ls --limit 10 -o json")]
    Ls {
        #[arg(default_value = "")]
        prefix: String,
        /// At most this many keys.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Start after this key (the one `ls` names when more keys match).
        #[arg(long)]
        after: Option<String>,
        #[command(flatten)]
        client: ClientOpts,
    },
}

/// Print a line to stdout. A closed stdout (e.g. `conclave status | head -1`) is not an
/// error worth a panic: the reader has what it wanted.
macro_rules! out {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

fn out_raw(bytes: &[u8]) {
    let _ = std::io::stdout().lock().write_all(bytes);
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Agent(args) => run_agent(*args),
        Command::Members(cmd) => client_command(|| members(cmd)),
        Command::Publish { client } => client_command(|| publish(client)),
        Command::Leader(cmd) => client_command(|| leader(cmd)),
        Command::Snapshot(cmd) => client_command(|| snapshot(cmd)),
        Command::Recover { data_dir, yes } => client_command(|| recover(data_dir, yes)),
        Command::Kv(cmd) => client_command(|| kv(cmd)),
        Command::Status { client } => client_command(|| status(&client)),
        Command::Config(cmd) => client_command(|| config_command(cmd)),
        Command::Roles(args) => client_command(|| async move {
            match args.cmd {
                None => {
                    let json = args.client.output == Output::Json;
                    crate::roles_cli::list(&Client::new(&args.client.addr)?, json).await
                }
                Some(RolesCommand::Handover {
                    name,
                    to,
                    wait,
                    client,
                }) => {
                    crate::roles_cli::handover(&Client::new(&client.addr)?, &name, to, wait).await
                }
            }
        }),
        Command::Apply {
            file,
            dry_run,
            confirm,
            client,
        } => client_command(|| async move {
            crate::config_cli::apply(&Client::new(&client.addr)?, &file, dry_run, confirm).await
        }),
        Command::Watch {
            prefix,
            from_revision,
            client,
        } => client_command(|| async move {
            let json = client.output == Output::Json;
            crate::elect::watch(&Client::new(&client.addr)?, &prefix, from_revision, json).await
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
                    crate::elect::observe(&Client::new(&client.addr)?, &name, json).await
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
                let opts = crate::elect::ElectOptions {
                    name,
                    candidate,
                    ttl,
                    grace,
                    command,
                };
                code = crate::elect::elect(&Client::new(&client.addr)?, opts).await?;
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

async fn config_command(cmd: ConfigCommand) -> Result<(), ClientError> {
    use crate::config_cli as cc;
    match cmd {
        ConfigCommand::Get {
            id,
            revision,
            client,
        } => {
            let json = client.output == Output::Json;
            cc::get(&Client::new(&client.addr)?, &id, revision, json).await
        }
        ConfigCommand::List { kind, client } => {
            let json = client.output == Output::Json;
            cc::list(&Client::new(&client.addr)?, kind, json).await
        }
        ConfigCommand::History { id, client } => {
            let json = client.output == Output::Json;
            cc::history(&Client::new(&client.addr)?, &id, json).await
        }
        ConfigCommand::Validate { file, addr } => {
            let live = addr.as_deref().map(Client::new).transpose()?;
            cc::validate_file(&file, live.as_ref()).await
        }
        ConfigCommand::Status {
            fail_on_drift,
            client,
        } => {
            let json = client.output == Output::Json;
            cc::status(&Client::new(&client.addr)?, json, fail_on_drift).await
        }
        ConfigCommand::Delete { id, cas, client } => {
            cc::delete(&Client::new(&client.addr)?, &id, cas).await
        }
    }
}

fn run_agent(args: AgentArgs) -> ExitCode {
    let config = match config::load(args.config.as_deref(), &args.flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        match toml::to_string_pretty(&config.redacted()) {
            Ok(text) => {
                out_raw(text.as_bytes());
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("error: cannot render the configuration: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Err(e) = crate::logging::init(&config.log_level, config.log_format) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    for warning in &config.ignored_env {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("conclave")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(crate::agent::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
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

/// `s` as one shell word (quoted when it holds anything but plain characters).
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn print_json(v: &serde_json::Value) {
    out!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

async fn kv(cmd: KvCommand) -> Result<(), ClientError> {
    match cmd {
        KvCommand::Put {
            key,
            value,
            cas,
            client,
        } => {
            let value = match value.as_deref() {
                None | Some("-") => {
                    let mut buf = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut buf)
                        .map_err(|e| ClientError::Local(format!("cannot read stdin: {e}")))?;
                    buf
                }
                Some(v) => v.as_bytes().to_vec(),
            };
            let c = Client::new(&client.addr)?;
            let r = c.put(&key, value, cas).await?;
            match client.output {
                Output::Json => {
                    print_json(&serde_json::json!({"key": key, "revision": r.revision}))
                }
                Output::Human => out!("OK revision {}", r.revision),
            }
        }
        KvCommand::Get { key, stale, client } => {
            let c = Client::new(&client.addr)?;
            let got = c.get(&key, stale).await?;
            match client.output {
                Output::Json => {
                    let (value, value_base64) = match std::str::from_utf8(&got.value) {
                        Ok(s) => (Some(s.to_string()), None),
                        Err(_) => {
                            use base64::Engine;
                            let b64 = base64::engine::general_purpose::STANDARD;
                            (None, Some(b64.encode(&got.value)))
                        }
                    };
                    print_json(&serde_json::json!({
                        "key": key, "value": value, "value_base64": value_base64,
                        "revision": got.revision, "index": got.index,
                    }))
                }
                Output::Human => {
                    let mut out = std::io::stdout();
                    let _ = out.write_all(&got.value);
                    if !got.value.ends_with(b"\n") && std::io::IsTerminal::is_terminal(&out) {
                        let _ = out.write_all(b"\n");
                    }
                }
            }
        }
        KvCommand::Del { key, cas, client } => {
            let c = Client::new(&client.addr)?;
            let r = c.delete(&key, cas).await?;
            match client.output {
                Output::Json => print_json(&serde_json::json!({
                    "key": key, "revision": r.revision, "deleted": r.deleted
                })),
                Output::Human if r.deleted => out!("deleted (revision {})", r.revision),
                Output::Human => out!("not found (nothing deleted)"),
            }
        }
        KvCommand::Ls {
            prefix,
            limit,
            after,
            client,
        } => {
            let c = Client::new(&client.addr)?;
            let (items, next) = c.list(&prefix, limit, after.as_deref()).await?;
            if let Some(next) = &next {
                // On stderr, so `-o json` output stays one parseable array.
                eprintln!(
                    "more keys match; continue with: conclave kv ls {} --after {}",
                    shell_word(&prefix),
                    shell_word(next)
                );
            }
            match client.output {
                Output::Json => print_json(&serde_json::to_value(&items).unwrap_or_default()),
                Output::Human => {
                    for item in items {
                        let value = item.value.unwrap_or_else(|| {
                            format!(
                                "<{} bytes, binary>",
                                item.value_base64.map_or(0, |b| b.len() * 3 / 4)
                            )
                        });
                        out!("{}\t{}\t(rev {})", item.key, value, item.revision);
                    }
                }
            }
        }
    }
    Ok(())
}

async fn status(opts: &ClientOpts) -> Result<(), ClientError> {
    let c = Client::new(&opts.addr)?;
    let s = match c.status().await? {
        crate::client::AgentStatus::Raft(s) => s,
        crate::client::AgentStatus::Client(v) => {
            match opts.output {
                Output::Json => print_json(&v),
                Output::Human => {
                    out!("cluster   {}", v["cluster_id"].as_str().unwrap_or("-"));
                    out!(
                        "node      {} (client: no Raft log; forwards to the cluster)",
                        v["node_id"]
                    );
                    out!(
                        "leader    {}",
                        v["leader_id"]
                            .as_u64()
                            .map_or("none known".to_string(), |l| l.to_string())
                    );
                    out!("members   {}", v["members"]);
                    out!();
                    match c.cluster_status().await {
                        Ok(cs) => print_members(&cs.members),
                        Err(e) => out!("cluster status unavailable: {e}"),
                    }
                }
            }
            return Ok(());
        }
    };
    match opts.output {
        Output::Json => print_json(&serde_json::to_value(&s).unwrap_or_default()),
        Output::Human => {
            out!("cluster   {}", s.cluster_id);
            out!("node      {} ({})", s.node_id, s.role);
            out!(
                "leader    {}",
                s.leader_id.map_or("none".to_string(), |l| l.to_string())
            );
            out!("term      {}", s.term);
            out!(
                "index     commit {}  applied {}  revision {}",
                s.commit_index,
                s.applied_index,
                s.revision
            );
            out!(
                "storage   {} keys, {:.1} writes/fsync, log {}..{}",
                s.storage.keys,
                s.storage.writes_per_fsync,
                s.storage.log_first_index,
                s.storage
                    .log_last_index
                    .map_or("-".to_string(), |l| l.to_string())
            );
            out!();
            match c.cluster_status().await {
                Ok(cs) => {
                    out!(
                        "quorum    {}",
                        if cs.quorum_healthy {
                            "healthy"
                        } else {
                            "NOT healthy"
                        }
                    );
                    print_members(&cs.members);
                }
                Err(e) => {
                    out!("(no leader answered: {e}; showing this node's view)");
                    out!("{:<18} {:<8} {:<22} {:<22}", "MEMBER", "ROLE", "API", "RPC");
                    for m in &s.members {
                        out!(
                            "{:<18} {:<8} {:<22} {:<22}",
                            m.node_id,
                            m.role,
                            m.api_addr,
                            m.rpc_addr
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

fn print_members(members: &[conclave_types::ClusterMember]) {
    out!(
        "{:<18} {:<8} {:<7} {:<22} {:<22} {:>8} {:>8} {:>9} {:<8}",
        "MEMBER",
        "ROLE",
        "LEADER",
        "API",
        "RPC",
        "MATCH",
        "LAG",
        "CONTACT",
        "HEALTH"
    );
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    for m in members {
        out!(
            "{:<18} {:<8} {:<7} {:<22} {:<22} {:>8} {:>8} {:>9} {:<8}",
            m.node_id,
            if m.learner_only && m.role == "learner" {
                "learner*"
            } else {
                m.role.as_str()
            },
            if m.is_leader { "*" } else { "" },
            if m.api_addr.is_empty() {
                "-"
            } else {
                m.api_addr.as_str()
            },
            m.rpc_addr,
            opt(m.match_index),
            opt(m.lag_entries),
            m.last_contact_ms
                .map_or("-".to_string(), |c| format!("{c}ms")),
            match (m.healthy, m.lag_seconds) {
                (true, _) => "ok",
                // No leader's view: this node cannot tell.
                (false, None) => "unknown",
                (false, Some(_)) => "UNHEALTHY",
            }
        );
    }
}

fn print_gossip_members(members: &[conclave_types::GossipMember]) {
    out!(
        "{:<18} {:<8} {:<9} {:<8} {:<9} {:<22} {:<22} {:>8}  {}",
        "MEMBER",
        "ROLE",
        "RAFT",
        "STATE",
        "HEALTH",
        "API",
        "RPC",
        "SEEN",
        "TAGS"
    );
    for m in members {
        let health = if m.healthy {
            "ok".to_string()
        } else if m.failing_checks.is_empty() {
            "-".to_string()
        } else {
            format!("FAIL:{}", m.failing_checks.join(","))
        };
        let tags = m
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let state = serde_json::to_value(m.state)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        out!(
            "{:<18} {:<8} {:<9} {:<8} {:<9} {:<22} {:<22} {:>8}  {}",
            m.id,
            m.role,
            m.raft_role.as_deref().unwrap_or("-"),
            state,
            health,
            m.api_addr,
            m.rpc_addr,
            format!("{}ms", m.last_seen_ms),
            tags
        );
    }
}

async fn publish(client: ClientOpts) -> Result<(), ClientError> {
    let sinks = Client::new(&client.addr)?.publish_status().await?;
    if client.output == Output::Json {
        print_json(&serde_json::to_value(&sinks).unwrap_or_default());
        return Ok(());
    }
    if sinks.is_empty() {
        out!("no publish sinks configured (add [[publish]] tables to the agent config)");
    }
    for s in sinks {
        out!(
            "{} ({}, {}): {} peers, {} writes, last {}{}",
            s.name,
            s.format,
            s.path,
            s.published_count,
            s.writes,
            s.last_write.as_deref().unwrap_or("never"),
            s.held.map(|h| format!("\n  HELD: {h}")).unwrap_or_default()
        );
        if let Some(h) = s.last_hook {
            out!(
                "  hook: {} after {} attempt(s) at {}: {} ({} failures so far)",
                if h.ok { "ok" } else { "FAILED" },
                h.attempts,
                h.at,
                h.detail,
                s.hook_failures
            );
        }
    }
    Ok(())
}

async fn remove_dead(client: ClientOpts) -> Result<(), ClientError> {
    let r = Client::new(&client.addr)?.remove_dead().await?;
    match client.output {
        Output::Json => print_json(&serde_json::to_value(&r).unwrap_or_default()),
        Output::Human if r.removed.is_empty() => out!("no dead or left members"),
        Output::Human => out!(
            "removed {}",
            r.removed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
    Ok(())
}

async fn members(args: MembersArgs) -> Result<(), ClientError> {
    let Some(cmd) = args.cmd else {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(r) = args.role {
            query.push(("role", r));
        }
        if args.healthy {
            query.push(("healthy", "true".into()));
        }
        if args.unhealthy {
            query.push(("healthy", "false".into()));
        }
        for t in args.tags {
            query.push(("tag", t));
        }
        let list = Client::new(&args.client.addr)?
            .gossip_members(&query)
            .await?;
        match args.client.output {
            Output::Json => print_json(&serde_json::to_value(&list).unwrap_or_default()),
            Output::Human => print_gossip_members(&list),
        }
        return Ok(());
    };
    let (client, result) = match cmd {
        MembersCommand::RemoveDead { client } => return remove_dead(client).await,
        MembersCommand::List { client } => {
            let c = Client::new(&client.addr)?;
            let r = match c.members().await {
                Err(ClientError::Api(crate::client::ApiError {
                    code: ErrorCode::NoLeader | ErrorCode::Unavailable,
                    message,
                    ..
                })) => {
                    eprintln!(
                        "no leader answered ({message}); these are the members as this node knows them, without health"
                    );
                    c.members_stale().await
                }
                r => r,
            };
            (client, r)
        }
        MembersCommand::Add {
            node_id,
            rpc_addr,
            voter,
            client,
        } => {
            let req = conclave_types::AddMemberRequest {
                node_id,
                rpc_addr,
                api_addr: String::new(),
                voter,
            };
            let r = Client::new(&client.addr)?.add_member(&req).await;
            (client, r)
        }
        MembersCommand::Remove {
            node_id,
            force,
            client,
        } => {
            let r = Client::new(&client.addr)?
                .change_member("remove", node_id, force)
                .await;
            (client, r)
        }
        MembersCommand::Promote { node_id, client } => {
            let r = Client::new(&client.addr)?
                .change_member("promote", node_id, false)
                .await;
            (client, r)
        }
        MembersCommand::Demote {
            node_id,
            force,
            client,
        } => {
            let r = Client::new(&client.addr)?
                .change_member("demote", node_id, force)
                .await;
            (client, r)
        }
    };
    let members = result?;
    match client.output {
        Output::Json => print_json(&serde_json::to_value(&members).unwrap_or_default()),
        Output::Human => print_members(&members),
    }
    Ok(())
}

async fn leader(cmd: LeaderCommand) -> Result<(), ClientError> {
    let LeaderCommand::Transfer { to, client } = cmd;
    let r = Client::new(&client.addr)?.transfer_leader(to).await?;
    match client.output {
        Output::Json => print_json(&serde_json::to_value(&r).unwrap_or_default()),
        Output::Human => out!(
            "leadership moved from node {} to node {} (term {})",
            r.previous_leader,
            r.leader_id,
            r.term
        ),
    }
    Ok(())
}

fn local(e: impl std::fmt::Display) -> ClientError {
    ClientError::Local(e.to_string())
}

async fn snapshot(cmd: SnapshotCommand) -> Result<(), ClientError> {
    use conclave_storage::{NodeInfo, identity, offline};
    match cmd {
        SnapshotCommand::Save { file, client } => {
            let bytes = Client::new(&client.addr)?.snapshot().await?;
            let loaded = conclave_storage::state_machine::decode_snapshot(&bytes)
                .map_err(|e| local(format!("the agent sent a damaged snapshot: {e}")))?;
            conclave_storage::fsutil::write_atomic(&file, &bytes)
                .map_err(|e| local(format!("cannot write {}: {e}", file.display())))?;
            let index = loaded.meta.last_log_id.map_or(0, |l| l.index);
            match client.output {
                Output::Json => print_json(&serde_json::json!({
                    "file": file, "bytes": bytes.len(), "keys": loaded.state.len(),
                    "revision": loaded.state.revision(), "index": index,
                })),
                Output::Human => out!(
                    "saved {} ({} bytes): {} keys, revision {}, log index {index}",
                    file.display(),
                    bytes.len(),
                    loaded.state.len(),
                    loaded.state.revision()
                ),
            }
        }
        SnapshotCommand::Restore {
            file,
            data_dir,
            node_id,
            rpc_addr,
            http_addr,
        } => {
            let loaded = offline::read_snapshot_file(&file).map_err(local)?;
            let Some(at) = loaded.meta.last_log_id else {
                return Err(local(format!(
                    "{} holds no applied log position",
                    file.display()
                )));
            };
            let _lock = offline::lock_dir(&data_dir).map_err(local)?;
            if identity::load(&data_dir).map_err(local)?.is_some() || data_dir.join("log").exists()
            {
                return Err(local(format!(
                    "{} already holds a node; restore into a new, empty directory",
                    data_dir.display()
                )));
            }
            let (id, _) = identity::load_or_create(
                &data_dir,
                node_id,
                None,
                Some(identity::mint_cluster_id()),
            )
            .map_err(local)?;
            let info = NodeInfo {
                rpc_addr,
                api_addr: http_addr,
                learner_only: false,
            };
            offline::rewrite_single(&data_dir, id.node_id, info, &loaded.state, at)
                .await
                .map_err(local)?;
            out!(
                "restored {} keys (revision {}) into {} as node {} of new cluster {}; start it with: conclave agent --data-dir {}",
                loaded.state.len(),
                loaded.state.revision(),
                data_dir.display(),
                id.node_id,
                id.cluster_id.unwrap_or_default(),
                data_dir.display()
            );
        }
    }
    Ok(())
}

async fn recover(data_dir: PathBuf, yes: bool) -> Result<(), ClientError> {
    use conclave_storage::{identity, offline};
    let _lock = offline::lock_dir(&data_dir).map_err(local)?;
    let Some(id) = identity::load(&data_dir).map_err(local)? else {
        return Err(local(format!(
            "{} holds no conclave node",
            data_dir.display()
        )));
    };
    let found = offline::inspect(&data_dir).await.map_err(local)?;
    let Some(at) = found.last_log_id else {
        return Err(local(
            "this node's log is empty; there is nothing to recover",
        ));
    };
    let membership = found.membership.membership();
    let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
    out!("node        {}", id.node_id);
    out!("cluster     {}", id.cluster_id.clone().unwrap_or_default());
    out!("last log    index {} term {}", at.index, at.leader_id.term);
    out!(
        "state       {} keys, revision {}",
        found.state.len(),
        found.state.revision()
    );
    out!("members it knows:");
    for (nid, info) in membership.nodes() {
        out!(
            "  {nid:<18} {:<7} rpc {}",
            if voters.contains(nid) {
                "voter"
            } else {
                "learner"
            },
            info.rpc_addr
        );
    }
    out!();
    out!(
        "This makes node {} the only voter of cluster {} with the data above.",
        id.node_id,
        id.cluster_id.clone().unwrap_or_default()
    );
    out!(
        "Do it only if the other voters are lost for good: if they come back with their old data,"
    );
    out!(
        "they must be wiped and re-joined (conclave agent --data-dir <fresh> --join <this node>)."
    );
    if !yes {
        out!("Type 'recover' to continue:");
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|e| local(format!("cannot read the answer: {e}")))?;
        if answer.trim() != "recover" {
            return Err(local("not confirmed; nothing was changed"));
        }
    }
    let info = membership
        .get_node(&id.node_id)
        .cloned()
        .unwrap_or_default();
    offline::rewrite_single(&data_dir, id.node_id, info, &found.state, at)
        .await
        .map_err(local)?;
    out!(
        "recovered: start the agent on {} and it will lead a single-voter cluster",
        data_dir.display()
    );
    Ok(())
}
