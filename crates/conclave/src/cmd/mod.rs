//! One module per client subcommand (and `agent`); `cli` parses the command line and hands
//! each its arguments. Output goes through `crate::output`.

pub mod acl;
pub mod agent;
pub mod audit;
pub mod config;
pub mod elect;
pub mod gossip;
pub mod ipam;
pub mod kv;
pub mod leader;
pub mod members;
pub mod reload;
pub mod roles;
pub mod shell;
pub mod snapshot;
pub mod status;
pub mod tags;
pub mod tls;
