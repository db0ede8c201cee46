//! This agent's tags (`/v1/agent/tags`), changed while it runs and gossiped to every member,
//! and a reload of its configuration (`/v1/agent/reload`).

use std::collections::BTreeMap;

use reqwest::Method;

use crate::{Client, ClientError};

/// Tag name → value.
pub type Tags = BTreeMap<String, String>;

impl Client {
    /// The tags the agent advertises.
    pub async fn agent_tags(&self) -> Result<Tags, ClientError> {
        self.get_json("/v1/agent/tags", &[]).await
    }

    /// Advertise exactly `tags` (the whole set); answers the set now advertised.
    pub async fn set_agent_tags(&self, tags: &Tags) -> Result<Tags, ClientError> {
        let body = serde_json::to_vec(tags)
            .map_err(|e| ClientError::Local(format!("cannot encode the tags: {e}")))?;
        self.send_json(Method::PUT, "/v1/agent/tags", &[], Some(body))
            .await
    }
}

impl Client {
    /// Ask the agent to read its configuration again and apply what can change live
    /// (`POST /v1/agent/reload`, as SIGHUP does).
    pub async fn reload_agent(&self) -> Result<conclave_types::reload::ReloadReport, ClientError> {
        self.send_json(Method::POST, "/v1/agent/reload", &[], None)
            .await
    }
}
