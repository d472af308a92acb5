//! HTTP routers: the public listener and the plain-HTTP ops listener.

mod liveness;
mod ops;

use axum::Router;
use axum::routing::get;

use crate::startup::AppState;

/// Routes of the public listener.
pub fn public_router(state: AppState) -> Router {
    Router::new().route("/v2/liveness", get(liveness::liveness)).with_state(state)
}

/// Routes of the ops listener. It is plain HTTP and meant for the platform, never the internet.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .with_state(state)
}
