//! `conclave tags`: show or change this agent's tags while it runs (gossiped to every
//! member, so `conclave members --tag k=v` and peer files follow). A change reads the set,
//! edits it and writes it whole; tags set in the configuration come back at a restart.

use clap::{Args, Subcommand};

use crate::cli::{ClientOpts, Output};
use crate::client::{ClientError, Tags};
use crate::output::print_json;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  conclave tags\n  conclave tags set zone=eu-1 rack=r12\n  conclave tags unset rack\n  conclave tags --addr http://10.0.0.7:7400 -o json"
)]
pub(crate) struct TagsArgs {
    #[command(subcommand)]
    cmd: Option<TagsCommand>,
    #[command(flatten)]
    client: ClientOpts,
}

#[derive(Subcommand, Debug)]
enum TagsCommand {
    /// Add or change tags: KEY=VALUE ...
    Set {
        #[arg(required = true, value_parser = parse_pair)]
        pairs: Vec<(String, String)>,
    },
    /// Remove tags: KEY ...
    Unset {
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE (e.g. zone=eu-1)"))
}

pub(crate) async fn run(args: TagsArgs) -> Result<(), ClientError> {
    let client = args.client.client()?;
    let tags = match args.cmd {
        None => client.agent_tags().await?,
        Some(change) => {
            let mut tags = client.agent_tags().await?;
            match change {
                TagsCommand::Set { pairs } => tags.extend(pairs),
                TagsCommand::Unset { keys } => {
                    for k in keys {
                        if tags.remove(&k).is_none() {
                            return Err(ClientError::Local(format!(
                                "this agent has no tag {k:?} (it has: {})",
                                names(&tags)
                            )));
                        }
                    }
                }
            }
            client.set_agent_tags(&tags).await?
        }
    };
    if args.client.output == Output::Json {
        print_json(&serde_json::to_value(&tags).unwrap_or_default());
    } else if tags.is_empty() {
        out!("(no tags)");
    } else {
        for (k, v) in &tags {
            out!("{k}={v}");
        }
    }
    Ok(())
}

fn names(tags: &Tags) -> String {
    if tags.is_empty() {
        return "none".into();
    }
    tags.keys().cloned().collect::<Vec<_>>().join(", ")
}
