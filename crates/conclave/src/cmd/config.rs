//! `conclave config ...` and `conclave apply`: the configuration registry from the shell.
//!
//! `apply` reads documents from a file, shows each one's diff against the live cluster and
//! writes the changed ones with compare-and-swap on the revision it diffed against, so a
//! document changed by someone else in between is reported, never overwritten.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use conclave_config::files::{self, FileDocument};
use conclave_config::kinds::{BuiltinKind, SCHEMA_KIND};
use conclave_config::validate::{ValidateError, validate};
use conclave_types::{ConfigDocument, ConfigHistory, ConfigListItem, ConfigWriteResponse};
use serde_json::Value;

use crate::client::{ApiError, Client, ClientError};

/// `KIND/NAME` → (kind, name).
pub fn split_id(id: &str) -> Result<(String, String), ClientError> {
    match id.split_once('/') {
        Some((k, n)) if !k.is_empty() && !n.is_empty() && !n.contains('/') => {
            Ok((k.to_owned(), n.to_owned()))
        }
        _ => Err(ClientError::Local(format!(
            "{id:?} is not KIND/NAME, e.g. remote-peers/default"
        ))),
    }
}

fn pretty(v: &Value) -> String {
    // Sorted keys (the canonical form), indented: diffs are stable.
    let sorted: Value =
        serde_json::from_slice(&conclave_config::canonical_bytes(v)).unwrap_or_else(|_| v.clone());
    serde_json::to_string_pretty(&sorted).unwrap_or_default()
}

pub async fn get(
    client: &Client,
    id: &str,
    revision: Option<u64>,
    json: bool,
) -> Result<(), ClientError> {
    let (kind, name) = split_id(id)?;
    let doc: ConfigDocument = client.config_get(&kind, &name, revision).await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        eprintln!(
            "# {}/{} revision {} hash {} updated {}",
            doc.kind,
            doc.name,
            doc.revision,
            &doc.hash[..doc.hash.len().min(12)],
            doc.updated_at
        );
        out!("{}", pretty(&doc.content));
    }
    Ok(())
}

pub async fn list(client: &Client, kind: Option<String>, json: bool) -> Result<(), ClientError> {
    let docs: Vec<ConfigListItem> = client.config_list(kind.as_deref()).await?;
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(&docs).unwrap_or_default()
        );
        return Ok(());
    }
    out!("{:<40} {:>9}  HASH", "DOCUMENT", "REVISION");
    for d in docs {
        out!(
            "{:<40} {:>9}  {}",
            format!("{}/{}", d.kind, d.name),
            d.revision,
            &d.hash[..d.hash.len().min(12)]
        );
    }
    Ok(())
}

pub async fn history(client: &Client, id: &str, json: bool) -> Result<(), ClientError> {
    let (kind, name) = split_id(id)?;
    let h: ConfigHistory = client.config_history(&kind, &name).await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&h).unwrap_or_default());
        return Ok(());
    }
    out!("{:>9}  {:<26} {:<14} AUTHOR", "REVISION", "UPDATED", "HASH");
    for v in h.versions {
        out!(
            "{:>9}  {:<26} {:<14} {}",
            v.revision,
            v.updated_at,
            if v.deleted {
                "(deleted)".to_string()
            } else {
                v.hash[..v.hash.len().min(12)].to_string()
            },
            v.author.unwrap_or_else(|| "-".into())
        );
    }
    Ok(())
}

pub async fn delete(client: &Client, id: &str, cas: Option<u64>) -> Result<(), ClientError> {
    let (kind, name) = split_id(id)?;
    let r: ConfigWriteResponse = client.config_delete(&kind, &name, cas).await?;
    if r.changed {
        out!("deleted {kind}/{name} at revision {}", r.revision);
    } else {
        out!("{kind}/{name} did not exist");
    }
    Ok(())
}

