//! `keys.createKey`, `keys.getKey`, `keys.updateKey`, `keys.deleteKey`, `keys.rerollKey`,
//! `keys.updateCredits` and `keys.whoami`.

use axum::extract::State;
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::auth::Caller;
use super::envelope::Data;
use super::error::ApiError;
use super::extract::Body;
use super::views::{
    CreatedKeyData, CreditsData, CreditsIn, EmptyData, KeyData, RatelimitIn, nullable,
    ratelimit_specs, refuse_roles,
};
use crate::domain::keys::{CreditsPatch, KeyPatch, NewKey, byte_length, check_remaining};
use crate::domain::{Invalid, future_time};
use crate::service::Parsed;
use crate::service::keys::Created;

/// The createKey request.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateKey {
    /// The API the key belongs to.
    api_id: String,
    /// 1-16 of `A-Z a-z 0-9 _`, joined to the key with `_`.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_]{1,16}$")]
    prefix: Option<String>,
    /// Display name, at most 255 characters.
    #[serde(default)]
    #[schema(max_length = 255)]
    name: Option<String>,
    /// Random bytes in the key, 16-255 (default 16).
    #[serde(default)]
    #[schema(minimum = 16, maximum = 255)]
    byte_length: Option<i64>,
    /// Your id for the key's owner, 1-255 characters; an identity is created on first use.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    external_id: Option<String>,
    /// A JSON object of at most 10 KB.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    meta: Option<Value>,
    /// Not supported: a non-empty list is refused with 501.
    #[serde(default)]
    #[schema(ignore)]
    roles: Option<Vec<String>>,
    /// Permission patterns, at most 1000.
    #[serde(default)]
    #[schema(value_type = Option<Vec<super::views::PermissionName>>, max_items = 1000)]
    permissions: Option<Vec<String>>,
    /// Expiry in Unix ms, in the future.
    #[serde(default)]
    expires: Option<i64>,
    /// Credits, spent by verifications.
    #[serde(default)]
    credits: Option<CreditsIn>,
    /// Rate limits, with unique names; at most 100.
    #[serde(default)]
    #[schema(max_items = 100)]
    ratelimits: Option<Vec<RatelimitIn>>,
    /// Enabled from the start (default true).
    #[serde(default)]
    enabled: Option<bool>,
    /// Store the key encrypted through the vault (needs the API's opt-in and `encrypt_key`).
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
    /// The key.
    key_id: String,
    /// Accepted for compatibility: deletion is always permanent.
    #[serde(default)]
    #[allow(dead_code)]
    permanent: Option<bool>,
}

/// `{"keyId","expiration"}`: milliseconds until the old key stops verifying (0: at once).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RerollKey {
    /// The key to replace.
    key_id: String,
    /// Milliseconds until the old key stops verifying; 0 or absent: at once.
    #[serde(default)]
    #[schema(minimum = 0)]
    expiration: Option<i64>,
}

/// `{"keyId","operation","value"?}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateCredits {
    /// The key.
    key_id: String,
    /// `set`, `increment` or `decrement`.
    #[schema(value_type = super::views::CreditOperation)]
    operation: String,
    /// 0 to 10^15; null (only with `set`) is unlimited.
    #[schema(value_type = Option<i64>, nullable, minimum = 0, maximum = 1_000_000_000_000_000_i64)]
    #[serde(default, deserialize_with = "nullable")]
    value: Option<Option<i64>>,
}

/// `{"key"}`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct Whoami {
    /// The key itself, 1-1024 characters.
    #[schema(min_length = 1, max_length = 1024)]
    key: String,
}

