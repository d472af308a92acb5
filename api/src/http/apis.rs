//! `apis.createApi`, `apis.getApi`, `apis.updateApi` (Strongbox's recovery opt-in),
//! `apis.deleteApi` and `apis.listKeys`.

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::envelope::{Data, Page};
use super::error::ApiError;
use super::extract::Body;
use super::views::key_data;
use crate::startup::AppState;
use crate::store::{apis, keys};

/// `{"name"}`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateApi {
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
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    store_encrypted_keys: Option<bool>,
}

/// `{"apiId","limit"?,"cursor"?,"externalId"?,"decrypt"?}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListKeys {
    api_id: String,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default)]
    decrypt: Option<bool>,
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.len() > 255 {
        return Err(ApiError::invalid("INVALID_NAME", "name", "name must be 1-255 characters"));
    }
    Ok(())
}

/// Loads an API of the caller's workspace: 404 for missing or foreign ones.
pub async fn load(state: &AppState, caller: &Caller, api_id: &str) -> Result<apis::Api, ApiError> {
    let client = state.pool.get().await?;
    apis::get(&client, &caller.workspace_id, api_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("API {api_id} does not exist")))
}

/// `POST /v2/apis.createApi`.
#[utoipa::path(post, path = "/v2/apis.createApi", tag = "apis", request_body = CreateApi,
    responses((status = 200, description = "Creates an API. data: {apiId}.", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn create_api(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<CreateApi>,
) -> Result<Data<Value>, ApiError> {
    caller.require("api.*.create_api")?;
    check_name(&body.name)?;
    let api = apis::Api {
        id: strongbox_shared::id::new_id("api")?,
        workspace_id: caller.workspace_id.clone(),
        name: body.name,
        store_encrypted_keys: false,
    };
    apis::insert(&state.pool.get().await?, &api).await?;
    Ok(Data(json!({"apiId": api.id})))
}

/// `POST /v2/apis.getApi`.
#[utoipa::path(post, path = "/v2/apis.getApi", tag = "apis", request_body = ApiId,
    responses((status = 200, description = "Reads an API. data: {id, name, storeEncryptedKeys}.", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn get_api(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<ApiId>,
) -> Result<Data<Value>, ApiError> {
    let api = load(&state, &caller, &body.api_id).await?;
    caller.require(&format!("api.{}.read_api", api.id))?;
    Ok(Data(
        json!({"id": api.id, "name": api.name, "storeEncryptedKeys": api.store_encrypted_keys}),
    ))
}

/// `POST /v2/apis.updateApi`: rename, or opt in to (or out of) recoverable keys. The opt-in is
/// not retroactive: keys created before it were never stored.
#[utoipa::path(post, path = "/v2/apis.updateApi", tag = "apis", request_body = UpdateApi,
    responses((status = 200, description = "Strongbox extension: rename, or opt in to recoverable keys (not retroactive). data: {}.", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn update_api(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<UpdateApi>,
) -> Result<Data<Value>, ApiError> {
    let api = load(&state, &caller, &body.api_id).await?;
    caller.require(&format!("api.{}.update_api", api.id))?;
    let client = state.pool.get().await?;
    if let Some(name) = &body.name {
        check_name(name)?;
        apis::rename(&client, &api.id, name).await?;
    }
    if let Some(on) = body.store_encrypted_keys {
        apis::set_store_encrypted_keys(&client, &api.id, on).await?;
        tracing::info!(api_id = %api.id, store_encrypted_keys = on, "changed the recovery opt-in");
    }
    Ok(Data(json!({})))
}

/// `POST /v2/apis.deleteApi`: its keys stop verifying at once.
#[utoipa::path(post, path = "/v2/apis.deleteApi", tag = "apis", request_body = ApiId,
    responses((status = 200, description = "Deletes an API; its keys stop verifying at once. data: {}.", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn delete_api(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<ApiId>,
) -> Result<Data<Value>, ApiError> {
    let api = load(&state, &caller, &body.api_id).await?;
    caller.require(&format!("api.{}.delete_api", api.id))?;
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    let deleted = apis::delete(&tx, &caller.workspace_id, &api.id).await?;
    crate::cache::announce_keys(&tx, &deleted).await?;
    tx.commit().await?;
    state.cache.forget_keys(&deleted);
    Ok(Data(json!({})))
}

/// `POST /v2/apis.listKeys`: a page of keys ordered by id.
#[utoipa::path(post, path = "/v2/apis.listKeys", tag = "apis", request_body = ListKeys,
    responses((status = 200, description = "A page of keys (KeyResponseData[]) ordered by id, with pagination.", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<ListKeys>,
) -> Result<Page<Value>, ApiError> {
    let api = load(&state, &caller, &body.api_id).await?;
    caller.require(&format!("api.{}.read_key", api.id))?;
    let decrypt = body.decrypt == Some(true);
    if decrypt {
        caller.require(&format!("api.{}.decrypt_key", api.id))?;
    }
    let limit = super::envelope::page_limit(body.limit)?;
    let client = state.pool.get().await?;
    let mut page = keys::list(
        &client,
        &api.id,
        body.external_id.as_deref(),
        body.cursor.as_deref(),
        limit + 1,
    )
    .await?;
    // One pooled connection per request at a time: `open` takes its own, and holding this one
    // meanwhile could leave every request waiting for a second.
    drop(client);
    let cursor = super::envelope::cut_page(&mut page, limit, |k| &k.id);
    let plaintexts = if decrypt {
        let ids: Vec<String> = page.iter().map(|k| k.id.clone()).collect();
        crate::recovery::open(
            &state,
            &caller.workspace_id,
            &caller.key_id,
            &ids,
            crate::recovery::Mode::Page,
        )
        .await?
    } else {
        Default::default()
    };
    let data =
        page.iter().map(|k| key_data(k, plaintexts.get(&k.id).map(|p| p.as_str()))).collect();
    Ok(Page { data, cursor })
}
