//! HTTP: the public listener (Unkey's v2 wire format) and the plain-HTTP ops listener.

mod apis;
pub mod auth;
pub mod envelope;
pub mod error;
pub mod extract;
mod keys;
mod liveness;
mod ops;
pub mod root_keys;
mod v1;
mod verify;
mod views;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::startup::AppState;
use error::ApiError;

/// Every v2 route Strongbox serves, for the 501 detail and the OpenAPI check.
pub const V2_ROUTES: &[&str] = &[
    "apis.createApi",
    "apis.getApi",
    "apis.updateApi",
    "apis.deleteApi",
    "apis.listKeys",
    "keys.createKey",
    "keys.getKey",
    "keys.updateKey",
    "keys.deleteKey",
    "keys.verifyKey",
    "keys.rerollKey",
    "keys.updateCredits",
    "keys.whoami",
    "rootKeys.createKey",
    "rootKeys.listKeys",
    "rootKeys.updateKey",
    "rootKeys.rerollKey",
    "rootKeys.deleteKey",
];

/// Routes of the public listener.
pub fn public_router(state: AppState) -> Router {
    Router::new()
        .route("/v2/liveness", get(liveness::liveness))
        .route("/v2/apis.createApi", post(apis::create_api))
        .route("/v2/apis.getApi", post(apis::get_api))
        .route("/v2/apis.updateApi", post(apis::update_api))
        .route("/v2/apis.deleteApi", post(apis::delete_api))
        .route("/v2/apis.listKeys", post(apis::list_keys))
        .route("/v2/keys.createKey", post(keys::create_key))
        .route("/v2/keys.getKey", post(keys::get_key))
        .route("/v2/keys.updateKey", post(keys::update_key))
        .route("/v2/keys.deleteKey", post(keys::delete_key))
        .route("/v2/keys.verifyKey", post(verify::verify_key))
        .route("/v2/keys.rerollKey", post(keys::reroll_key))
        .route("/v2/keys.updateCredits", post(keys::update_credits))
        .route("/v2/keys.whoami", post(keys::whoami))
        .route("/v2/rootKeys.createKey", post(root_keys::create))
        .route("/v2/rootKeys.listKeys", post(root_keys::list))
        .route("/v2/rootKeys.updateKey", post(root_keys::update))
        .route("/v2/rootKeys.rerollKey", post(root_keys::reroll))
        .route("/v2/rootKeys.deleteKey", post(root_keys::delete))
        .route("/v2/{call}", post(not_supported))
        .route("/v1/keys.createKey", post(v1::create_key))
        .route("/v1/keys.getKey", get(v1::get_key))
        .route("/v1/apis.listKeys", get(v1::list_keys))
        .route("/v1/keys.verifyKey", post(v1::verify_key))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(envelope::with_request_id))
        .with_state(state)
}

/// Routes of the ops listener. It is plain HTTP and meant for the platform, never the internet.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .with_state(state)
}

/// Other Unkey v2 calls (roles, identities, ratelimit namespaces, analytics…).
async fn not_supported(axum::extract::Path(call): axum::extract::Path<String>) -> ApiError {
    ApiError::not_supported(format!(
        "{call} is not supported by Strongbox. Supported v2 calls: {}",
        V2_ROUTES.join(", ")
    ))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; Strongbox serves POST /v2/<resource>.<action>")
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