/// Schemas for generic kinds found in the file itself (`schema/<kind>` documents).
fn file_schemas(docs: &[FileDocument]) -> BTreeMap<String, Value> {
    docs.iter()
        .filter(|d| d.kind == SCHEMA_KIND)
        .map(|d| (d.name.clone(), d.content.clone()))
        .collect()
}

fn report_violations(id: &str, e: &ValidateError) -> String {
    match e {
        ValidateError::Invalid(v) => {
            let mut s = format!("{id}: invalid");
            for v in v {
                let path = if v.path.is_empty() { "/" } else { &v.path };
                s.push_str(&format!("\n  {path}: {}", v.message));
            }
            s
        }
        other => format!("{id}: {other}"),
    }
}

fn read_file(file: &Path) -> Result<Vec<FileDocument>, ClientError> {
    files::read(file).map_err(|e| ClientError::Local(e.to_string()))
}

/// `conclave config validate -f FILE [--addr URL]`.
pub async fn validate_file(file: &Path, live: Option<&Client>) -> Result<(), ClientError> {
    let docs = read_file(file)?;
    let schemas = file_schemas(&docs);
    let mut problems = Vec::new();
    for d in &docs {
        let id = d.id();
        match validate(&d.kind, &d.name, &d.content, schemas.get(&d.kind)) {
            Ok(_) => {}
            Err(ValidateError::UnknownKind(_)) if live.is_some() => {}
            Err(ValidateError::UnknownKind(k)) => {
                problems.push(format!(
                    "{id}: no schema for kind {k} in this file; pass --addr to check against the cluster's registered schema"
                ));
                continue;
            }
            Err(e) => {
                problems.push(report_violations(&id, &e));
                continue;
            }
        }
        // Against the live cluster: its registered schemas and its rules (dry run).
        if let Some(client) = live
            && !(BuiltinKind::of(&d.kind).is_none() && schemas.contains_key(&d.kind))
        {
            let r = client
                .config_put(&d.kind, &d.name, &d.content, None, true)
                .await;
            if let Err(e) = r {
                problems.push(format!("{id}: {e}"));
                continue;
            }
        }
        if let Some(client) = live
            && d.kind == conclave_config::kinds::REMOTE_PEERS_KIND
        {
            let unresolved = unresolved_on_role_nodes(client, &d.content).await?;
            if !unresolved.is_empty() {
                problems.push(format!("{id}: {}", unresolved.join("\n  ")));
                continue;
            }
        }
        out!("{id}: valid");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ClientError::Local(problems.join("\n")))
    }
}

/// The live version of a document: `(revision, content)`, revision 0 when absent.
async fn live_version(
    client: &Client,
    kind: &str,
    name: &str,
) -> Result<(u64, Option<Value>), ClientError> {
    match client.config_get(kind, name, None).await {
        Ok(doc) => Ok((doc.revision, Some(doc.content))),
        Err(e) if e.status() == Some(404) => Ok((0, None)),
        Err(e) => Err(e),
    }
}

fn print_diff(id: &str, old: Option<&Value>, new: &Value) {
    let old_text = old.map(|v| pretty(v) + "\n").unwrap_or_default();
    let new_text = pretty(new) + "\n";
    let diff = similar::TextDiff::from_lines(&old_text, &new_text);
    let live = format!("{id} ({})", if old.is_some() { "live" } else { "absent" });
    let file = format!("{id} (file)");
    out!(
        "{}",
        diff.unified_diff().context_radius(3).header(&live, &file)
    );
}

