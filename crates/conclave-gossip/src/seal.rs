//! Sealed datagrams: every gossip datagram is encrypted and authenticated with
//! ChaCha20-Poly1305 (ring) under a key of the cluster's keyring, and replays are refused.
//!
//! Layout: `version (1) ‖ key id (4) ‖ sender (8) ‖ epoch (8) ‖ counter (8) ‖ sent ms (8) ‖
//! ciphertext ‖ tag (16)`; the 37 header bytes are the associated data. Each sender seals
//! under its own subkey, HKDF-SHA256(key; sender ‖ epoch), with the counter as the nonce:
//! many senders share a cluster key, and a per-sender subkey is what makes a
//! counter nonce unique without coordination (the epoch is random per process start).
//!
//! Replays: per sender, the highest counter and a 64-datagram window in its current epoch.
//! A new epoch (the sender restarted) is taken only from a datagram sent later than the
//! last one accepted from that sender, and any datagram sent more than
//! [`MAX_SKEW_MS`] from the receiver's clock is refused, so an old datagram cannot be
//! replayed to a node that forgot its sender.

use std::collections::HashMap;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;

/// The layout version this build writes and reads.
pub const VERSION: u8 = 1;
/// Bytes a datagram carries besides its payload.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// A datagram sent further than this from the receiver's clock is refused.
pub const MAX_SKEW_MS: u64 = 120_000;

const HEADER_LEN: usize = 1 + 4 + 8 + 8 + 8 + 8;
const TAG_LEN: usize = 16;
const WINDOW: u64 = 64;
/// Senders whose replay state is kept; the least recently heard is forgotten beyond it.
const MAX_SENDERS: usize = 16_384;

/// The id of a key: the first 4 bytes of SHA-256 over it (names it without revealing it).
pub type KeyId = [u8; 4];

/// Why a keyring change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error("a gossip key must be 32 bytes, got {0}")]
    BadLength(usize),
    #[error("no key {0} in the keyring")]
    UnknownKey(String),
    #[error("key {0} is the one in use; make another the primary first")]
    RemovePrimary(String),
}

/// Why a datagram was not opened. Every case is counted by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("shorter than a sealed datagram")]
    TooShort,
    #[error("layout version {0} is not this build's")]
    UnknownVersion(u8),
    #[error("sealed under a key this node does not hold")]
    UnknownKey,
    #[error("does not authenticate (forged, damaged, or another cluster's)")]
    Forged,
    #[error("a replay of a datagram already taken")]
    Replayed,
    #[error("sent {0} ms away from this node's clock")]
    Skewed(u64),
}

/// One key of the keyring.
#[derive(Clone)]
struct Key {
    id: KeyId,
    prk: hkdf::Prk,
}

/// Hex of a key id, as operators see it.
pub fn key_id_hex(id: &KeyId) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The id of the key `raw`.
pub fn key_id(raw: &[u8]) -> KeyId {
    let digest = ring::digest::digest(&ring::digest::SHA256, raw);
    let mut id = [0u8; 4];
    id.copy_from_slice(&digest.as_ref()[..4]);
    id
}

/// A 32-byte gossip key from the cluster secret (so a cluster with a secret is sealed from
/// its first datagram, with no key to distribute).
pub fn key_from_secret(secret: &[u8]) -> [u8; 32] {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"conclave gossip key v1");
    let prk = salt.extract(secret);
    let mut out = [0u8; 32];
    // 32 bytes is within HKDF-SHA256's output bound, so `expand` and `fill` cannot fail.
    if let Ok(okm) = prk.expand(&[b"gossip"], OutLen(32)) {
        let _ = okm.fill(&mut out);
    }
    out
}

struct OutLen(usize);

impl hkdf::KeyType for OutLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// The keys a node opens datagrams with, and the primary one it seals with. Rotation: install
/// the new key everywhere, make it the primary everywhere, then remove the old one.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<Key>,
    primary: usize,
}

impl Keyring {
    /// A keyring holding `primary` only.
    pub fn new(primary: &[u8]) -> Result<Self, KeyringError> {
        Ok(Self {
            keys: vec![Self::key(primary)?],
            primary: 0,
        })
    }

