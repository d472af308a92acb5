//! A small OTLP/HTTP trace receiver for tests: it accepts `POST /v1/traces` (protobuf), keeps
//! every span it is sent and the raw request bodies, and lets a test await the spans it expects.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use tokio::sync::watch;

/// One exported span, flattened.
#[derive(Debug, Clone)]
pub struct ExportedSpan {
    /// The `service.name` resource attribute of the exporter.
    pub service: String,
    /// The span name.
    pub name: String,
    /// Trace id, hex.
    pub trace_id: String,
    /// Span id, hex.
    pub span_id: String,
    /// Parent span id, hex, or empty for a root span.
    pub parent_span_id: String,
    /// Attributes, values rendered as strings.
    pub attributes: Vec<(String, String)>,
}

impl ExportedSpan {
    /// The value of attribute `key`.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

#[derive(Default, Clone)]
struct Received {
    spans: Vec<ExportedSpan>,
    bodies: Vec<Vec<u8>>,
}

/// The running receiver.
pub struct OtlpReceiver {
    /// Base URL to give exporters (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub endpoint: String,
    received: watch::Receiver<Received>,
}

impl OtlpReceiver {
    /// Starts listening on a free loopback port.
    pub async fn start() -> Self {
        let (tx, received) = watch::channel(Received::default());
        let app = axum::Router::new().route("/v1/traces", post(accept)).with_state(tx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { endpoint: format!("http://{addr}"), received }
    }

    /// Waits (up to 60 s) until the spans received so far satisfy `done`, and returns them all.
    pub async fn wait_for(
        &mut self,
        what: &str,
        done: impl Fn(&[ExportedSpan]) -> bool,
    ) -> Vec<ExportedSpan> {
        let spans = {
            let waited = tokio::time::timeout(
                std::time::Duration::from_secs(60),
                self.received.wait_for(|r| done(&r.spans)),
            )
            .await;
            match waited {
                Ok(Ok(r)) => Some(r.spans.clone()),
                _ => None,
            }
        };
        spans.unwrap_or_else(|| {
            panic!(
                "timed out waiting for {what}; spans so far: {:#?}",
                self.received.borrow().spans
            )
        })
    }

    /// Every request body received, as sent (protobuf).
    pub fn bodies(&self) -> Vec<Vec<u8>> {
        self.received.borrow().bodies.clone()
    }
}

async fn accept(State(tx): State<watch::Sender<Received>>, body: Bytes) -> axum::http::StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body.as_ref()) else {
        return axum::http::StatusCode::BAD_REQUEST;
    };
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|a| a.key == "service.name")
            .map(|a| render(a.value.as_ref().and_then(|v| v.value.as_ref())))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                spans.push(ExportedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: span
                        .attributes
                        .into_iter()
                        .map(|a| (a.key, render(a.value.as_ref().and_then(|v| v.value.as_ref()))))
                        .collect(),
                });
            }
        }
    }
    tx.send_modify(|r| {
        r.spans.extend(spans);
        r.bodies.push(body.to_vec());
    });
    axum::http::StatusCode::OK
}

fn render(value: Option<&AnyValue>) -> String {
    match value {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