/// The updateKey request: an absent field is unchanged, `null` clears it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateKey {
    key_id: String,
    #[schema(value_type = Option<String>, nullable, max_length = 255)]
    #[serde(default, deserialize_with = "nullable")]
    name: Option<Option<String>>,
    #[schema(value_type = Option<String>, nullable, min_length = 1, max_length = 255)]
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
    #[schema(value_type = Option<Vec<RatelimitIn>>, nullable, max_items = 100)]
    #[serde(default, deserialize_with = "nullable")]
    ratelimits: Option<Option<Vec<RatelimitIn>>>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<super::views::PermissionName>>, max_items = 1000)]
    permissions: Option<Vec<String>>,
    #[serde(default)]
    #[schema(ignore)]
    roles: Option<Vec<String>>,
}

/// `credits` of updateKey.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateCreditsIn {
    #[schema(value_type = Option<i64>, nullable, minimum = 0, maximum = 1_000_000_000_000_000_i64)]
    #[serde(default, deserialize_with = "nullable")]
    remaining: Option<Option<i64>>,
    #[schema(value_type = Option<super::views::RefillIn>, nullable)]
    #[serde(default, deserialize_with = "nullable")]
    refill: Option<Option<super::views::RefillIn>>,
}

impl CreateKey {
    /// The API, whether recoverable, and the rest in domain terms (checked after authorization).
    pub fn into_parts(self) -> (String, bool, Parsed<NewKey>) {
        let api_id = self.api_id.clone();
        let recoverable = self.recoverable == Some(true);
        (api_id, recoverable, self.into_new_key())
    }

    fn into_new_key(self) -> Parsed<NewKey> {
        refuse_roles(&self.roles)?;
        if let Some(prefix) = &self.prefix {
            strongbox_shared::keys::check_prefix(prefix)
                .map_err(|e| Invalid::new("INVALID_PREFIX", "prefix", e.to_string()))?;
        }
        let byte_length = byte_length(self.byte_length)?;
        let expires_at = self.expires.map(|ms| future_time(ms, "expires")).transpose()?;
        let (credits_remaining, refill) = match self.credits {
            Some(c) => {
                check_remaining(c.remaining)?;
                (c.remaining, c.refill.map(|r| r.parse("credits.refill")).transpose()?)
            }
            None => (None, None),
        };
        if refill.is_some() && credits_remaining.is_none() {
            return Err(Invalid::new(
                "INVALID_CREDITS",
                "credits.remaining",
                "a refill needs a number of remaining credits",
            )
            .into());
        }
        Ok(NewKey {
            prefix: self.prefix,
            byte_length,
            name: self.name,
            external_id: self.external_id,
            meta: self.meta,
            permissions: self.permissions.unwrap_or_default(),
            expires_at,
            credits_remaining,
            refill,
            ratelimits: ratelimit_specs(self.ratelimits.unwrap_or_default()),
            enabled: self.enabled.unwrap_or(true),
        })
    }
}

impl UpdateKey {
    fn into_patch(self) -> Parsed<KeyPatch> {
        refuse_roles(&self.roles)?;
        let credits = match self.credits {
            None => None,
            Some(None) => Some(CreditsPatch::Clear),
            Some(Some(c)) => {
                if let Some(remaining) = c.remaining {
                    check_remaining(remaining)?;
                }
                let refill = match c.refill {
                    None => None,
                    Some(None) => Some(None),
                    Some(Some(r)) => Some(Some(r.parse("credits.refill")?)),
                };
                Some(CreditsPatch::Change { remaining: c.remaining, refill })
            }
        };
        Ok(KeyPatch {
            name: self.name,
            external_id: self.external_id,
            meta: self.meta,
            expires_at: match self.expires {
                None => None,
                Some(None) => Some(None),
                Some(Some(ms)) => Some(Some(future_time(ms, "expires")?)),
            },
            enabled: self.enabled,
            permissions: self.permissions,
            ratelimits: self.ratelimits.map(|r| ratelimit_specs(r.unwrap_or_default())),
            credits,
        })
    }
}

/// `{keyId, key}`: the key appears here and never again.
pub fn created(created: Created) -> CreatedKeyData {
    CreatedKeyData { key_id: created.key_id, key: super::views::KeyText::new(&created.key) }
}

