//! HTTP: the public listener (Unkey's v2 wire format) and the plain-HTTP ops listener.

mod apis;
pub mod auth;
pub mod envelope;
pub mod error;
pub mod extract;
mod identities;
mod keys;
mod liveness;
pub mod openapi;
mod ops;
mod ratelimit;

pub use ops::METRICS;
pub mod root_keys;
mod v1;
mod verify;
mod views;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use error::ApiError;

/// State shared by every handler: the service and the served OpenAPI document.
#[derive(Clone)]
pub struct AppState {
    /// Everything the calls do.
    pub service: crate::service::Service,
    /// The served OpenAPI document.
    pub spec: std::sync::Arc<utoipa::openapi::OpenApi>,
}

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
    "ratelimit.limit",
    "ratelimit.multiLimit",
    "ratelimit.setOverride",
    "ratelimit.getOverride",
    "ratelimit.deleteOverride",
    "ratelimit.listOverrides",
    "identities.createIdentity",
    "identities.getIdentity",
    "identities.listIdentities",
    "identities.updateIdentity",
    "identities.deleteIdentity",
];

/// The public routes with their OpenAPI document, built from the same registrations, so the
/// spec cannot drift from what the server serves.
pub fn documented_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use utoipa::OpenApi as _;
    use utoipa_axum::routes;
    let (router, mut spec) =
        utoipa_axum::router::OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
            .routes(routes!(liveness::liveness))
            .routes(routes!(openapi_json))
            .routes(routes!(apis::create_api))
            .routes(routes!(apis::get_api))
            .routes(routes!(apis::update_api))
            .routes(routes!(apis::delete_api))
            .routes(routes!(apis::list_keys))
            .routes(routes!(keys::create_key))
            .routes(routes!(keys::get_key))
            .routes(routes!(keys::update_key))
            .routes(routes!(keys::delete_key))
            .routes(routes!(verify::verify_key))
            .routes(routes!(keys::reroll_key))
            .routes(routes!(keys::update_credits))
            .routes(routes!(keys::whoami))
            .routes(routes!(root_keys::create))
            .routes(routes!(root_keys::list))
            .routes(routes!(root_keys::update))
            .routes(routes!(root_keys::reroll))
            .routes(routes!(root_keys::delete))
            .routes(routes!(ratelimit::limit))
            .routes(routes!(ratelimit::multi_limit))
            .routes(routes!(ratelimit::set_override))
            .routes(routes!(ratelimit::get_override))
            .routes(routes!(ratelimit::delete_override))
            .routes(routes!(ratelimit::list_overrides))
            .routes(routes!(identities::create_identity))
            .routes(routes!(identities::get_identity))
            .routes(routes!(identities::list_identities))
            .routes(routes!(identities::update_identity))
            .routes(routes!(identities::delete_identity))
            .routes(routes!(v1::create_key))
            .routes(routes!(v1::get_key))
            .routes(routes!(v1::list_keys))
            .routes(routes!(v1::verify_key))
            .split_for_parts();
    spec.info.version = env!("CARGO_PKG_VERSION").to_owned();
    (router, spec)
}

/// The OpenAPI document of this server.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object)))]
async fn openapi_json(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json((*state.spec).clone())
}

/// Routes of the public listener.
pub fn public_router(state: AppState) -> Router {
    let (documented, _) = documented_routes();
    documented
        .route("/v2/{call}", post(not_supported))
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
        .route("/metrics", get(ops::metrics))
        .with_state(state)
}

/// Other Unkey v2 calls (roles, permissions, analytics…).
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
