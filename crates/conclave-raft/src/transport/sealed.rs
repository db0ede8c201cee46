//! The node channel after the handshake: every frame sealed with ChaCha20-Poly1305 under
//! keys of this session only.
//!
//! Why: the handshake proves that both ends hold the cluster token, but a proof alone does
//! not bind what follows to the two ends that made it. A relay (a stranger that gets one
//! node to dial it, then passes the handshake on to another) would otherwise hold an
//! authenticated connection; and frames in the clear expose every stored value to a capture
//! of the network. Each direction has its own key, derived with HKDF-SHA256 from the token
//! and both handshake nonces, and its own frame counter as the AEAD nonce, so a frame can be
//! neither forged, read, replayed, reordered nor reflected. ring does the cryptography; the
//! construction (HKDF-expanded per-direction keys, counter nonces, the length prefix as
//! associated data) is the standard one for a record layer.

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::MAX_FRAME;

/// Which end of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

/// One direction's key and frame counter.
pub(crate) struct Direction {
    key: LessSafeKey,
    counter: u64,
}

impl Direction {
    fn next_nonce(&mut self) -> std::io::Result<Nonce> {
        let n = self.counter;
        self.counter = n.checked_add(1).ok_or_else(|| {
            std::io::Error::other("the session's frame counter is exhausted; reconnect")
        })?;
        let mut bytes = [0u8; NONCE_LEN];
        bytes[4..].copy_from_slice(&n.to_le_bytes());
        Ok(Nonce::assume_unique_for_key(bytes))
    }
}

/// The two directions of one session, as seen from `side`.
pub(crate) struct Channel {
    pub(crate) send: Direction,
    pub(crate) recv: Direction,
}

fn direction(prk: &hkdf::Prk, label: &[u8], client: &[u8; 32], server: &[u8; 32]) -> Direction {
    let info = [
        b"conclave/node-rpc/session/".as_slice(),
        label,
        client,
        server,
    ];
    let okm = prk
        .expand(&info, &CHACHA20_POLY1305)
        .expect("HKDF can always expand to one ChaCha20-Poly1305 key");
    Direction {
        key: LessSafeKey::new(UnboundKey::from(okm)),
        counter: 0,
    }
}

impl Channel {
    /// The session keys of the handshake with nonces `client` and `server`.
    pub(crate) fn new(prk: &hkdf::Prk, side: Side, client: &[u8; 32], server: &[u8; 32]) -> Self {
        let c2s = direction(prk, b"client-to-server", client, server);
        let s2c = direction(prk, b"server-to-client", client, server);
        match side {
            Side::Client => Channel {
                send: c2s,
                recv: s2c,
            },
            Side::Server => Channel {
                send: s2c,
                recv: c2s,
            },
        }
    }
}

/// The pseudo-random key all session keys of a cluster derive from (its token).
pub(crate) fn cluster_key(token: &[u8]) -> hkdf::Prk {
    hkdf::Salt::new(hkdf::HKDF_SHA256, b"conclave/node-rpc/v5").extract(token)
}

/// Seal `msg` and write it: `len u32 LE ‖ ciphertext ‖ tag`, the length as associated data.
pub(crate) async fn write_sealed<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    send: &mut Direction,
    msg: &impl Serialize,
) -> std::io::Result<()> {
    let mut buf = postcard::to_stdvec(msg).map_err(std::io::Error::other)?;
    if buf.len() > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("frame of {} bytes exceeds {MAX_FRAME}", buf.len()),
        ));
    }
    let len = ((buf.len() + CHACHA20_POLY1305.tag_len()) as u32).to_le_bytes();
    let nonce = send.next_nonce()?;
    send.key
        .seal_in_place_append_tag(nonce, Aad::from(len), &mut buf)
        .map_err(|_| std::io::Error::other("sealing a frame failed"))?;
    w.write_all(&len).await?;
    w.write_all(&buf).await?;
    w.flush().await
}

/// Read one sealed frame and open it; a frame that does not open (forged, replayed,
/// reordered, from another session) ends the connection.
pub(crate) async fn read_opened<R: AsyncReadExt + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
    recv: &mut Direction,
) -> std::io::Result<T> {
    let mut len_bytes = [0u8; 4];
    r.read_exact(&mut len_bytes).await?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    let tag = CHACHA20_POLY1305.tag_len();
    if !(tag..=MAX_FRAME + tag).contains(&len) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a sealed frame of {len} bytes"),
        ));
    }
    let mut buf = super::read_body(r, len).await?;
    let nonce = recv.next_nonce()?;
    let plain = recv
        .key
        .open_in_place(nonce, Aad::from(len_bytes), &mut buf)
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "a frame did not authenticate (forged, replayed or from another session)",
            )
        })?;
    postcard::from_bytes(plain).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(token: &[u8]) -> (Channel, Channel) {
        let prk = cluster_key(token);
        let (c, s) = ([1u8; 32], [2u8; 32]);
        (
            Channel::new(&prk, Side::Client, &c, &s),
            Channel::new(&prk, Side::Server, &c, &s),
        )
    }

    #[tokio::test]
    async fn frames_open_in_order_at_the_other_end_only() {
        let (mut client, mut server) = pair(b"token");
        let mut wire = Vec::new();
        write_sealed(&mut wire, &mut client.send, &"first value")
            .await
            .unwrap();
        write_sealed(&mut wire, &mut client.send, &"second value")
            .await
            .unwrap();
        assert!(
            !wire.windows(5).any(|w| w == b"value"),
            "plaintext on the wire"
        );
        let mut r = wire.as_slice();
        let a: String = read_opened(&mut r, &mut server.recv).await.unwrap();
        let b: String = read_opened(&mut r, &mut server.recv).await.unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("first value", "second value"));
    }

    #[tokio::test]
    async fn a_forged_replayed_reflected_or_foreign_frame_does_not_open() {
        let (mut client, mut server) = pair(b"token");
        let mut one = Vec::new();
        write_sealed(&mut one, &mut client.send, &42u64)
            .await
            .unwrap();
        // Flipped bit.
        let mut forged = one.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        let e = read_opened::<_, u64>(&mut forged.as_slice(), &mut pair(b"token").1.recv)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
        // Replayed: the second copy meets the next counter.
        let mut twice = one.clone();
        twice.extend_from_slice(&one);
        let mut r = twice.as_slice();
        assert_eq!(
            read_opened::<_, u64>(&mut r, &mut server.recv)
                .await
                .unwrap(),
            42
        );
        assert!(
            read_opened::<_, u64>(&mut r, &mut server.recv)
                .await
                .is_err()
        );
        // Reflected back to its sender.
        assert!(
            read_opened::<_, u64>(&mut one.as_slice(), &mut pair(b"token").0.recv)
                .await
                .is_err()
        );
        // Another cluster's token.
        assert!(
            read_opened::<_, u64>(&mut one.as_slice(), &mut pair(b"other").1.recv)
                .await
                .is_err()
        );
    }
}
