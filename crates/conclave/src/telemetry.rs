//! OpenTelemetry trace export: every HTTP request as a server span, sent over OTLP/HTTP to
//! the collector the standard variables name (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL` `http/protobuf` or
//! `http/json`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`).
//!
//! Only a build with the `otel` feature exports (`cargo build --release --features otel`):
//! the exporter and its HTTP client are a dependency most operators do not want in the
//! binary. A build without it that finds those variables set says so once at start instead
//! of ignoring them silently.
//!
//! The span joins the caller's trace when the request carries a W3C `traceparent`, and the
//! request is handed on with this span's own `traceparent`, so a client agent that forwards
//! it to a voter makes the voter's span a child of its own: one trace across the nodes a
//! request crosses, like the request id in the logs.

/// The variables that turn the export on, in the order the exporter reads them.
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// The first export-endpoint variable that is set and not empty.
fn endpoint_var() -> Option<&'static str> {
    ENDPOINT_VARS
        .into_iter()
        .find(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// Keeps the exporter running; dropping it sends the spans still buffered.
pub struct Telemetry {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Log, once the logger is installed, what became of the export settings.
    pub fn report(&self) {
        let Some(var) = endpoint_var() else { return };
        #[cfg(feature = "otel")]
        if self.provider.is_some() {
            tracing::info!(from = var, "exporting request traces over OTLP");
            return;
        }
        tracing::warn!(
            "{var} is set, but this conclave was built without the `otel` feature: no traces \
             are exported (build with `cargo build --release --features otel`)"
        );
    }
}

#[cfg(feature = "otel")]
impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Flushes what is buffered; a collector that is down costs at most the timeout.
            let _ = provider.shutdown_with_timeout(std::time::Duration::from_secs(2));
        }
    }
}

#[cfg(not(feature = "otel"))]
/// No export in this build: no layer.
pub fn layer() -> Result<(Option<tracing_subscriber::layer::Identity>, Telemetry), String> {
    Ok((None, Telemetry {}))
}

#[cfg(feature = "otel")]
pub use otlp::{layer, server_span};

#[cfg(feature = "otel")]
mod otlp {
    use axum::extract::{MatchedPath, Request, State};
    use axum::http::{HeaderMap, HeaderName, HeaderValue};
    use axum::middleware::Next;
    use axum::response::Response;
    use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
    use opentelemetry::trace::TracerProvider;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
    use tracing::Instrument;
    use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
    use tracing_subscriber::registry::LookupSpan;

    use super::{Telemetry, endpoint_var};

    /// The tracing layer that turns spans into OpenTelemetry spans, when an endpoint is set.
    /// An endpoint the exporter cannot use is an error at start, not a silent no-export.
    #[allow(clippy::type_complexity)]
    pub fn layer<S>() -> Result<(Option<OpenTelemetryLayer<S, SdkTracer>>, Telemetry), String>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(var) = endpoint_var() else {
            return Ok((None, Telemetry { provider: None }));
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| format!("cannot export traces to the collector {var} names: {e}"))?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("conclave");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("conclave");
        let layer = tracing_opentelemetry::layer().with_tracer(tracer);
        Ok((
            Some(layer),
            Telemetry {
                provider: Some(provider),
            },
        ))
    }

    struct Headers<'a>(&'a HeaderMap);

    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }

        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(HeaderName::as_str).collect()
        }
    }

    struct HeadersMut<'a>(&'a mut HeaderMap);

    impl Injector for HeadersMut<'_> {
        fn set(&mut self, key: &str, value: String) {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(key.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                self.0.insert(name, value);
            }
        }
    }

    /// Middleware: the request's server span (route template, method, status, request id,
    /// this node), child of the caller's `traceparent` when there is one, and the request
    /// handed on carrying this span as its parent.
    pub async fn server_span(State(node_id): State<u64>, mut req: Request, next: Next) -> Response {
        // A template, never the raw path: span names stay few (a client agent's forwarded
        // requests have no route of their own and are named by method alone).
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_owned());
        let method = req.method().as_str().to_owned();
        let propagator = TraceContextPropagator::new();
        let parent = propagator.extract(&Headers(req.headers()));
        let span = tracing::info_span!(
            "http",
            otel.name = route
                .as_ref()
                .map_or_else(|| method.clone(), |r| format!("{method} {r}")),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = method,
            http.route = route,
            http.response.status_code = tracing::field::Empty,
            request_id = tracing::field::Empty,
            conclave.node_id = node_id,
        );
        // An unusable parent leaves the span a root of its own trace.
        let _ = span.set_parent(parent);
        propagator.inject_context(&span.context(), &mut HeadersMut(req.headers_mut()));
        let resp = next.run(req).instrument(span.clone()).await;
        let status = resp.status();
        span.record("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
        if let Some(id) = resp
            .headers()
            .get(conclave_types::audit::HEADER_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
        {
            span.record("request_id", id);
        }
        resp
    }
}
