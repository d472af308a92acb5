//! `apis.createApi`, `apis.getApi`, `apis.updateApi` (Strongbox's recovery opt-in),
//! `apis.deleteApi` and `apis.listKeys`.

use axum::extract::State;
use serde::Deserialize;

use super::AppState;
use super::auth::Caller;
use super::envelope::{Data, Page};
use super::error::ApiError;
use super::extract::Body;
use super::openapi::{ApiData, CreateApiData};
use super::views::{EmptyData, KeyData};
use crate::domain::apis::ApiPatch;
use crate::service::apis::ListKeys as ListKeysAsk;

/// `{"name"}`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateApi {
    /// Display name, 1-255 characters, not blank.
    #[schema(min_length = 1, max_length = 255)]
    name: String,
}

/// `{"apiId"}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiId {
    api_id: String,
}

/// `{"apiId","name"?,"storeEncryptedKeys"?}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateApi {
    api_id: String,
    /// A new display name, 1-255 characters, not blank.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    name: Option<String>,
    #[serde(default)]
    store_encrypted_keys: Option<bool>,
}

/// `{"apiId","limit"?,"cursor"?,"externalId"?,"decrypt"?}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListKeys {
    api_id: String,
    /// Page size, 1-100 (default 100).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default)]
    decrypt: Option<bool>,
}

/// `POST /v2/apis.createApi`.
#[utoipa::path(post, path = "/v2/apis.createApi", tag = "apis", request_body = CreateApi,
    responses((status = 200, description = "Creates an API. data: {apiId}.", body = super::openapi::CreateApiResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn create_api(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<CreateApi>,
) -> Result<Data<CreateApiData>, ApiError> {
    let id = state.service.create_api(&caller, body.name).await?;
    Ok(Data(CreateApiData { api_id: id }))
}

/// `POST /v2/apis.getApi`.
#[utoipa::path(post, path = "/v2/apis.getApi", tag = "apis", request_body = ApiId,
    responses((status = 200, description = "Reads an API. data: {id, name, storeEncryptedKeys}.", body = super::openapi::ApiResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn get_api(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<ApiId>,
) -> Result<Data<ApiData>, ApiError> {
    let api = state.service.get_api(&caller, &body.api_id).await?;
    Ok(Data(ApiData { id: api.id, name: api.name, store_encrypted_keys: api.store_encrypted_keys }))
}

/// `POST /v2/apis.updateApi`: rename, or opt in to (or out of) recoverable keys. The opt-in is
/// not retroactive: keys created before it were never stored.
#[utoipa::path(post, path = "/v2/apis.updateApi", tag = "apis", request_body = UpdateApi,
    responses((status = 200, description = "Strongbox extension: rename, or opt in to recoverable keys (not retroactive). data: {}.", body = super::openapi::EmptyResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn update_api(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<UpdateApi>,
) -> Result<Data<EmptyData>, ApiError> {
    let patch = ApiPatch { name: body.name, store_encrypted_keys: body.store_encrypted_keys };
    state.service.update_api(&caller, &body.api_id, patch).await?;
    Ok(Data(EmptyData {}))
}

/// `POST /v2/apis.deleteApi`: its keys stop verifying at once.
#[utoipa::path(post, path = "/v2/apis.deleteApi", tag = "apis", request_body = ApiId,
    responses((status = 200, description = "Deletes an API; its keys stop verifying at once. data: {}.", body = super::openapi::EmptyResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn delete_api(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<ApiId>,
) -> Result<Data<EmptyData>, ApiError> {
    state.service.delete_api(&caller, &body.api_id).await?;
    Ok(Data(EmptyData {}))
}

/// `POST /v2/apis.listKeys`: a page of keys ordered by id.
#[utoipa::path(post, path = "/v2/apis.listKeys", tag = "apis", request_body = ListKeys,
    responses((status = 200, description = "A page of keys (KeyResponseData[]) ordered by id, with pagination.", body = super::openapi::KeyListResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn list_keys(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<ListKeys>,
) -> Result<Page<KeyData>, ApiError> {
    let ask = ListKeysAsk {
        api_id: body.api_id,
        external_id: body.external_id,
        cursor: body.cursor,
        limit: body.limit,
        decrypt: body.decrypt == Some(true),
        total: false,
    };
    let page = state.service.list_keys(&caller, ask).await?;
    let data = page
        .keys
        .iter()
        .map(|k| KeyData::new(k, page.plaintexts.get(&k.id).map(|p| p.as_str())))
        .collect();
    Ok(Page { data, cursor: page.cursor })
}
