//! An agent embedded in a test: pre-bound port-0 listeners, a cancellation token for a stop
//! signal, the real stores on a temporary directory. No process, no port race.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::agent::{Listeners, run};
use crate::client::{Client, ClientError};
use crate::config::{self, AgentFlags};

async fn port_zero() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind port 0")
}

/// A default agent on `data_dir` with port-0 listeners, running in a task.
struct Embedded {
    http: SocketAddr,
    client: Client,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Embedded {
    async fn start(data_dir: &Path) -> Self {
        let mut config = config::load(None, &AgentFlags::default()).expect("defaults");
        config.data_dir = data_dir.to_path_buf();
        let listeners = Listeners {
            http: port_zero().await,
            rpc: Some(port_zero().await),
        };
        let http = listeners.http.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(config, listeners, stop.clone(), None));
        let client = Client::new(&format!("http://{http}")).expect("client");
        Self {
            http,
            client,
            stop,
            task,
        }
    }

    /// Cancel the token; the agent must return `Ok` within 15 s.
    async fn stop(self) -> Client {
        self.stop.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("the agent stops within 15 s of its token")
            .expect("the agent task did not panic");
        ended.expect("a clean stop is Ok");
        self.client
    }
}

/// `call` until it succeeds, for at most 20 s (the agent is still starting).
async fn until_ok<T, F: Future<Output = Result<T, ClientError>>>(
    what: &str,
    mut call: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match call().await {
            Ok(v) => return v,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_agent_serves_on_port_zero_listeners_and_stops_on_its_token() {
    // What main() does first: reqwest is built without a default TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");

    let agent = Embedded::start(&data).await;
    let client = &agent.client;
    let revision = until_ok("the embedded agent never took a write", || {
        client.put("embedded/k", b"v1".to_vec(), None)
    })
    .await
    .revision;
    assert!(revision >= 1);
    let got = client.get("embedded/k", false).await.expect("get");
    assert_eq!(got.value, b"v1");
    // The node advertises the ports the listeners got, not port 0.
    let crate::client::AgentStatus::Raft(status) = client.status().await.expect("status") else {
        panic!("a voter reports a Raft status");
    };
    assert_eq!(status.api_addr, agent.http.to_string());
    assert!(!status.rpc_addr.ends_with(":0"), "{}", status.rpc_addr);
    let client = agent.stop().await;
    assert!(
        client.status().await.is_err(),
        "nothing answers after the stop"
    );

    // The data survives: the same directory on new listeners has the key.
    let agent = Embedded::start(&data).await;
    let client = &agent.client;
    let got = until_ok("the restarted agent never answered", || {
        client.get("embedded/k", false)
    })
    .await;
    assert_eq!(got.value, b"v1");
    assert_eq!(got.revision, revision);
    agent.stop().await;
}
