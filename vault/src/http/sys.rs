//! `/v1/sys/*`: status and the lifecycle.

use axum::Json;
use axum::extract::State;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{Caller, JsonBody, NoBody, Operator};
use crate::error::VaultError;
use crate::http::AppState;
use crate::service::lifecycle::Status;

/// `{"key"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    key: SecretString,
}

/// `{"current_key","new_key"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RekeyBody {
    current_key: SecretString,
    new_key: SecretString,
}

/// `GET /v1/sys/status`: open to any verified client.
pub async fn status(State(state): State<AppState>) -> Result<Json<Status>, VaultError> {
    Ok(Json(state.vault.status().await?))
}

/// `POST /v1/sys/initialize {"key"}`.
pub async fn initialize(
    State(state): State<AppState>,
    caller: Caller<Operator>,
    JsonBody(body): JsonBody<KeyBody>,
) -> Result<Json<Value>, VaultError> {
    state.vault.initialize(body.key).await?;
    tracing::info!(identity = %caller.0.identity, "initialized");
    Ok(Json(json!({"initialized": true, "unlocked": true})))
}

/// `POST /v1/sys/unlock {"key"}`.
pub async fn unlock(
    State(state): State<AppState>,
    caller: Caller<Operator>,
    JsonBody(body): JsonBody<KeyBody>,
) -> Result<Json<Value>, VaultError> {
    state.vault.unlock(body.key, &caller.0.identity, caller.0.addr.ip()).await?;
    Ok(Json(json!({"unlocked": true})))
}

/// `POST /v1/sys/lock`.
pub async fn lock(
    State(state): State<AppState>,
    caller: Caller<Operator>,
    _: NoBody,
) -> Result<Json<Value>, VaultError> {
    state.vault.lock().await?;
    tracing::info!(identity = %caller.0.identity, "locked");
    Ok(Json(json!({"unlocked": false})))
}

/// `POST /v1/sys/rekey {"current_key","new_key"}`.
pub async fn rekey(
    State(state): State<AppState>,
    caller: Caller<Operator>,
    JsonBody(body): JsonBody<RekeyBody>,
) -> Result<Json<Value>, VaultError> {
    state
        .vault
        .rekey(body.current_key, body.new_key, &caller.0.identity, caller.0.addr.ip())
        .await?;
    Ok(Json(json!({"rekeyed": true})))
}

/// `POST /v1/sys/rotate`: a new KEK version.
pub async fn rotate(
    State(state): State<AppState>,
    _: Caller<Operator>,
    _: NoBody,
) -> Result<Json<Value>, VaultError> {
    let version = state.vault.rotate_kek().await?;
    Ok(Json(json!({"kek_version": version})))
}

/// `POST /v1/sys/rotate-root`: a new root key.
pub async fn rotate_root(
    State(state): State<AppState>,
    _: Caller<Operator>,
    _: NoBody,
) -> Result<Json<Value>, VaultError> {
    let version = state.vault.rotate_root().await?;
    Ok(Json(json!({"root_version": version})))
}
