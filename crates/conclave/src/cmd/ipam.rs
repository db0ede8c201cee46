//! `conclave ipam`: networks and address allocations (the IPAM seed's job), over
//! `/v1/ipam`. Human output is a table; `-o json` prints the API's objects.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::cli::{ClientOpts, Output};
use crate::client::ClientError;
use crate::output::print_json;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  conclave ipam network create 10.0.0.0/24 --description lab --gateway 10.0.0.1\n  conclave ipam alloc --network net-3 --hostname web-server\n  conclave ipam list --network net-3\n  conclave ipam usage\n  conclave ipam release alloc-4"
)]
pub(crate) struct IpamArgs {
    #[command(subcommand)]
    cmd: IpamCommand,
    #[command(flatten)]
    client: ClientOpts,
}

#[derive(Subcommand, Debug)]
enum IpamCommand {
    /// Create, list, show or delete networks.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Allocate an address (the lowest free one unless --ip); asking again for the same
    /// hostname or request id returns the same address.
    Alloc {
        #[arg(long)]
        network: String,
        #[arg(long)]
        hostname: Option<String>,
        #[arg(long)]
        ip: Option<String>,
        /// Makes a retry of this request safe: the same id gets the same allocation.
        #[arg(long)]
        request_id: Option<String>,
        /// A lease: released unless renewed within this many milliseconds.
        #[arg(long)]
        ttl_ms: Option<u64>,
        /// How many addresses (without --ip or --hostname).
        #[arg(long)]
        count: Option<u32>,
    },
    /// Release an allocation: by id, or by --network with --hostname or --ip.
    Release {
        id: Option<String>,
        #[arg(long)]
        network: Option<String>,
        #[arg(long)]
        hostname: Option<String>,
        #[arg(long)]
        ip: Option<String>,
    },
    /// List allocations.
    List {
        #[arg(long)]
        network: Option<String>,
        #[arg(long)]
        hostname: Option<String>,
        /// Only addresses starting with this text (e.g. 10.0.1.).
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Utilisation of every network.
    Usage,
}

#[derive(Subcommand, Debug)]
enum NetworkCommand {
    Create {
        cidr: String,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        gateway: Option<String>,
        /// Create it inside this network (its addresses leave the parent's pool).
        #[arg(long)]
        parent: Option<String>,
    },
    List,
    Show {
        id: String,
    },
    /// Refused while it holds allocations, unless --force (which releases them).
    Delete {
        id: String,
        #[arg(long)]
        force: bool,
    },
}

/// `value` without the nulls (what the caller left out).
fn body(pairs: &[(&str, Option<Value>)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| ((*k).to_owned(), v)))
            .collect(),
    )
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn print_networks(networks: &[Value]) {
    out!(
        "{:<16} {:<24} {:>12} {:>10} {:>10} {:>12} {:>6}  DESCRIPTION",
        "ID",
        "CIDR",
        "TOTAL",
        "ALLOCATED",
        "RESERVED",
        "FREE",
        "USED%"
    );
    for n in networks {
        let u = &n["usage"];
        out!(
            "{:<16} {:<24} {:>12} {:>10} {:>10} {:>12} {:>6}  {}",
            text(&n["id"]),
            text(&n["cidr"]),
            text(&u["total"]),
            text(&u["allocated"]),
            text(&u["reserved"]),
            text(&u["free"]),
            text(&u["utilisation_percent"]),
            text(&n["description"])
        );
    }
}

fn print_allocations(allocations: &[Value]) {
    out!(
        "{:<16} {:<16} {:<40} {:<24} LEASE_EXPIRES_MS",
        "ID",
        "NETWORK",
        "ADDRESS",
        "HOSTNAME"
    );
    for a in allocations {
        out!(
            "{:<16} {:<16} {:<40} {:<24} {}",
            text(&a["id"]),
            text(&a["network"]),
            text(&a["address"]),
            text(&a["hostname"]),
            text(&a["lease"]["expires_at_ms"])
        );
    }
}

fn list_of(v: &Value, field: &str) -> Vec<Value> {
    v[field]
        .as_array()
        .cloned()
        .unwrap_or_else(|| vec![v.clone()])
}

