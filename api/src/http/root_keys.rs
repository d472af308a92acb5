//! `rootKeys.createKey|listKeys|updateKey|rerollKey|deleteKey`. The rules (`root_key.*.manage`,
//! granting and acting only within the caller's own permissions) live in the service.

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Caller;
use super::envelope::{Data, Page};
use super::error::ApiError;
use super::extract::Body;
use super::keys::created;
use super::views::nullable;
use crate::domain::root_keys::{NewRootKey, RootKey, RootKeyPatch};
use crate::domain::unix_ms;

/// rootKeys.createKey.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Create {
    permissions: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    #[schema(value_type = Option<i64>, nullable)]
    #[serde(default, deserialize_with = "nullable")]
    expires: Option<Option<i64>>,
}

/// rootKeys.listKeys.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct List {
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    cursor: Option<String>,
}

/// rootKeys.updateKey.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Update {
    key_id: String,
    #[schema(value_type = Option<String>, nullable)]
    #[serde(default, deserialize_with = "nullable")]
    name: Option<Option<String>>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    #[serde(default)]
    enabled: Option<bool>,
}

/// rootKeys.rerollKey.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reroll {
    key_id: String,
    #[serde(default)]
    expiration: Option<i64>,
}

/// rootKeys.deleteKey.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delete {
    key_id: String,
}

/// `POST /v2/rootKeys.createKey`. The key appears in this response only.
#[utoipa::path(post, path = "/v2/rootKeys.createKey", tag = "rootKeys", request_body = Create,
    responses((status = 200, description = "Creates a root key; it may grant only what the caller covers, and expires no later than the caller. data: {keyId, key}.", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<Create>,
) -> Result<Data<Value>, ApiError> {
    let new = NewRootKey {
        name: body.name,
        permissions: body.permissions,
        expires: body.expires.flatten(),
    };
    Ok(Data(created(&state.service.create_root_key(&caller, new).await?)))
}

fn view(key: &RootKey) -> Value {
    json!({
        "keyId": key.id,
        "start": key.start,
        "end": key.end,
        "name": key.name,
        "permissions": key.permissions,
        "enabled": key.enabled,
        "createdAt": unix_ms(key.created_at),
        "lastUsedAt": key.last_used_at.map_or(0, unix_ms),
        "expires": key.expires_at.map(unix_ms),
    })
}

/// `POST /v2/rootKeys.listKeys`.
#[utoipa::path(post, path = "/v2/rootKeys.listKeys", tag = "rootKeys", request_body = List,
    responses((status = 200, description = "A page of root keys, never the keys themselves.", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<List>,
) -> Result<Page<Value>, ApiError> {
    let (page, cursor) =
        state.service.list_root_keys(&caller, body.cursor.as_deref(), body.limit).await?;
    Ok(Page { data: page.iter().map(view).collect(), cursor })
}

/// `POST /v2/rootKeys.updateKey`: takes effect at once on every replica.
#[utoipa::path(post, path = "/v2/rootKeys.updateKey", tag = "rootKeys", request_body = Update,
    responses((status = 200, description = "Updates a root key the caller covers; applies at once on every replica. data: {}.", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<Update>,
) -> Result<Data<Value>, ApiError> {
    let patch =
        RootKeyPatch { name: body.name, permissions: body.permissions, enabled: body.enabled };
    state.service.update_root_key(&caller, &body.key_id, patch).await?;
    Ok(Data(json!({})))
}

/// `POST /v2/rootKeys.rerollKey`: a new root key with the same permissions; the old one stops
/// working after `expiration` ms (at once for 0 or null).
#[utoipa::path(post, path = "/v2/rootKeys.rerollKey", tag = "rootKeys", request_body = Reroll,
    responses((status = 200, description = "A new root key with the same permissions and enabled state, expiring no later than the caller. data: {keyId, key}.", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn reroll(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<Reroll>,
) -> Result<Data<Value>, ApiError> {
    Ok(Data(created(&state.service.reroll_root_key(&caller, &body.key_id, body.expiration).await?)))
}

/// `POST /v2/rootKeys.deleteKey`: takes effect at once on every replica.
#[utoipa::path(post, path = "/v2/rootKeys.deleteKey", tag = "rootKeys", request_body = Delete,
    responses((status = 200, description = "Deletes a root key the caller covers. data: {}.", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<Delete>,
) -> Result<Data<Value>, ApiError> {
    state.service.delete_root_key(&caller, &body.key_id).await?;
    Ok(Data(json!({})))
}
