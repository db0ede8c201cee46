//! `conclave agent`: load the configuration, start logging, run the agent.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::agent;
use crate::cli::AgentArgs;
use crate::config;
use crate::output::out_raw;

pub(crate) fn run_agent(args: AgentArgs) -> ExitCode {
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
    // Held to the end: dropping it sends the trace spans still buffered.
    let _telemetry = match crate::logging::init(&config.log_level, config.log_format) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
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
    // A reload reads the same file, environment and flags again.
    let (file, flags) = (args.config.clone(), args.flags.clone());
    let source: agent::reload::ConfigSource =
        std::sync::Arc::new(move || config::load(file.as_deref(), &flags));
    let serve = async move {
        let listeners = agent::Listeners::bind(&config).await?;
        let stop = CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            let signal = agent::wait_for_signal().await;
            tracing::info!(signal, "signal received");
            on_signal.cancel();
        });
        agent::run(config, listeners, stop, Some(source)).await
    };
    match runtime.block_on(serve) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
