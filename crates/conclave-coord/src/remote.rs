//! The services for a client agent, which holds no Raft log: each call goes to a Raft
//! member of the verified membership ([`crate::VerifiedMembers`], the leader first), through
//! `conclave-client`.
//!
//! A member that refuses the connection never saw the request, so the next one is tried;
//! any other failure is the answer (a timeout may hide an applied write). Every call this
//! layer offers is safe to repeat: campaigns by the same candidate, keepalives and
//! resignations of one epoch, and writes with a compare-and-swap revision.

use std::sync::Arc;

use conclave_client::{Client, ClientError};
use conclave_types::{ErrorBody, WatchEvent};

use crate::{ChangeStream, CoordError};

/// How often a member relaying a watch to a client agent is asked for a heartbeat.
const WATCH_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(2);

/// Where to send: the API URLs (`http://host:port`) of the members to try, in order.
pub type Targets = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// A client agent's services. Cheap to clone.
#[derive(Clone)]
pub struct Remote {
    targets: Targets,
    /// The connection pool and timeout every call shares; rebased per member.
    client: Client,
    /// The heartbeat a relayed watch asks for; three missed end it.
    heartbeat: std::time::Duration,
}

impl Remote {
    pub fn new(targets: Targets, client: Client) -> Self {
        Self {
            targets,
            client,
            heartbeat: WATCH_HEARTBEAT,
        }
    }

