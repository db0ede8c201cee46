//! OpenTelemetry export. With the `otel` feature (`.ci/run` runs this module so built) a
//! request through a client agent reaches a collector as one trace: the caller's
//! `traceparent` is the client agent's parent, the client agent's span the voter's. The
//! collector is an in-test OTLP/HTTP receiver speaking the real protocol (JSON encoding,
//! `POST /v1/traces`); no collector can be installed here. Without the feature, an agent told
//! to export says that it cannot.

use std::time::Duration;

use crate::cluster::{cluster_env, eventually, start_static};
use crate::support::http;

#[cfg(feature = "otel")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_request_is_one_trace_across_the_nodes_it_crosses() {
    use std::sync::{Arc, Mutex};

    use serde_json::Value;

    use crate::support::{Agent, free_addr};

    // The collector: every span of every export request, flattened.
    let spans: Arc<Mutex<Vec<Value>>> = Arc::default();
    let received = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let received = received.clone();
            async move {
                let export: Value = serde_json::from_slice(&body).expect("OTLP JSON");
                let mut all = received.lock().unwrap();
                for rs in export["resourceSpans"].as_array().into_iter().flatten() {
                    let service = attribute(&rs["resource"], "service.name");
                    for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                        for span in ss["spans"].as_array().into_iter().flatten() {
                            let mut span = span.clone();
                            span["service"] = service.clone();
                            all.push(span);
                        }
                    }
                }
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let collector = tokio::spawn(async move { axum::serve(listener, app).await });

    let endpoint: &'static str = Box::leak(endpoint.into_boxed_str());
    let env = cluster_env(&[
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]);
    let root = tempfile::tempdir().unwrap();
    let voters = start_static(root.path(), 1, &[], &env).await;
    let voter = &voters[0].agent;
    let rpc = voter.rpc.to_string();
    let client = Agent::spawn_env(
        &root.path().join("client"),
        free_addr(),
        free_addr(),
        &["--role", "client", "--join", &rpc],
        &env,
    );
    client.wait_healthy(Duration::from_secs(20)).await;
    assert!(
        voter
            .log_text()
            .contains("exporting request traces over OTLP"),
        "{}",
        voter.log_text()
    );

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let r = http()
        .get(client.url("/v1/kv/no-such-key"))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .header("x-request-id", "otel-fwd-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let of_trace = || -> Vec<Value> {
        spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s["traceId"] == trace_id && s["name"] != "request")
            .cloned()
            .collect()
    };
    eventually(
        "both nodes exported their server span",
        Duration::from_secs(15),
        || async { of_trace().len() >= 2 },
    )
    .await;
    let trace = of_trace();
    let at_client = trace
        .iter()
        .find(|s| s["parentSpanId"] == caller_span)
        .unwrap_or_else(|| panic!("no span has the caller's span as parent: {trace:#?}"));
    let at_voter = trace
        .iter()
        .find(|s| s["parentSpanId"] == at_client["spanId"])
        .unwrap_or_else(|| panic!("no span has the client agent's span as parent: {trace:#?}"));
    assert_eq!(at_client["name"], "GET", "forwarded: no route template");
    assert_eq!(at_voter["name"], "GET /v1/kv/{*key}");
    for span in [at_client, at_voter] {
        assert_eq!(span["service"], "conclave");
        assert_eq!(span["kind"], 2, "server span: {span}");
        assert_eq!(attribute(span, "request_id"), "otel-fwd-1", "{span}");
        assert_eq!(
            attribute(span, "http.response.status_code")["intValue"],
            "404",
            "{span:#}"
        );
    }
    collector.abort();
}

/// An attribute's value of an OTLP JSON object (`{"attributes": [{"key", "value"}]}`):
/// the string when it is one, else the value object.
#[cfg(feature = "otel")]
fn attribute(of: &serde_json::Value, key: &str) -> serde_json::Value {
    let Some(found) = of["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["key"] == key)
    else {
        return serde_json::Value::Null;
    };
    match found["value"].get("stringValue") {
        Some(s) => s.clone(),
        None => found["value"].clone(),
    }
}

#[cfg(not(feature = "otel"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_without_the_feature_says_it_exports_nothing() {
    let root = tempfile::tempdir().unwrap();
    let env = cluster_env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")]);
    let voters = start_static(root.path(), 1, &[], &env).await;
    let voter = &voters[0].agent;
    assert_eq!(
        http()
            .get(voter.url("/v1/status"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    eventually(
        "the agent warned that it exports nothing",
        Duration::from_secs(5),
        || async {
            voter
                .log_text()
                .contains("OTEL_EXPORTER_OTLP_ENDPOINT is set, but this conclave was built without the `otel` feature")
        },
    )
    .await;
}
