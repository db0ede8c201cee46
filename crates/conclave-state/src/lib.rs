//! conclave's replicated state machine.
//!
//! Why this crate exists: every node of a cluster must reach the same state from the same
//! sequence of committed commands. That only holds if applying a command is a pure function,
//! so this crate does no IO, reads no clock and uses no randomness. Time, when a command needs
//! it, arrives inside the command (stamped by the Raft leader). The storage layer decodes Raft
//! entries and calls [`State::apply`]; nothing else mutates a [`State`].
//!
//! # Layout
//! - [`State`]: the key-value store with one global, monotonically increasing revision, the
//!   configuration [`registry`] and the application [`elections`].
//! - [`Command`] / [`Outcome`]: what a client proposes and what applying it produced.
//! - [`Change`]: what a watcher sees. Every revision is exactly one change, so a gap in the
//!   revisions a watcher receives always means it missed something.
//! - [`Limits`]: size limits checked *before* a command is proposed (never inside `apply`,
//!   so nodes with different local limits still apply the same log identically).
//! - [`snapshot`]: a versioned binary encoding of a whole [`State`].
//! - [`fuzzing`]: what must hold for any input, shared by the fuzz targets and the tests.

pub mod acl;
pub mod audit;
mod command;
pub mod elections;
pub mod fuzzing;
pub mod ipam;
mod limits;
pub mod names;
pub mod node_names;
mod recorded;
pub mod registry;
pub mod snapshot;

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use command::{Batch, Change, Command, ExpectedRevision, Outcome};
pub use elections::{ClusterClock, Election, ElectionEvent, Holder, PlannedHandover, Transition};
pub use limits::{LimitError, Limits, MAX_NAME_CHARS, check_election_name};
pub use names::Refusal;
pub use registry::{ConfigEntry, ConfigVersion};

/// The highest revision a store reaches: from there every command is refused
/// ([`Refusal::RevisionsExhausted`]). Versions and epochs never exceed the revision, and one
/// command adds far fewer than `u64::MAX - MAX_REVISION` revisions, so no counter can wrap;
/// a snapshot beyond it is refused as corrupt.
pub const MAX_REVISION: u64 = 1 << 62;

/// Keys under this prefix belong to conclave (configuration documents, elections). The KV API
/// refuses them, so watchers can tell system changes from application keys.
pub const SYSTEM_PREFIX: &str = "_conclave/";
/// Watch key of a configuration document: `_conclave/config/<kind>/<name>`.
pub fn config_watch_key(kind: &str, name: &str) -> String {
    format!("{SYSTEM_PREFIX}config/{kind}/{name}")
}
/// Watch key of an election: `_conclave/elections/<name>`.
pub fn election_watch_key(name: &str) -> String {
    format!("{SYSTEM_PREFIX}elections/{name}")
}

/// The key map from a snapshot, read as serde's std map (which reserves no more than it has
/// read) and then made persistent.
fn kv_from_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<imbl::OrdMap<String, KeyValue>, D::Error> {
    Ok(BTreeMap::<String, KeyValue>::deserialize(d)?
        .into_iter()
        .collect())
}

/// One stored value and its revision metadata (etcd's model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// Shared with the change feed's copy of the put (`Bytes` clones share one buffer).
    pub value: Bytes,
    /// Store revision of the put that created this key (since it last did not exist).
    pub create_revision: u64,
    /// Store revision of the last put to this key.
    pub mod_revision: u64,
    /// Number of puts since the key was created (1 after creation).
    pub version: u64,
}

/// The replicated state: key-value store, configuration registry, elections.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    revision: u64,
    /// Persistent (`imbl`): a snapshot's copy of the state shares it instead of copying
    /// every key under the read lock (the IPAM maps are the same, for the same reason).
    /// Decoded through a std map: imbl's own decoder reserves whatever length the input
    /// claims (a forged snapshot could ask for any amount of memory).
    #[serde(deserialize_with = "kv_from_map")]
    kv: imbl::OrdMap<String, KeyValue>,
    clock: ClusterClock,
    elections: BTreeMap<String, Election>,
    /// Configuration documents by `kind/name`.
    config: BTreeMap<String, ConfigEntry>,
    /// Tokens and policies (no secrets: salted hashes).
    acl: acl::AclState,
    /// Who changed what (bounded; see [`audit`]).
    audit: audit::AuditLog,
    /// Networks and address allocations.
    ipam: ipam::Ipam,
    /// The readable name of each node.
    node_names: node_names::NodeNames,
    /// Who asks for the command being applied (set by `Audited` and `Note`); not part of
    /// the replicated state.
    #[serde(skip)]
    acting: Option<audit::AuditMeta>,
    /// Changes made since the caller last took them ([`State::take_changes`]); not part of
    /// the replicated state.
    #[serde(skip)]
    changes: Vec<Change>,
}

/// Two states are equal when their replicated parts are; pending changes do not count.
impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.revision == other.revision
            && self.kv == other.kv
            && self.clock == other.clock
            && self.elections == other.elections
            && self.config == other.config
            && self.acl == other.acl
            && self.audit == other.audit
            && self.ipam == other.ipam
            && self.node_names == other.node_names
    }
}

impl Eq for State {}

impl State {
    pub fn new() -> Self {
        Self::default()
    }

