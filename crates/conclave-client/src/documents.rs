//! Configuration documents (`/v1/config`).

use conclave_types::{
    ConfigDocument, ConfigHistory, ConfigListItem, ConfigWriteResponse, HEADER_INDEX,
};

use crate::{Client, ClientError, doc_path, json_body, kind_query, stale_query};

/// Configuration documents (`/v1/config`).
impl Client {
    /// The live document from the agent's own copy, without a read barrier.
    pub async fn config_get_stale(
        &self,
        kind: &str,
        name: &str,
    ) -> Result<ConfigDocument, ClientError> {
        self.get_json(&doc_path(kind, name), &stale_query(true))
            .await
    }

    /// A document, as of store revision `revision` when given.
    pub async fn config_get(
        &self,
        kind: &str,
        name: &str,
        revision: Option<u64>,
    ) -> Result<ConfigDocument, ClientError> {
        let query: Vec<(&str, String)> = revision
            .map(|r| vec![("revision", r.to_string())])
            .unwrap_or_default();
        self.get_json(&doc_path(kind, name), &query).await
    }

    /// Live documents, of one kind when given.
    pub async fn config_list(
        &self,
        kind: Option<&str>,
    ) -> Result<Vec<ConfigListItem>, ClientError> {
        let query = kind_query(kind);
        self.get_json("/v1/config", &query).await
    }

    /// Live documents with the store revision they were read at (`X-Conclave-Index`), where
    /// a watch must start to miss nothing after this listing.
    pub async fn config_list_indexed(
        &self,
        kind: Option<&str>,
    ) -> Result<(Vec<ConfigListItem>, u64), ClientError> {
        let query = kind_query(kind);
        let resp = self
            .send(self.http.get(self.url("/v1/config")).query(&query))
            .await?;
        let index = resp
            .headers()
            .get(HEADER_INDEX)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                ClientError::Local(format!(
                    "{} answered the listing without {HEADER_INDEX}",
                    self.base
                ))
            })?;
        Ok((self.json(resp).await?, index))
    }

    pub async fn config_history(
        &self,
        kind: &str,
        name: &str,
    ) -> Result<ConfigHistory, ClientError> {
        self.get_json(&format!("{}/history", doc_path(kind, name)), &[])
            .await
    }

    /// Validate and store `content` (`cas`: only if the document's revision is still it;
    /// `dry_run`: validate only).
    pub async fn config_put(
        &self,
        kind: &str,
        name: &str,
        content: &serde_json::Value,
        cas: Option<u64>,
        dry_run: bool,
    ) -> Result<ConfigWriteResponse, ClientError> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(c) = cas {
            query.push(("cas", c.to_string()));
        }
        if dry_run {
            query.push(("dry_run", "true".into()));
        }
        self.send_json(
            reqwest::Method::PUT,
            &doc_path(kind, name),
            &query,
            json_body(content),
        )
        .await
    }

    pub async fn config_delete(
        &self,
        kind: &str,
        name: &str,
        cas: Option<u64>,
    ) -> Result<ConfigWriteResponse, ClientError> {
        let query: Vec<(&str, String)> = cas
            .map(|c| vec![("cas", c.to_string())])
            .unwrap_or_default();
        self.send_json(reqwest::Method::DELETE, &doc_path(kind, name), &query, None)
            .await
    }

    /// Desired vs applied configuration per node (`GET /v1/config/status`), as JSON.
    pub async fn config_status(&self) -> Result<serde_json::Value, ClientError> {
        self.get_json("/v1/config/status", &[]).await
    }

    /// Whether secret references resolve on this agent (`POST /v1/agent/secrets/check`):
    /// `{"results": [{"reference", "resolves", "problem"}]}`, never a value.
    pub async fn check_secrets(
        &self,
        references: &[String],
    ) -> Result<serde_json::Value, ClientError> {
        let body = serde_json::json!({ "references": references });
        self.send_json(
            reqwest::Method::POST,
            "/v1/agent/secrets/check",
            &[],
            json_body(&body),
        )
        .await
    }
}
