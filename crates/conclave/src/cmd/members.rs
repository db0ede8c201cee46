//! `conclave members ...` and `conclave publish`.

use conclave_types::ErrorCode;

use crate::cli::{ClientOpts, Output};
use crate::cli::{MembersArgs, MembersCommand};
use crate::client::ClientError;
use crate::output::print_json;

pub(crate) fn print_members(members: &[conclave_types::ClusterMember]) {
    out!(
        "{:<20} {:<18} {:<8} {:<7} {:<22} {:<22} {:>8} {:>8} {:>9} {:<8}",
        "NAME",
        "ID",
        "ROLE",
        "LEADER",
        "API",
        "RPC",
        "MATCH",
        "LAG",
        "CONTACT",
        "HEALTH"
    );
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    for m in members {
        out!(
            "{:<20} {:<18} {:<8} {:<7} {:<22} {:<22} {:>8} {:>8} {:>9} {:<8}",
            m.name.as_deref().unwrap_or("-"),
            m.node_id,
            if m.learner_only && m.role == "learner" {
                "learner*"
            } else {
                m.role.as_str()
            },
            if m.is_leader { "*" } else { "" },
            if m.api_addr.is_empty() {
                "-"
            } else {
                m.api_addr.as_str()
            },
            m.rpc_addr,
            opt(m.match_index),
            opt(m.lag_entries),
            m.last_contact_ms
                .map_or("-".to_string(), |c| format!("{c}ms")),
            match (m.healthy, m.lag_seconds) {
                (true, _) => "ok",
                // No leader's view: this node cannot tell.
                (false, None) => "unknown",
                (false, Some(_)) => "UNHEALTHY",
            }
        );
    }
}

fn print_gossip_members(members: &[conclave_types::GossipMember]) {
    out!(
        "{:<20} {:<18} {:<8} {:<9} {:<8} {:<9} {:<22} {:<22} {:>8}  {}",
        "NAME",
        "ID",
        "ROLE",
        "RAFT",
        "STATE",
        "HEALTH",
        "API",
        "RPC",
        "SEEN",
        "TAGS"
    );
    for m in members {
        let health = if m.healthy {
            "ok".to_string()
        } else if m.failing_checks.is_empty() {
            "-".to_string()
        } else {
            format!("FAIL:{}", m.failing_checks.join(","))
        };
        let tags = m
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let state = serde_json::to_value(m.state)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        out!(
            "{:<20} {:<18} {:<8} {:<9} {:<8} {:<9} {:<22} {:<22} {:>8}  {}",
            m.name.as_deref().unwrap_or("-"),
            m.id,
            m.role,
            m.raft_role.as_deref().unwrap_or("-"),
            state,
            health,
            m.api_addr,
            m.rpc_addr,
            format!("{}ms", m.last_seen_ms),
            tags
        );
    }
}

pub(crate) async fn publish(client: ClientOpts) -> Result<(), ClientError> {
    let sinks = client.client()?.publish_status().await?;
    if client.output == Output::Json {
        print_json(&serde_json::to_value(&sinks).unwrap_or_default());
        return Ok(());
    }
    if sinks.is_empty() {
        out!("no publish sinks configured (add [[publish]] tables to the agent config)");
    }
    for s in sinks {
        out!(
            "{} ({}, {}): {} peers, {} writes, last {}{}",
            s.name,
            s.format,
            s.path,
            s.published_count,
            s.writes,
            s.last_write.as_deref().unwrap_or("never"),
            s.held.map(|h| format!("\n  HELD: {h}")).unwrap_or_default()
        );
        if let Some(h) = s.last_hook {
            out!(
                "  hook: {} after {} attempt(s) at {}: {} ({} failures so far)",
                if h.ok { "ok" } else { "FAILED" },
                h.attempts,
                h.at,
                h.detail,
                s.hook_failures
            );
        }
    }
    Ok(())
}