pub(crate) async fn run(args: IpamArgs) -> Result<(), ClientError> {
    let client = args.client.client()?;
    let json = args.client.output == Output::Json;
    let s = |v: &Option<String>| v.clone().map(Value::from);
    let (answer, shown): (Value, fn(&Value)) = match args.cmd {
        IpamCommand::Network(NetworkCommand::Create {
            cidr,
            id,
            description,
            gateway,
            parent,
        }) => {
            let req = body(&[
                ("cidr", Some(cidr.into())),
                ("id", s(&id)),
                ("description", s(&description)),
                ("gateway", s(&gateway)),
                ("parent", s(&parent)),
            ]);
            (client.ipam_network_create(&req).await?, |v| {
                print_networks(std::slice::from_ref(v))
            })
        }
        IpamCommand::Network(NetworkCommand::List) | IpamCommand::Usage => {
            (client.ipam_networks().await?, |v| {
                print_networks(&list_of(v, "networks"))
            })
        }
        IpamCommand::Network(NetworkCommand::Show { id }) => {
            (client.ipam_network(&id).await?, |v| {
                print_networks(std::slice::from_ref(v))
            })
        }
        IpamCommand::Network(NetworkCommand::Delete { id, force }) => {
            (client.ipam_network_delete(&id, force).await?, |v| {
                out!(
                    "deleted network {} ({} allocations released)",
                    text(&v["id"]),
                    text(&v["released"])
                )
            })
        }
        IpamCommand::Alloc {
            network,
            hostname,
            ip,
            request_id,
            ttl_ms,
            count,
        } => {
            let req = body(&[
                ("network_id", Some(network.into())),
                ("hostname", s(&hostname)),
                ("ip", s(&ip)),
                ("request_id", s(&request_id)),
                ("ttl_ms", ttl_ms.map(Value::from)),
                ("count", count.map(Value::from)),
            ]);
            (client.ipam_allocate(&req).await?, |v| {
                print_allocations(&list_of(v, "allocations"))
            })
        }
        IpamCommand::Release {
            id,
            network,
            hostname,
            ip,
        } => {
            let id = match (id, network) {
                (Some(id), _) => id,
                (None, Some(network)) if hostname.is_some() || ip.is_some() => {
                    find(&client, &network, hostname.as_deref(), ip.as_deref()).await?
                }
                _ => {
                    return Err(ClientError::Local(
                        "name the allocation: `conclave ipam release ID`, or --network N with --hostname H or --ip A".into(),
                    ));
                }
            };
            (client.ipam_release(&id).await?, |v| {
                let a = &v["released"];
                out!(
                    "released {} ({} in {})",
                    text(&a["id"]),
                    text(&a["address"]),
                    text(&a["network"])
                )
            })
        }
        IpamCommand::List {
            network,
            hostname,
            prefix,
            limit,
        } => {
            let mut filters = vec![("limit", limit.to_string())];
            for (k, v) in [
                ("network", network),
                ("hostname", hostname),
                ("prefix", prefix),
            ] {
                if let Some(v) = v {
                    filters.push((k, v));
                }
            }
            (client.ipam_allocations(&filters).await?, |v| {
                print_allocations(&list_of(v, "allocations"));
                if v["more"] == json!(true) {
                    out!(
                        "(more: --limit is {})",
                        v["allocations"].as_array().map_or(0, Vec::len)
                    );
                }
            })
        }
    };
    if json {
        print_json(&answer);
    } else {
        shown(&answer);
    }
    Ok(())
}

/// The id of the allocation of `hostname` or `ip` in `network`.
async fn find(
    client: &crate::client::Client,
    network: &str,
    hostname: Option<&str>,
    ip: Option<&str>,
) -> Result<String, ClientError> {
    let mut filters = vec![("network", network.to_owned())];
    if let Some(h) = hostname {
        filters.push(("hostname", h.to_owned()));
    }
    let found = client.ipam_allocations(&filters).await?;
    found["allocations"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| ip.is_none_or(|ip| a["address"] == ip))
        .and_then(|a| a["id"].as_str().map(str::to_owned))
        .ok_or_else(|| {
            ClientError::Local(format!(
                "no allocation of {} in network {network}",
                hostname.or(ip).unwrap_or("that")
            ))
        })
}
