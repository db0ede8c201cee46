//! `conclave audit`: the cluster's audit log, newest first, or followed as it grows.

use clap::Args;
use conclave_client::AuditFilter;
use conclave_types::audit::{AuditOutcome, AuditRecord};

use crate::cli::{ClientOpts, Output};
use crate::client::ClientError;
use crate::output::print_json;

#[derive(Args, Debug)]
pub(crate) struct AuditArgs {
    /// Only entries of this kind: membership, leadership, config, acl, election, kv,
    /// snapshot, recovery, ipam.
    #[arg(long)]
    kind: Option<String>,
    /// Only entries by this actor: token:<accessor>, node:<id>, anonymous, agent, operator
    /// (or a bare accessor or node id).
    #[arg(long)]
    actor: Option<String>,
    /// Only entries since this RFC 3339 time or this long ago (15m, 2h).
    #[arg(long)]
    since: Option<String>,
    /// At most this many entries (1 to 1000).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Entries older than this sequence number (the cursor a previous page printed).
    #[arg(long, conflicts_with = "follow")]
    cursor: Option<u64>,
    /// Keep printing new entries as they apply (oldest first), until interrupted.
    #[arg(long, short = 'f')]
    follow: bool,
    #[command(flatten)]
    client: ClientOpts,
}

const HEADER: &str = "SEQ      TIME                      KIND        ACTION              SUBJECT                        ACTOR                    OUTCOME";

fn line(r: &AuditRecord) -> String {
    let outcome = match (&r.outcome, &r.reason) {
        (AuditOutcome::Applied, _) => "applied".to_owned(),
        (AuditOutcome::Refused, Some(reason)) => format!("refused: {reason}"),
        (AuditOutcome::Refused, None) => "refused".to_owned(),
    };
    let action = serde_json::to_value(r.action)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "{:<8} {:<25} {:<11} {:<19} {:<30} {:<24} {}",
        r.seq,
        r.time,
        r.kind.as_str(),
        action,
        r.subject,
        r.actor,
        outcome
    )
}

pub(crate) async fn run(args: AuditArgs) -> Result<(), ClientError> {
    let client = args.client.client()?;
    let filter = AuditFilter {
        kind: args.kind,
        actor: args.actor,
        since: args.since,
    };
    let json = args.client.output == Output::Json;
    if args.follow {
        // What is there now (oldest first), then each new entry.
        let (mut recent, _) = client.audit(&filter, args.limit, None).await?;
        recent.reverse();
        if !json {
            out!("{HEADER}");
        }
        let mut last = None;
        for r in &recent {
            print_one(r, json);
            last = Some(r.seq);
        }
        let after = match last {
            Some(seq) => seq,
            None => client
                .audit(&AuditFilter::default(), 1, None)
                .await?
                .0
                .first()
                .map_or(0, |r| r.seq),
        };
        let mut events = client.audit_watch(&filter, Some(after)).await?;
        while let Some(event) = events.next().await? {
            match event.event.as_str() {
                "entry" => match serde_json::from_str::<AuditRecord>(&event.data) {
                    Ok(r) => print_one(&r, json),
                    Err(e) => {
                        return Err(ClientError::Local(format!(
                            "the agent sent an audit entry this CLI cannot read: {e}"
                        )));
                    }
                },
                "error" => {
                    return Err(ClientError::Local(format!(
                        "the audit stream ended: {}",
                        event.data
                    )));
                }
                _ => {}
            }
        }
        return Ok(());
    }
    let (records, cursor) = client.audit(&filter, args.limit, args.cursor).await?;
    if json {
        print_json(&serde_json::to_value(&records).unwrap_or_default());
        return Ok(());
    }
    out!("{HEADER}");
    for r in &records {
        out!("{}", line(r));
    }
    if let Some(c) = cursor {
        out!("(more: conclave audit --cursor {c})");
    }
    Ok(())
}

/// One entry: a table line, or a JSON line (one object per line, for tools).
fn print_one(r: &AuditRecord, json: bool) {
    if json {
        out!("{}", serde_json::to_string(r).unwrap_or_default());
    } else {
        out!("{}", line(r));
    }
}
