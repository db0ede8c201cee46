//! Versioned binary encoding of a whole [`State`].
//!
//! A snapshot must stay readable across releases, so the encoding starts with a magic tag and
//! a format version; a decoder refuses anything it does not know instead of guessing.
//! Layout: `b"CNCLSTAT"` ‖ version (u16, little-endian) ‖ postcard(State).

use crate::State;

const MAGIC: &[u8; 8] = b"CNCLSTAT";
/// The snapshot format this build writes. Bump it when `State`'s serialized shape changes,
/// and keep decoding the older versions.
pub const FORMAT_VERSION: u16 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a conclave state snapshot (bad magic bytes)")]
    BadMagic,
    #[error(
        "snapshot format version {found} is not supported (this build reads version {supported})"
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
    if version != FORMAT_VERSION {
        return Err(SnapshotError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(postcard::from_bytes(&bytes[MAGIC.len() + 2..])?)
}
