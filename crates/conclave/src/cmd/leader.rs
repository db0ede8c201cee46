//! `conclave leader transfer`.

use clap::Subcommand;

use crate::cli::{ClientOpts, Output};
use crate::client::ClientError;
use crate::output::print_json;

#[derive(Subcommand, Debug)]
pub(crate) enum LeaderCommand {
    /// Hand leadership to a voter (the most caught-up healthy one when none is named).
    #[command(
        after_help = "Examples:\n  conclave leader transfer\n  conclave leader transfer --to db-2\n  conclave leader transfer --to db-2 --dry-run"
    )]
    Transfer {
        /// The voter to hand leadership to, by name or node id.
        #[arg(long, value_name = "NODE")]
        to: Option<String>,
        /// Only say where leadership would go (or why it could not), change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
}

pub(crate) async fn leader(cmd: LeaderCommand) -> Result<(), ClientError> {
    let LeaderCommand::Transfer {
        to,
        dry_run,
        client,
    } = cmd;
    let to = client.client()?.resolve_optional(to.as_deref()).await?;
    if dry_run {
        let p = client.client()?.preview_transfer(to).await?;
        match client.output {
            Output::Json => print_json(&serde_json::to_value(&p).unwrap_or_default()),
            Output::Human => out!("would transfer: {}", p.effect),
        }
        return Ok(());
    }
    let r = client.client()?.transfer_leader(to).await?;
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
