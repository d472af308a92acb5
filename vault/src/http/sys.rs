//! `/v1/sys/*`: status and the lifecycle.

use axum::Json;
use axum::extract::State;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{Caller, JsonBody, NoBody, Operator, OptionalJsonBody};
use crate::error::VaultError;
use crate::http::AppState;
use crate::service::lifecycle::{NewKey, Presented, Status};
use crate::service::seal::{DEFAULT_RECOVERY, Migrated, NewSeal};

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

/// The current key as `current_key`, `shares` (a complete set) or `recovery_shares` (a
/// complete set, under the PKCS#11 seal), and the new one as `new_key` or `new_shares` with
/// `new_threshold` (under the PKCS#11 seal: new recovery shares, or nothing).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RekeyBody {
    current_key: Option<SecretString>,
    shares: Option<Vec<SecretString>>,
    recovery_shares: Option<Vec<SecretString>>,
    new_key: Option<SecretString>,
    new_shares: Option<u8>,
    new_threshold: Option<u8>,
}

/// Under the PKCS#11 seal, `{"recovery_shares":[…]}`; else nothing.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateRootBody {
    recovery_shares: Option<Vec<SecretString>>,
}

/// `{"to"}` with the current authority as in rekey and the new seal's parameters: `new_key`
/// (to `key`), `new_shares` and `new_threshold` (to `shares`; to `pkcs11`, new recovery shares),
/// `key_label` (to `pkcs11`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateBody {
    to: SealKindName,
    current_key: Option<SecretString>,
    shares: Option<Vec<SecretString>>,
    recovery_shares: Option<Vec<SecretString>>,
    new_key: Option<SecretString>,
    new_shares: Option<u8>,
    new_threshold: Option<u8>,
    key_label: Option<String>,
}

/// The seal a migration moves to.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum SealKindName {
    Key,
    Shares,
    Pkcs11,
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

/// `POST /v1/sys/initialize {"key"}` or `{"shares":N,"threshold":K}` → `{"shares":[…]}`; under
/// `seal.kind = "pkcs11"`, `{}` or `{"shares":N,"threshold":K}` (a random server key the token
/// seals) → `{"recovery_shares":[…]}`, five of which three authorise unless N and K say else.
pub async fn initialize(
    State(state): State<AppState>,
    caller: Caller<Operator>,
    JsonBody(body): JsonBody<InitializeBody>,
) -> Result<Json<Value>, VaultError> {
    if state.vault.sealed_by_token() {
        let recovery = match (body.key, body.shares, body.threshold) {
            (None, None, None) => DEFAULT_RECOVERY,
            (None, Some(shares), Some(threshold)) => (shares, threshold),
            _ => {
                return Err(invalid(
                    "this vault is configured with seal.kind = \"pkcs11\": initialize with {} \
                     or {\"shares\":N,\"threshold\":K} for the recovery shares (the token \
                     seals a random server key)",
                ));
            }
        };
        let made = state.vault.initialize_token(recovery).await?;
        tracing::info!(identity = %caller.0.identity, "initialized under the PKCS#11 seal");
        return Ok(Json(json!({
            "initialized": true,
            "unlocked": true,
            "seal": "pkcs11",
            "recovery_shares": printed(&made),
        })));
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
            return Err(invalid(
                "give either \"key\", or \"shares\" and \"threshold\" ({} is for a vault \
                 configured with seal.kind = \"pkcs11\")",
            ));
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
    let current = presented(body.current_key, body.shares, body.recovery_shares)?;
    let new = match (body.new_key, body.new_shares, body.new_threshold) {
        (Some(key), None, None) => NewKey::Key(key),
        (None, Some(shares), Some(threshold)) => NewKey::Shares { shares, threshold },
        (None, None, None) if matches!(current, Presented::Recovery(_)) => NewKey::Token,
        _ => {
            return Err(invalid(
                "give the new key as \"new_key\", or as \"new_shares\" and \"new_threshold\"",
            ));
        }
    };
    let made = state.vault.rekey(current, new, &caller.0.identity, caller.0.addr.ip()).await?;
    Ok(Json(answer(json!({"rekeyed": true}), &made)))
}

/// The current authority, given one way.
fn presented(
    key: Option<SecretString>,
    shares: Option<Vec<SecretString>>,
    recovery: Option<Vec<SecretString>>,
) -> Result<Presented, VaultError> {
    match (key, shares, recovery) {
        (Some(key), None, None) => Ok(Presented::Key(key)),
        (None, Some(shares), None) => Ok(Presented::Shares(shares)),
        (None, None, Some(shares)) => Ok(Presented::Recovery(shares)),
        _ => Err(invalid(
            "give the current authority one way: \"current_key\", \"shares\" or \
             \"recovery_shares\"",
        )),
    }
}

/// `base` with the shares a rekey or migration made, shown once.
fn answer(mut base: Value, made: &Migrated) -> Value {
    base["seal"] = json!(made.seal);
    if let Some(shares) = &made.shares {
        base["shares"] = printed(shares);
    }
    if let Some(shares) = &made.recovery_shares {
        base["recovery_shares"] = printed(shares);
    }
    base
}

/// `POST /v1/sys/seal/migrate`: moves the server key to another seal (`key`, `shares` or
/// `pkcs11`) in one compare-and-swap, authorised as a rekey is.
pub async fn migrate_seal(
    State(state): State<AppState>,
    caller: Caller<Operator>,
    JsonBody(body): JsonBody<MigrateBody>,
) -> Result<Json<Value>, VaultError> {
    let current = presented(body.current_key, body.shares, body.recovery_shares)?;
    let to = match (body.to, body.new_key, body.new_shares, body.new_threshold, body.key_label) {
        (SealKindName::Key, Some(key), None, None, None) => NewSeal::Key(key),
        (SealKindName::Key, ..) => {
            return Err(invalid("to \"key\" takes the new key as \"new_key\", and nothing else"));
        }
        (SealKindName::Shares, None, Some(shares), Some(threshold), None) => {
            NewSeal::Shares { shares, threshold }
        }
        (SealKindName::Shares, ..) => {
            return Err(invalid(
                "to \"shares\" takes \"new_shares\" and \"new_threshold\", and nothing else",
            ));
        }
        (SealKindName::Pkcs11, None, shares, threshold, key_label) => {
            let recovery = match (shares, threshold) {
                (Some(n), Some(k)) => Some((n, k)),
                (None, None) => None,
                _ => return Err(invalid("give \"new_shares\" and \"new_threshold\" together")),
            };
            NewSeal::Pkcs11 { key_label, recovery }
        }
        (SealKindName::Pkcs11, Some(_), ..) => {
            return Err(invalid("to \"pkcs11\" the token makes the new key: no \"new_key\""));
        }
    };
    let made =
        state.vault.migrate_seal(current, to, &caller.0.identity, caller.0.addr.ip()).await?;
    tracing::info!(identity = %caller.0.identity, seal = made.seal, "seal migrated");
    Ok(Json(answer(json!({"migrated": true}), &made)))
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

/// `POST /v1/sys/rotate-root`: a new root key. Under the PKCS#11 seal the body gives the
/// recovery shares.
pub async fn rotate_root(
    State(state): State<AppState>,
    caller: Caller<Operator>,
    OptionalJsonBody(body): OptionalJsonBody<RotateRootBody>,
) -> Result<Json<Value>, VaultError> {
    let (identity, ip) = (&caller.0.identity, caller.0.addr.ip());
    let version = state.vault.rotate_root(body.recovery_shares, identity, ip).await?;
    Ok(Json(json!({"root_version": version})))
}