async fn remove_dead(client: ClientOpts, dry_run: bool) -> Result<(), ClientError> {
    let r = client.client()?.remove_dead(dry_run).await?;
    match client.output {
        Output::Json => print_json(&serde_json::to_value(&r).unwrap_or_default()),
        Output::Human if r.removed.is_empty() => out!("no dead or left members"),
        Output::Human => out!(
            "{} {}",
            if dry_run { "would remove" } else { "removed" },
            r.removed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
    Ok(())
}

pub(crate) async fn members(args: MembersArgs) -> Result<(), ClientError> {
    let Some(cmd) = args.cmd else {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(r) = args.role {
            query.push(("role", r));
        }
        if args.healthy {
            query.push(("healthy", "true".into()));
        }
        if args.unhealthy {
            query.push(("healthy", "false".into()));
        }
        for t in args.tags {
            query.push(("tag", t));
        }
        let list = args.client.client()?.gossip_members(&query).await?;
        match args.client.output {
            Output::Json => print_json(&serde_json::to_value(&list).unwrap_or_default()),
            Output::Human => print_gossip_members(&list),
        }
        return Ok(());
    };
    let (client, result) = match cmd {
        MembersCommand::RemoveDead { client, dry_run } => {
            return remove_dead(client, dry_run).await;
        }
        MembersCommand::Watch { events, client } => return watch(events, client).await,
        MembersCommand::List { client } => {
            let c = client.client()?;
            let r = match c.members().await {
                Err(ClientError::Api(crate::client::ApiError {
                    code: ErrorCode::NoLeader | ErrorCode::Unavailable,
                    message,
                    ..
                })) => {
                    eprintln!(
                        "no leader answered ({message}); these are the members as this node knows them, without health"
                    );
                    c.members_stale().await
                }
                r => r,
            };
            (client, r)
        }
        MembersCommand::Add {
            node_id,
            rpc_addr,
            voter,
            client,
        } => {
            let req = conclave_types::AddMemberRequest {
                node_id,
                rpc_addr,
                api_addr: String::new(),
                voter,
            };
            let r = client.client()?.add_member(&req).await;
            (client, r)
        }
        MembersCommand::Remove {
            node,
            force,
            dry_run,
            client,
        } => return change(client, "remove", node, force, dry_run).await,
        MembersCommand::Promote {
            node,
            dry_run,
            client,
        } => return change(client, "promote", node, false, dry_run).await,
        MembersCommand::Demote {
            node,
            force,
            dry_run,
            client,
        } => return change(client, "demote", node, force, dry_run).await,
    };
    let members = result?;
    match client.output {
        Output::Json => print_json(&serde_json::to_value(&members).unwrap_or_default()),
        Output::Human => print_members(&members),
    }
    Ok(())
}

/// `conclave members remove|promote|demote`: the change, or with `--dry-run` what it would do.
async fn change(
    client: ClientOpts,
    action: &str,
    node: String,
    force: bool,
    dry_run: bool,
) -> Result<(), ClientError> {
    let c = client.client()?;
    if dry_run {
        let p = c.preview_member(action, &node, force).await?;
        match client.output {
            Output::Json => print_json(&serde_json::to_value(&p).unwrap_or_default()),
            Output::Human => out!("would {action}: {}", p.effect),
        }
        return Ok(());
    }
    let members = c.change_member(action, &node, force).await?;
    match client.output {
        Output::Json => print_json(&serde_json::to_value(&members).unwrap_or_default()),
        Output::Human => print_members(&members),
    }
    Ok(())
}

/// `conclave members watch`: one line per membership change (a JSON line with `-o json`),
/// until interrupted.
async fn watch(events: Option<String>, client: ClientOpts) -> Result<(), ClientError> {
    let json = client.output == Output::Json;
    let mut stream = client.client()?.members_watch(events.as_deref()).await?;
    while let Some(event) = stream.next().await? {
        match event.event.as_str() {
            "snapshot" => {
                if !json {
                    let members: Vec<serde_json::Value> =
                        serde_json::from_str(&event.data).unwrap_or_default();
                    out!("watching {} members (one line per change)", members.len());
                }
            }
            "" | "error" => {}
            _ if json => out!("{}", event.data),
            _ => match serde_json::from_str::<conclave_types::member_events::MemberEvent>(
                &event.data,
            ) {
                Ok(e) => out!(
                    "{}  {:<8} {:<20} {:<8} {}",
                    e.seen_at,
                    e.kind.as_str(),
                    e.member.id,
                    e.member.role,
                    e.member.rpc_addr
                ),
                Err(e) => {
                    return Err(ClientError::Local(format!(
                        "the agent sent a membership event this CLI cannot read: {e}"
                    )));
                }
            },
        }
    }
    Ok(())
}
