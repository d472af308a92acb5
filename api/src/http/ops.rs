//! Health and readiness for load balancers and orchestrators.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

/// The process is up and serving HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The api can do its work: its database answers.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.service.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Err(error) => {
            tracing::warn!(reason = format!("{:#}", anyhow::Error::new(error)), "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "not_ready", "reason": "database unavailable"})),
            )
        }
    }
}

/// The api's own metrics and their help text.
pub const METRICS: &[(&str, &str)] = &[
    (
        "strongbox_verify_outcomes_total",
        "verifyKey outcomes, by code (VALID, NOT_FOUND, RATE_LIMITED, ...).",
    ),
    (
        "strongbox_credit_spends_total",
        "Credit spends written; with strongbox_credit_statements_total, how many share a statement.",
    ),
    (
        "strongbox_credit_statements_total",
        "Statements that wrote credit spends (concurrent spends of one key share one).",
    ),
    (
        "strongbox_cache_lookups_total",
        "Key and root-key cache lookups, by cache and result (hit, miss).",
    ),
    (
        "strongbox_ratelimit_round_trips_total",
        "Rate-limit checks that went to the database (the rest spent a lease held by this replica).",
    ),
    (
        "strongbox_ratelimit_fallbacks_total",
        "Rate-limit checks decided by ratelimit.on_unavailable because the database did not answer, by mode.",
    ),
    ("strongbox_ratelimit_replicas", "Live api replicas seen at the last heartbeat."),
    (
        "strongbox_ratelimit_outcomes_total",
        "ratelimit.limit and multiLimit checks, by whether they passed.",
    ),
    ("strongbox_vault_client_calls_total", "Calls to the vault, by route template."),
    (
        "strongbox_vault_client_errors_total",
        "Failed calls to the vault, by route and kind (locked, unavailable, refused, ...).",
    ),
    (
        "strongbox_vault_client_breaker_state",
        "The vault client's circuit breaker: 0 closed, 1 open, 2 half-open.",
    ),
    (
        "strongbox_rewrap_rows_done",
        "Stored keys moved to their keyring's target DEK version by the rewrap job.",
    ),
    ("strongbox_rewrap_rows_failed", "Stored keys the vault could not rewrap."),
    (
        "strongbox_rewrap_rows_remaining",
        "Stored keys still below their keyring's target DEK version.",
    ),
    ("strongbox_rewrap_running", "1 while a rewrap holds its lock."),
    (
        "strongbox_api_metrics_database_up",
        "1 when the api database answered this scrape's queries.",
    ),
];

/// How long a scrape waits for the rewrap progress before answering without it.
const SCRAPE_DB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// `GET /metrics` (Prometheus text): the request, verify, cache and vault-client metrics recorded
/// as calls are served, plus the pool and the rewrap job's progress read at scrape time. No
/// metric carries a workspace, key or root-key label.
pub async fn metrics(
    State(state): State<AppState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    use metrics::gauge;
    strongbox_shared::metrics::record_pool("api", state.service.pool());
    // A database that stopped answering (a partition) must not stall the scrape: the metrics
    // matter most then. What this process recorded is served regardless.
    let read = tokio::time::timeout(SCRAPE_DB_TIMEOUT, state.service.rewrap_progress()).await;
    match read {
        Ok(Ok(p)) => {
            gauge!("strongbox_rewrap_rows_done").set(p.done as f64);
            gauge!("strongbox_rewrap_rows_failed").set(p.failed as f64);
            gauge!("strongbox_rewrap_rows_remaining").set(p.remaining as f64);
            gauge!("strongbox_rewrap_running").set(if p.running { 1.0 } else { 0.0 });
            gauge!("strongbox_api_metrics_database_up").set(1.0);
        }
        Ok(Err(error)) => {
            let reason = format!("{:#}", anyhow::Error::new(error));
            tracing::warn!(%reason, "metrics: the api database did not answer");
            gauge!("strongbox_api_metrics_database_up").set(0.0);
        }
        Err(_) => {
            tracing::warn!("metrics: the api database did not answer within a second");
            gauge!("strongbox_api_metrics_database_up").set(0.0);
        }
    }
    (
        [(axum::http::header::CONTENT_TYPE, strongbox_shared::metrics::CONTENT_TYPE)],
        strongbox_shared::metrics::render(),
    )
}
