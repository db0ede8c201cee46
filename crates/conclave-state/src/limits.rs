//! Size limits checked *before* a command is proposed, never inside `apply`: nodes with
//! different local limits still apply the same log identically.

use serde::{Deserialize, Serialize};

use crate::acl::{AclCommand, Resource};
use crate::{Command, SYSTEM_PREFIX, elections};

/// Size limits enforced on proposals. Defaults: key ≤ 4 KiB, value ≤ 1 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// The longest an election campaign may wait to be elected (at most
    /// [`conclave_types::MAX_CAMPAIGN_WAIT_MS`]).
    pub max_campaign_wait_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_key_bytes: 4096,
            max_value_bytes: 1024 * 1024,
            max_campaign_wait_ms: conclave_types::MAX_CAMPAIGN_WAIT_MS,
        }
    }
}

/// Why a proposal was refused before reaching the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("the key is empty")]
    EmptyKey,
    #[error("the key is {size} bytes, above the limit of {limit} bytes")]
    KeyTooLarge { size: usize, limit: usize },
    #[error("the value is {size} bytes, above the limit of {limit} bytes")]
    ValueTooLarge { size: usize, limit: usize },
    #[error("keys under {SYSTEM_PREFIX:?} are reserved for conclave")]
    Reserved,
    #[error("the {what} is empty")]
    EmptyName { what: &'static str },
    #[error("the {what} is {size} bytes, above the limit of {limit} bytes")]
    NameTooLong {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("the {what} is {chars} characters, above the limit of {limit}")]
    NameTooManyChars {
        what: &'static str,
        chars: usize,
        limit: usize,
    },
    #[error(
        "a lease of {ttl_ms} ms is outside the allowed {min} to {max} ms",
        min = elections::MIN_TTL_MS,
        max = elections::MAX_TTL_MS
    )]
    TtlOutOfRange { ttl_ms: u64 },
    #[error("more than {limit} {what}")]
    TooMany { what: &'static str, limit: usize },
}

/// Most members one audit note names.
pub const MAX_NOTE_ITEMS: usize = 1024;

/// The longest refusal reason a note carries.
pub const MAX_REASON_BYTES: usize = 1024;

/// An audit entry's source address and request id stay short.
fn check_meta(meta: &crate::audit::AuditMeta) -> Result<(), LimitError> {
    for (what, value) in [
        ("request source", &meta.source),
        ("request id", &meta.request_id),
    ] {
        if let Some(v) = value {
            check_name(what, v)?;
        }
    }
    match &meta.actor {
        crate::audit::Actor::Token { accessor_id } => check_name("token accessor", accessor_id),
        _ => Ok(()),
    }
}

/// Most rules in a policy, and most policies on a token.
pub const MAX_ACL_ITEMS: usize = 128;

/// Names of elections, candidates and policies stay short: they travel in every event and
/// gossip message. Counted in characters, as JSON Schema's `maxLength` counts them, so the
/// API document states the rule exactly (at most 1 KiB of UTF-8).
pub const MAX_NAME_CHARS: usize = 256;

/// An election's name follows the rules of every name here (for reads, which propose
/// nothing to be checked).
pub fn check_election_name(name: &str) -> Result<(), LimitError> {
    check_name("election name", name)
}

fn check_name(what: &'static str, name: &str) -> Result<(), LimitError> {
    if name.is_empty() {
        return Err(LimitError::EmptyName { what });
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(LimitError::NameTooManyChars {
            what,
            chars,
            limit: MAX_NAME_CHARS,
        });
    }
    Ok(())
}

impl Limits {
    pub fn check_key(&self, key: &str) -> Result<(), LimitError> {
        if key.is_empty() {
            return Err(LimitError::EmptyKey);
        }
        if key.len() > self.max_key_bytes {
            return Err(LimitError::KeyTooLarge {
                size: key.len(),
                limit: self.max_key_bytes,
            });
        }
        Ok(())
    }

    pub fn check_value(&self, value_len: usize) -> Result<(), LimitError> {
        if value_len > self.max_value_bytes {
            return Err(LimitError::ValueTooLarge {
                size: value_len,
                limit: self.max_value_bytes,
            });
        }
        Ok(())
    }

    /// A user key: within the size limit and outside the reserved prefix.
    pub fn check_user_key(&self, key: &str) -> Result<(), LimitError> {
        self.check_key(key)?;
        if key.starts_with(SYSTEM_PREFIX) {
            return Err(LimitError::Reserved);
        }
        Ok(())
    }

