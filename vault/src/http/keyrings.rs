//! `/v1/keyrings/*`: describe, rotate, retire, trim and crypto-shred.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{AnyRole, Caller, JsonBody, KeyringPath, NoBody, Operator};

use crate::error::VaultError;
use crate::http::AppState;
use crate::service::keyrings::Description;

/// `{"min_decryption_version"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigBody {
    min_decryption_version: i32,
}

/// `GET /v1/keyrings/{keyring}`.
pub async fn describe(
    State(state): State<AppState>,
    _: Caller<AnyRole>,
    KeyringPath(keyring): KeyringPath,
) -> Result<Json<Description>, VaultError> {
    Ok(Json(state.vault.describe(&keyring).await?))
}

/// `POST /v1/keyrings/{keyring}/rotate`.
pub async fn rotate(
    State(state): State<AppState>,
    _: Caller<Operator>,
    KeyringPath(keyring): KeyringPath,
    _: NoBody,
) -> Result<Json<Value>, VaultError> {
    let rotated = state.vault.rotate_keyring(&keyring).await?;
    Ok(Json(json!(rotated)))
}

/// `POST /v1/keyrings/rotate`: every keyring.
pub async fn rotate_all(
    State(state): State<AppState>,
    _: Caller<Operator>,
    _: NoBody,
) -> Result<Json<Value>, VaultError> {
    let rotated = state.vault.rotate_all_keyrings().await?;
    Ok(Json(json!({"keyrings": rotated})))
}

/// `POST /v1/keyrings/{keyring}/config {"min_decryption_version"}`.
pub async fn config(
    State(state): State<AppState>,
    _: Caller<Operator>,
    KeyringPath(keyring): KeyringPath,
    JsonBody(body): JsonBody<ConfigBody>,
) -> Result<Json<Description>, VaultError> {
    Ok(Json(state.vault.set_min_decryption_version(&keyring, body.min_decryption_version).await?))
}

/// `POST /v1/keyrings/{keyring}/trim`.
pub async fn trim(
    State(state): State<AppState>,
    _: Caller<Operator>,
    KeyringPath(keyring): KeyringPath,
    _: NoBody,
) -> Result<Json<Value>, VaultError> {
    let trimmed = state.vault.trim(&keyring).await?;
    Ok(Json(json!({"keyring": keyring.as_str(), "trimmed_versions": trimmed})))
}

/// `DELETE /v1/keyrings/{keyring}`: crypto-shred.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller<Operator>,
    KeyringPath(keyring): KeyringPath,
    _: NoBody,
) -> Result<Json<Value>, VaultError> {
    let versions = state.vault.delete_keyring(&keyring).await?;
    tracing::warn!(identity = %caller.0.identity, keyring = keyring.as_str(), "keyring shredded");
    Ok(Json(json!({"keyring": keyring.as_str(), "deleted": true, "destroyed_versions": versions})))
}