/// `POST /v2/keys.createKey`. The key appears in this response and never again.
#[utoipa::path(post, path = "/v2/keys.createKey", tag = "keys", request_body = CreateKey,
    responses((status = 200, description = "Creates a key. data: {keyId, key}; the key is shown only here.", body = super::openapi::CreatedKeyResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn create_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<CreateKey>,
) -> Result<Data<CreatedKeyData>, ApiError> {
    let (api_id, recoverable, new) = body.into_parts();
    Ok(Data(created(state.service.create_key(&caller, &api_id, recoverable, new).await?)))
}

/// `POST /v2/keys.getKey`.
#[utoipa::path(post, path = "/v2/keys.getKey", tag = "keys", request_body = GetKey,
    responses((status = 200, description = "A key (KeyResponseData).", body = super::openapi::KeyResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn get_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<GetKey>,
) -> Result<Data<KeyData>, ApiError> {
    let (key, plaintext) =
        state.service.get_key(&caller, &body.key_id, body.decrypt == Some(true)).await?;
    Ok(Data(KeyData::new(&key, plaintext.as_ref().map(|p| p.as_str()))))
}

/// `POST /v2/keys.deleteKey`. Deletion is always permanent; `permanent` is accepted for
/// compatibility.
#[utoipa::path(post, path = "/v2/keys.deleteKey", tag = "keys", request_body = DeleteKey,
    responses((status = 200, description = "Deletes a key. data: {}.", body = super::openapi::EmptyResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn delete_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<DeleteKey>,
) -> Result<Data<EmptyData>, ApiError> {
    state.service.delete_key(&caller, &body.key_id).await?;
    Ok(Data(EmptyData {}))
}

/// `POST /v2/keys.updateKey`.
#[utoipa::path(post, path = "/v2/keys.updateKey", tag = "keys", request_body = UpdateKey,
    responses((status = 200, description = "Updates a key; absent fields are unchanged, null clears. data: {}.", body = super::openapi::EmptyResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn update_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<UpdateKey>,
) -> Result<Data<EmptyData>, ApiError> {
    let key_id = body.key_id.clone();
    state.service.update_key(&caller, &key_id, body.into_patch()).await?;
    Ok(Data(EmptyData {}))
}

/// `POST /v2/keys.rerollKey`: a new key with the same settings; the old one stops verifying
/// after `expiration` milliseconds (at once for 0 or null).
#[utoipa::path(post, path = "/v2/keys.rerollKey", tag = "keys", request_body = RerollKey,
    responses((status = 200, description = "A new key with the same settings. data: {keyId, key}.", body = super::openapi::CreatedKeyResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn reroll_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<RerollKey>,
) -> Result<Data<CreatedKeyData>, ApiError> {
    Ok(Data(created(state.service.reroll_key(&caller, &body.key_id, body.expiration).await?)))
}

/// `POST /v2/keys.updateCredits`: `set`, `increment` or `decrement`.
#[utoipa::path(post, path = "/v2/keys.updateCredits", tag = "keys", request_body = UpdateCredits,
    responses((status = 200, description = "set, increment or decrement credits. data: {remaining, refill?}.", body = super::openapi::CreditsResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn update_credits(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<UpdateCredits>,
) -> Result<Data<CreditsData>, ApiError> {
    let (remaining, refill) = state
        .service
        .update_credits(&caller, &body.key_id, &body.operation, body.value.flatten())
        .await?;
    Ok(Data(CreditsData::new(remaining, refill.as_ref())))
}

/// `POST /v2/keys.whoami`: a key's data, found by the key itself, in the caller's workspace.
#[utoipa::path(post, path = "/v2/keys.whoami", tag = "keys", request_body = Whoami,
    responses((status = 200, description = "A key found by the key itself (KeyResponseData).", body = super::openapi::KeyResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn whoami(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<Whoami>,
) -> Result<Data<KeyData>, ApiError> {
    let key = state.service.whoami(&caller, &body.key).await?;
    Ok(Data(KeyData::new(&key, None)))
}
