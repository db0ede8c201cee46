//! Tokens and policies (`/v1/acl`).

use conclave_types::acl::{Policy, PolicyRequest, TokenInfo, TokenRequest, TokenSecret, TokenSelf};
use percent_encoding::utf8_percent_encode;
use reqwest::Method;

use crate::{Client, ClientError, SEGMENT_SET, json_body};

fn segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT_SET).to_string()
}

/// Tokens and policies (`/v1/acl`).
impl Client {
    /// The first management token of the cluster (once; its secret is shown only here).
    pub async fn acl_bootstrap(&self) -> Result<TokenSecret, ClientError> {
        self.send_json(Method::POST, "/v1/acl/bootstrap", &[], None)
            .await
    }

    pub async fn acl_token_create(&self, req: &TokenRequest) -> Result<TokenSecret, ClientError> {
        self.send_json(Method::POST, "/v1/acl/tokens", &[], json_body(req))
            .await
    }

    pub async fn acl_tokens(&self) -> Result<Vec<TokenInfo>, ClientError> {
        self.get_json("/v1/acl/tokens", &[]).await
    }

    pub async fn acl_token_delete(&self, accessor: &str) -> Result<(), ClientError> {
        let path = format!("/v1/acl/tokens/{}", segment(accessor));
        let _: serde_json::Value = self.send_json(Method::DELETE, &path, &[], None).await?;
        Ok(())
    }

    /// The token this client sends, and what its policies grant.
    pub async fn acl_token_self(&self) -> Result<TokenSelf, ClientError> {
        self.get_json("/v1/acl/token/self", &[]).await
    }

    pub async fn acl_policies(&self) -> Result<Vec<Policy>, ClientError> {
        self.get_json("/v1/acl/policies", &[]).await
    }

    pub async fn acl_policy_put(
        &self,
        name: &str,
        req: &PolicyRequest,
    ) -> Result<Policy, ClientError> {
        let path = format!("/v1/acl/policies/{}", segment(name));
        self.send_json(Method::PUT, &path, &[], json_body(req))
            .await
    }

    pub async fn acl_policy_delete(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("/v1/acl/policies/{}", segment(name));
        let _: serde_json::Value = self.send_json(Method::DELETE, &path, &[], None).await?;
        Ok(())
    }
}
