//! `identities.createIdentity`, `getIdentity`, `listIdentities`, `updateIdentity` and
//! `deleteIdentity`, in Unkey's v2 shapes.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::envelope::{Data, MetaOnly, Page};
use super::error::ApiError;
use super::extract::Body;
use super::views::{IdentityData, RatelimitIn, ratelimit_specs};

/// `{"externalId","meta"?,"ratelimits"?}`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateIdentity {
    /// The caller's own id for the user, 1-255 characters, unique in the workspace.
    #[schema(min_length = 1, max_length = 255)]
    external_id: String,
    /// Free-form JSON object, at most 10 KB.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    meta: Option<Value>,
    /// Rate limits shared by every key of this identity; at most 100.
    #[serde(default)]
    #[schema(max_items = 100)]
    ratelimits: Option<Vec<RatelimitIn>>,
}

/// `{identityId}`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateIdentityData {
    /// `id_…`.
    pub identity_id: String,
}

/// `{"identity"}`: an identity id or external id.
#[derive(Deserialize, ToSchema)]
pub struct IdentityRef {
    /// `id_…` or the external id, 1-255 characters.
    #[schema(min_length = 1, max_length = 255)]
    identity: String,
}

/// `{"limit"?,"cursor"?,"search"?}`.
#[derive(Deserialize, ToSchema)]
pub struct ListIdentities {
    /// Page size, 1-100 (default 100).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    #[serde(default)]
    cursor: Option<String>,
    /// Only identities whose external id starts with this, at most 255 characters.
    #[serde(default)]
    #[schema(max_length = 255)]
    search: Option<String>,
}

/// `{"identity","meta"?,"ratelimits"?}`: given fields replace the stored ones.
#[derive(Deserialize, ToSchema)]
pub struct UpdateIdentity {
    /// `id_…` or the external id, 1-255 characters.
    #[schema(min_length = 1, max_length = 255)]
    identity: String,
    /// Replaces `meta`; a JSON object of at most 10 KB.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    meta: Option<Value>,
    /// Replaces every rate limit (a limit keeping its name keeps its id); at most 100.
    #[serde(default)]
    #[schema(max_items = 100)]
    ratelimits: Option<Vec<RatelimitIn>>,
}

/// `POST /v2/identities.createIdentity`: needs `identity.*.create_identity`.
#[utoipa::path(post, path = "/v2/identities.createIdentity", tag = "identities", request_body = CreateIdentity,
    responses((status = 200, description = "Creates an identity. data: {identityId}. 409 CONFLICT when the externalId exists.", body = super::openapi::CreateIdentityResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn create_identity(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<CreateIdentity>,
) -> Result<Data<CreateIdentityData>, ApiError> {
    let ratelimits = ratelimit_specs(body.ratelimits.unwrap_or_default());
    let identity_id =
        state.service.create_identity(&caller, body.external_id, body.meta, ratelimits).await?;
    Ok(Data(CreateIdentityData { identity_id }))
}

/// `POST /v2/identities.getIdentity`: needs `identity.*.read_identity`.
#[utoipa::path(post, path = "/v2/identities.getIdentity", tag = "identities", request_body = IdentityRef,
    responses((status = 200, description = "An identity, by id or externalId.", body = super::openapi::IdentityResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn get_identity(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<IdentityRef>,
) -> Result<Data<IdentityData>, ApiError> {
    let identity = state.service.get_identity(&caller, &body.identity).await?;
    Ok(Data(IdentityData::from_identity(&identity)))
}

/// `POST /v2/identities.listIdentities`: needs `identity.*.read_identity`.
#[utoipa::path(post, path = "/v2/identities.listIdentities", tag = "identities", request_body = ListIdentities,
    responses((status = 200, description = "A page of identities ordered by id, with pagination.", body = super::openapi::IdentityListResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn list_identities(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<ListIdentities>,
) -> Result<Page<IdentityData>, ApiError> {
    let page = state.service.list_identities(&caller, body.limit, body.cursor, body.search).await?;
    let data = page.identities.iter().map(IdentityData::from_identity).collect();
    Ok(Page { data, cursor: page.cursor })
}

/// `POST /v2/identities.updateIdentity`: needs `identity.*.update_identity`.
#[utoipa::path(post, path = "/v2/identities.updateIdentity", tag = "identities", request_body = UpdateIdentity,
    responses((status = 200, description = "The identity after the update; its keys see it at once on every replica.", body = super::openapi::IdentityResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn update_identity(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<UpdateIdentity>,
) -> Result<Data<IdentityData>, ApiError> {
    let ratelimits = body.ratelimits.map(ratelimit_specs);
    let identity =
        state.service.update_identity(&caller, &body.identity, body.meta, ratelimits).await?;
    Ok(Data(IdentityData::from_identity(&identity)))
}

/// `POST /v2/identities.deleteIdentity`: needs `identity.*.delete_identity`. Its keys keep
/// working, without the identity.
#[utoipa::path(post, path = "/v2/identities.deleteIdentity", tag = "identities", request_body = IdentityRef,
    responses((status = 200, description = "Deleted. The answer is {meta} only, as Unkey's.", body = super::openapi::MetaOnlyResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn delete_identity(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<IdentityRef>,
) -> Result<MetaOnly, ApiError> {
    state.service.delete_identity(&caller, &body.identity).await?;
    Ok(MetaOnly)
}
