//! `keys.createKey`, `keys.getKey`, `keys.updateKey`, `keys.deleteKey`, `keys.rerollKey`,
//! `keys.updateCredits` and `keys.whoami`.

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use strongbox_shared::keys as keygen;

use super::apis::load as load_api;
use super::auth::Caller;
use super::envelope::Data;
use super::error::ApiError;
use super::extract::Body;
use super::views::{
    CreditsIn, RatelimitIn, check_meta, check_permissions, credits_data, key_data, nullable,
    parse_expires, parse_ratelimits, refuse_roles,
};
use crate::startup::AppState;
use crate::store::keys::{self, Key};

/// The createKey request.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateKey {
    api_id: String,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    byte_length: Option<i64>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    meta: Option<Value>,
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    #[serde(default)]
    expires: Option<i64>,
    #[serde(default)]
    credits: Option<CreditsIn>,
    #[serde(default)]
    ratelimits: Option<Vec<RatelimitIn>>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    recoverable: Option<bool>,
}

/// `{"keyId","decrypt"?}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GetKey {
    key_id: String,
    #[serde(default)]
    decrypt: Option<bool>,
}

/// `{"keyId","permanent"?}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeleteKey {
    key_id: String,
}

/// `{"keyId","expiration"}`: milliseconds until the old key stops verifying (0: at once).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RerollKey {
    key_id: String,
    #[serde(default)]
    expiration: Option<i64>,
}

/// `{"keyId","operation","value"?}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateCredits {
    key_id: String,
    operation: String,
    #[schema(value_type = Option<i64>, nullable)]
    #[serde(default, deserialize_with = "nullable")]
    value: Option<Option<i64>>,
}

/// `{"key"}`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct Whoami {
    key: String,
}

/// The updateKey request: an absent field is unchanged, `null` clears it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateKey {
    key_id: String,
    #[schema(value_type = Option<String>, nullable)]
    #[serde(default, deserialize_with = "nullable")]
    name: Option<Option<String>>,
    #[schema(value_type = Option<String>, nullable)]
    #[serde(default, deserialize_with = "nullable")]
    external_id: Option<Option<String>>,
    #[schema(value_type = Option<Object>, nullable)]
    #[serde(default, deserialize_with = "nullable")]
    meta: Option<Option<Value>>,
    #[schema(value_type = Option<i64>, nullable)]
    #[serde(default, deserialize_with = "nullable")]
    expires: Option<Option<i64>>,
    #[schema(value_type = Option<UpdateCreditsIn>, nullable)]
    #[serde(default, deserialize_with = "nullable")]
    credits: Option<Option<UpdateCreditsIn>>,
    #[schema(value_type = Option<Vec<RatelimitIn>>, nullable)]
    #[serde(default, deserialize_with = "nullable")]
    ratelimits: Option<Option<Vec<RatelimitIn>>>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    #[serde(default)]
    roles: Option<Vec<String>>,
}

/// `credits` of updateKey.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateCreditsIn {
    #[schema(value_type = Option<i64>, nullable)]
    #[serde(default, deserialize_with = "nullable")]
    remaining: Option<Option<i64>>,
    #[schema(value_type = Option<super::views::RefillIn>, nullable)]
    #[serde(default, deserialize_with = "nullable")]
    refill: Option<Option<super::views::RefillIn>>,
}

/// Loads a key of the caller's workspace: 404 for missing or foreign ones.
async fn load(state: &AppState, caller: &Caller, key_id: &str) -> Result<Key, ApiError> {
    let client = state.pool.get().await?;
    keys::get(&client, &caller.workspace_id, key_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("key {key_id} does not exist")))
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.len() > 255 {
        return Err(ApiError::invalid(
            "INVALID_NAME",
            "name",
            "name must be at most 255 characters",
        ));
    }
    Ok(())
}

/// Everything of createKey that needs no database, checked before anything is written.
struct NewKeySpec {
    key: Key,
    plaintext: String,
    external_id: Option<String>,
}