    /// A keyring holding `primary` only (infallible: the length is the type's).
    pub fn of(primary: &[u8; 32]) -> Self {
        Self {
            keys: vec![Self::key_of(primary)],
            primary: 0,
        }
    }

    fn key(raw: &[u8]) -> Result<Key, KeyringError> {
        let raw: &[u8; 32] = raw
            .try_into()
            .map_err(|_| KeyringError::BadLength(raw.len()))?;
        Ok(Self::key_of(raw))
    }

    fn key_of(raw: &[u8; 32]) -> Key {
        Key {
            id: key_id(raw),
            prk: hkdf::Salt::new(hkdf::HKDF_SHA256, b"conclave gossip sender").extract(raw),
        }
    }

    /// Add a key to open datagrams with (installing one twice changes nothing).
    pub fn install(&mut self, raw: &[u8]) -> Result<KeyId, KeyringError> {
        let key = Self::key(raw)?;
        let id = key.id;
        if !self.keys.iter().any(|k| k.id == id) {
            self.keys.push(key);
        }
        Ok(id)
    }

    /// Seal with key `id` from now on.
    pub fn use_key(&mut self, id: &KeyId) -> Result<(), KeyringError> {
        self.primary = self.position(id)?;
        Ok(())
    }

    /// Stop opening datagrams sealed with `id` (never the primary).
    pub fn remove(&mut self, id: &KeyId) -> Result<(), KeyringError> {
        let at = self.position(id)?;
        if at == self.primary {
            return Err(KeyringError::RemovePrimary(key_id_hex(id)));
        }
        self.keys.remove(at);
        if self.primary > at {
            self.primary -= 1;
        }
        Ok(())
    }

    /// Every key id, and whether it is the primary.
    pub fn list(&self) -> Vec<(KeyId, bool)> {
        self.keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.id, i == self.primary))
            .collect()
    }

    fn position(&self, id: &KeyId) -> Result<usize, KeyringError> {
        self.keys
            .iter()
            .position(|k| &k.id == id)
            .ok_or_else(|| KeyringError::UnknownKey(key_id_hex(id)))
    }

    fn find(&self, id: &KeyId) -> Option<&Key> {
        self.keys.iter().find(|k| &k.id == id)
    }

    fn primary(&self) -> &Key {
        &self.keys[self.primary]
    }
}

/// The subkey `sender` seals with in `epoch`.
fn subkey(key: &Key, sender: u64, epoch: u64) -> Option<LessSafeKey> {
    let sender = sender.to_le_bytes();
    let epoch = epoch.to_le_bytes();
    let info = [&sender[..], &epoch[..]];
    let okm = key.prk.expand(&info, &CHACHA20_POLY1305).ok()?;
    Some(LessSafeKey::new(UnboundKey::from(okm)))
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

/// Seals this node's datagrams.
pub struct Sealer {
    sender: u64,
    epoch: u64,
    counter: u64,
    /// The primary key's id and this node's subkey under it.
    current: Option<(KeyId, LessSafeKey)>,
}

impl Sealer {
    /// `epoch`: random per process start (a restart must never reuse a counter).
    pub fn new(sender: u64, epoch: u64) -> Self {
        Self {
            sender,
            epoch,
            counter: 0,
            current: None,
        }
    }

    /// `payload` sealed under the keyring's primary key, sent at `now_ms`.
    pub fn seal(&mut self, keyring: &Keyring, now_ms: u64, payload: &[u8]) -> Vec<u8> {
        let key = keyring.primary();
        if self.current.as_ref().is_none_or(|(id, _)| *id != key.id) {
            self.current = subkey(key, self.sender, self.epoch).map(|k| (key.id, k));
        }
        self.counter += 1;
        let mut out = Vec::with_capacity(payload.len() + OVERHEAD);
        out.push(VERSION);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&self.sender.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.counter.to_le_bytes());
        out.extend_from_slice(&now_ms.to_le_bytes());
        out.extend_from_slice(payload);
        if let Some((_, k)) = &self.current {
            let (header, body) = out.split_at_mut(HEADER_LEN);
            if let Ok(tag) =
                k.seal_in_place_separate_tag(nonce(self.counter), Aad::from(&*header), body)
            {
                out.extend_from_slice(tag.as_ref());
                return out;
            }
        }
        // Deriving a subkey or sealing cannot fail for these sizes; if it ever did, send
        // nothing that opens rather than anything in the clear.
        out.truncate(HEADER_LEN);
        out
    }
}

