//! `conclave status`: this node, then the cluster table.

use crate::cli::{ClientOpts, Output};
use crate::client::ClientError;
use crate::cmd::members::print_members;
use crate::output::print_json;

pub(crate) async fn status(opts: &ClientOpts) -> Result<(), ClientError> {
    let c = opts.client()?;
    let s = match c.status().await? {
        crate::client::AgentStatus::Raft(s) => s,
        crate::client::AgentStatus::Client(v) => {
            match opts.output {
                Output::Json => print_json(&v),
                Output::Human => {
                    out!("cluster   {}", v["cluster_id"].as_str().unwrap_or("-"));
                    out!(
                        "node      {} (client: no Raft log; forwards to the cluster)",
                        v["node_id"]
                    );
                    out!(
                        "leader    {}",
                        v["leader_id"]
                            .as_u64()
                            .map_or("none known".to_string(), |l| l.to_string())
                    );
                    out!("members   {}", v["members"]);
                    out!();
                    match c.cluster_status().await {
                        Ok(cs) => print_members(&cs.members),
                        Err(e) => out!("cluster status unavailable: {e}"),
                    }
                }
            }
            return Ok(());
        }
    };
    match opts.output {
        Output::Json => print_json(&serde_json::to_value(&s).unwrap_or_default()),
        Output::Human => {
            match &s.cluster_name {
                Some(name) => out!("cluster   {name} ({})", s.cluster_id),
                None => out!("cluster   {}", s.cluster_id),
            }
            match &s.node_name {
                Some(name) => out!("node      {name} (id {}, {})", s.node_id, s.role),
                None => out!("node      {} ({})", s.node_id, s.role),
            }
            let leader = s.leader_id.map_or("none".to_string(), |l| {
                match s
                    .members
                    .iter()
                    .find(|m| m.node_id == l)
                    .and_then(|m| m.name.as_deref())
                {
                    Some(name) => format!("{name} (id {l})"),
                    None => l.to_string(),
                }
            });
            out!("leader    {leader}");
            out!("term      {}", s.term);
            out!(
                "index     commit {}  applied {}  revision {}",
                s.commit_index,
                s.applied_index,
                s.revision
            );
            out!(
                "storage   {} keys, {:.1} writes/fsync, log {}..{}",
                s.storage.keys,
                s.storage.writes_per_fsync,
                s.storage.log_first_index,
                s.storage
                    .log_last_index
                    .map_or("-".to_string(), |l| l.to_string())
            );
            if let Some(tls) = &s.tls {
                let days = tls.expires_in_seconds.div_euclid(86_400);
                out!(
                    "tls       {}, expires in {days} days{}{}",
                    tls.subject,
                    if tls.verify_incoming {
                        ", client certificates required"
                    } else {
                        ""
                    },
                    tls.reload_error
                        .as_deref()
                        .map_or(String::new(), |e| format!(" (last reload FAILED: {e})"))
                );
            }
            match c.clone().without_retry().health().await {
                Ok(h) => match h.degraded {
                    Some(why) => out!("health    {} ({why})", h.status),
                    None => out!("health    {}", h.status),
                },
                Err(ClientError::Api(e)) => out!("health    {}: {}", e.code, e.message),
                Err(e) => out!("health    unknown: {e}"),
            }
            out!();
            match c.cluster_status().await {
                Ok(cs) => {
                    out!(
                        "quorum    {}",
                        if cs.quorum_healthy {
                            "healthy"
                        } else {
                            "NOT healthy"
                        }
                    );
                    print_members(&cs.members);
                }
                Err(e) => {
                    out!("(no leader answered: {e}; showing this node's view)");
                    out!(
                        "{:<20} {:<18} {:<8} {:<22} {:<22}",
                        "NAME",
                        "ID",
                        "ROLE",
                        "API",
                        "RPC"
                    );
                    for m in &s.members {
                        out!(
                            "{:<20} {:<18} {:<8} {:<22} {:<22}",
                            m.name.as_deref().unwrap_or("-"),
                            m.node_id,
                            m.role,
                            m.api_addr,
                            m.rpc_addr
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