fn new_key_spec(caller: &Caller, api_id: &str, body: CreateKey) -> Result<NewKeySpec, ApiError> {
    refuse_roles(&body.roles)?;
    if let Some(prefix) = &body.prefix {
        keygen::check_prefix(prefix)
            .map_err(|e| ApiError::invalid("INVALID_PREFIX", "prefix", e.to_string()))?;
    }
    let byte_length = body.byte_length.unwrap_or(16);
    let byte_length_ok = usize::try_from(byte_length)
        .is_ok_and(|n| (keygen::MIN_BYTE_LENGTH..=keygen::MAX_BYTE_LENGTH).contains(&n));
    if !byte_length_ok {
        return Err(ApiError::invalid(
            "INVALID_BYTE_LENGTH",
            "byteLength",
            "byteLength must be 16-255",
        ));
    }
    if let Some(name) = &body.name {
        check_name(name)?;
    }
    if let Some(meta) = &body.meta {
        check_meta(meta)?;
    }
    let permissions = body.permissions.unwrap_or_default();
    check_permissions(&permissions)?;
    let expires_at = body.expires.map(|ms| parse_expires(ms, "expires")).transpose()?;
    let (credits_remaining, refill) = match body.credits {
        Some(c) => {
            if c.remaining.is_some_and(|r| r < 0) {
                return Err(ApiError::invalid(
                    "INVALID_CREDITS",
                    "credits.remaining",
                    "remaining must not be negative",
                ));
            }
            (c.remaining, c.refill.map(|r| r.parse("credits.refill")).transpose()?)
        }
        None => (None, None),
    };
    if refill.is_some() && credits_remaining.is_none() {
        return Err(ApiError::invalid(
            "INVALID_CREDITS",
            "credits.remaining",
            "a refill needs a number of remaining credits",
        ));
    }
    let ratelimits = parse_ratelimits(body.ratelimits.unwrap_or_default())?;
    let len = usize::try_from(byte_length).unwrap_or(16);
    let plaintext = keygen::new_customer_key(body.prefix.as_deref(), len)
        .map_err(|e| ApiError::internal(anyhow::Error::new(e)))?;
    let key = Key {
        id: strongbox_shared::id::new_id("key")?,
        workspace_id: caller.workspace_id.clone(),
        api_id: api_id.to_owned(),
        start: keygen::start(&plaintext, body.prefix.as_deref()),
        prefix: body.prefix,
        byte_length: i16::try_from(byte_length).unwrap_or(16),
        name: body.name,
        identity: None,
        meta: body.meta,
        permissions,
        expires_at,
        enabled: body.enabled.unwrap_or(true),
        credits_remaining,
        refill,
        last_refill_at: None,
        ratelimits,
        created_at: time::OffsetDateTime::now_utc(),
        updated_at: None,
        last_used_at: None,
    };
    Ok(NewKeySpec { key, plaintext, external_id: body.external_id })
}