/// `conclave apply -f FILE [--dry-run] [--confirm]`.
///
/// First every document is validated and diffed against the live cluster; then (unless a
/// dry run, and after a "yes" with `--confirm`) each changed one is written with
/// compare-and-swap on the revision its diff was made against.
pub async fn apply(
    client: &Client,
    file: &Path,
    dry_run: bool,
    confirm: bool,
) -> Result<(), ClientError> {
    let mut docs = read_file(file)?;
    // Schemas first, so documents of the kinds they define validate against them.
    docs.sort_by_key(|d| d.kind != SCHEMA_KIND);
    let schemas = file_schemas(&docs);
    let mut invalid = Vec::new();
    for d in &docs {
        match validate(&d.kind, &d.name, &d.content, schemas.get(&d.kind)) {
            Ok(_) | Err(ValidateError::UnknownKind(_)) => {}
            Err(e) => invalid.push(report_violations(&d.id(), &e)),
        }
    }
    if !invalid.is_empty() {
        return Err(ClientError::Local(format!(
            "nothing applied:\n{}",
            invalid.join("\n")
        )));
    }
    // Diff everything before writing anything.
    let mut pending = Vec::new();
    let mut unchanged = 0;
    for d in &docs {
        let id = d.id();
        let (revision, live) = live_version(client, &d.kind, &d.name).await?;
        let same = live.as_ref().is_some_and(|l| {
            conclave_config::canonical_bytes(l) == conclave_config::canonical_bytes(&d.content)
        });
        if same {
            out!("{id}: unchanged (revision {revision})");
            unchanged += 1;
        } else {
            print_diff(&id, live.as_ref(), &d.content);
            pending.push((d, revision));
        }
    }
    if !dry_run && confirm && !pending.is_empty() {
        print!("apply {} change(s)? [y/N] ", pending.len());
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            out!("nothing applied");
            return Ok(());
        }
    }
    let (mut changed, mut conflicts) = (0, Vec::new());
    for (d, revision) in pending {
        let id = d.id();
        let result = client
            .config_put(&d.kind, &d.name, &d.content, Some(revision), dry_run)
            .await;
        match result {
            Ok(_) if dry_run => {
                out!("{id}: would change (dry run; nothing written)");
                changed += 1;
            }
            Ok(r) => {
                out!("{id}: applied at revision {}", r.revision);
                changed += 1;
            }
            // A generic kind whose schema is in this file: the dry run cannot see it yet.
            Err(ClientError::Api(ApiError { status: 404, .. }))
                if dry_run && schemas.contains_key(&d.kind) =>
            {
                out!("{id}: would change (dry run; its schema is in this file)");
                changed += 1;
            }
            Err(ClientError::Api(ApiError {
                status: 409,
                message,
                ..
            })) => {
                conflicts.push(format!(
                    "{id}: changed by someone else since its diff was made at revision {revision} ({message}); nothing overwritten, run apply again to see the new diff"
                ));
            }
            Err(e) => return Err(e),
        }
    }
    let verb = if dry_run { "would change" } else { "changed" };
    out!(
        "{changed} {verb}, {unchanged} unchanged, {} conflict(s)",
        conflicts.len()
    );
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(ClientError::Local(conflicts.join("\n")))
    }
}

