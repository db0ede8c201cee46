//! Access control, replicated: policies say what may be done, tokens say who presents which
//! policies. Every node holds the same tokens and policies and decides a request the same way.
//!
//! No secret enters the log: a token is stored as the SHA-256 of a random salt and its
//! secret, both made at the edge (this crate has no randomness and hashes nothing). A
//! token's secret names its accessor (`<accessor>.<secret>`), so the edge finds the one
//! stored hash to compare without trying every token.
//!
//! Rules grant, never deny: a request is allowed when any rule of any of the token's
//! policies grants at least the access it needs on its resource (`Admin` ⊇ `Write` ⊇ `Read`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use conclave_types::acl::{Access, Policy, Resource, Rule};

/// The built-in policy that grants everything; the bootstrap token holds it.
pub const GLOBAL_MANAGEMENT: &str = "global-management";

/// A token as the cluster stores it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// The public name of the token: in listings, the audit log and its secret's prefix.
    pub accessor_id: String,
    /// Lower-case hex of SHA-256(salt ‖ secret).
    pub secret_hash: String,
    /// Lower-case hex of the random salt.
    pub salt: String,
    pub description: String,
    pub policies: Vec<String>,
    /// Cluster clock (wall) when it was made, ms.
    pub created_ms: u64,
    /// After this (cluster clock, wall ms) the token is refused.
    pub expires_ms: Option<u64>,
}

/// What a request needs, as the edge maps it from the route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub target: Target,
    pub access: Access,
}

/// The resource one request touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A key, or every key under a prefix (a listing or a watch).
    Kv(String),
    /// Documents of one kind, or of every kind (`None`: a listing across kinds).
    Config(Option<String>),
    Elections,
    Ipam,
    Cluster,
    Snapshot,
    Acl,
    Audit,
}

impl Target {
    /// The capability's name in a refusal: `kv:app/`, `config:remote-peers`, `cluster`.
    pub fn describe(&self) -> String {
        match self {
            Target::Kv(key) => format!("kv:{key}"),
            Target::Config(Some(kind)) => format!("config:{kind}"),
            Target::Config(None) => "config:*".into(),
            Target::Elections => "elections".into(),
            Target::Ipam => "ipam".into(),
            Target::Cluster => "cluster".into(),
            Target::Snapshot => "snapshot".into(),
            Target::Acl => "acl".into(),
            Target::Audit => "audit".into(),
        }
    }
}

/// Whether `rule` grants `need`.
pub fn grants(rule: &Rule, need: &Need) -> bool {
    if rule.access < need.access {
        return false;
    }
    match (&rule.resource, &need.target) {
        (Resource::Kv { prefix }, Target::Kv(key)) => key.starts_with(prefix.as_str()),
        (Resource::Config { kind: None }, Target::Config(_)) => true,
        (Resource::Config { kind: Some(k) }, Target::Config(Some(want))) => k == want,
        (Resource::Elections, Target::Elections)
        | (Resource::Ipam, Target::Ipam)
        | (Resource::Cluster, Target::Cluster)
        | (Resource::Snapshot, Target::Snapshot)
        | (Resource::Acl, Target::Acl)
        | (Resource::Audit, Target::Audit) => true,
        _ => false,
    }
}

/// Whether any rule of `policy` grants `need`.
pub fn policy_grants(policy: &Policy, need: &Need) -> bool {
    policy.rules.iter().any(|r| grants(r, need))
}

/// Every token and policy of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclState {
    /// Set once by the first bootstrap; a second is refused.
    pub bootstrapped: bool,
    pub policies: BTreeMap<String, Policy>,
    pub tokens: BTreeMap<String, Token>,
}

/// A change to the ACL state (one replicated command).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclCommand {
    /// The first management token; refused once bootstrapped.
    Bootstrap(Token),
    PutPolicy(Policy),
    DeletePolicy {
        name: String,
    },
    CreateToken(Token),
    DeleteToken {
        accessor_id: String,
    },
}

