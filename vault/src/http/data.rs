//! `/v1/encrypt`, `/v1/decrypt`, `/v1/rewrap`: batch-first, per-item errors.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::extract::{Api, ApiOrRewrap, Caller, JsonBody};
use crate::domain::{KeyringName, check_context};
use crate::error::VaultError;
use crate::http::AppState;
use crate::service::data::ItemError;

/// `{"keyring","items":[{"plaintext","context"}]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptBody {
    keyring: String,
    items: Vec<PlainItem>,
}

/// One plaintext: standard padded base64.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainItem {
    plaintext: secrecy::SecretString,
    context: String,
}

/// `{"keyring","items":[{"ciphertext","context"}]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CipherBody {
    keyring: String,
    items: Vec<CipherItem>,
}

/// One ciphertext.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CipherItem {
    ciphertext: String,
    context: String,
}

fn check_batch(state: &AppState, len: usize) -> Result<(), VaultError> {
    let limit = state.vault.limits().max_items;
    if len == 0 {
        return Err(VaultError::NoItems);
    }
    if len > limit {
        return Err(VaultError::TooManyItems { limit });
    }
    Ok(())
}

fn item_error(error: ItemError) -> Value {
    json!({"error": {"code": error.code(), "message": error.message()}})
}

/// `POST /v1/encrypt`.
pub async fn encrypt(
    State(state): State<AppState>,
    _: Caller<Api>,
    JsonBody(body): JsonBody<EncryptBody>,
) -> Result<Json<Encrypted>, VaultError> {
    let keyring = KeyringName::parse(&body.keyring)?;
    crate::audit::note(&body.keyring, body.items.len());
    check_batch(&state, body.items.len())?;
    let max = state.vault.limits().max_plaintext_bytes;
    let mut items = Vec::with_capacity(body.items.len());
    for (index, item) in body.items.into_iter().enumerate() {
        check_context(index, &item.context)?;
        // A base64 string longer than this cannot decode within the limit.
        let encoded = secrecy::ExposeSecret::expose_secret(&item.plaintext);
        if encoded.len() > max.div_ceil(3) * 4 {
            return Err(VaultError::PlaintextTooLarge { index, limit: max });
        }
        let plaintext = Zeroizing::new(
            STANDARD
                .decode(encoded.as_bytes())
                .map_err(|_| VaultError::InvalidPlaintext { index })?,
        );
        if plaintext.len() > max {
            return Err(VaultError::PlaintextTooLarge { index, limit: max });
        }
        items.push((plaintext, item.context));
    }
    let items = state.vault.encrypt(&keyring, &items).await?;
    Ok(Json(Encrypted { items }))
}

/// The answer of `/v1/encrypt`: `{"items":[{"ciphertext","dek_version"}]}`. Typed, since a
/// `json!` map per item was a twentieth of a batch's time.
#[derive(Serialize)]
pub struct Encrypted {
    items: Vec<crate::service::data::Sealed>,
}

fn cipher_items(
    state: &AppState,
    body: CipherBody,
) -> Result<(KeyringName, Vec<(String, String)>), VaultError> {
    let keyring = KeyringName::parse(&body.keyring)?;
    crate::audit::note(&body.keyring, body.items.len());
    check_batch(state, body.items.len())?;
    let mut items = Vec::with_capacity(body.items.len());
    for (index, item) in body.items.into_iter().enumerate() {
        check_context(index, &item.context)?;
        items.push((item.ciphertext, item.context));
    }
    Ok((keyring, items))
}

/// `POST /v1/decrypt`.
pub async fn decrypt(
    State(state): State<AppState>,
    _: Caller<Api>,
    JsonBody(body): JsonBody<CipherBody>,
) -> Result<axum::response::Response, VaultError> {
    let (keyring, items) = cipher_items(&state, body)?;
    let opened = state.vault.decrypt(&keyring, &items).await?;
    let items: Vec<Value> = opened
        .into_iter()
        .map(|r| match r {
            Ok(plaintext) => json!({"plaintext": STANDARD.encode(plaintext.as_slice())}),
            Err(e) => item_error(e),
        })
        .collect();
    // Serialized here, so the copies of the plaintexts this replica made can be overwritten;
    // the response body itself belongs to the connection from now on.
    let answer = json!({"items": items});
    let body = serde_json::to_vec(&answer)
        .map_err(|e| VaultError::Internal(anyhow::Error::new(e).context("encoding an answer")))?;
    strongbox_shared::json::scrub(answer);
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `POST /v1/rewrap`.
pub async fn rewrap(
    State(state): State<AppState>,
    _: Caller<ApiOrRewrap>,
    JsonBody(body): JsonBody<CipherBody>,
) -> Result<Json<Value>, VaultError> {
    let (keyring, items) = cipher_items(&state, body)?;
    let rewrapped = state.vault.rewrap(&keyring, &items).await?;
    let items: Vec<Value> = rewrapped
        .into_iter()
        .map(|r| match r {
            Ok(s) => json!({"ciphertext": s.ciphertext, "dek_version": s.dek_version}),
            Err(e) => item_error(e),
        })
        .collect();
    Ok(Json(json!({"items": items})))
}
