//! A stopping agent turns new requests away before it closes its listener.
//!
//! When an HTTP server stops it stops accepting and closes its listener; a client whose
//! connection was already queued, or who sent on a kept-alive connection being closed, sees
//! a reset and cannot know whether its request arrived, so a write's outcome is unknown. So
//! an agent first answers every new request with `503 not_ready` ("this node is stopping",
//! with `Connection: close`) for a short while, which the retry contract repeats on another
//! node, and only then closes the listener and drains what is in flight.

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use conclave_types::ErrorCode;
use tokio_util::sync::CancellationToken;

use crate::ApiError;

/// `router` answering `503 not_ready` to every request once `stopping` is cancelled.
pub fn refuse_while_stopping(router: Router, stopping: CancellationToken, node_id: u64) -> Router {
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let stopping = stopping.clone();
            async move {
                if !stopping.is_cancelled() {
                    return next.run(req).await;
                }
                refusal(node_id)
            }
        },
    ))
}

fn refusal(node_id: u64) -> Response {
    let mut resp = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::NotReady,
        format!("node {node_id} is stopping; nothing was done"),
        "send the request to another node (it is safe to repeat); this one serves again once restarted",
    )
    .into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One HTTP/1.1 GET over a fresh connection; the whole answer as text.
    async fn get_raw(addr: std::net::SocketAddr, path: &str) -> String {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        conn.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn once_stopping_every_request_gets_a_repeatable_refusal() {
        let stopping = CancellationToken::new();
        let app = refuse_while_stopping(
            Router::new().route("/v1/kv/k", get(|| async { "v" })),
            stopping.clone(),
            7,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let served = get_raw(addr, "/v1/kv/k").await;
        assert!(served.starts_with("HTTP/1.1 200"), "{served}");
        assert!(served.ends_with("\r\n\r\nv"), "{served}");

        stopping.cancel();
        let refused = get_raw(addr, "/v1/kv/k").await.to_lowercase();
        assert!(refused.starts_with("http/1.1 503"), "{refused}");
        assert!(refused.contains("connection: close"), "{refused}");
        assert!(refused.contains(r#""code":"not_ready""#), "{refused}");
        assert!(refused.contains("node 7 is stopping"), "{refused}");
    }
}
