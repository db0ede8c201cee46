//! `conclave agent`: load the configuration, start logging, run the agent.

use std::process::ExitCode;

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
    if let Err(e) = crate::logging::init(&config.log_level, config.log_format) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
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
    match runtime.block_on(crate::agent::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