    /// Run `call` against the first member that accepts the connection.
    pub(crate) async fn call<T, F, Fut>(&self, call: F) -> Result<T, CoordError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let targets = (self.targets)();
        let mut last = None;
        for target in targets {
            let client = self.client.rebased(&target)?;
            match call(client).await {
                Err(e @ ClientError::NoAgent(_)) => last = Some(e),
                other => return other.map_err(CoordError::Remote),
            }
        }
        Err(match last {
            Some(e) => CoordError::Remote(e),
            None => CoordError::NoMember,
        })
    }

    /// The changes under `prefix` after `after`, from the first member that answers. The
    /// stream ends with an error when the member sends nothing for three heartbeats (it may
    /// be cut off), so the caller reconnects, to another member if need be.
    pub(crate) async fn watch(&self, prefix: &str, after: u64) -> Result<ChangeStream, CoordError> {
        let reader = self
            .call(|c| async move {
                c.watch_with_heartbeat(prefix, Some(after), self.heartbeat)
                    .await
            })
            .await?;
        Ok(Box::pin(futures::stream::unfold(
            Some(reader),
            move |reader| async move {
                let mut reader = reader?;
                match reader.next().await {
                    Ok(Some(event)) if event.event == "error" => {
                        // The member's feed moved past this watcher: list again.
                        let compacted = serde_json::from_str::<ErrorBody>(&event.data)
                            .ok()
                            .and_then(|b| b.error.compacted_revision)
                            .unwrap_or(after);
                        Some((Err(CoordError::Compacted { compacted }), None))
                    }
                    Ok(Some(event)) => match serde_json::from_str::<WatchEvent>(&event.data) {
                        Ok(change) => Some((Ok(change), Some(reader))),
                        // Not a change: say so and end, rather than skip it unseen.
                        Err(e) => {
                            let e = CoordError::Internal(format!(
                                "the member sent a {:?} event that is not a change: {e}",
                                event.event
                            ));
                            Some((Err(e), None))
                        }
                    },
                    Ok(None) => None,
                    Err(e) => Some((Err(CoordError::Remote(e)), None)),
                }
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_types::{ErrorCode, LeaseRequest};
    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A member that answers every request with `status`, `content_type` and `body`, and
    /// counts the requests it got.
    async fn member(
        status: &'static str,
        content_type: &'static str,
        body: String,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = vec![0u8; 8192];
                let _ = socket.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        (url, hits)
    }

    /// An address where nothing listens: the connection is refused.
    fn refused() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        url
    }

    fn remote(targets: Vec<String>) -> Remote {
        // reqwest is built without a TLS provider; the binary installs ring at start.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Remote::new(
            Arc::new(move || targets.clone()),
            Client::new("http://127.0.0.1").unwrap(),
        )
    }

    fn lease() -> LeaseRequest {
        LeaseRequest {
            candidate: "7".into(),
            epoch: 3,
        }
    }

    #[tokio::test]
    async fn no_known_member_is_its_own_error() {
        let e = remote(vec![])
            .call(|c| async move { c.resign("e", &lease()).await })
            .await
            .unwrap_err();
        assert!(matches!(e, CoordError::NoMember), "{e:?}");
        assert_eq!(e.code(), ErrorCode::NotJoined);
    }

    #[tokio::test]
    async fn a_refused_member_is_skipped_and_an_answered_error_is_the_answer() {
        let body = r#"{"error":{"code":"not_holder","message":"7 does not hold epoch 3","hint":"campaign again"}}"#;
        let (first, first_hits) = member("409 Conflict", "application/json", body.into()).await;
        let (second, second_hits) = member("200 OK", "application/json", "{}".into()).await;
        let e = remote(vec![refused(), first, second])
            .call(|c| async move { c.keepalive("e", &lease()).await })
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::NotHolder, "{e:?}");
        // The member that answered was asked once; the one after it never.
        assert_eq!(first_hits.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(second_hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn every_member_refusing_is_reported_as_unreachable() {
        let e = remote(vec![refused(), refused()])
            .call(|c| async move { c.resign("e", &lease()).await })
            .await
            .unwrap_err();
        assert!(
            matches!(e, CoordError::Remote(ClientError::NoAgent(_))),
            "{e:?}"
        );
        assert_eq!(e.code(), ErrorCode::Unavailable);
    }

    #[tokio::test]
    async fn a_watch_delivers_changes_then_ends_with_compacted_when_it_fell_behind() {
        let body = concat!(
            "id: 5\nevent: put\ndata: {\"revision\":5,\"type\":\"put\",\"key\":\"_conclave/config/a/b\",\"value\":\"{}\"}\n\n",
            ": heartbeat\n\n",
            "event: error\ndata: {\"error\":{\"code\":\"compacted\",\"message\":\"fell behind\",\"hint\":\"\",\"compacted_revision\":9}}\n\n",
            "id: 10\nevent: put\ndata: {\"revision\":10,\"type\":\"put\",\"key\":\"k\",\"value\":\"v\"}\n\n",
        );
        let (url, _) = member("200 OK", "text/event-stream", body.into()).await;
        let mut stream = remote(vec![url])
            .watch("_conclave/config/", 4)
            .await
            .unwrap();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(
            (first.revision, first.key.as_str()),
            (5, "_conclave/config/a/b")
        );
        let second = stream.next().await.unwrap().unwrap_err();
        assert!(
            matches!(second, CoordError::Compacted { compacted: 9 }),
            "{second:?}"
        );
        assert!(
            stream.next().await.is_none(),
            "the stream goes on after the error"
        );
    }

    #[tokio::test]
    async fn a_watch_from_a_member_that_goes_silent_ends_after_three_missed_heartbeats() {
        // The member sends one change and then nothing, holding the connection open (as a
        // member behind a partition does).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let n = socket.read(&mut buf).await.unwrap();
            assert!(
                String::from_utf8_lossy(&buf[..n]).contains("heartbeat_ms=100"),
                "the watch asks for heartbeats"
            );
            let event = "id: 5\nevent: put\ndata: {\"revision\":5,\"type\":\"put\",\"key\":\"k\",\"value\":\"v\"}\n\n";
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
            let chunk = format!("{:x}\r\n{event}\r\n", event.len());
            socket.write_all(head.as_bytes()).await.unwrap();
            socket.write_all(chunk.as_bytes()).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            drop(socket);
        });
        let mut r = remote(vec![url]);
        r.heartbeat = std::time::Duration::from_millis(100);
        let mut stream = r.watch("", 4).await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap().revision, 5);
        let started = std::time::Instant::now();
        let end = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
            .await
            .expect("the silent stream ends by itself");
        assert!(
            matches!(end, Some(Err(CoordError::Remote(ClientError::TimedOut(_))))),
            "{end:?}"
        );
        let waited = started.elapsed();
        assert!(
            waited >= std::time::Duration::from_millis(250),
            "ended after {waited:?}, before three heartbeats were missed"
        );
    }
}
