//! `conclave kv put|get|del|ls`.

use std::io::{Read, Write};

use clap::Subcommand;

use crate::cli::{ClientOpts, Output};
use crate::client::ClientError;
use crate::output::{print_json, shell_word};

#[derive(Subcommand, Debug)]
pub(crate) enum KvCommand {
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

pub(crate) async fn kv(cmd: KvCommand) -> Result<(), ClientError> {
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
            let c = client.client()?;
            let r = c.put(&key, value, cas).await?;
            match client.output {
                Output::Json => {
                    print_json(&serde_json::json!({"key": key, "revision": r.revision}))
                }
                Output::Human => out!("OK revision {}", r.revision),
            }
        }
        KvCommand::Get { key, stale, client } => {
            let c = client.client()?;
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
            let c = client.client()?;
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
            let c = client.client()?;
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
