//! `conclave reload`: make the agent read its configuration again (as SIGHUP does) and show
//! what changed live and what waits for a restart. Exit 1 when the configuration is invalid
//! (nothing changed), with the agent's reason.

use clap::Args;

use crate::cli::{ClientOpts, Output};
use crate::client::ClientError;
use crate::output::print_json;

#[derive(Args, Debug)]
#[command(
    after_help = "Live: check, publish, event_handler, tags, log_level and the TLS files (read again).\nEverything else is reported as needing a restart.\n\nExamples:\n  conclave reload\n  conclave reload --addr https://10.0.0.7:7400 -o json"
)]
pub(crate) struct ReloadArgs {
    #[command(flatten)]
    client: ClientOpts,
}

pub(crate) async fn run(args: ReloadArgs) -> Result<(), ClientError> {
    let client = args.client.client()?;
    let report = client.reload_agent().await?;
    if args.client.output == Output::Json {
        print_json(&serde_json::to_value(&report).unwrap_or_default());
        return Ok(());
    }
    if report.applied.is_empty() {
        out!("reloaded: nothing that changes live differs");
    }
    for change in &report.applied {
        out!("applied  {:<14} {}", change.setting.key(), change.detail);
    }
    if !report.needs_restart.is_empty() {
        out!(
            "restart needed for: {} (the agent runs on with the previous values)",
            report.needs_restart.join(", ")
        );
    }
    Ok(())
}