/// What this node knows of one sender, to refuse replays.
struct SenderState {
    epoch: u64,
    highest: u64,
    /// Bit `i`: counter `highest - i` was taken.
    seen: u64,
    last_sent_ms: u64,
    /// The subkey for (key, epoch), derived once.
    key: Option<(KeyId, LessSafeKey)>,
    last_heard: u64,
}

impl SenderState {
    /// A sender first heard in `epoch`.
    fn new(epoch: u64, heard: u64) -> Self {
        Self {
            epoch,
            highest: 0,
            seen: 0,
            last_sent_ms: 0,
            key: None,
            last_heard: heard,
        }
    }
}

/// Opens datagrams and remembers what each sender sent.
#[derive(Default)]
pub struct Opener {
    senders: HashMap<u64, SenderState>,
    heard: u64,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

impl Opener {
    /// The sender and payload of `datagram`, received at `now_ms`.
    pub fn open(
        &mut self,
        keyring: &Keyring,
        now_ms: u64,
        datagram: &[u8],
    ) -> Result<(u64, Vec<u8>), OpenError> {
        if datagram.len() < OVERHEAD {
            return Err(OpenError::TooShort);
        }
        if datagram[0] != VERSION {
            return Err(OpenError::UnknownVersion(datagram[0]));
        }
        let mut id = [0u8; 4];
        id.copy_from_slice(&datagram[1..5]);
        let key = keyring.find(&id).ok_or(OpenError::UnknownKey)?;
        let sender = u64_at(datagram, 5);
        let epoch = u64_at(datagram, 13);
        let counter = u64_at(datagram, 21);
        let sent_ms = u64_at(datagram, 29);
        let skew = now_ms.abs_diff(sent_ms);
        if skew > MAX_SKEW_MS {
            return Err(OpenError::Skewed(skew));
        }
        let known = self.senders.get(&sender);
        if let Some(s) = known {
            if s.epoch == epoch {
                if counter + WINDOW <= s.highest
                    || (counter <= s.highest && s.seen & (1 << (s.highest - counter)) != 0)
                {
                    return Err(OpenError::Replayed);
                }
            } else if sent_ms <= s.last_sent_ms {
                return Err(OpenError::Replayed);
            }
        }
        let cached = known
            .filter(|s| s.epoch == epoch)
            .and_then(|s| s.key.as_ref())
            .filter(|(kid, _)| *kid == id)
            .map(|(_, k)| k);
        let fresh = match cached {
            Some(_) => None,
            None => Some(subkey(key, sender, epoch).ok_or(OpenError::Forged)?),
        };
        let subkey = cached.or(fresh.as_ref()).ok_or(OpenError::Forged)?;
        let (header, sealed) = datagram.split_at(HEADER_LEN);
        let mut body = sealed.to_vec();
        let plain_len = subkey
            .open_in_place(nonce(counter), Aad::from(header), &mut body)
            .map_err(|_| OpenError::Forged)?
            .len();
        body.truncate(plain_len);
        // Authentic: remember it.
        self.heard += 1;
        let heard = self.heard;
        let state = self
            .senders
            .entry(sender)
            .or_insert_with(|| SenderState::new(epoch, heard));
        if state.epoch != epoch {
            *state = SenderState::new(epoch, heard);
        }
        if let Some(k) = fresh {
            state.key = Some((id, k));
        }
        if counter > state.highest {
            let shift = counter - state.highest;
            state.seen = if shift >= WINDOW {
                0
            } else {
                state.seen << shift
            };
            state.seen |= 1;
            state.highest = counter;
        } else {
            state.seen |= 1 << (state.highest - counter);
        }
        state.last_sent_ms = state.last_sent_ms.max(sent_ms);
        state.last_heard = heard;
        if self.senders.len() > MAX_SENDERS {
            self.forget_oldest();
        }
        Ok((sender, body))
    }

