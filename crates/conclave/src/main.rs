//! `conclave`: the agent and the CLI in one binary. See ARCHITECTURE.md for the map.

#[macro_use]
mod output;

mod agent;
mod cli;
mod cmd;
mod config;
mod env_vars;
mod logging;
mod seed;
mod telemetry;

use conclave_client as client;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // reqwest and rustls are built without a default crypto provider (to avoid a C build);
    // install ring before anything builds a TLS config. It fails only if one is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = cli::Cli::parse();
    cli::run(args)
}
