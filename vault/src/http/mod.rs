//! The HTTP edge: the mTLS listener's API, the plain-HTTP ops listener, the state their handlers
//! share and the wire form of [`VaultError`](crate::error::VaultError). Kept here so the service
//! layer beneath never names axum.

mod data;
mod error;
mod extract;
mod keyrings;
mod ops;
mod sys;
mod trace;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::json;

use crate::audit::AuditLog;
use crate::service::Vault;

pub use ops::METRICS;

/// State shared by every handler.
#[derive(Clone)]
pub struct AppState {
    /// This replica.
    pub vault: Arc<Vault>,
    /// Where every call on the mTLS listener is recorded before it is answered.
    pub audit: Arc<AuditLog>,
}

/// Routes of the mTLS listener. Each handler checks the caller's role first; the service then
/// refuses with `VAULT_LOCKED` anything that needs keys while this replica is locked.
pub fn main_router(state: AppState) -> Router {
    let body_limit = state.vault.limits().max_body_bytes;
    Router::new()
        .route("/v1/sys/status", get(sys::status))
        .route("/v1/sys/initialize", post(sys::initialize))
        .route("/v1/sys/unlock", post(sys::unlock))
        .route("/v1/sys/lock", post(sys::lock))
        .route("/v1/sys/rekey", post(sys::rekey))
        .route("/v1/sys/rotate", post(sys::rotate))
        .route("/v1/sys/rotate-root", post(sys::rotate_root))
        .route("/v1/sys/seal/migrate", post(sys::migrate_seal))
        .route("/v1/encrypt", post(data::encrypt))
        .route("/v1/decrypt", post(data::decrypt))
        .route("/v1/rewrap", post(data::rewrap))
        .route("/v1/keyrings/rotate", post(keyrings::rotate_all))
        .route("/v1/keyrings/{keyring}", get(keyrings::describe).delete(keyrings::delete))
        .route("/v1/keyrings/{keyring}/rotate", post(keyrings::rotate))
        .route("/v1/keyrings/{keyring}/config", post(keyrings::config))
        .route("/v1/keyrings/{keyring}/trim", post(keyrings::trim))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), trace::observe))
        .with_state(state)
}

/// Routes of the ops listener: plain HTTP for the platform, never the internet.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/v1/sys/status", get(sys::status))
        .route("/metrics", get(ops::metrics))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> (StatusCode, axum::Json<serde_json::Value>) {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"error": {"code": "NOT_FOUND", "message": "no such route"}})),
    )
}

async fn method_not_allowed() -> (StatusCode, axum::Json<serde_json::Value>) {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(
            json!({"error": {"code": "METHOD_NOT_ALLOWED", "message": "method not allowed on this route"}}),
        ),
    )
}
