//! Health and readiness for load balancers and orchestrators.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::startup::AppState;

/// The process is up and serving HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The api can do its work: its database answers.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match check_database(&state).await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Err(reason) => {
            tracing::warn!(%reason, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "not_ready", "reason": "database unavailable"})),
            )
        }
    }
}

async fn check_database(state: &AppState) -> Result<(), String> {
    let client = state.pool.get().await.map_err(|e| e.to_string())?;
    client.simple_query("SELECT 1").await.map_err(|e| e.to_string())?;
    Ok(())
}

/// The api's own metrics and their help text.
pub const METRICS: &[(&str, &str)] = &[
    (
        "strongbox_verify_outcomes_total",
        "verifyKey outcomes, by code (VALID, NOT_FOUND, RATE_LIMITED, ...).",
    ),
    (
        "strongbox_cache_lookups_total",
        "Key and root-key cache lookups, by cache and result (hit, miss).",
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

/// `GET /metrics` (Prometheus text): the request, verify, cache and vault-client metrics recorded
/// as calls are served, plus the pool and the rewrap job's progress read at scrape time. No
/// metric carries a workspace, key or root-key label.
pub async fn metrics(
    State(state): State<AppState>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    use metrics::gauge;
    strongbox_shared::metrics::record_pool("api", &state.pool);
    match rewrap_progress(&state).await {
        Ok((done, failed, remaining, running)) => {
            gauge!("strongbox_rewrap_rows_done").set(done as f64);
            gauge!("strongbox_rewrap_rows_failed").set(failed as f64);
            gauge!("strongbox_rewrap_rows_remaining").set(remaining as f64);
            gauge!("strongbox_rewrap_running").set(running.min(1) as f64);
            gauge!("strongbox_api_metrics_database_up").set(1.0);
        }
        Err(reason) => {
            tracing::warn!(%reason, "metrics: the api database did not answer");
            gauge!("strongbox_api_metrics_database_up").set(0.0);
        }
    }
    (
        [(axum::http::header::CONTENT_TYPE, strongbox_shared::metrics::CONTENT_TYPE)],
        strongbox_shared::metrics::render(),
    )
}

/// Rows moved, failed and left by the rewrap job, summed over keyrings, and whether it runs.
async fn rewrap_progress(state: &AppState) -> Result<(i64, i64, i64, i64), String> {
    let client = state.pool.get().await.map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT \
               (SELECT coalesce(sum(rows_done), 0)::bigint FROM rewrap_progress), \
               (SELECT coalesce(sum(rows_failed), 0)::bigint FROM rewrap_progress), \
               (SELECT count(*) FROM encrypted_keys e JOIN rewrap_progress p ON p.keyring = e.keyring \
                  WHERE e.dek_version < p.target_version), \
               (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                  AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                  AND ((classid::bigint << 32) | objid::bigint) = $1)",
            &[&crate::rewrap::LOCK],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok((row.get(0), row.get(1), row.get(2), row.get(3)))
}
