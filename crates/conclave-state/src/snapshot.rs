//! Versioned binary encoding of a whole [`State`].
//!
//! A snapshot must stay readable across releases, so the encoding starts with a magic tag and
//! a format version; a decoder refuses anything it does not know instead of guessing.
//! Layout: `b"CNCLSTAT"` ‖ version (u16, little-endian) ‖ postcard(State).
//!
//! Versions: 1 = key-value store only; 2 adds the cluster clock, elections and the
//! configuration registry. Version 1 snapshots decode into a version 2 state with those empty.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::{KeyValue, State};

const MAGIC: &[u8; 8] = b"CNCLSTAT";
/// The snapshot format this build writes. Bump it when `State`'s serialized shape changes,
/// and keep decoding the older versions.
pub const FORMAT_VERSION: u16 = 2;

/// The shape of a version 1 snapshot.
#[derive(Deserialize)]
struct StateV1 {
    revision: u64,
    kv: BTreeMap<String, KeyValue>,
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
            Ok(State::from_v1(v1.revision, v1.kv))
        }
        FORMAT_VERSION => Ok(postcard::from_bytes(body)?),
        found => Err(SnapshotError::UnsupportedVersion {
            found,
            supported: FORMAT_VERSION,
        }),
    }
}
