//! `conclave tls ca create` and `conclave tls cert create`: a CA and certificates for
//! HTTPS between agents and clients (`conclave_tls::issue`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use conclave_tls::issue::{CertRequest, Written, create_ca, create_cert};

#[derive(Subcommand, Debug)]
pub(crate) enum TlsCommand {
    /// The certificate authority.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Certificates signed by the CA.
    #[command(subcommand)]
    Cert(CertCommand),
}

#[derive(Subcommand, Debug)]
pub(crate) enum CaCommand {
    /// Write DIR/ca.pem and DIR/ca-key.pem (owner-only): a new CA.
    #[command(after_help = "Examples:\n  conclave tls ca create --dir /etc/conclave/tls")]
    Create {
        /// Directory to write to (created if missing); existing files are never replaced.
        #[arg(long)]
        dir: PathBuf,
        /// Days the CA is valid.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum CertCommand {
    /// Write DIR/NAME.pem and DIR/NAME-key.pem, signed by DIR/ca.pem: a certificate good
    /// for an agent (server) and a client; it always names localhost and 127.0.0.1.
    #[command(
        after_help = "Examples:\n  conclave tls cert create --dir tls --name node-1 --ip 10.0.0.1 --dns node-1.example.com\n  conclave tls cert create --dir tls --name cli"
    )]
    Create {
        /// Directory holding ca.pem and ca-key.pem.
        #[arg(long)]
        dir: PathBuf,
        /// The certificate's name: its common name and file stem.
        #[arg(long)]
        name: String,
        /// An IP address the agent is reached at (repeatable).
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        /// A DNS name the agent is reached at (repeatable).
        #[arg(long = "dns")]
        dns: Vec<String>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

pub(crate) fn run(command: TlsCommand) -> ExitCode {
    let written = match command {
        TlsCommand::Ca(CaCommand::Create { dir, days }) => create_ca(&dir, days),
        TlsCommand::Cert(CertCommand::Create {
            dir,
            name,
            ips,
            dns,
            days,
        }) => create_cert(
            &dir,
            &CertRequest {
                name,
                ips,
                dns,
                days,
            },
        ),
    };
    match written {
        Ok(Written { cert, key }) => {
            println!("wrote {}", cert.display());
            println!("wrote {} (owner-only)", key.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
