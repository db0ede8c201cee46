//! Networks and address allocations (`/v1/ipam`). Answers are the API's JSON objects as
//! documented in the README's IPAM section.

use percent_encoding::utf8_percent_encode;
use reqwest::Method;
use serde_json::Value;

use conclave_types::ipam::ImportReport;

use crate::{Client, ClientError, SEGMENT_SET, json_body};

fn segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT_SET).to_string()
}

/// Networks and address allocations (`/v1/ipam`).
impl Client {
    /// Create a network from `{"cidr", "id"?, "description"?, "gateway"?, ...}`.
    pub async fn ipam_network_create(&self, body: &Value) -> Result<Value, ClientError> {
        self.send_json(Method::POST, "/v1/ipam/networks", &[], json_body(body))
            .await
    }

    /// Every network with its usage: `{"networks": [...]}`.
    pub async fn ipam_networks(&self) -> Result<Value, ClientError> {
        self.get_json("/v1/ipam/networks", &[]).await
    }

    pub async fn ipam_network(&self, id: &str) -> Result<Value, ClientError> {
        self.get_json(&format!("/v1/ipam/networks/{}", segment(id)), &[])
            .await
    }

    /// Delete a network (`force`: with its allocations).
    pub async fn ipam_network_delete(&self, id: &str, force: bool) -> Result<Value, ClientError> {
        let query = [("force", force.to_string())];
        let path = format!("/v1/ipam/networks/{}", segment(id));
        self.send_json(Method::DELETE, &path, &query, None).await
    }

    /// Allocate from `{"network_id", "hostname"?, "ip"?, ...}`.
    pub async fn ipam_allocate(&self, body: &Value) -> Result<Value, ClientError> {
        self.send_json(Method::POST, "/v1/ipam/allocations", &[], json_body(body))
            .await
    }

    /// Allocations matching `filters` (`network`, `hostname`, `label`, `prefix`, `after`,
    /// `limit`): `{"allocations": [...], "more"}`.
    pub async fn ipam_allocations(&self, filters: &[(&str, String)]) -> Result<Value, ClientError> {
        self.get_json("/v1/ipam/allocations", filters).await
    }

    /// Release what `hostname` (or `address`) holds in `network`, in one request.
    pub async fn ipam_release_by(
        &self,
        network: &str,
        hostname: Option<&str>,
        address: Option<&str>,
    ) -> Result<Value, ClientError> {
        let mut query = vec![("network", network.to_owned())];
        if let Some(h) = hostname {
            query.push(("hostname", h.to_owned()));
        }
        if let Some(a) = address {
            query.push(("address", a.to_owned()));
        }
        self.send_json(Method::DELETE, "/v1/ipam/allocations", &query, None)
            .await
    }

    /// Import an allocation list: every row or, when any conflicts, none (the error lists
    /// the conflicting rows in `conflicts`). `csv`: the body is CSV with a header row,
    /// else JSON `{"allocations": [...]}`.
    pub async fn ipam_import(&self, body: Vec<u8>, csv: bool) -> Result<ImportReport, ClientError> {
        let content_type = if csv { "text/csv" } else { "application/json" };
        let req = self
            .http
            .post(self.url("/v1/ipam/allocations/import"))
            .header("content-type", content_type)
            .body(body);
        let resp = self.send(req).await?;
        self.json(resp).await
    }

    /// Release an allocation by id.
    pub async fn ipam_release(&self, id: &str) -> Result<Value, ClientError> {
        let path = format!("/v1/ipam/allocations/{}", segment(id));
        self.send_json(Method::DELETE, &path, &[], None).await
    }
}
