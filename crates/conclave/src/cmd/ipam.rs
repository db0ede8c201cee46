//! `conclave ipam`: networks and address allocations (the IPAM seed's job), over
//! `/v1/ipam`. Human output is a table; `-o json` prints the API's objects.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use conclave_state::ipam::MAX_IMPORT;
use conclave_types::ipam::ImportReport;

use crate::cli::{ClientOpts, Output};
use crate::client::ClientError;
use crate::output::print_json;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  conclave ipam network create 10.0.0.0/24 --description lab --gateway 10.0.0.1\n  conclave ipam alloc --network net-3 --hostname web-server\n  conclave ipam list --network net-3\n  conclave ipam usage\n  conclave ipam release alloc-4\n  conclave ipam release --network net-3 --hostname web-server\n  conclave ipam import allocations.csv"
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
    /// Take over an existing allocation list (CSV with a header row naming network,
    /// address and optionally hostname and owner; or JSON {"allocations": [...]}). A list
    /// with any conflicting row imports nothing and lists every conflict.
    Import {
        file: std::path::PathBuf,
        /// Default: from the file's extension (.json is JSON, anything else CSV).
        #[arg(long, value_enum)]
        format: Option<ImportFormat>,
    },
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
            let answer = match (id, network) {
                (Some(id), None) if hostname.is_none() && ip.is_none() => {
                    client.ipam_release(&id).await?
                }
                (None, Some(network)) if hostname.is_some() != ip.is_some() => {
                    client
                        .ipam_release_by(&network, hostname.as_deref(), ip.as_deref())
                        .await?
                }
                _ => {
                    return Err(ClientError::Usage(
                        "name the allocation: `conclave ipam release ID`, or --network N with --hostname H or --ip A".into(),
                    ));
                }
            };
            (answer, |v| {
                let a = &v["released"];
                out!(
                    "released {} ({} in {})",
                    text(&a["id"]),
                    text(&a["address"]),
                    text(&a["network"])
                )
            })
        }
        IpamCommand::Import { file, format } => {
            let report = import(&client, &file, format).await?;
            (serde_json::to_value(report).unwrap_or_default(), |v| {
                out!(
                    "imported {} allocation(s); {} already held as given",
                    text(&v["created"]),
                    text(&v["existing"])
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

/// How an import file is written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ImportFormat {
    Csv,
    Json,
}

/// Send `file` in parts of at most [`MAX_IMPORT`] rows. Each part is taken whole or not
/// at all; the first refused part stops the import, and since a part imported twice
/// changes nothing, running the same import again after fixing the conflicts finishes it.
async fn import(
    client: &crate::client::Client,
    file: &std::path::Path,
    format: Option<ImportFormat>,
) -> Result<ImportReport, ClientError> {
    let bytes = std::fs::read(file)
        .map_err(|e| ClientError::Local(format!("cannot read {}: {e}", file.display())))?;
    let csv = match format {
        Some(f) => f == ImportFormat::Csv,
        None => !file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json")),
    };
    let parts = if csv {
        csv_parts(&bytes, file)?
    } else {
        json_parts(&bytes, file)?
    };
    let mut total = ImportReport {
        created: 0,
        existing: 0,
        allocation_ids: Vec::new(),
    };
    for (i, part) in parts.into_iter().enumerate() {
        let report = client.ipam_import(part, csv).await.map_err(|e| match e {
            ClientError::Api(mut a) if i > 0 => {
                let before = i * MAX_IMPORT;
                a.message = format!(
                    "rows 1 to {before} were imported ({} new); then: {}",
                    total.created, a.message
                );
                for c in &mut a.conflicts {
                    c.row = c.row.saturating_add(before as u32);
                }
                ClientError::Api(a)
            }
            other => other,
        })?;
        total.created += report.created;
        total.existing += report.existing;
        total.allocation_ids.extend(report.allocation_ids);
    }
    Ok(total)
}

fn csv_parts(bytes: &[u8], file: &std::path::Path) -> Result<Vec<Vec<u8>>, ClientError> {
    let bad = |e: csv::Error| ClientError::Local(format!("{}: {e}", file.display()));
    let mut reader = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .from_reader(bytes);
    let header = reader.headers().map_err(bad)?.clone();
    let records: Vec<csv::StringRecord> =
        reader.records().collect::<Result<_, _>>().map_err(bad)?;
    records
        .chunks(MAX_IMPORT)
        .map(|chunk| {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(&header).map_err(bad)?;
            for r in chunk {
                w.write_record(r).map_err(bad)?;
            }
            w.into_inner()
                .map_err(|e| ClientError::Local(format!("{}: {e}", file.display())))
        })
        .collect()
}

fn json_parts(bytes: &[u8], file: &std::path::Path) -> Result<Vec<Vec<u8>>, ClientError> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ClientError::Local(format!("{} is not JSON: {e}", file.display())))?;
    let rows = match v {
        Value::Array(rows) => rows,
        Value::Object(mut o) => match o.remove("allocations") {
            Some(Value::Array(rows)) => rows,
            _ => {
                return Err(ClientError::Local(format!(
                    "{} has no \"allocations\" list; write {{\"allocations\": [{{\"network_id\", \"address\", \"hostname\"}}]}}",
                    file.display()
                )));
            }
        },
        _ => {
            return Err(ClientError::Local(format!(
                "{} is neither a list nor {{\"allocations\": [...]}}",
                file.display()
            )));
        }
    };
    Ok(rows
        .chunks(MAX_IMPORT)
        .map(|c| serde_json::to_vec(&json!({ "allocations": c })).unwrap_or_default())
        .collect())
}
