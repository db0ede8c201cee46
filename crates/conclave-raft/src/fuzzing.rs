//! What node RPC must do with *any* bytes a peer sends, written once for the fuzz targets in
//! `fuzz/` and for the regression tests that replay what a fuzzer found.
//!
//! Everything here is reachable by a stranger who can open a TCP connection to the RPC
//! port: the handshake runs before anyone is trusted, and a sealed frame is opened before
//! its sender is known to hold the session key. So the promises are: no panic, no
//! unbounded allocation, and no input that a stranger without the token (or without the
//! server's fresh nonce) could send is ever accepted.

use conclave_storage::NodeId;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::rpc::{LeaderReply, LeaderRequest, RpcRequest, RpcResponse};
use crate::transport::sealed::{self, Channel, Side};
use crate::transport::{self, Challenge, Credentials, Hello, Proof, Timings, Verdict};

fn credentials(with_token: bool) -> Credentials {
    let timings = Timings {
        heartbeat_ms: 100,
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
    };
    let token = with_token.then_some("fuzz-cluster-token");
    Credentials::new(1 as NodeId, Some("fuzz-cluster".into()), token, timings)
}

/// Fuzz target `handshake`: the bytes are everything a dialing stranger sends to the server
/// side of the handshake (the first byte picks a cluster with or without a token). It may
/// be refused or cut off, never panic, and never be welcomed: its proof would have to cover
/// a nonce the server drew after the bytes were written.
pub fn handshake_bytes(bytes: &[u8]) {
    let Some((&mode, mut from_peer)) = bytes.split_first() else {
        return;
    };
    let creds = credentials(mode & 1 == 1);
    let mut to_peer = tokio::io::sink();
    let accepted =
        futures::executor::block_on(transport::accept(&mut from_peer, &mut to_peer, &creds));
    assert!(
        !matches!(accepted, Ok(Some(_))),
        "a stranger's bytes passed the handshake"
    );
}

/// Fuzz target `sealed`: the bytes are frames arriving on an established session. None of
/// them may open (the stranger does not hold the session key); and when the bytes decode as
/// a request, that request sealed by one end opens at the other as exactly itself, while a
/// copy with any one byte flipped does not open.
pub fn sealed_bytes(bytes: &[u8]) {
    let (client_nonce, server_nonce) = ([7u8; 32], [9u8; 32]);
    let creds_key = sealed::cluster_key(b"fuzz-cluster-token");
    let mut server = Channel::new(&creds_key, Side::Server, &client_nonce, &server_nonce);
    // The first frame that does not open ends the connection, so only the first one counts.
    let mut reader = bytes;
    if let Ok(req) = futures::executor::block_on(sealed::read_opened::<_, RpcRequest>(
        &mut reader,
        &mut server.recv,
    )) {
        panic!("a forged frame opened: {req:?}");
    }

    let Ok(request) = postcard::from_bytes::<RpcRequest>(bytes) else {
        return;
    };
    let mut client = Channel::new(&creds_key, Side::Client, &client_nonce, &server_nonce);
    let mut server = Channel::new(&creds_key, Side::Server, &client_nonce, &server_nonce);
    let mut wire = Vec::new();
    if futures::executor::block_on(sealed::write_sealed(&mut wire, &mut client.send, &request))
        .is_err()
    {
        return; // larger than a frame may be: refused before sending, as it should be
    }
    let mut flipped = wire.clone();
    let at = bytes.len() % flipped.len();
    flipped[at] ^= 0x01;
    let mut reader = wire.as_slice();
    let back: RpcRequest =
        futures::executor::block_on(sealed::read_opened(&mut reader, &mut server.recv))
            .unwrap_or_else(|e| panic!("a sealed frame did not open at the other end: {e}"));
    assert_eq!(
        encode(&back),
        encode(&request),
        "a sealed frame opened as another"
    );
    let mut server = Channel::new(&creds_key, Side::Server, &client_nonce, &server_nonce);
    let mut reader = flipped.as_slice();
    let tampered = futures::executor::block_on(sealed::read_opened::<_, RpcRequest>(
        &mut reader,
        &mut server.recv,
    ));
    assert!(tampered.is_err(), "a frame with byte {at} flipped opened");
}

/// Fuzz target `messages`: the bytes as every message type of node RPC (handshake and
/// sealed). A decoder refuses or decodes; what it decodes encodes to bytes that decode to
/// the same message (the wire format has one encoding per message).
pub fn messages_bytes(bytes: &[u8]) {
    round_trip::<RpcRequest>(bytes);
    round_trip::<RpcResponse>(bytes);
    round_trip::<LeaderRequest>(bytes);
    round_trip::<LeaderReply>(bytes);
    round_trip::<Hello>(bytes);
    round_trip::<Challenge>(bytes);
    round_trip::<Proof>(bytes);
    round_trip::<Verdict>(bytes);
}

fn encode(msg: &impl Serialize) -> Vec<u8> {
    postcard::to_stdvec(msg).unwrap_or_else(|e| panic!("a decoded message does not encode: {e}"))
}

fn round_trip<T: Serialize + DeserializeOwned + std::fmt::Debug>(bytes: &[u8]) {
    let Ok(msg) = postcard::from_bytes::<T>(bytes) else {
        return;
    };
    let once = encode(&msg);
    let again: T = postcard::from_bytes(&once)
        .unwrap_or_else(|e| panic!("{msg:?} encodes to bytes that do not decode: {e}"));
    assert_eq!(encode(&again), once, "{msg:?} does not round-trip");
}
