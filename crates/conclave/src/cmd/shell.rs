//! What an operator's shell, scripts and probes need: `conclave health` (an exit code for
//! `HEALTHCHECK`, systemd and Kubernetes exec probes), completion scripts (`clap_complete`)
//! and man pages (`clap_mangen`), both generated from the same clap definitions as `--help`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory};

use crate::cli::{ClientOpts, Output};
use crate::client::ClientError;
use crate::output::print_json;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  conclave health                     # the local agent: serving? (readiness)\n  conclave health --live              # the process answers at all (liveness)\n  conclave health --addr https://10.0.0.2:7400 --ca-file ca.pem\n\nExit status: 0 healthy or degraded (serving; with --live: answering), 1 not healthy, no\nanswer, or no answer within --timeout; 2 a usage error."
)]
pub(crate) struct HealthArgs {
    /// Exit 0 whenever the agent answers, serving or not (a liveness probe: a node waiting
    /// for a quorum is alive, and restarting it would not help).
    #[arg(long)]
    live: bool,
    /// Give up (exit 1) when no answer came within this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    timeout: Duration,
    #[command(flatten)]
    client: ClientOpts,
}

/// `conclave health`: `GET /v1/health` of the agent; a non-ok answer is an error (exit 1),
/// unless `--live` (then any answer will do).
pub(crate) async fn health(args: HealthArgs) -> Result<(), ClientError> {
    let client = args.client.client()?;
    let answer = tokio::time::timeout(args.timeout, client.health())
        .await
        .map_err(|_| {
            ClientError::Local(format!(
                "no health answer within {}",
                humantime::format_duration(args.timeout)
            ))
        })?;
    let answer = match answer {
        Err(ClientError::Api(e)) if args.live => {
            out!("alive, not serving: {}", e.message);
            return Ok(());
        }
        other => other?,
    };
    if args.client.output == Output::Json {
        print_json(&serde_json::to_value(&answer).unwrap_or_default());
    } else {
        match &answer.degraded {
            Some(why) => out!("{} (node {}): {why}", answer.status, answer.node_id),
            None => out!(
                "{} (node {}, leader {}, applied index {})",
                answer.status,
                answer.node_id,
                answer
                    .leader_id
                    .map_or_else(|| "none".to_owned(), |l| l.to_string()),
                answer.applied_index
            ),
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  conclave completions bash > /etc/bash_completion.d/conclave\n  conclave completions zsh > \"${fpath[1]}/_conclave\"\n  conclave completions fish > ~/.config/fish/completions/conclave.fish"
)]
pub(crate) struct CompletionsArgs {
    shell: clap_complete::Shell,
}

/// `conclave completions SHELL`: the script on stdout.
pub(crate) fn completions(args: &CompletionsArgs) -> ExitCode {
    let mut command = crate::cli::Cli::command();
    // Into a buffer first: the generator panics on a write error (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "conclave", &mut script);
    match std::io::Write::write_all(&mut std::io::stdout(), &script) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the script: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  conclave man --dir /usr/local/share/man/man1 && man conclave-ipam-alloc"
)]
pub(crate) struct ManArgs {
    /// Where to write `conclave.1`, `conclave-<subcommand>.1`, ... (created when missing).
    #[arg(long)]
    dir: PathBuf,
}

/// `conclave man --dir D`: one page per command and subcommand.
pub(crate) fn man(args: &ManArgs) -> ExitCode {
    let written = std::fs::create_dir_all(&args.dir)
        .map_err(|e| format!("cannot create {}: {e}", args.dir.display()))
        .and_then(|()| {
            write_pages(
                &crate::cli::Cli::command(),
                ("conclave", "conclave"),
                &args.dir,
            )
        });
    match written {
        Ok(n) => {
            out!("wrote {n} man pages to {}", args.dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The page of `command` (`name` as in its file, e.g. `conclave-ipam`; `invoked` as typed,
/// `conclave ipam`) and of every subcommand.
fn write_pages(
    command: &clap::Command,
    (name, invoked): (&str, &str),
    dir: &std::path::Path,
) -> Result<usize, String> {
    let command = command
        .clone()
        .display_name(name.to_owned())
        .bin_name(invoked.to_owned());
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .title(name.to_uppercase())
        .render(&mut page)
        .map_err(|e| format!("cannot render the page of {name}: {e}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let mut n = 1;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub_name = sub.get_name();
        n += write_pages(
            sub,
            (
                &format!("{name}-{sub_name}"),
                &format!("{invoked} {sub_name}"),
            ),
            dir,
        )?;
    }
    Ok(n)
}
