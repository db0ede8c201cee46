//! conclave's replicated state machine.
//!
//! Why this crate exists: every node of a cluster must reach the same state from the same
//! sequence of committed commands. That only holds if applying a command is a pure function,
//! so this crate does no IO, reads no clock and uses no randomness. Time, when a command needs
//! it, arrives inside the command (stamped by the Raft leader). The storage layer decodes Raft
//! entries and calls [`State::apply`]; nothing else mutates a [`State`].
//!
//! # Layout
//! - [`State`]: the key-value store with one global, monotonically increasing revision.
//! - [`Command`] / [`Outcome`]: what a client proposes and what applying it produced.
//! - [`Limits`]: size limits checked *before* a command is proposed (never inside `apply`,
//!   so nodes with different local limits still apply the same log identically).
//! - [`snapshot`]: a versioned binary encoding of a whole [`State`].

pub mod snapshot;

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

/// One stored value and its revision metadata (etcd's model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub value: Vec<u8>,
    /// Store revision of the put that created this key (since it last did not exist).
    pub create_revision: u64,
    /// Store revision of the last put to this key.
    pub mod_revision: u64,
    /// Number of puts since the key was created (1 after creation).
    pub version: u64,
}

/// A compare-and-swap precondition on a key's mod revision.
///
/// `0` means "the key must not exist", as in the HTTP API's `?cas=0`.
pub type ExpectedRevision = u64;

/// A state-changing request, as it is stored in the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Put {
        key: String,
        value: Vec<u8>,
        expected: Option<ExpectedRevision>,
    },
    Delete {
        key: String,
        expected: Option<ExpectedRevision>,
    },
}

/// The payload of one Raft log entry: the commands a proposal batcher grouped so that they
/// share one log append and one fsync. They apply in order, each seeing the previous ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub commands: Vec<Command>,
}

/// What applying one command produced. Every variant carries the store revision after apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A put succeeded; `revision` is the new store revision and the key's mod revision.
    Put { revision: u64 },
    /// A delete ran; `deleted` is false when the key did not exist (revision unchanged then).
    Deleted { revision: u64, deleted: bool },
    /// The CAS precondition failed; nothing changed. `current` is the key's mod revision
    /// (0 when absent), so the caller can retry with it.
    CasFailed { revision: u64, current: u64 },
    /// Raft-internal entries (blank, membership) produce no change.
    Unchanged { revision: u64 },
}

impl Outcome {
    /// The store revision after this outcome.
    pub fn revision(&self) -> u64 {
        match *self {
            Outcome::Put { revision }
            | Outcome::Deleted { revision, .. }
            | Outcome::CasFailed { revision, .. }
            | Outcome::Unchanged { revision } => revision,
        }
    }
}

/// The replicated key-value state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    revision: u64,
    kv: BTreeMap<String, KeyValue>,
}

impl State {
    pub fn new() -> Self {
        Self::default()
    }

    /// The store revision: the number of successful mutations applied so far.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Number of keys currently stored.
    pub fn len(&self) -> usize {
        self.kv.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kv.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&KeyValue> {
        self.kv.get(key)
    }

    /// Keys starting with `prefix`, in key order, strictly after `after` when given,
    /// at most `limit` of them. The boolean tells whether more keys match.
    pub fn list<'a>(
        &'a self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<(&'a str, &'a KeyValue)>, bool) {
        let lower = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_owned()),
            _ => Bound::Included(prefix.to_owned()),
        };
        let mut matching = self
            .kv
            .range::<String, _>((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v));
        let items: Vec<_> = matching.by_ref().take(limit).collect();
        let more = matching.next().is_some();
        (items, more)
    }

    /// Apply one command. Deterministic: same state + same command = same result, always.
    pub fn apply(&mut self, command: &Command) -> Outcome {
        match command {
            Command::Put {
                key,
                value,
                expected,
            } => {
                if let Some(failed) = self.check_cas(key, *expected) {
                    return failed;
                }
                self.revision += 1;
                let revision = self.revision;
                match self.kv.get_mut(key) {
                    Some(kv) => {
                        kv.value.clone_from(value);
                        kv.mod_revision = revision;
                        kv.version += 1;
                    }
                    None => {
                        self.kv.insert(
                            key.clone(),
                            KeyValue {
                                value: value.clone(),
                                create_revision: revision,
                                mod_revision: revision,
                                version: 1,
                            },
                        );
                    }
                }
                Outcome::Put { revision }
            }
            Command::Delete { key, expected } => {
                if let Some(failed) = self.check_cas(key, *expected) {
                    return failed;
                }
                if self.kv.remove(key).is_some() {
                    self.revision += 1;
                    Outcome::Deleted {
                        revision: self.revision,
                        deleted: true,
                    }
                } else {
                    Outcome::Deleted {
                        revision: self.revision,
                        deleted: false,
                    }
                }
            }
        }
    }

    /// Apply every command of a batch in order; one outcome per command.
    pub fn apply_batch(&mut self, batch: &Batch) -> Vec<Outcome> {
        batch.commands.iter().map(|c| self.apply(c)).collect()
    }

    /// The outcome for a failed precondition, or `None` when the command may proceed.
    fn check_cas(&self, key: &str, expected: Option<ExpectedRevision>) -> Option<Outcome> {
        let expected = expected?;
        let current = self.kv.get(key).map_or(0, |kv| kv.mod_revision);
        (current != expected).then_some(Outcome::CasFailed {
            revision: self.revision,
            current,
        })
    }
}

/// Size limits enforced on proposals. Defaults: key ≤ 4 KiB, value ≤ 1 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_key_bytes: 4096,
            max_value_bytes: 1024 * 1024,
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

    pub fn check(&self, command: &Command) -> Result<(), LimitError> {
        match command {
            Command::Put { key, value, .. } => {
                self.check_key(key)?;
                self.check_value(value.len())
            }
            Command::Delete { key, .. } => self.check_key(key),
        }
    }
}

#[cfg(test)]
mod tests;
