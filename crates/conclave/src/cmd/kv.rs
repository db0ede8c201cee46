//! `conclave kv put|get|del|ls`.

use std::io::{Read, Write};

use crate::cli::KvCommand;
use crate::cli::Output;
use crate::client::ClientError;
use crate::output::{print_json, shell_word};

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
