//! An agent embedded in a test: pre-bound port-0 listeners, a cancellation token for a stop
//! signal, the real stores on a temporary directory. No process, no port race.

use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::agent::{Listeners, run};
use crate::client::Client;
use crate::config::{self, AgentFlags};

async fn port_zero() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind port 0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_agent_serves_on_port_zero_listeners_and_stops_on_its_token() {
    // What main() does first: reqwest is built without a default TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config::load(None, &AgentFlags::default()).expect("defaults");
    config.data_dir = dir.path().join("data");
    let listeners = Listeners {
        http: port_zero().await,
        rpc: Some(port_zero().await),
    };
    let http = listeners.http.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let agent = tokio::spawn(run(config, listeners, stop.clone()));

    let client = Client::new(&format!("http://{http}")).expect("client");
    let deadline = Instant::now() + Duration::from_secs(20);
    let revision = loop {
        match client.put("embedded/k", b"v1".to_vec(), None).await {
            Ok(r) => break r.revision,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("the embedded agent never took a write: {e}"),
        }
    };
    assert!(revision >= 1);
    let got = client.get("embedded/k", false).await.expect("get");
    assert_eq!(got.value, b"v1");
    // The node advertises the ports the listeners got, not port 0.
    let crate::client::AgentStatus::Raft(status) = client.status().await.expect("status") else {
        panic!("a voter reports a Raft status");
    };
    assert_eq!(status.api_addr, http.to_string());
    assert!(!status.rpc_addr.ends_with(":0"), "{}", status.rpc_addr);

    stop.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(15), agent)
        .await
        .expect("the agent stops within 15 s of its token")
        .expect("the agent task did not panic");
    ended.expect("a clean stop is Ok");
    assert!(
        client.status().await.is_err(),
        "nothing answers after the stop"
    );

    // The data survives: the same directory on new listeners has the key.
    let mut config = config::load(None, &AgentFlags::default()).expect("defaults");
    config.data_dir = dir.path().join("data");
    let listeners = Listeners {
        http: port_zero().await,
        rpc: Some(port_zero().await),
    };
    let http = listeners.http.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let agent = tokio::spawn(run(config, listeners, stop.clone()));
    let client = Client::new(&format!("http://{http}")).expect("client");
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        match client.get("embedded/k", false).await {
            Ok(g) => break g,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("the restarted agent never answered: {e}"),
        }
    };
    assert_eq!(got.value, b"v1");
    assert_eq!(got.revision, revision);
    stop.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(15), agent)
        .await
        .expect("stops")
        .expect("no panic");
    ended.expect("clean stop");
}