    pub fn check(&self, command: &Command) -> Result<(), LimitError> {
        match command {
            Command::Put { key, value, .. } => {
                self.check_user_key(key)?;
                self.check_value(value.len())
            }
            Command::Delete { key, .. } => self.check_user_key(key),
            Command::ConfigPut {
                kind,
                name,
                content,
                ..
            } => {
                check_name("kind", kind)?;
                check_name("document name", name)?;
                self.check_value(content.len())
            }
            Command::ConfigDelete { kind, name, .. } => {
                check_name("kind", kind)?;
                check_name("document name", name)
            }
            // A lease and a handover window share the bounds.
            Command::Campaign {
                election,
                candidate,
                ttl_ms,
            }
            | Command::Handover {
                election,
                target: candidate,
                window_ms: ttl_ms,
                ..
            } => {
                check_name("election name", election)?;
                check_name("candidate id", candidate)?;
                if !(elections::MIN_TTL_MS..=elections::MAX_TTL_MS).contains(ttl_ms) {
                    return Err(LimitError::TtlOutOfRange { ttl_ms: *ttl_ms });
                }
                Ok(())
            }
            Command::Keepalive {
                election,
                candidate,
                ..
            }
            | Command::Resign {
                election,
                candidate,
                ..
            } => {
                check_name("election name", election)?;
                check_name("candidate id", candidate)
            }
            Command::Acl(change) => self.check_acl(change),
            // The naming rules bound a node name (`node_names::check_node_name`).
            Command::NameNode { .. } | Command::ForgetNode { .. } => Ok(()),
            Command::Audited { meta, command } => {
                check_meta(meta)?;
                self.check(command)
            }
            Command::Note { meta, note, ending } => {
                check_meta(meta)?;
                if let crate::audit::Ending::Refused { reason } = ending
                    && reason.len() > MAX_REASON_BYTES
                {
                    return Err(LimitError::NameTooLong {
                        what: "refusal reason",
                        size: reason.len(),
                        limit: MAX_REASON_BYTES,
                    });
                }
                match note {
                    crate::audit::Note::Reap { members } if members.len() > MAX_NOTE_ITEMS => {
                        Err(LimitError::TooMany {
                            what: "members in one note",
                            limit: MAX_NOTE_ITEMS,
                        })
                    }
                    crate::audit::Note::Reap { members } => members
                        .iter()
                        .try_for_each(|m| check_name("member name", m)),
                    crate::audit::Note::Join { rpc_addr, .. }
                    | crate::audit::Note::Add { rpc_addr, .. }
                    | crate::audit::Note::Move { rpc_addr, .. } => {
                        check_name("rpc address", rpc_addr)
                    }
                    _ => Ok(()),
                }
            }
            Command::Clock { .. } | Command::ExpireLeases => Ok(()),
            // Every IPAM field is bounded by `ipam::validate`, the same on every node (not a
            // local limit), which `apply` and the proposer both run.
            Command::Ipam(_) => Ok(()),
        }
    }

    /// Names within the name bound, prefixes within the key bound, and no more rules or
    /// policies than anyone writes by hand.
    fn check_acl(&self, change: &AclCommand) -> Result<(), LimitError> {
        match change {
            AclCommand::Bootstrap(token) | AclCommand::CreateToken(token) => {
                check_name("token accessor", &token.accessor_id)?;
                check_name("token description", &token.description).or_else(|e| match e {
                    LimitError::EmptyName { .. } => Ok(()),
                    other => Err(other),
                })?;
                if token.policies.len() > MAX_ACL_ITEMS {
                    return Err(LimitError::TooMany {
                        what: "policies on one token",
                        limit: MAX_ACL_ITEMS,
                    });
                }
                token
                    .policies
                    .iter()
                    .try_for_each(|p| check_name("policy name", p))
            }
            AclCommand::PutPolicy(policy) => {
                check_name("policy name", &policy.name)?;
                if policy.rules.len() > MAX_ACL_ITEMS {
                    return Err(LimitError::TooMany {
                        what: "rules in one policy",
                        limit: MAX_ACL_ITEMS,
                    });
                }
                for rule in &policy.rules {
                    match &rule.resource {
                        Resource::Kv { prefix } if prefix.len() > self.max_key_bytes => {
                            return Err(LimitError::KeyTooLarge {
                                size: prefix.len(),
                                limit: self.max_key_bytes,
                            });
                        }
                        Resource::Config { kind: Some(kind) } => check_name("kind", kind)?,
                        _ => {}
                    }
                }
                Ok(())
            }
            AclCommand::DeletePolicy { name } => check_name("policy name", name),
            AclCommand::DeleteToken { accessor_id } => check_name("token accessor", accessor_id),
        }
    }
}