/// `conclave config status`: desired against applied, per document and node.
pub async fn status(client: &Client, json: bool, fail_on_drift: bool) -> Result<(), ClientError> {
    let st: Value = client.config_status().await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
    } else {
        let labels = client.node_labels().await?;
        out!(
            "{:<36} {:>8}  {:<30}  {:<8} {:<9} {:>7} {:>5}  DRIFTED FOR",
            "DOCUMENT",
            "REVISION",
            "NODE",
            "STATE",
            "STATUS",
            "APPLIED",
            "LAG"
        );
        for d in st["documents"].as_array().into_iter().flatten() {
            let id = format!(
                "{}/{}",
                d["kind"].as_str().unwrap_or_default(),
                d["name"].as_str().unwrap_or_default()
            );
            for n in d["nodes"].as_array().into_iter().flatten() {
                let drifted = n["drifted_for_ms"].as_u64().unwrap_or(0);
                out!(
                    "{:<36} {:>8}  {:<30}  {:<8} {:<9} {:>7} {:>5}  {}",
                    id,
                    d["revision"].as_u64().unwrap_or(0),
                    labels.label(n["node_id"].as_u64().unwrap_or(0)),
                    n["state"].as_str().unwrap_or_default(),
                    n["status"].as_str().unwrap_or_default(),
                    n["applied_revision"]
                        .as_u64()
                        .map_or("-".to_string(), |r| r.to_string()),
                    n["lag"].as_u64().unwrap_or(0),
                    if drifted == 0 {
                        "-".to_string()
                    } else {
                        humantime::format_duration(std::time::Duration::from_secs(drifted / 1000))
                            .to_string()
                    }
                );
            }
        }
        for s in st["settings"].as_array().into_iter().flatten() {
            if s["mismatch"] == true {
                out!(
                    "setting {} differs between nodes: {}",
                    s["name"].as_str().unwrap_or_default(),
                    s["values"]
                );
            }
        }
    }
    if !json && let Some(conflicts) = st["seed_conflicts"].as_object() {
        for (id, versions) in conflicts {
            out!(
                "seed conflict for {id}: the nodes' --config-seed files differ ({versions}); nothing was imported, apply the right version with conclave apply"
            );
        }
    }
    let drifted = st["drifted"].as_u64().unwrap_or(0);
    let mismatched = st["settings"]
        .as_array()
        .is_some_and(|a| a.iter().any(|s| s["mismatch"] == true));
    if fail_on_drift && (drifted > 0 || mismatched) {
        return Err(ClientError::Local(format!(
            "{drifted} document(s) drifted{}",
            if mismatched {
                "; settings differ between nodes"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

/// Secret references of a `remote-peers` document that do not resolve on a node that may
/// hold a role (a live candidate or holder): each such node is asked directly, and answers
/// only whether a reference resolves.
async fn unresolved_on_role_nodes(
    client: &Client,
    content: &Value,
) -> Result<Vec<String>, ClientError> {
    let refs = conclave_config::validate::secret_references(content);
    if refs.is_empty() {
        return Ok(Vec::new());
    }
    let members: Vec<conclave_types::GossipMember> = client.gossip_members(&[]).await?;
    let mut problems = Vec::new();
    for m in members
        .iter()
        .filter(|m| m.state == conclave_types::MemberState::Alive)
    {
        let roles: Vec<&str> = conclave_roles::stances(m)
            .filter(|(_, stance)| stance.eligible())
            .map(|(role, _)| role)
            .collect();
        if roles.is_empty() {
            continue;
        }
        let node = client.rebased(&format!("{}://{}", client.scheme(), m.api_addr))?;
        let references: Vec<String> = refs.iter().map(|(_, r)| r.to_string()).collect();
        let answer: Value = node.check_secrets(&references).await?;
        for ((path, reference), result) in refs
            .iter()
            .zip(answer["results"].as_array().into_iter().flatten())
        {
            if result["resolves"] != true {
                problems.push(format!(
                    "{path}: {reference} does not resolve on node {} (may hold {}): {}",
                    m.id,
                    roles.join(", "),
                    result["problem"].as_str().unwrap_or("unknown")
                ));
            }
        }
    }
    Ok(problems)
}

/// `conclave config ...`.
pub(crate) async fn run(cmd: crate::cli::ConfigCommand) -> Result<(), ClientError> {
    use self as cc;
    use crate::cli::ConfigCommand;
    use crate::cli::Output;
    match cmd {
        ConfigCommand::Get {
            id,
            revision,
            client,
        } => {
            let json = client.output == Output::Json;
            cc::get(&client.client()?, &id, revision, json).await
        }
        ConfigCommand::List { kind, client } => {
            let json = client.output == Output::Json;
            cc::list(&client.client()?, kind, json).await
        }
        ConfigCommand::History { id, client } => {
            let json = client.output == Output::Json;
            cc::history(&client.client()?, &id, json).await
        }
        ConfigCommand::Validate { file, client } => {
            let live = client.addr.is_some().then(|| client.client()).transpose()?;
            cc::validate_file(&file, live.as_ref()).await
        }
        ConfigCommand::Status {
            fail_on_drift,
            client,
        } => {
            let json = client.output == Output::Json;
            cc::status(&client.client()?, json, fail_on_drift).await
        }
        ConfigCommand::Delete { id, cas, client } => cc::delete(&client.client()?, &id, cas).await,
    }
}
