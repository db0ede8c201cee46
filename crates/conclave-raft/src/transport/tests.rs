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
    for cluster_id in [None, Some("c".to_string())] {
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
