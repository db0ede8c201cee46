//! `conclave leader transfer`.

use clap::Subcommand;

use crate::cli::{ClientOpts, Output};
use crate::client::ClientError;
use crate::output::print_json;

#[derive(Subcommand, Debug)]
pub(crate) enum LeaderCommand {
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

pub(crate) async fn leader(cmd: LeaderCommand) -> Result<(), ClientError> {
    let LeaderCommand::Transfer { to, client } = cmd;
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
