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

/// `GET /metrics` (Prometheus text). For now the rewrap job's progress, summed over keyrings: no
/// metric carries a workspace, key or root-key label.
pub async fn metrics(
    State(state): State<AppState>,
) -> Result<([(axum::http::HeaderName, &'static str); 1], String), StatusCode> {
    let client = state.pool.get().await.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
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
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let (done, failed, remaining, running): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let body = format!(
        "# HELP strongbox_rewrap_rows_done Stored keys moved to their keyring's target DEK version by the rewrap job.\n\
         # TYPE strongbox_rewrap_rows_done gauge\nstrongbox_rewrap_rows_done {done}\n\
         # HELP strongbox_rewrap_rows_failed Stored keys the vault could not rewrap.\n\
         # TYPE strongbox_rewrap_rows_failed gauge\nstrongbox_rewrap_rows_failed {failed}\n\
         # HELP strongbox_rewrap_rows_remaining Stored keys still below their keyring's target DEK version.\n\
         # TYPE strongbox_rewrap_rows_remaining gauge\nstrongbox_rewrap_rows_remaining {remaining}\n\
         # HELP strongbox_rewrap_running 1 while a rewrap holds its lock.\n\
         # TYPE strongbox_rewrap_running gauge\nstrongbox_rewrap_running {}\n",
        running.min(1)
    );
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body))
}
