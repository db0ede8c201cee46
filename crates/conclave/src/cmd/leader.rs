//! `conclave leader transfer`.

use crate::cli::LeaderCommand;
use crate::cli::Output;
use crate::client::ClientError;
use crate::output::print_json;

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
