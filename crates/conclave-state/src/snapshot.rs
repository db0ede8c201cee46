//! Versioned binary encoding of a whole [`State`].
//!
//! A snapshot must stay readable across releases, so the encoding starts with a magic tag and
//! a format version; a decoder refuses anything it does not know instead of guessing.
//! Layout: `b"CNCLSTAT"` ‖ version (u16, little-endian) ‖ postcard(State).
//!
//! Versions: 1 = key-value store only; 2 adds the cluster clock, elections and the
//! configuration registry; 3 adds the ACL state (tokens and policies); 4 adds the audit
//! log; 5 adds IPAM networks and allocations; 6 adds node names. An older snapshot
//! decodes into the current state with the parts it lacks empty.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::elections::Election;
use crate::registry::ConfigEntry;
use crate::{ClusterClock, KeyValue, State};

const MAGIC: &[u8; 8] = b"CNCLSTAT";
/// The snapshot format this build writes. Bump it when `State`'s serialized shape changes,
/// and keep decoding the older versions.
pub const FORMAT_VERSION: u16 = 6;

/// The shape of a version 1 snapshot.
#[derive(Deserialize)]
struct StateV1 {
    revision: u64,
    kv: BTreeMap<String, KeyValue>,
}

/// The shape of a version 2 snapshot.
#[derive(Deserialize)]
struct StateV2 {
    revision: u64,
    kv: BTreeMap<String, KeyValue>,
    clock: ClusterClock,
    elections: BTreeMap<String, Election>,
    config: BTreeMap<String, ConfigEntry>,
}

/// The shape of a version 3 snapshot.
#[derive(Deserialize)]
struct StateV3 {
    revision: u64,
    kv: BTreeMap<String, KeyValue>,
    clock: ClusterClock,
    elections: BTreeMap<String, Election>,
    config: BTreeMap<String, ConfigEntry>,
    acl: crate::acl::AclState,
}

/// The shape of a version 4 snapshot.
#[derive(Deserialize)]
struct StateV4 {
    revision: u64,
    kv: BTreeMap<String, KeyValue>,
    clock: ClusterClock,
    elections: BTreeMap<String, Election>,
    config: BTreeMap<String, ConfigEntry>,
    acl: crate::acl::AclState,
    audit: crate::audit::AuditLog,
}

/// The shape of a version 5 snapshot.
#[derive(Deserialize)]
struct StateV5 {
    revision: u64,
    kv: BTreeMap<String, KeyValue>,
    clock: ClusterClock,
    elections: BTreeMap<String, Election>,
    config: BTreeMap<String, ConfigEntry>,
    acl: crate::acl::AclState,
    audit: crate::audit::AuditLog,
    ipam: crate::ipam::Ipam,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a conclave state snapshot (bad magic bytes)")]
    BadMagic,
    #[error(
        "snapshot format version {found} is not supported (this build reads versions 1 to {supported})"
    )]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("snapshot body is corrupt: {0}")]
    Corrupt(#[from] postcard::Error),
    /// It decodes, but no sequence of commands could have produced it.
    #[error("snapshot is corrupt: {0}")]
    Implausible(String),
}

/// Encode `state` with the current format version.
pub fn encode(state: &State) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + state.len() * 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    // Serializing a BTreeMap of owned strings and byte vectors into a Vec cannot fail.
    postcard::to_extend(state, out).expect("postcard encoding into a Vec is infallible")
}

/// Decode a snapshot written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<State, SnapshotError> {
    if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let version = u16::from_le_bytes([bytes[MAGIC.len()], bytes[MAGIC.len() + 1]]);
    let body = &bytes[MAGIC.len() + 2..];
    match version {
        1 => {
            let v1: StateV1 = postcard::from_bytes(body)?;
            plausible(State {
                revision: v1.revision,
                kv: v1.kv.into_iter().collect(),
                ..State::default()
            })
        }
        2 => {
            let v2: StateV2 = postcard::from_bytes(body)?;
            plausible(State {
                revision: v2.revision,
                kv: v2.kv.into_iter().collect(),
                clock: v2.clock,
                elections: v2.elections,
                config: v2.config,
                ..State::default()
            })
        }
        3 => {
            let v3: StateV3 = postcard::from_bytes(body)?;
            plausible(State {
                revision: v3.revision,
                kv: v3.kv.into_iter().collect(),
                clock: v3.clock,
                elections: v3.elections,
                config: v3.config,
                acl: v3.acl,
                ..State::default()
            })
        }
        4 => {
            let v4: StateV4 = postcard::from_bytes(body)?;
            plausible(State {
                revision: v4.revision,
                kv: v4.kv.into_iter().collect(),
                clock: v4.clock,
                elections: v4.elections,
                config: v4.config,
                acl: v4.acl,
                audit: v4.audit,
                ..State::default()
            })
        }
        5 => {
            let v5: StateV5 = postcard::from_bytes(body)?;
            plausible(State {
                revision: v5.revision,
                kv: v5.kv.into_iter().collect(),
                clock: v5.clock,
                elections: v5.elections,
                config: v5.config,
                acl: v5.acl,
                audit: v5.audit,
                ipam: v5.ipam,
                ..State::default()
            })
        }
        FORMAT_VERSION => plausible(postcard::from_bytes(body)?),
        found => Err(SnapshotError::UnsupportedVersion {
            found,
            supported: FORMAT_VERSION,
        }),
    }
}

/// A decoded state only if applying commands could have produced it: the revision within
/// [`crate::MAX_REVISION`], and no key version, key revision or election epoch beyond it
/// (each of those grows only with the revision). Applying to anything else could wrap a
/// counter.
fn plausible(state: State) -> Result<State, SnapshotError> {
    let revision = state.revision;
    let implausible = |what: String| Err(SnapshotError::Implausible(what));
    if revision > crate::MAX_REVISION {
        return implausible(format!("revision {revision} is beyond any reachable one"));
    }
    for (key, kv) in &state.kv {
        if kv.mod_revision > revision
            || kv.create_revision > kv.mod_revision
            || kv.version > revision
        {
            return implausible(format!(
                "key {key:?} has revisions (create {}, mod {}, version {}) beyond the store's {revision}",
                kv.create_revision, kv.mod_revision, kv.version
            ));
        }
    }
    for (name, election) in &state.elections {
        if election.last_epoch > revision {
            return implausible(format!(
                "election {name:?} has epoch {} beyond the store's revision {revision}",
                election.last_epoch
            ));
        }
    }
    if let Some(what) = state.audit.implausible(revision) {
        return implausible(what);
    }
    if let Some(what) = state.ipam.implausible(revision) {
        return implausible(what);
    }
    Ok(state)
}
