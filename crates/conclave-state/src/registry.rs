//! The configuration registry: typed documents addressed as `kind/name`, with history.
//!
//! Why in the state machine: a document's revision must mean the same thing on every node,
//! so that "node X applied revision R" can be compared with the committed revision. What a
//! document may contain is decided *before* proposing (`conclave-config` validates it); here
//! a document is opaque bytes with a content hash, kept with its last [`MAX_VERSIONS`]
//! versions.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Versions kept per document (the oldest are dropped first). A constant, not a setting:
/// every node must keep the same history.
pub const MAX_VERSIONS: usize = 100;

/// One version of a document; `content: None` records a deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigVersion {
    pub revision: u64,
    /// Hex SHA-256 of the content (empty for a deletion).
    pub hash: String,
    /// Who wrote it, once the API knows identities.
    pub author: Option<String>,
    /// The leader's wall clock when it was written (Unix ms), for display.
    pub wall_ms: u64,
    pub content: Option<Vec<u8>>,
}

/// A document's retained versions, oldest first; never empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEntry {
    pub versions: VecDeque<ConfigVersion>,
}

impl ConfigEntry {
    /// The newest version, if the document exists (was not deleted last).
    pub fn live(&self) -> Option<&ConfigVersion> {
        self.versions.back().filter(|v| v.content.is_some())
    }

    /// The version in force at store revision `revision`: the newest at or before it.
    /// `Err(oldest)` when the history no longer reaches back that far.
    pub fn at(&self, revision: u64) -> Result<Option<&ConfigVersion>, u64> {
        let oldest = self.versions.front().map_or(0, |v| v.revision);
        if revision < oldest {
            return Err(oldest);
        }
        Ok(self
            .versions
            .iter()
            .rev()
            .find(|v| v.revision <= revision)
            .filter(|v| v.content.is_some()))
    }

    /// The mod revision used for compare-and-swap: 0 when the document does not exist.
    pub fn mod_revision(&self) -> u64 {
        self.live().map_or(0, |v| v.revision)
    }

    pub(crate) fn push(&mut self, version: ConfigVersion) {
        self.versions.push_back(version);
        while self.versions.len() > MAX_VERSIONS {
            self.versions.pop_front();
        }
    }
}

/// The registry key of a document.
pub fn doc_key(kind: &str, name: &str) -> String {
    format!("{kind}/{name}")
}

use bytes::Bytes;

use crate::{ExpectedRevision, Outcome, config_watch_key};

/// Writing a document (the state machine's `ConfigPut` and `ConfigDelete`).
impl crate::State {
    pub(crate) fn config_write(
        &mut self,
        kind: &str,
        name: &str,
        content: Option<(&Vec<u8>, &String)>,
        author: &Option<String>,
        expected: Option<ExpectedRevision>,
    ) -> Outcome {
        let key = doc_key(kind, name);
        let current = self.config.get(&key).map_or(0, ConfigEntry::mod_revision);
        if let Some(expected) = expected
            && expected != current
        {
            return Outcome::CasFailed {
                revision: self.revision,
                current,
            };
        }
        if content.is_none() && current == 0 {
            return Outcome::Deleted {
                revision: self.revision,
                deleted: false,
            };
        }
        let revision = self.record(
            config_watch_key(kind, name),
            content.map(|(c, _)| Bytes::copy_from_slice(c)),
        );
        self.config.entry(key).or_default().push(ConfigVersion {
            revision,
            hash: content.map(|(_, h)| h.clone()).unwrap_or_default(),
            author: author.clone(),
            wall_ms: self.clock.wall_ms,
            content: content.map(|(c, _)| c.clone()),
        });
        match content {
            Some(_) => Outcome::Put { revision },
            None => Outcome::Deleted {
                revision,
                deleted: true,
            },
        }
    }
}
