//! `conclave roles`: the leader-bound roles, and planned handovers.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::{Client, ClientError};

pub async fn list(client: &Client, json: bool) -> Result<(), ClientError> {
    let roles: Value = client.roles().await?;
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(&roles).unwrap_or_default()
        );
        return Ok(());
    }
    if roles.as_array().is_none_or(|r| r.is_empty()) {
        out!("no roles: no live agent declares one (add a [[roles]] table to the agent config)");
        return Ok(());
    }
    let labels = client.node_labels().await?;
    for r in roles.as_array().into_iter().flatten() {
        let holder = r["holder"]
            .as_u64()
            .map_or("none".to_string(), |h| labels.label(h));
        out!(
            "{}: holder {holder}, epoch {}, lease {} ms{}",
            r["name"].as_str().unwrap_or_default(),
            r["epoch"],
            r["lease_remaining_ms"],
            if r["split_brain"] == true {
                format!("  SPLIT BRAIN: claims {}", r["claims"])
            } else {
                String::new()
            }
        );
        for c in r["candidates"].as_array().into_iter().flatten() {
            out!(
                "  node {:>30}  {:<10} priority {:>4}  {}{}",
                labels.label(c["node_id"].as_u64().unwrap_or(0)),
                c["state"].as_str().unwrap_or_default(),
                c["priority"].as_i64().unwrap_or(0),
                c["member_state"].as_str().unwrap_or_default(),
                if c["healthy"] == true {
                    ""
                } else {
                    ", unhealthy"
                }
            );
        }
        for p in r["peers"].as_array().into_iter().flatten() {
            out!(
                "  peer {:<24} {} {}",
                p["node_id"].as_str().unwrap_or_default(),
                p["status"].as_str().unwrap_or_default(),
                p["detail"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}

pub async fn handover(
    client: &Client,
    name: &str,
    to: Option<String>,
    wait: Duration,
) -> Result<(), ClientError> {
    let to = client.resolve_optional(to.as_deref()).await?;
    let r: Value = client.handover(name, to).await?;
    let target = r["to"].as_u64().unwrap_or_default();
    out!(
        "handing {name} over from node {} (epoch {}) to node {target}",
        r["from"],
        r["from_epoch"]
    );
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        let v: Value = client.role(name).await?;
        if v["holder"].as_u64() == Some(target) {
            out!("node {target} holds {name} with epoch {}", v["epoch"]);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(ClientError::Local(format!(
        "node {target} did not take {name} within {wait:?}; see conclave roles"
    )))
}
