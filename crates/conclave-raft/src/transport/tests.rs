use super::*;

fn round_trip<T: Serialize + serde::de::DeserializeOwned + std::fmt::Debug>(v: &T) {
    let bytes = postcard::to_stdvec(v).expect("encode");
    let back: T = postcard::from_bytes(&bytes).expect("decode");
    assert_eq!(format!("{back:?}"), format!("{v:?}"));
}

#[test]
fn handshake_messages_round_trip_with_every_option() {
    let timings = Timings {
        heartbeat_ms: 100,
        election_timeout_min_ms: 1000,
        election_timeout_max_ms: 2000,
    };
    for (cluster_id, timings) in [(None, None), (Some("c".to_string()), Some(timings))] {
        round_trip(&Hello {
            protocol: PROTOCOL_VERSION,
            cluster_id: cluster_id.clone(),
            from: 7,
            timings,
            nonce: [9; 32],
        });
        round_trip(&Verdict::Welcome {
            node_id: 1,
            cluster_id,
        });
    }
    round_trip(&Challenge {
        nonce: [1; 32],
        proof: vec![2; 32],
    });
    round_trip(&Proof { proof: vec![] });
    round_trip(&Verdict::Refused("no".into()));
    round_trip(&Verdict::ItsYou);
}

/// A peer that accepts the connection but never finishes the handshake (a frozen or
/// overloaded process): the request was never sent, so it must not read as "lost".
#[tokio::test]
async fn a_timeout_before_the_request_is_sent_is_unreachable_not_lost() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let hold = tokio::spawn(async move {
        let (_conn, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let timings = Timings {
        heartbeat_ms: 100,
        election_timeout_min_ms: 1000,
        election_timeout_max_ms: 2000,
    };
    let pool = Pool::new(Arc::new(Credentials::new(1, None, None, timings)));
    let err = pool
        .call::<_, Verdict>(
            &addr,
            &Proof { proof: vec![] },
            Duration::from_millis(200),
            false,
        )
        .await
        .unwrap_err();
    assert!(err.not_sent(), "{err}");
    hold.abort();
}

mod arbitrary_input {
    //! Bytes from the network, whatever they are: the decoders and the handshake answer
    //! with an error (or a refusal), never a panic, and never wait for more than they were
    //! given. Property tests with random input (coverage-guided fuzzing needs a nightly
    //! toolchain, which this project does not require).

    use proptest::prelude::*;

    use super::super::sealed;
    use super::*;
    use crate::rpc::{RpcRequest, RpcResponse};

    fn creds(token: Option<&str>) -> Credentials {
        let timings = Timings {
            heartbeat_ms: 100,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
        };
        Credentials::new(1, Some("c".into()), token, timings)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn messages_decode_or_fail(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = postcard::from_bytes::<RpcRequest>(&bytes);
            let _ = postcard::from_bytes::<RpcResponse>(&bytes);
            let _ = postcard::from_bytes::<Hello>(&bytes);
            let _ = postcard::from_bytes::<Verdict>(&bytes);
        }

        #[test]
        fn the_server_handshake_refuses_garbage(
            hello in proptest::collection::vec(any::<u8>(), 0..300),
            proof in proptest::collection::vec(any::<u8>(), 0..300),
            raw in any::<bool>(),
            token in proptest::option::of("[a-z]{1,12}"),
        ) {
            // Either raw bytes, or two well-framed messages of random content (so postcard
            // decodes them, not just the length check).
            let mut bytes = Vec::new();
            for part in [&hello, &proof] {
                if !raw {
                    bytes.extend_from_slice(&(part.len() as u32).to_le_bytes());
                }
                bytes.extend_from_slice(part);
            }
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let creds = creds(token.as_deref());
                let mut r = bytes.as_slice();
                let mut w = Vec::new();
                let accepted = accept(&mut r, &mut w, &creds).await;
                prop_assert!(!matches!(accepted, Ok(Some(_))), "garbage was welcomed");
                Ok(())
            })?;
        }

        #[test]
        fn sealed_frames_from_garbage_do_not_open(
            bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let key = sealed::cluster_key(b"token");
                let mut channel = sealed::Channel::new(&key, sealed::Side::Server, &[1; 32], &[2; 32]);
                let mut r = bytes.as_slice();
                let opened = sealed::read_opened::<_, RpcRequest>(&mut r, &mut channel.recv).await;
                prop_assert!(opened.is_err());
                Ok(())
            })?;
        }
    }
}

/// A relay between a node that dials it and a real member: it passes the whole handshake
/// on, then tries to speak on the session it relayed. The member refuses the first frame
/// the relay writes itself: the session's keys never crossed the relay.
#[tokio::test]
async fn a_relayed_handshake_gives_the_relay_nothing_it_can_use() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    let timings = Timings {
        heartbeat_ms: 100,
        election_timeout_min_ms: 1000,
        election_timeout_max_ms: 2000,
    };
    let member = Arc::new(Credentials::new(
        2,
        Some("c".into()),
        Some("token"),
        timings,
    ));
    let dialer = Credentials::new(1, Some("c".into()), Some("token"), timings);

    // The real member: one handshake, then what it makes of the first frame.
    let member_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let member_addr = member_listener.local_addr().unwrap();
    let (verdict_tx, verdict_rx) = tokio::sync::oneshot::channel();
    let creds = member.clone();
    tokio::spawn(async move {
        let (stream, _) = member_listener.accept().await.unwrap();
        let (r, w) = stream.into_split();
        let (mut r, mut w) = (BufReader::new(r), BufWriter::new(w));
        let accepted = accept(&mut r, &mut w, &creds).await.unwrap();
        let mut peer = accepted.expect("the relayed handshake is welcomed");
        let first =
            sealed::read_opened::<_, crate::rpc::RpcRequest>(&mut r, &mut peer.channel.recv).await;
        let _ = verdict_tx.send(first.map(|_| ()).map_err(|e| e.kind()));
    });

    // The relay: passes bytes both ways until told to stop, then writes its own frame.
    let relay_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay_listener.local_addr().unwrap();
    let (inject_tx, inject_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (from_dialer, _) = relay_listener.accept().await.unwrap();
        let to_member = TcpStream::connect(member_addr).await.unwrap();
        let (mut dr, mut dw) = from_dialer.into_split();
        let (mut mr, mut mw) = to_member.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut mr, &mut dw).await;
        });
        let mut inject = inject_rx;
        let mut buf = vec![0u8; 4096];
        loop {
            tokio::select! {
                _ = &mut inject => break,
                n = tokio::io::AsyncReadExt::read(&mut dr, &mut buf) => match n {
                    Ok(0) | Err(_) => return,
                    Ok(n) => mw.write_all(&buf[..n]).await.unwrap(),
                },
            }
        }
        // Its own request, framed as a node would before sealing existed.
        let bytes = postcard::to_stdvec(&crate::rpc::RpcRequest::Info).unwrap();
        mw.write_all(&(bytes.len() as u32).to_le_bytes())
            .await
            .unwrap();
        mw.write_all(&bytes).await.unwrap();
        mw.flush().await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    });

    let conn = Conn::connect(&relay_addr.to_string(), &dialer).await;
    assert!(conn.is_ok(), "the dialer completed the relayed handshake");
    inject_tx.send(()).unwrap();
    let verdict = tokio::time::timeout(Duration::from_secs(5), verdict_rx)
        .await
        .expect("the member decided")
        .unwrap();
    assert!(
        matches!(verdict, Err(k) if k == io::ErrorKind::PermissionDenied || k == io::ErrorKind::InvalidData),
        "the member took the relay's own frame: {verdict:?}"
    );
}
