//! Logging and tracing.
//!
//! Logs are JSON lines on stderr, filtered by the service's `log.filter` option. Stderr keeps
//! stdout free for the CLIs' own output (tables, `--output json`), so one rule serves both the
//! servers and the operator commands.
//!
//! Traces are OpenTelemetry spans made from `tracing` spans, exported over OTLP/HTTP (protobuf)
//! when `telemetry.otlp_endpoint` or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and off
//! otherwise. The W3C `traceparent` header carries the context from the api to the vault.

use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde::Deserialize;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The `[log]` section of either service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter directive, such as `info` or `info,strongbox_api=debug`.
    #[serde(default = "default_filter")]
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { filter: default_filter() }
    }
}

fn default_filter() -> String {
    "info".to_owned()
}

impl LogConfig {
    /// Parses the filter, naming the option when it is malformed.
    pub fn env_filter(&self) -> Result<EnvFilter, crate::config::ConfigError> {
        EnvFilter::try_new(&self.filter).map_err(|e| crate::config::ConfigError::Option {
            option: "log.filter",
            reason: e.to_string(),
        })
    }
}

/// The `[telemetry]` section of either service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP collector base URL, such as `http://otel-collector:4318`; spans go to
    /// `<url>/v1/traces`. Unset: `OTEL_EXPORTER_OTLP_ENDPOINT` is used when set, else tracing
    /// is off.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// Share of new traces recorded, 0.0-1.0. A request whose caller sent a sampled
    /// `traceparent` is always recorded, so traces across services stay whole.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { otlp_endpoint: None, sample_ratio: default_sample_ratio() }
    }
}

fn default_sample_ratio() -> f64 {
    1.0
}

impl TelemetryConfig {
    /// Where spans go, if anywhere: the option, else the standard environment variable.
    fn traces_url(&self) -> Option<String> {
        let base = self
            .otlp_endpoint
            .clone()
            .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
            .filter(|u| !u.trim().is_empty())?;
        Some(format!("{}/v1/traces", base.trim_end_matches('/')))
    }
}

/// Keeps the trace exporter alive; [`Tracing::shutdown`] flushes what is buffered.
#[derive(Default)]
pub struct Tracing {
    provider: Option<SdkTracerProvider>,
}

impl Tracing {
    /// Flushes buffered spans and stops the exporter. Blocks, so it runs off the async workers.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let flushed = tokio::task::spawn_blocking(move || {
                provider.shutdown_with_timeout(Duration::from_secs(5))
            })
            .await;
            if !matches!(flushed, Ok(Ok(()))) {
                tracing::warn!("some trace spans could not be exported at shutdown");
            }
        }
    }
}

/// Installs the global JSON subscriber. Later calls (several services in one test process) keep
/// the first subscriber and return `Ok`.
pub fn init(config: &LogConfig) -> Result<(), crate::config::ConfigError> {
    let filter = config.env_filter()?;
    let _already_installed =
        tracing_subscriber::registry().with(json_logs()).with(filter).try_init();
    Ok(())
}

/// Like [`init`], and also exports spans as `service` when an OTLP endpoint is configured.
/// Call it from within the Tokio runtime: the exporter sends through it.
pub fn init_with_traces(
    config: &LogConfig,
    telemetry: &TelemetryConfig,
    service: &'static str,
) -> Result<Tracing, crate::config::ConfigError> {
    let filter = config.env_filter()?;
    if !(0.0..=1.0).contains(&telemetry.sample_ratio) {
        return Err(crate::config::ConfigError::Option {
            option: "telemetry.sample_ratio",
            reason: "must be between 0.0 and 1.0".to_owned(),
        });
    }
    let Some(url) = telemetry.traces_url() else {
        init(config)?;
        return Ok(Tracing::default());
    };
    let invalid = |reason: String| crate::config::ConfigError::Option {
        option: "telemetry.otlp_endpoint",
        reason,
    };
    let client = RuntimeHttpClient {
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| invalid(e.to_string()))?,
        runtime: tokio::runtime::Handle::try_current().map_err(|e| invalid(e.to_string()))?,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url)
        .build()
        .map_err(|e| invalid(e.to_string()))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            telemetry.sample_ratio,
        ))))
        .with_resource(opentelemetry_sdk::Resource::builder().with_service_name(service).build())
        .build();
    // `log.filter` governs the log lines only: quieter logs must not switch tracing off. Spans
    // and events of our own crates at INFO and above become spans and span events.
    let traced = tracing_subscriber::filter::Targets::new()
        .with_target("strongbox_api", tracing::Level::INFO)
        .with_target("strongbox_vault", tracing::Level::INFO)
        .with_target("strongbox_shared", tracing::Level::INFO);
    let layer =
        tracing_opentelemetry::layer().with_tracer(provider.tracer(service)).with_filter(traced);
    let installed =
        tracing_subscriber::registry().with(json_logs().with_filter(filter)).with(layer).try_init();
    // A subscriber installed earlier in this process (tests) wins; its spans are not exported.
    Ok(Tracing { provider: installed.is_ok().then_some(provider) })
}

fn json_logs<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stderr)
}

/// Sends the exporter's requests on the service's Tokio runtime: the batch exporter runs on its
/// own thread, where an async client has no reactor.
#[derive(Debug)]
struct RuntimeHttpClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for RuntimeHttpClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let http = self.http.clone();
        let sent = self.runtime.spawn(async move {
            let request = reqwest::Request::try_from(request)?;
            let response = http.execute(request).await?;
            let mut answer = http::Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                headers.extend(response.headers().clone());
            }
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>(answer.body(body))
        });
        Ok(sent.await???)
    }
}

/// Makes `span` a child of the caller's span named by a valid W3C `traceparent` in `headers`.
/// Call it before the span is first entered. Without an exporter it does nothing.
pub fn set_remote_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    let context =
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    if context.span().span_context().is_valid() {
        let _no_layer_or_started = span.set_parent(context);
    }
}

/// The W3C `traceparent` naming `span`, when spans are being exported.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// The trace id of a valid W3C `traceparent` in `headers` (`00-<32 hex>-<16 hex>-<2 hex>`,
/// lower case, not all zeros): for log lines to join up when spans are not exported.
pub fn incoming_trace_id(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = value.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    (version == "00" && hex(trace, 32) && hex(span, 16) && hex(flags, 2) && trace != "0".repeat(32))
        .then(|| trace.to_owned())
}

/// The trace id of `span`, when spans are being exported.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_header(value: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", http::HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn a_valid_incoming_traceparent_is_joined_and_an_invalid_one_ignored() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            incoming_trace_id(&with_header(&format!("00-{trace}-00f067aa0ba902b7-01"))).as_deref(),
            Some(trace)
        );
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f35-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_eq!(incoming_trace_id(&with_header(bad)), None, "{bad}");
        }
        assert_eq!(incoming_trace_id(&http::HeaderMap::new()), None);
    }
}
