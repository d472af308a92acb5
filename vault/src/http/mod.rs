//! HTTP routers: the main listener and the plain-HTTP ops listener.

mod ops;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;

use crate::startup::AppState;

/// Routes of the main listener.
pub fn main_router(state: AppState) -> Router {
    Router::new().fallback(not_found).with_state(state)
}

/// Routes of the ops listener. It is plain HTTP and meant for the platform, never the internet.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .with_state(state)
}

async fn not_found() -> (StatusCode, axum::Json<serde_json::Value>) {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"error": {"code": "NOT_FOUND", "message": "no such route"}})),
    )
}
