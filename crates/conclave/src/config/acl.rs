//! `[acl]`: bearer tokens with policies on every request (see `conclave_api::acl`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use conclave_types::Secret;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AclConfig {
    /// Require a token on every request but health, readiness and the one bootstrap.
    /// Set it on every node (env `CONCLAVE_ACL__ENABLED=true`).
    pub enabled: bool,
    /// Serve `/metrics` without a token (a scraper that cannot send one).
    pub anonymous_metrics: bool,
    /// The token a client agent presents when it calls members for itself (configuration
    /// sync, roles, elections); env `CONCLAVE_ACL__AGENT_TOKEN`. Never printed.
    pub agent_token: Option<Secret>,
    /// A file holding the agent token instead.
    pub agent_token_file: Option<PathBuf>,
    /// A management token chosen by the operator (32+ characters, no dots): the leader
    /// bootstraps ACLs with it when the cluster has none, so automation needs no
    /// `conclave acl bootstrap`. Env `CONCLAVE_ACL__INITIAL_MANAGEMENT_TOKEN`. Never printed.
    pub initial_management_token: Option<Secret>,
    /// A file holding the initial management token instead.
    pub initial_management_token_file: Option<PathBuf>,
}

/// A secret from its setting or its file (never both).
fn secret_or_file(
    name: &str,
    value: &Option<Secret>,
    file: &Option<PathBuf>,
) -> anyhow::Result<Option<Secret>> {
    match (value, file) {
        (Some(_), Some(path)) => bail!(
            "both acl.{name} and acl.{name}_file ({}) are set; keep one",
            path.display()
        ),
        (Some(t), None) => Ok(Some(t.clone())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read acl.{name}_file {}", path.display()))?;
            let token = text.trim();
            if token.is_empty() {
                bail!("acl.{name}_file {} is empty", path.display());
            }
            Ok(Some(Secret::new(token)))
        }
        (None, None) => Ok(None),
    }
}

impl AclConfig {
    pub fn settings(&self) -> conclave_api::acl::AclSettings {
        conclave_api::acl::AclSettings {
            enabled: self.enabled,
            anonymous_metrics: self.anonymous_metrics,
        }
    }

    /// The agent token, from the setting or its file.
    pub fn agent_token(&self) -> anyhow::Result<Option<Secret>> {
        secret_or_file("agent_token", &self.agent_token, &self.agent_token_file)
    }

    /// The initial management token, checked.
    pub fn initial_management_token(&self) -> anyhow::Result<Option<Secret>> {
        let token = secret_or_file(
            "initial_management_token",
            &self.initial_management_token,
            &self.initial_management_token_file,
        )?;
        if let Some(t) = &token {
            conclave_api::acl::secret::check_chosen(t.expose())
                .map_err(|e| anyhow::anyhow!("acl.initial_management_token: {e}"))?;
        }
        Ok(token)
    }
}
