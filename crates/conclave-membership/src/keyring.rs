//! The gossip keys an agent holds, kept on disk so a restarted agent opens and seals with
//! the keys the cluster rotated to, not the one its cluster token derives.
//!
//! Rotation without downtime is three steps, each applied on every agent before the next
//! (`conclave gossip keys install|use|remove`): install the new key (every agent now opens
//! both), use it (every agent seals with it), remove the old one. The sealer's keyring holds
//! derived keys only; this store keeps the raw ones, to rebuild it and to save it.
//!
//! File: `<data-dir>/gossip-keyring.json`, `{"version": 1, "primary": 0, "keys": [base64...]}`,
//! mode 0600, written to a temporary file, synced and renamed, so a crash leaves the old
//! keyring or the new one. Without the file, the keyring is the key derived from the
//! cluster token (or from nothing: then gossip is sealed but any conclave can open it).

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use conclave_gossip::seal::{Keyring, KeyringError, key_from_secret, key_id, key_id_hex};
use conclave_types::gossip_keys::{GossipKey, KeyOp};
use serde::{Deserialize, Serialize};

const FILE_VERSION: u32 = 1;
/// Most keys a keyring holds (a rotation needs two; a few spare).
pub const MAX_KEYS: usize = 8;

/// Why the keyring cannot be read, changed or saved.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("{0}")]
    Keyring(#[from] KeyringError),
    #[error(
        "a gossip key is 32 bytes in base64 (as `conclave gossip keys generate` prints), or the 8-hex-digit id of one held"
    )]
    BadKey,
    #[error("the keyring holds {MAX_KEYS} keys already; remove one first")]
    Full,
    #[error(
        "the gossip keyring {path} cannot be read: {problem}; fix or remove the file (the agent then uses the key its cluster token derives)"
    )]
    Unreadable { path: PathBuf, problem: String },
    #[error("the gossip keyring {path} cannot be saved: {source}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    primary: usize,
    keys: Vec<String>,
}

/// The raw keys, which one seals, and where they are saved.
pub struct KeyStore {
    keys: Vec<[u8; 32]>,
    primary: usize,
    path: Option<PathBuf>,
}

impl KeyStore {
    /// The saved keyring at `path`, else one key derived from `secret`.
    pub fn open(path: Option<PathBuf>, secret: &[u8]) -> Result<Self, KeyStoreError> {
        if let Some(p) = &path
            && p.exists()
        {
            return Self::read(p);
        }
        Ok(Self {
            keys: vec![key_from_secret(secret)],
            primary: 0,
            path,
        })
    }

    fn read(path: &Path) -> Result<Self, KeyStoreError> {
        let unreadable = |problem: String| KeyStoreError::Unreadable {
            path: path.to_owned(),
            problem,
        };
        let text = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
        let file: File = serde_json::from_slice(&text).map_err(|e| unreadable(e.to_string()))?;
        if file.version != FILE_VERSION {
            return Err(unreadable(format!(
                "format version {} is not this build's ({FILE_VERSION})",
                file.version
            )));
        }
        let keys = file
            .keys
            .iter()
            .map(|k| raw_key(k).ok_or_else(|| unreadable("a key is not 32 bytes of base64".into())))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() || file.primary >= keys.len() {
            return Err(unreadable("no primary key".into()));
        }
        Ok(Self {
            keys,
            primary: file.primary,
            path: Some(path.to_owned()),
        })
    }

    /// The sealer's keyring for these keys.
    pub fn keyring(&self) -> Keyring {
        let mut ring = Keyring::of(&self.keys[self.primary]);
        // Every key here is 32 bytes, so `install` cannot refuse one.
        for k in &self.keys {
            let _ = ring.install(k);
        }
        ring
    }

    /// Every key's id, the primary marked.
    pub fn list(&self) -> Vec<GossipKey> {
        self.keyring()
            .list()
            .into_iter()
            .map(|(id, primary)| GossipKey {
                id: key_id_hex(&id),
                primary,
            })
            .collect()
    }

    /// Apply `op` and save; on an error nothing changed.
    pub fn apply(&mut self, op: &KeyOp) -> Result<(), KeyStoreError> {
        let (keys, primary) = self.applied(op)?;
        let before = (std::mem::replace(&mut self.keys, keys), self.primary);
        self.primary = primary;
        if let Err(e) = self.save() {
            (self.keys, self.primary) = before;
            return Err(e);
        }
        Ok(())
    }