/// `POST /v2/keys.createKey`. The key appears in this response and never again.
#[utoipa::path(post, path = "/v2/keys.createKey", tag = "keys", request_body = CreateKey,
    responses((status = 200, description = "Creates a key. data: {keyId, key}; the key is shown only here.", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<CreateKey>,
) -> Result<Data<Value>, ApiError> {
    let api = load_api(&state, &caller, &body.api_id).await?;
    caller.require(&format!("api.{}.create_key", api.id))?;
    let recoverable = body.recoverable == Some(true);
    if recoverable {
        caller.require(&format!("api.{}.encrypt_key", api.id))?;
        if !api.store_encrypted_keys {
            return Err(ApiError::precondition_failed(format!(
                "API {} does not store encrypted keys; opt in with apis.updateApi {{\"storeEncryptedKeys\": true}} first (it is not retroactive)",
                api.id
            )));
        }
    }
    let spec = new_key_spec(&caller, &api.id, body)?;
    // The key id exists before encryption and is the ciphertext's context; if the vault call
    // fails, nothing has been written.
    let sealed = if recoverable {
        Some(
            crate::recovery::seal(&state, &caller.workspace_id, &spec.key.id, &spec.plaintext)
                .await?,
        )
    } else {
        None
    };
    let mut key = spec.key;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    if let Some(external_id) = &spec.external_id {
        key.identity = Some((
            keys::identity(&tx, &caller.workspace_id, external_id).await?,
            external_id.clone(),
        ));
    }
    keys::insert(&tx, &key, &keygen::hash(&spec.plaintext)).await?;
    if let Some(sealed) = &sealed {
        crate::store::encrypted::insert(&tx, &caller.workspace_id, sealed).await?;
    }
    tx.commit().await?;
    tracing::info!(key_id = %key.id, api_id = %api.id, "created key");
    Ok(Data(json!({"keyId": key.id, "key": spec.plaintext})))
}

/// `POST /v2/keys.getKey`.
#[utoipa::path(post, path = "/v2/keys.getKey", tag = "keys", request_body = GetKey,
    responses((status = 200, description = "A key (KeyResponseData).", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn get_key(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<GetKey>,
) -> Result<Data<Value>, ApiError> {
    let key = load(&state, &caller, &body.key_id).await?;
    caller.require(&format!("api.{}.read_key", key.api_id))?;
    let plaintext = if body.decrypt == Some(true) {
        caller.require(&format!("api.{}.decrypt_key", key.api_id))?;
        let ids = [key.id.clone()];
        crate::recovery::open(
            &state,
            &caller.workspace_id,
            &caller.key_id,
            &ids,
            crate::recovery::Mode::One,
        )
        .await?
        .remove(&key.id)
    } else {
        None
    };
    Ok(Data(key_data(&key, plaintext.as_ref().map(|p| p.as_str()))))
}

/// `POST /v2/keys.deleteKey`. Deletion is always permanent; `permanent` is accepted for
/// compatibility.
#[utoipa::path(post, path = "/v2/keys.deleteKey", tag = "keys", request_body = DeleteKey,
    responses((status = 200, description = "Deletes a key. data: {}.", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn delete_key(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<DeleteKey>,
) -> Result<Data<Value>, ApiError> {
    let key = load(&state, &caller, &body.key_id).await?;
    caller.require(&format!("api.{}.delete_key", key.api_id))?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    keys::delete(&tx, &caller.workspace_id, &key.id).await?;
    crate::cache::announce_keys(&tx, std::slice::from_ref(&key.id)).await?;
    tx.commit().await?;
    state.cache.forget_keys(std::slice::from_ref(&key.id));
    tracing::info!(key_id = %key.id, "deleted key");
    Ok(Data(json!({})))
}

/// `POST /v2/keys.updateKey`.
#[utoipa::path(post, path = "/v2/keys.updateKey", tag = "keys", request_body = UpdateKey,
    responses((status = 200, description = "Updates a key; absent fields are unchanged, null clears. data: {}.", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn update_key(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<UpdateKey>,
) -> Result<Data<Value>, ApiError> {
    let mut key = load(&state, &caller, &body.key_id).await?;
    caller.require(&format!("api.{}.update_key", key.api_id))?;
    refuse_roles(&body.roles)?;
    if let Some(name) = body.name {
        if let Some(n) = &name {
            check_name(n)?;
        }
        key.name = name;
    }
    if let Some(meta) = body.meta {
        if let Some(m) = &meta {
            check_meta(m)?;
        }
        key.meta = meta;
    }
    if let Some(expires) = body.expires {
        key.expires_at = expires.map(|ms| parse_expires(ms, "expires")).transpose()?;
    }
    if let Some(enabled) = body.enabled {
        key.enabled = enabled;
    }
    if let Some(permissions) = body.permissions {
        check_permissions(&permissions)?;
        key.permissions = permissions;
    }
    if let Some(ratelimits) = body.ratelimits {
        key.ratelimits = parse_ratelimits(ratelimits.unwrap_or_default())?;
    }
    match body.credits {
        None => {}
        Some(None) => {
            key.credits_remaining = None;
            key.refill = None;
        }
        Some(Some(credits)) => {
            if let Some(remaining) = credits.remaining {
                if remaining.is_some_and(|r| r < 0) {
                    return Err(ApiError::invalid(
                        "INVALID_CREDITS",
                        "credits.remaining",
                        "remaining must not be negative",
                    ));
                }
                key.credits_remaining = remaining;
            }
            if let Some(refill) = credits.refill {
                key.refill = refill.map(|r| r.parse("credits.refill")).transpose()?;
            }
        }
    }
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    if let Some(external_id) = body.external_id {
        key.identity = match external_id {
            Some(e) => Some((keys::identity(&tx, &caller.workspace_id, &e).await?, e)),
            None => None,
        };
    }
    keys::update(&tx, &key).await?;
    crate::cache::announce_keys(&tx, std::slice::from_ref(&key.id)).await?;
    tx.commit().await?;
    state.cache.forget_keys(std::slice::from_ref(&key.id));
    Ok(Data(json!({})))
}

/// `POST /v2/keys.rerollKey`: a new key with the same settings; the old one stops verifying
/// after `expiration` milliseconds (at once for 0 or null).
#[utoipa::path(post, path = "/v2/keys.rerollKey", tag = "keys", request_body = RerollKey,
    responses((status = 200, description = "A new key with the same settings. data: {keyId, key}.", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn reroll_key(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<RerollKey>,
) -> Result<Data<Value>, ApiError> {
    let old = load(&state, &caller, &body.key_id).await?;
    caller.require(&format!("api.{}.create_key", old.api_id))?;
    let expiration = body.expiration.unwrap_or(0);
    if expiration < 0 {
        return Err(ApiError::invalid(
            "INVALID_EXPIRATION",
            "expiration",
            "expiration must not be negative",
        ));
    }
    let len = usize::try_from(old.byte_length).unwrap_or(16);
    let plaintext = keygen::new_customer_key(old.prefix.as_deref(), len)
        .map_err(|e| ApiError::internal(e.into()))?;
    let mut new = old.clone();
    new.id = strongbox_shared::id::new_id("key")?;
    new.start = keygen::start(&plaintext, old.prefix.as_deref());
    new.created_at = time::OffsetDateTime::now_utc();
    new.updated_at = None;
    new.last_used_at = None;
    // A recoverable key stays recoverable while its API opts in; after an opt-out the new key is
    // a plain one (old keys still decrypt).
    let was_recoverable = {
        let client = state.pool.get().await?;
        !crate::store::encrypted::for_keys(&client, std::slice::from_ref(&old.id)).await?.is_empty()
    };
    let sealed =
        if was_recoverable && load_api(&state, &caller, &old.api_id).await?.store_encrypted_keys {
            caller.require(&format!("api.{}.encrypt_key", old.api_id))?;
            Some(crate::recovery::seal(&state, &caller.workspace_id, &new.id, &plaintext).await?)
        } else {
            None
        };
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    keys::insert(&tx, &new, &keygen::hash(&plaintext)).await?;
    if let Some(sealed) = &sealed {
        crate::store::encrypted::insert(&tx, &caller.workspace_id, sealed).await?;
    }
    if expiration == 0 {
        keys::delete(&tx, &caller.workspace_id, &old.id).await?;
    } else {
        let mut expiring = old.clone();
        let at = time::OffsetDateTime::now_utc() + time::Duration::milliseconds(expiration);
        expiring.expires_at = Some(old.expires_at.map_or(at, |e| e.min(at)));
        keys::update(&tx, &expiring).await?;
    }
    crate::cache::announce_keys(&tx, std::slice::from_ref(&old.id)).await?;
    tx.commit().await?;
    state.cache.forget_keys(std::slice::from_ref(&old.id));
    tracing::info!(old_key_id = %old.id, key_id = %new.id, "rerolled key");
    Ok(Data(json!({"keyId": new.id, "key": plaintext})))
}

/// `POST /v2/keys.updateCredits`: `set`, `increment` or `decrement`.
#[utoipa::path(post, path = "/v2/keys.updateCredits", tag = "keys", request_body = UpdateCredits,
    responses((status = 200, description = "set, increment or decrement credits. data: {remaining, refill?}.", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn update_credits(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<UpdateCredits>,
) -> Result<Data<Value>, ApiError> {
    let key = load(&state, &caller, &body.key_id).await?;
    caller.require(&format!("api.{}.update_key", key.api_id))?;
    let value = body.value.flatten();
    match (body.operation.as_str(), value) {
        ("set", v) if v.is_none_or(|v| v >= 0) => {}
        ("increment" | "decrement", Some(v)) if v >= 0 => {
            if key.credits_remaining.is_none() {
                return Err(ApiError::invalid(
                    "INVALID_CREDITS",
                    "operation",
                    "this key has unlimited credits; use set first",
                ));
            }
        }
        ("set" | "increment" | "decrement", _) => {
            return Err(ApiError::invalid(
                "INVALID_CREDITS",
                "value",
                "value must be a non-negative integer (null only with set)",
            ));
        }
        _ => {
            return Err(ApiError::invalid(
                "INVALID_CREDITS",
                "operation",
                "operation must be set, increment or decrement",
            ));
        }
    }
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let remaining = keys::change_credits(&tx, &key.id, &body.operation, value).await?;
    crate::cache::announce_keys(&tx, std::slice::from_ref(&key.id)).await?;
    tx.commit().await?;
    state.cache.forget_keys(std::slice::from_ref(&key.id));
    let refill = if remaining.is_some() { key.refill.as_ref() } else { None };
    Ok(Data(credits_data(remaining, refill)))
}

/// `POST /v2/keys.whoami`: a key's data, found by the key itself, in the caller's workspace.
#[utoipa::path(post, path = "/v2/keys.whoami", tag = "keys", request_body = Whoami,
    responses((status = 200, description = "A key found by the key itself (KeyResponseData).", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn whoami(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<Whoami>,
) -> Result<Data<Value>, ApiError> {
    let key = crate::verify::lookup(&state, &body.key).await?;
    let Some(key) = key.filter(|k| k.workspace_id == caller.workspace_id) else {
        return Err(ApiError::not_found("no such key"));
    };
    caller.require(&format!("api.{}.read_key", key.api_id))?;
    Ok(Data(key_data(Arc::as_ref(&key), None)))
}
