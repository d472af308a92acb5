//! Prometheus metrics, served as text on each service's ops port at `/metrics`.
//!
//! Both services record through the `metrics` facade into one process-wide registry. No metric
//! carries a workspace, key, keyring or root-key label: routes are the router's templates
//! (`/v1/keyrings/{keyring}`), and everything else is summed over tenants.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Request latency buckets, in seconds: sub-millisecond cache hits up to multi-second vault
/// batches.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once; later calls (several services in one test process)
/// share it. `None` only if another recorder was installed first, in which case metrics are off.
fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_duration_seconds".to_owned()),
                    &LATENCY_BUCKETS,
                )
                .ok()?;
            builder.install_recorder().ok()
        })
        .as_ref()
}

/// Starts recording. Call once at start-up, before the first request.
pub fn install() {
    if handle().is_none() {
        tracing::warn!("another metrics recorder is installed; /metrics will be empty");
    }
    describe(&[
        (
            "strongbox_http_requests_total",
            "Requests answered, by route template, method and status.",
        ),
        ("strongbox_http_server_errors_total", "Requests answered with a 5xx status."),
        ("strongbox_http_request_duration_seconds", "Time from request to answer, in seconds."),
        ("strongbox_db_pool_connections", "Pooled Postgres connections, by state (in_use, idle)."),
        (
            "strongbox_db_pool_max_connections",
            "Most connections the pool opens (database.max_connections).",
        ),
        ("strongbox_db_pool_waiting_requests", "Requests waiting for a pooled connection."),
    ]);
}

/// Gives metrics their `# HELP` text. (The exporter keeps one description per name, whatever
/// the metric's kind.)
pub fn describe(help: &[(&'static str, &'static str)]) {
    for (name, text) in help {
        metrics::describe_counter!(*name, *text);
    }
}

/// The registry as Prometheus text.
pub fn render() -> String {
    handle()
        .map(|h| {
            h.run_upkeep();
            h.render()
        })
        .unwrap_or_default()
}

/// Records one answered HTTP request. `route` is the matched route template, or `unmatched`.
pub fn record_request(
    service: &'static str,
    route: &str,
    method: &str,
    status: u16,
    elapsed: Duration,
) {
    // Methods outside the standard set share one label value, so a client cannot grow the
    // registry by inventing methods; unmatched paths are already `unmatched`.
    let method: &'static str = match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    };
    // Static label values are borrowed, not copied, on this per-request path.
    let labels: [(&'static str, metrics::SharedString); 4] = [
        ("service", service.into()),
        ("route", route.to_owned().into()),
        ("method", method.into()),
        ("status", status.to_string().into()),
    ];
    metrics::counter!("strongbox_http_requests_total", &labels).increment(1);
    if status >= 500 {
        metrics::counter!("strongbox_http_server_errors_total", &labels[..3]).increment(1);
    }
    metrics::histogram!("strongbox_http_request_duration_seconds", &labels)
        .record(elapsed.as_secs_f64());
}

/// Sets the connection-pool gauges from the pool's current status.
pub fn record_pool(service: &'static str, pool: &deadpool_postgres::Pool) {
    let status = pool.status();
    let idle = status.available;
    let in_use = status.size.saturating_sub(idle);
    let gauge = |state: &'static str, value: usize| {
        metrics::gauge!("strongbox_db_pool_connections", "service" => service, "state" => state)
            .set(value as f64);
    };
    gauge("in_use", in_use);
    gauge("idle", idle);
    metrics::gauge!("strongbox_db_pool_max_connections", "service" => service)
        .set(status.max_size as f64);
    metrics::gauge!("strongbox_db_pool_waiting_requests", "service" => service)
        .set(status.waiting as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_methods_and_paths_do_not_add_series() {
        install();
        for method in ["BREW", "WHEN", "PROPFIND"] {
            record_request("test", "unmatched", method, 404, Duration::from_millis(1));
        }
        let text = render();
        assert!(text.contains("method=\"OTHER\""), "{text}");
        for method in ["BREW", "WHEN", "PROPFIND"] {
            assert!(!text.contains(method), "{method} became a label value");
        }
    }
}
