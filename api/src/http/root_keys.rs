//! `rootKeys.createKey|listKeys|updateKey|rerollKey|deleteKey`. The rules (`root_key.*.manage`,
//! granting and acting only within the caller's own permissions) live in the service.

use axum::extract::State;
use serde::Deserialize;

use super::AppState;
use super::auth::Caller;
use super::envelope::{Data, Page};
use super::error::ApiError;
use super::extract::Body;
use super::keys::created;
use super::openapi::RootKeyData;
use super::views::nullable;
use super::views::{CreatedKeyData, EmptyData};
use crate::domain::root_keys::{NewRootKey, RootKey, RootKeyPatch};
use crate::domain::unix_ms;

/// rootKeys.createKey.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateRootKey {
    /// 1-100 permission patterns, each covered by the caller's own.
    #[schema(value_type = Vec<super::views::PermissionName>, min_items = 1, max_items = 100)]
    permissions: Vec<String>,
    /// Display name, at most 255 characters.
    #[serde(default)]
    #[schema(max_length = 255)]
    name: Option<String>,
    #[schema(value_type = Option<i64>, nullable)]
    #[serde(default, deserialize_with = "nullable")]
    expires: Option<Option<i64>>,
}

/// rootKeys.listKeys.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ListRootKeys {
    /// Page size, 1-100 (default 100).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    #[serde(default)]
    cursor: Option<String>,
}

/// rootKeys.updateKey.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRootKey {
    key_id: String,
    #[schema(value_type = Option<String>, nullable, max_length = 255)]
    #[serde(default, deserialize_with = "nullable")]
    name: Option<Option<String>>,
    /// 1-100 permission patterns, replacing the old ones.
    #[serde(default)]
    #[schema(value_type = Option<Vec<super::views::PermissionName>>, min_items = 1, max_items = 100)]
    permissions: Option<Vec<String>>,
    #[serde(default)]
    enabled: Option<bool>,
}

/// rootKeys.rerollKey.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RerollRootKey {
    key_id: String,
    /// Milliseconds until the old root key stops working; 0 or absent: at once.
    #[serde(default)]
    #[schema(minimum = 0)]
    expiration: Option<i64>,
}

/// rootKeys.deleteKey.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeleteRootKey {
    key_id: String,
}

/// `POST /v2/rootKeys.createKey`. The key appears in this response only.
#[utoipa::path(post, path = "/v2/rootKeys.createKey", tag = "rootKeys", request_body = CreateRootKey,
    responses((status = 200, description = "Creates a root key; it may grant only what the caller covers, and expires no later than the caller. data: {keyId, key}.", body = super::openapi::CreatedKeyResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<CreateRootKey>,
) -> Result<Data<CreatedKeyData>, ApiError> {
    let new = NewRootKey {
        name: body.name,
        permissions: body.permissions,
        expires: body.expires.flatten(),
    };
    Ok(Data(created(state.service.create_root_key(&caller, new).await?)))
}

fn view(key: &RootKey) -> RootKeyData {
    RootKeyData {
        key_id: key.id.clone(),
        start: key.start.clone(),
        end: key.end.clone(),
        name: key.name.clone(),
        permissions: key.permissions.clone(),
        enabled: key.enabled,
        created_at: unix_ms(key.created_at),
        last_used_at: key.last_used_at.map_or(0, unix_ms),
        expires: key.expires_at.map(unix_ms),
    }
}

/// `POST /v2/rootKeys.listKeys`.
#[utoipa::path(post, path = "/v2/rootKeys.listKeys", tag = "rootKeys", request_body = ListRootKeys,
    responses((status = 200, description = "A page of root keys, never the keys themselves.", body = super::openapi::RootKeyListResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<ListRootKeys>,
) -> Result<Page<RootKeyData>, ApiError> {
    let (page, cursor) =
        state.service.list_root_keys(&caller, body.cursor.as_deref(), body.limit).await?;
    Ok(Page { data: page.iter().map(view).collect(), cursor })
}

/// `POST /v2/rootKeys.updateKey`: takes effect at once on every replica.
#[utoipa::path(post, path = "/v2/rootKeys.updateKey", tag = "rootKeys", request_body = UpdateRootKey,
    responses((status = 200, description = "Updates a root key the caller covers; applies at once on every replica. data: {}.", body = super::openapi::EmptyResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<UpdateRootKey>,
) -> Result<Data<EmptyData>, ApiError> {
    let patch =
        RootKeyPatch { name: body.name, permissions: body.permissions, enabled: body.enabled };
    state.service.update_root_key(&caller, &body.key_id, patch).await?;
    Ok(Data(EmptyData {}))
}

/// `POST /v2/rootKeys.rerollKey`: a new root key with the same permissions; the old one stops
/// working after `expiration` ms (at once for 0 or null).
#[utoipa::path(post, path = "/v2/rootKeys.rerollKey", tag = "rootKeys", request_body = RerollRootKey,
    responses((status = 200, description = "A new root key with the same permissions and enabled state, expiring no later than the caller. data: {keyId, key}.", body = super::openapi::CreatedKeyResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn reroll(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<RerollRootKey>,
) -> Result<Data<CreatedKeyData>, ApiError> {
    Ok(Data(created(state.service.reroll_root_key(&caller, &body.key_id, body.expiration).await?)))
}

/// `POST /v2/rootKeys.deleteKey`: takes effect at once on every replica.
#[utoipa::path(post, path = "/v2/rootKeys.deleteKey", tag = "rootKeys", request_body = DeleteRootKey,
    responses((status = 200, description = "Deletes a root key the caller covers. data: {}.", body = super::openapi::EmptyResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<DeleteRootKey>,
) -> Result<Data<EmptyData>, ApiError> {
    state.service.delete_root_key(&caller, &body.key_id).await?;
    Ok(Data(EmptyData {}))
}
