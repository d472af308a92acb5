//! `/v1/sys/*`: status and the lifecycle.

use axum::Json;
use axum::extract::State;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{Caller, JsonBody, NoBody, Operator};
use crate::error::VaultError;
use crate::http::AppState;
use crate::service::lifecycle::{NewKey, Presented, Status};

/// `{"key"}`, or `{"shares":N,"threshold":K}` to split a fresh server key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitializeBody {
    key: Option<SecretString>,
    shares: Option<u8>,
    threshold: Option<u8>,
}

/// `{"key"}`, `{"share"}` or `{"reset":true}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnlockBody {
    key: Option<SecretString>,
    share: Option<SecretString>,
    reset: Option<bool>,
}

/// The current key as `current_key` or `shares` (a complete set), and the new one as `new_key`
/// or `new_shares` with `new_threshold`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RekeyBody {
    current_key: Option<SecretString>,
    shares: Option<Vec<SecretString>>,
    new_key: Option<SecretString>,
    new_shares: Option<u8>,
    new_threshold: Option<u8>,
}

fn invalid(why: &str) -> VaultError {
    VaultError::InvalidRequest(why.to_owned())
}

fn printed(shares: &[zeroize::Zeroizing<String>]) -> Value {
    Value::Array(shares.iter().map(|s| Value::String(s.as_str().to_owned())).collect())
}

/// `GET /v1/sys/status`: open to any verified client.
pub async fn status(State(state): State<AppState>) -> Result<Json<Status>, VaultError> {
    Ok(Json(state.vault.status().await?))
}

/// `POST /v1/sys/initialize {"key"}` or `{"shares":N,"threshold":K}` → `{"shares":[…]}`, or
/// `{}` under `seal.kind = "pkcs11"` (a random server key the token seals).
pub async fn initialize(
    State(state): State<AppState>,
    caller: Caller<Operator>,
    JsonBody(body): JsonBody<InitializeBody>,
) -> Result<Json<Value>, VaultError> {
    if state.vault.sealed_by_token() && (body.key.is_some() || body.shares.is_some()) {
        return Err(invalid(
            "this vault is configured with seal.kind = \"pkcs11\": initialize with {} (the \
             token seals a random server key)",
        ));
    }
    let answer = match (body.key, body.shares, body.threshold) {
        (Some(key), None, None) => {
            state.vault.initialize(key).await?;
            json!({"initialized": true, "unlocked": true})
        }
        (None, Some(shares), Some(threshold)) => {
            let made = state.vault.initialize_shares(shares, threshold).await?;
            json!({"initialized": true, "unlocked": true, "shares": printed(&made)})
        }
        (None, None, None) => {
            state.vault.initialize_token().await?;
            json!({"initialized": true, "unlocked": true, "seal": "pkcs11"})
        }
        _ => return Err(invalid("give either \"key\", or \"shares\" and \"threshold\"")),
    };
    tracing::info!(identity = %caller.0.identity, "initialized");
    Ok(Json(answer))
}

/// `POST /v1/sys/unlock {"key"}`, `{"share"}` (→ progress) or `{"reset":true}`.
pub async fn unlock(
    State(state): State<AppState>,
    caller: Caller<Operator>,
    JsonBody(body): JsonBody<UnlockBody>,
) -> Result<Json<Value>, VaultError> {
    let (identity, ip) = (&caller.0.identity, caller.0.addr.ip());
    match (body.key, body.share, body.reset) {
        (Some(key), None, None) => {
            state.vault.unlock(key, identity, ip).await?;
            Ok(Json(json!({"unlocked": true})))
        }
        (None, Some(share), None) => {
            let progress = state.vault.unlock_share(&share, identity, ip).await?;
            Ok(Json(json!(progress)))
        }
        (None, None, Some(true)) => Ok(Json(json!(state.vault.reset_shares().await?))),
        _ => Err(invalid("give one of \"key\", \"share\" or \"reset\": true")),
    }
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

/// `POST /v1/sys/rekey`: `{"current_key"}` or `{"shares":[…]}`, with `{"new_key"}` or
/// `{"new_shares":N,"new_threshold":K}` (→ `{"shares":[…]}`).
pub async fn rekey(
    State(state): State<AppState>,
    caller: Caller<Operator>,
    JsonBody(body): JsonBody<RekeyBody>,
) -> Result<Json<Value>, VaultError> {
    let current = match (body.current_key, body.shares) {
        (Some(key), None) => Presented::Key(key),
        (None, Some(shares)) => Presented::Shares(shares),
        _ => return Err(invalid("give the current key as \"current_key\" or as \"shares\"")),
    };
    let new = match (body.new_key, body.new_shares, body.new_threshold) {
        (Some(key), None, None) => NewKey::Key(key),
        (None, Some(shares), Some(threshold)) => NewKey::Shares { shares, threshold },
        _ => {
            return Err(invalid(
                "give the new key as \"new_key\", or as \"new_shares\" and \"new_threshold\"",
            ));
        }
    };
    let made = state.vault.rekey(current, new, &caller.0.identity, caller.0.addr.ip()).await?;
    Ok(Json(match made {
        Some(shares) => json!({"rekeyed": true, "shares": printed(&shares)}),
        None => json!({"rekeyed": true}),
    }))
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