    /// A state from a version 1 snapshot (key-value store only).
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
            .range::<_, String>((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v));
        let items: Vec<_> = matching.by_ref().take(limit).collect();
        let more = matching.next().is_some();
        (items, more)
    }

    /// Apply one command. Deterministic: same state + same command = same result, always.
    ///
    /// A command whose key or name breaks the [`names`] rules is refused, never applied
    /// (defence in depth: every entry point checks the same rules before proposing).
    pub fn apply(&mut self, command: &Command) -> Outcome {
        if let Err(refusal) = names::admissible(command, self.clock.term, self.revision) {
            return Outcome::Refused {
                revision: self.revision,
                refusal,
            };
        }
        match command {
            Command::Audited { meta, command } => {
                self.acting = Some(meta.clone());
                let outcome = self.apply_recorded(command, true);
                self.acting = None;
                outcome
            }
            Command::Note { meta, note, ending } => {
                self.acting = Some(meta.clone());
                self.note(note, ending);
                self.acting = None;
                Outcome::Unchanged {
                    revision: self.revision,
                }
            }
            other => self.apply_recorded(other, false),
        }
    }

    /// Apply `command` and add what it changed to the audit log (key-value writes only when
    /// the proposer asked: `audited`).
    fn apply_recorded(&mut self, command: &Command, audited: bool) -> Outcome {
        let outcome = self.apply_one(command);
        if let Some((what, ending)) = audit::what_for(command, &outcome, audited) {
            self.audit(what, ending);
        }
        outcome
    }

    fn apply_one(&mut self, command: &Command) -> Outcome {
        match command {
            // Unwrapped by `apply` (and refused there when nested).
            Command::Audited { .. } | Command::Note { .. } => Outcome::Unchanged {
                revision: self.revision,
            },
            Command::Put {
                key,
                value,
                expected,
            } => {
                if let Some(failed) = self.check_cas(key, *expected) {
                    return failed;
                }
                let value = Bytes::copy_from_slice(value);
                let revision = self.record(key.clone(), Some(value.clone()));
                match self.kv.get_mut(key) {
                    Some(kv) => {
                        kv.value = value;
                        kv.mod_revision = revision;
                        kv.version += 1;
                    }
                    None => {
                        self.kv.insert(
                            key.clone(),
                            KeyValue {
                                value,
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
                let deleted = self.kv.remove(key).is_some();
                if deleted {
                    self.record(key.clone(), None);
                }
                Outcome::Deleted {
                    revision: self.revision,
                    deleted,
                }
            }
            Command::Clock {
                term,
                now_ms,
                wall_ms,
            } => {
                self.stamp_clock(*term, *now_ms, *wall_ms);
                Outcome::Unchanged {
                    revision: self.revision,
                }
            }
            Command::ConfigPut {
                kind,
                name,
                content,
                hash,
                author,
                expected,
            } => self.config_write(kind, name, Some((content, hash)), author, *expected),
            Command::ConfigDelete {
                kind,
                name,
                expected,
                author,
            } => self.config_write(kind, name, None, author, *expected),
            Command::Acl(change) => Outcome::Acl {
                revision: self.revision,
                refusal: self.acl.apply(change).err(),
            },
            Command::Campaign {
                election,
                candidate,
                ttl_ms,
            } => self.campaign(election, candidate, *ttl_ms),
            Command::Keepalive {
                election,
                candidate,
                epoch,
            } => self.keepalive(election, candidate, *epoch),
            Command::Resign {
                election,
                candidate,
                epoch,
            } => self.resign(election, candidate, *epoch),
            Command::ExpireLeases => self.expire_leases(),
            Command::Handover {
                election,
                target,
                from_epoch,
                window_ms,
            } => self.handover(election, target, *from_epoch, *window_ms),
            Command::Ipam(change) => self.apply_ipam(change),
            Command::NameNode {
                node_id,
                name,
                replaces,
            } => Outcome::Named {
                revision: self.revision,
                refusal: self.node_names.set(*node_id, name, *replaces).err(),
            },
            Command::ForgetNode { node_id } => {
                self.node_names.forget(*node_id);
                Outcome::Unchanged {
                    revision: self.revision,
                }
            }
        }
    }

    /// The nodes' readable names.
    pub fn node_names(&self) -> &node_names::NodeNames {
        &self.node_names
    }

    /// Take the changes applied since the last call, in revision order.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// Bump the revision for one change and remember it for watchers.
    fn record(&mut self, key: String, value: Option<Bytes>) -> u64 {
        self.revision += 1;
        self.changes.push(Change {
            revision: self.revision,
            key,
            value,
        });
        self.revision
    }

    /// The cluster clock as of the last stamp applied.
    /// The cluster's tokens and policies.
    pub fn acl(&self) -> &acl::AclState {
        &self.acl
    }

    pub fn clock(&self) -> ClusterClock {
        self.clock
    }

    pub fn election(&self, name: &str) -> Option<&Election> {
        self.elections.get(name)
    }

    pub fn elections(&self) -> impl Iterator<Item = (&str, &Election)> {
        self.elections.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The earliest lease deadline of any held election or leased address, for the
    /// leader's expiry timer.
    pub fn next_lease_deadline(&self) -> Option<u64> {
        self.elections
            .values()
            .filter_map(|e| e.holder.as_ref().map(|h| h.expires_at_ms))
            .chain(self.ipam.next_lease_deadline())
            .min()
    }

    /// A configuration document's retained history (including deletions).
    pub fn config_entry(&self, kind: &str, name: &str) -> Option<&ConfigEntry> {
        self.config.get(&registry::doc_key(kind, name))
    }

    /// Live documents as `(kind, name, newest version)`, in key order; `kind` filters.
    pub fn config_documents<'a>(
        &'a self,
        kind: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a str, &'a str, &'a ConfigVersion)> + 'a {
        self.config.iter().filter_map(move |(key, entry)| {
            let (k, n) = key.split_once('/')?;
            if kind.is_some_and(|want| want != k) {
                return None;
            }
            entry.live().map(|v| (k, n, v))
        })
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

#[cfg(test)]
mod tests;