/// Why an ACL command changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AclRefusal {
    #[error("ACLs are bootstrapped already; ask a holder of a management token")]
    AlreadyBootstrapped,
    #[error("no policy is named {0:?}")]
    UnknownPolicy(String),
    #[error("the built-in policy {GLOBAL_MANAGEMENT} cannot be changed or deleted")]
    BuiltIn,
    #[error("policy {name:?} is held by token {accessor_id}; delete or change the token first")]
    PolicyInUse { name: String, accessor_id: String },
    #[error("a token with accessor {0} exists already")]
    DuplicateAccessor(String),
    #[error("no token has accessor {0}")]
    UnknownToken(String),
}

/// The built-in management policy: admin on everything.
pub fn global_management() -> Policy {
    let all = [
        Resource::Kv {
            prefix: String::new(),
        },
        Resource::Config { kind: None },
        Resource::Elections,
        Resource::Ipam,
        Resource::Cluster,
        Resource::Snapshot,
        Resource::Acl,
        Resource::Audit,
    ];
    Policy {
        name: GLOBAL_MANAGEMENT.into(),
        description: "every capability (the bootstrap token's)".into(),
        rules: all
            .into_iter()
            .map(|resource| Rule {
                resource,
                access: Access::Admin,
            })
            .collect(),
    }
}

impl AclState {
    /// The policy called `name`, the built-in one included.
    pub fn policy(&self, name: &str) -> Option<Policy> {
        if name == GLOBAL_MANAGEMENT {
            return Some(global_management());
        }
        self.policies.get(name).cloned()
    }

    /// Whether `token` (not expired at `now_ms`, cluster wall clock) may do `need`.
    pub fn allows(&self, token: &Token, need: &Need, now_ms: u64) -> bool {
        if token.expires_ms.is_some_and(|at| now_ms >= at) {
            return false;
        }
        // On every request: no policy is copied (the built-in one grants everything).
        token.policies.iter().any(|name| {
            name == GLOBAL_MANAGEMENT
                || self
                    .policies
                    .get(name)
                    .is_some_and(|p| policy_grants(p, need))
        })
    }

    /// Apply one command: the state after it, or why nothing changed.
    pub fn apply(&mut self, command: &AclCommand) -> Result<(), AclRefusal> {
        match command {
            AclCommand::Bootstrap(token) => {
                if self.bootstrapped {
                    return Err(AclRefusal::AlreadyBootstrapped);
                }
                self.check_new_token(token)?;
                self.bootstrapped = true;
                self.tokens.insert(token.accessor_id.clone(), token.clone());
            }
            AclCommand::PutPolicy(policy) => {
                if policy.name == GLOBAL_MANAGEMENT {
                    return Err(AclRefusal::BuiltIn);
                }
                self.policies.insert(policy.name.clone(), policy.clone());
            }
            AclCommand::DeletePolicy { name } => {
                if name == GLOBAL_MANAGEMENT {
                    return Err(AclRefusal::BuiltIn);
                }
                if !self.policies.contains_key(name) {
                    return Err(AclRefusal::UnknownPolicy(name.clone()));
                }
                if let Some(t) = self.tokens.values().find(|t| t.policies.contains(name)) {
                    return Err(AclRefusal::PolicyInUse {
                        name: name.clone(),
                        accessor_id: t.accessor_id.clone(),
                    });
                }
                self.policies.remove(name);
            }
            AclCommand::CreateToken(token) => {
                self.check_new_token(token)?;
                self.tokens.insert(token.accessor_id.clone(), token.clone());
            }
            AclCommand::DeleteToken { accessor_id } => {
                if self.tokens.remove(accessor_id).is_none() {
                    return Err(AclRefusal::UnknownToken(accessor_id.clone()));
                }
            }
        }
        Ok(())
    }

    fn check_new_token(&self, token: &Token) -> Result<(), AclRefusal> {
        if self.tokens.contains_key(&token.accessor_id) {
            return Err(AclRefusal::DuplicateAccessor(token.accessor_id.clone()));
        }
        if let Some(missing) = token.policies.iter().find(|p| self.policy(p).is_none()) {
            return Err(AclRefusal::UnknownPolicy(missing.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
