//! Health and readiness for load balancers and orchestrators.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderName;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::http::AppState;

/// The process is up and serving HTTP.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready only when unlocked and the database answers: a locked replica cannot serve the data
/// plane, so load balancers should not send it traffic.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if !state.vault.is_unlocked() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reason": "locked"})),
        );
    }
    let database = async {
        let client = state.vault.pool().get().await.map_err(|e| e.to_string())?;
        client.simple_query("SELECT 1").await.map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    };
    match database.await {
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

/// The vault's own metrics and their help text.
pub const METRICS: &[(&str, &str)] = &[
    ("strongbox_vault_initialized", "1 when a root record exists."),
    ("strongbox_vault_unlocked", "1 while this replica is unlocked."),
    ("strongbox_vault_kek_version", "The newest KEK version."),
    ("strongbox_vault_keyrings", "Keyrings not crypto-shredded."),
    (
        "strongbox_vault_dek_versions",
        "DEK versions of live keyrings, by state: active (decrypts) or retired (below min_decryption_version).",
    ),
    ("strongbox_vault_dek_encryptions_highest", "Encryptions leased by the busiest current DEK."),
    (
        "strongbox_vault_dek_encryption_budget",
        "Encryptions one DEK may perform before it rotates itself (2^31).",
    ),
    (
        "strongbox_vault_unlock_failures_total",
        "Refused server keys at unlock or rekey, by reason (wrong_key, throttled).",
    ),
    ("strongbox_vault_audit_entries_total", "Entries this replica appended to the audit log."),
    (
        "strongbox_vault_audit_checkpoint_seq",
        "Position of the newest audit checkpoint this replica logged (the log line carries SEQ:HASH).",
    ),
    (
        "strongbox_vault_audit_write_failures_total",
        "Audit log writes that failed; their calls were refused with 503.",
    ),
    (
        "strongbox_vault_metrics_database_up",
        "1 when the vault database answered this scrape's queries.",
    ),
];

/// `GET /metrics` (Prometheus text): the request metrics recorded as calls are answered, plus
/// the key hierarchy's state read at scrape time. Counts are summed over keyrings: no metric
/// names a keyring or workspace.
pub async fn metrics(State(state): State<AppState>) -> ([(HeaderName, &'static str); 1], String) {
    use metrics::gauge;
    let vault = &state.vault;
    strongbox_shared::metrics::record_pool("vault", vault.pool());
    gauge!("strongbox_vault_unlocked").set(f64::from(u8::from(vault.is_unlocked())));
    gauge!("strongbox_vault_dek_encryption_budget")
        .set(crate::service::DEK_ENCRYPTION_LIMIT as f64);
    match hierarchy_facts(&state).await {
        Ok(facts) => {
            gauge!("strongbox_vault_initialized").set(f64::from(u8::from(facts.initialized)));
            gauge!("strongbox_vault_kek_version").set(facts.kek_version as f64);
            gauge!("strongbox_vault_keyrings").set(facts.keyrings as f64);
            gauge!("strongbox_vault_dek_versions", "state" => "active").set(facts.active as f64);
            gauge!("strongbox_vault_dek_versions", "state" => "retired").set(facts.retired as f64);
            gauge!("strongbox_vault_dek_encryptions_highest").set(facts.highest as f64);
            gauge!("strongbox_vault_metrics_database_up").set(1.0);
        }
        Err(reason) => {
            tracing::warn!(%reason, "metrics: the vault database did not answer");
            gauge!("strongbox_vault_metrics_database_up").set(0.0);
        }
    }
    ([(CONTENT_TYPE, strongbox_shared::metrics::CONTENT_TYPE)], strongbox_shared::metrics::render())
}

struct Facts {
    initialized: bool,
    kek_version: i64,
    keyrings: i64,
    active: i64,
    retired: i64,
    highest: i64,
}

async fn hierarchy_facts(state: &AppState) -> Result<Facts, String> {
    let client = state.vault.pool().get().await.map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT \
               EXISTS (SELECT 1 FROM root_record), \
               (SELECT coalesce(max(version), 0)::bigint FROM keks), \
               (SELECT count(*) FROM keyrings WHERE deleted_at IS NULL), \
               (SELECT count(*) FROM deks d JOIN keyrings k ON k.name = d.keyring \
                  WHERE k.deleted_at IS NULL AND d.version >= k.min_decryption_version), \
               (SELECT count(*) FROM deks d JOIN keyrings k ON k.name = d.keyring \
                  WHERE k.deleted_at IS NULL AND d.version < k.min_decryption_version), \
               (SELECT coalesce(max(d.encryptions_leased), 0)::bigint FROM deks d \
                  JOIN keyrings k ON k.name = d.keyring AND d.version = k.latest_version \
                  WHERE k.deleted_at IS NULL)",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(Facts {
        initialized: row.get(0),
        kek_version: row.get(1),
        keyrings: row.get(2),
        active: row.get(3),
        retired: row.get(4),
        highest: row.get(5),
    })
}