    fn applied(&self, op: &KeyOp) -> Result<(Vec<[u8; 32]>, usize), KeyStoreError> {
        let mut keys = self.keys.clone();
        let mut primary = self.primary;
        match op {
            KeyOp::Install { key } => {
                let raw = raw_key(key.as_str()).ok_or(KeyStoreError::BadKey)?;
                if !keys.contains(&raw) {
                    if keys.len() >= MAX_KEYS {
                        return Err(KeyStoreError::Full);
                    }
                    keys.push(raw);
                }
            }
            KeyOp::Use { key } => primary = self.position(key.as_str())?,
            KeyOp::Remove { key } => {
                let at = self.position(key.as_str())?;
                if at == primary {
                    return Err(KeyringError::RemovePrimary(id_of(&keys[at])).into());
                }
                keys.remove(at);
                if primary > at {
                    primary -= 1;
                }
            }
        }
        Ok((keys, primary))
    }

    /// Where the key named by `key` (base64 or id) is.
    fn position(&self, key: &str) -> Result<usize, KeyStoreError> {
        let id = match raw_key(key) {
            Some(raw) => id_of(&raw),
            None if key.len() == 8 && key.bytes().all(|b| b.is_ascii_hexdigit()) => {
                key.to_ascii_lowercase()
            }
            None => return Err(KeyStoreError::BadKey),
        };
        self.keys
            .iter()
            .position(|k| id_of(k) == id)
            .ok_or(KeyStoreError::Keyring(KeyringError::UnknownKey(id)))
    }

    fn save(&self) -> Result<(), KeyStoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = File {
            version: FILE_VERSION,
            primary: self.primary,
            keys: self.keys.iter().map(|k| B64.encode(k)).collect(),
        };
        let save = |source| KeyStoreError::Save {
            path: path.clone(),
            source,
        };
        let body = serde_json::to_vec_pretty(&file).map_err(|e| save(e.into()))?;
        write_private(path, &body).map_err(save)
    }
}

/// Write `body` to `path` atomically and durably, readable by this user only.
fn write_private(path: &Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&tmp)?;
    f.write_all(body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn raw_key(b64: &str) -> Option<[u8; 32]> {
    B64.decode(b64.trim()).ok()?.try_into().ok()
}

fn id_of(raw: &[u8; 32]) -> String {
    key_id_hex(&key_id(raw))
}

/// A new random key in base64, for `conclave gossip keys generate`.
pub fn generate() -> String {
    let mut raw = [0u8; 32];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw);
    B64.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    fn op_install(k: &str) -> KeyOp {
        KeyOp::Install { key: k.into() }
    }

    #[test]
    fn a_rotation_is_saved_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gossip-keyring.json");
        let mut s = KeyStore::open(Some(path.clone()), b"token").unwrap();
        let old = s.list()[0].id.clone();
        let new = generate();
        s.apply(&op_install(&new)).unwrap();
        s.apply(&KeyOp::Use { key: new.clone() }).unwrap();
        s.apply(&KeyOp::Remove { key: old.clone() }).unwrap();
        let again = KeyStore::open(Some(path.clone()), b"token").unwrap();
        let listed = again.list();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].primary && listed[0].id != old);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!std::fs::read_to_string(&path).unwrap().contains(&old));
    }

    #[test]
    fn bad_keys_and_removing_the_primary_are_refused_and_change_nothing() {
        let mut s = KeyStore::open(None, b"t").unwrap();
        let before = s.list();
        assert!(matches!(
            s.apply(&op_install("not base64!")),
            Err(KeyStoreError::BadKey)
        ));
        assert!(matches!(
            s.apply(&op_install(&B64.encode([1u8; 16]))),
            Err(KeyStoreError::BadKey)
        ));
        let primary = before[0].id.clone();
        let e = s.apply(&KeyOp::Remove { key: primary }).unwrap_err();
        assert!(e.to_string().contains("in use"), "{e}");
        assert!(
            s.apply(&KeyOp::Use {
                key: "deadbeef".into()
            })
            .unwrap_err()
            .to_string()
            .contains("deadbeef")
        );
        for _ in 1..MAX_KEYS {
            s.apply(&op_install(&generate())).unwrap();
        }
        assert!(matches!(
            s.apply(&op_install(&generate())),
            Err(KeyStoreError::Full)
        ));
        assert_eq!(s.list()[0], before[0]);
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gossip-keyring.json");
        std::fs::write(&path, "{").unwrap();
        let e = KeyStore::open(Some(path), b"t").err().unwrap();
        assert!(e.to_string().contains("gossip-keyring.json"), "{e}");
    }
}
