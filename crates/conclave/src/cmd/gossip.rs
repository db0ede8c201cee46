//! `conclave gossip keys`: list and rotate the keys that seal gossip, on every agent at once.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use conclave_types::gossip_keys::{KeyOp, KeyringAnswer};

use crate::cli::{ClientOpts, Output};
use crate::client::ClientError;
use crate::output::print_json;

#[derive(Args, Debug)]
pub(crate) struct GossipArgs {
    #[command(subcommand)]
    cmd: GossipCommand,
}

#[derive(Subcommand, Debug)]
enum GossipCommand {
    /// The gossip keyring: list it, or rotate a key on every alive agent.
    #[command(
        subcommand,
        after_help = "Rotation, each step on every agent before the next:\n  NEW=$(conclave gossip keys generate)\n  conclave gossip keys install \"$NEW\"\n  conclave gossip keys use \"$NEW\"\n  conclave gossip keys remove <old key id>\n\nAgents that are down miss a step: run it again when they are back (each step is idempotent\nbut remove), or give them the keyring file (<data-dir>/gossip-keyring.json)."
    )]
    Keys(KeysCommand),
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Each key's id, which agents hold it and which seal with it.
    List {
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Open datagrams sealed with KEY too (32 bytes in base64).
    Install {
        key: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Seal with KEY (a key or its id) from now on.
    Use {
        key: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Stop opening datagrams sealed with KEY (a key or its id; not the one in use).
    Remove {
        key: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Print a new random key (nothing is sent anywhere).
    Generate,
}

pub(crate) async fn run(args: GossipArgs) -> Result<(), ClientError> {
    let GossipCommand::Keys(cmd) = args.cmd;
    let (op, client) = match cmd {
        KeysCommand::Generate => {
            println!("{}", conclave_membership::keyring::generate());
            return Ok(());
        }
        KeysCommand::List { client } => (None, client),
        KeysCommand::Install { key, client } => (Some(KeyOp::Install { key }), client),
        KeysCommand::Use { key, client } => (Some(KeyOp::Use { key }), client),
        KeysCommand::Remove { key, client } => (Some(KeyOp::Remove { key }), client),
    };
    let c = client.client()?;
    let answer = match &op {
        None => c.gossip_keys().await?,
        Some(op) => c.change_gossip_keys(op).await?,
    };
    if client.output == Output::Json {
        print_json(&serde_json::to_value(&answer).unwrap_or_default());
    } else {
        print!("{}", human(&answer));
    }
    if answer.failed > 0 {
        return Err(ClientError::Local(format!(
            "{} of {} agents did not {}; run it again once they are reachable",
            answer.failed,
            answer.nodes.len(),
            op.as_ref().map_or("answer", KeyOp::name)
        )));
    }
    Ok(())
}

/// Keys with how many agents hold them and seal with them, then the agents that failed.
fn human(answer: &KeyringAnswer) -> String {
    let answered = answer.nodes.values().filter(|n| n.error.is_none()).count();
    let mut by_key: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for n in answer.nodes.values() {
        for k in &n.keys {
            let e = by_key.entry(&k.id).or_default();
            e.0 += 1;
            e.1 += usize::from(k.primary);
        }
    }
    let mut out = format!("{:<10} {:<12} {}\n", "KEY", "HELD BY", "IN USE BY");
    for (id, (held, primary)) in by_key {
        out += &format!(
            "{id:<10} {:<12} {primary}/{answered}\n",
            format!("{held}/{answered}")
        );
    }
    for (id, n) in &answer.nodes {
        if let Some(e) = &n.error {
            out += &format!("agent {id} ({}): {e}\n", n.api_addr);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_types::gossip_keys::{GossipKey, KEYS_VERSION, NodeKeys};

    #[test]
    fn the_table_counts_holders_and_users_and_names_the_failed() {
        let key = |id: &str, primary| GossipKey {
            id: id.into(),
            primary,
        };
        let answer = KeyringAnswer {
            version: KEYS_VERSION,
            nodes: BTreeMap::from([
                (
                    1,
                    NodeKeys {
                        api_addr: "a:1".into(),
                        keys: vec![key("aaaaaaaa", true), key("bbbbbbbb", false)],
                        error: None,
                    },
                ),
                (
                    2,
                    NodeKeys {
                        api_addr: "a:2".into(),
                        keys: vec![key("aaaaaaaa", true)],
                        error: None,
                    },
                ),
                (
                    3,
                    NodeKeys {
                        api_addr: "a:3".into(),
                        keys: vec![],
                        error: Some("unreachable".into()),
                    },
                ),
            ]),
            failed: 1,
        };
        let text = human(&answer);
        assert!(text.contains("aaaaaaaa   2/2          2/2"), "{text}");
        assert!(text.contains("bbbbbbbb   1/2          0/2"), "{text}");
        assert!(text.contains("agent 3 (a:3): unreachable"), "{text}");
    }
}