    fn forget_oldest(&mut self) {
        if let Some(oldest) = self
            .senders
            .iter()
            .min_by_key(|(_, s)| s.last_heard)
            .map(|(id, _)| *id)
        {
            self.senders.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(byte: u8) -> Keyring {
        Keyring::new(&[byte; 32]).unwrap()
    }

    #[test]
    fn a_sealed_datagram_opens_once_and_only_with_the_key() {
        let keys = ring(1);
        let mut a = Sealer::new(7, 99);
        let mut b = Opener::default();
        let d = a.seal(&keys, 1_000, b"hello");
        assert_eq!(d.len(), 5 + OVERHEAD);
        assert!(!d.windows(5).any(|w| w == b"hello"), "encrypted");
        assert_eq!(b.open(&keys, 1_000, &d), Ok((7, b"hello".to_vec())));
        assert_eq!(b.open(&keys, 1_000, &d), Err(OpenError::Replayed));
        assert_eq!(
            Opener::default().open(&ring(2), 1_000, &d),
            Err(OpenError::UnknownKey)
        );
        let mut forged = a.seal(&keys, 1_000, b"hello");
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(b.open(&keys, 1_000, &forged), Err(OpenError::Forged));
        // The sender id is authenticated too.
        let mut other = a.seal(&keys, 1_000, b"x");
        other[5] ^= 1;
        assert_eq!(b.open(&keys, 1_000, &other), Err(OpenError::Forged));
        assert_eq!(b.open(&keys, 1_000, &d[..10]), Err(OpenError::TooShort));
    }

    #[test]
    fn out_of_order_datagrams_within_the_window_open_and_old_ones_do_not() {
        let keys = ring(1);
        let mut a = Sealer::new(7, 1);
        let sent: Vec<Vec<u8>> = (0..100).map(|_| a.seal(&keys, 5, b"m")).collect();
        let mut b = Opener::default();
        assert!(b.open(&keys, 5, &sent[90]).is_ok());
        assert!(b.open(&keys, 5, &sent[60]).is_ok(), "within the window");
        assert_eq!(b.open(&keys, 5, &sent[60]), Err(OpenError::Replayed));
        assert_eq!(
            b.open(&keys, 5, &sent[10]),
            Err(OpenError::Replayed),
            "too old"
        );
        assert!(b.open(&keys, 5, &sent[99]).is_ok());
    }

    #[test]
    fn a_restarted_sender_is_heard_and_its_old_datagrams_are_not() {
        let keys = ring(1);
        let mut before = Sealer::new(7, 1);
        let old = before.seal(&keys, 1_000, b"old");
        let mut b = Opener::default();
        assert!(b.open(&keys, 1_000, &old).is_ok());
        let mut after = Sealer::new(7, 2);
        assert!(
            b.open(&keys, 2_000, &after.seal(&keys, 2_000, b"new"))
                .is_ok()
        );
        let mut replay = before.seal(&keys, 1_500, b"old");
        assert_eq!(b.open(&keys, 2_000, &replay), Err(OpenError::Replayed));
        replay = before.seal(&keys, 1_000, b"x");
        assert_eq!(
            b.open(&keys, 1_000 + MAX_SKEW_MS + 1, &replay),
            Err(OpenError::Skewed(MAX_SKEW_MS + 1))
        );
    }

    #[test]
    fn keys_rotate_without_a_gap() {
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        let mut old_node = Keyring::new(&k1).unwrap();
        let mut new_node = Keyring::new(&k1).unwrap();
        // 1. install everywhere: both still seal with k1 and open both.
        let id2 = old_node.install(&k2).unwrap();
        new_node.install(&k2).unwrap();
        // 2. one node moves to k2 first: the other opens it.
        new_node.use_key(&id2).unwrap();
        let mut s = Sealer::new(1, 1);
        let d = s.seal(&new_node, 0, b"x");
        assert!(Opener::default().open(&old_node, 0, &d).is_ok());
        // 3. the old key goes; the primary cannot.
        let id1 = key_id(&k1);
        assert!(matches!(
            new_node.remove(&id2),
            Err(KeyringError::RemovePrimary(_))
        ));
        new_node.remove(&id1).unwrap();
        assert_eq!(new_node.list(), vec![(id2, true)]);
        assert_eq!(
            Keyring::new(&[0; 5]).err(),
            Some(KeyringError::BadLength(5))
        );
        assert_ne!(key_from_secret(b"a"), key_from_secret(b"b"));
    }
}
