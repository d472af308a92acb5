//! `ratelimit.limit`, `multiLimit`, `setOverride`, `getOverride`, `deleteOverride` and
//! `listOverrides`, in Unkey's v2 shapes.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::envelope::{Data, Page};
use super::error::ApiError;
use super::extract::{ArrayBody, Body};
use super::views::EmptyData;
use crate::domain::ratelimit::{LimitAnswer, LimitRequest, Override};

/// One limit to check.
#[derive(Deserialize, ToSchema)]
pub struct Limit {
    /// The namespace's id or name, 1-255 characters; created on first use.
    #[schema(min_length = 1, max_length = 255)]
    namespace: String,
    /// Window in milliseconds: 1 s to 30 days.
    #[schema(minimum = 1000, maximum = 2_592_000_000_i64)]
    duration: i64,
    /// Who is limited, 1-255 characters.
    #[schema(min_length = 1, max_length = 255)]
    identifier: String,
    /// Units per window, 0 to 10^15.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_000_i64)]
    limit: i64,
    /// Units this call takes (default 1), 0 to 10^15.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_000_i64)]
    cost: Option<i64>,
}

impl From<Limit> for LimitRequest {
    fn from(l: Limit) -> Self {
        Self {
            namespace: l.namespace,
            identifier: l.identifier,
            limit: l.limit,
            duration: l.duration,
            cost: l.cost.unwrap_or(1),
        }
    }
}

/// `ratelimit.limit`'s answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitData {
    /// The limit applied (an override's, if one matched).
    pub limit: i64,
    /// Units left in the window.
    pub remaining: i64,
    /// When the window ends, Unix ms.
    pub reset: i64,
    /// Within the limit.
    pub success: bool,
    /// The override applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_id: Option<String>,
}

/// One check of `ratelimit.multiLimit`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MultiLimitCheck {
    /// The namespace as asked.
    pub namespace: String,
    /// The identifier.
    pub identifier: String,
    /// The limit applied.
    pub limit: i64,
    /// Units left in the window.
    pub remaining: i64,
    /// When the window ends, Unix ms.
    pub reset: i64,
    /// Within the limit.
    pub passed: bool,
    /// The override applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_id: Option<String>,
}

/// `ratelimit.multiLimit`'s answer.
#[derive(Serialize, ToSchema)]
pub struct MultiLimitData {
    /// Every check passed.
    pub passed: bool,
    /// Each check, in the request's order.
    pub limits: Vec<MultiLimitCheck>,
}

/// `{"namespace","identifier","limit","duration"}`.
#[derive(Deserialize, ToSchema)]
pub struct SetOverride {
    /// The namespace's id or name; created on first use.
    #[schema(min_length = 1, max_length = 255)]
    namespace: String,
    /// An identifier, or a pattern where `*` matches any run of characters.
    #[schema(min_length = 1, max_length = 255)]
    identifier: String,
    /// Units per window, 0 to 10^15.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_000_i64)]
    limit: i64,
    /// Window in milliseconds: 1 s to 30 days.
    #[schema(minimum = 1000, maximum = 2_592_000_000_i64)]
    duration: i64,
}

/// `{overrideId}`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetOverrideData {
    /// `rlor_…`.
    pub override_id: String,
}

/// `{"namespace","identifier"}`.
#[derive(Deserialize, ToSchema)]
pub struct OverrideRef {
    /// The namespace's id or name.
    #[schema(min_length = 1, max_length = 255)]
    namespace: String,
    /// The identifier or pattern, exactly as set.
    #[schema(min_length = 1, max_length = 255)]
    identifier: String,
}

/// `{"namespace","cursor"?,"limit"?}`.
#[derive(Deserialize, ToSchema)]
pub struct ListOverrides {
    /// The namespace's id or name.
    #[schema(min_length = 1, max_length = 255)]
    namespace: String,
    #[serde(default)]
    cursor: Option<String>,
    /// Page size, 1-100 (default 10).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// An override.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OverrideData {
    /// `rlor_…`.
    pub override_id: String,
    /// Window, ms.
    pub duration: i64,
    /// The identifier or pattern.
    pub identifier: String,
    /// Units per window.
    pub limit: i64,
}

impl From<&Override> for OverrideData {
    fn from(o: &Override) -> Self {
        Self {
            override_id: o.id.clone(),
            duration: o.duration,
            identifier: o.identifier.clone(),
            limit: o.limit,
        }
    }
}

/// `POST /v2/ratelimit.limit`: needs `ratelimit.<namespaceId>.limit` (`ratelimit.*.limit` to
/// create the namespace on first use). A refusal is a 200 with `success: false`.
#[utoipa::path(post, path = "/v2/ratelimit.limit", tag = "ratelimit", request_body = Limit,
    responses((status = 200, description = "Counted: success says whether the identifier was within its limit.", body = super::openapi::LimitResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn limit(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<Limit>,
) -> Result<Data<LimitData>, ApiError> {
    let a = state.service.ratelimit(&caller, body.into()).await?;
    Ok(Data(LimitData {
        limit: a.limit,
        remaining: a.remaining,
        reset: a.reset,
        success: a.success,
        override_id: a.override_id,
    }))
}

/// `POST /v2/ratelimit.multiLimit`: a JSON array of 1-100 limits; every one counts.
#[utoipa::path(post, path = "/v2/ratelimit.multiLimit", tag = "ratelimit", request_body = Vec<Limit>,
    responses((status = 200, description = "Every check, and whether all passed.", body = super::openapi::MultiLimitResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn multi_limit(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ArrayBody(body): ArrayBody<Limit>,
) -> Result<Data<MultiLimitData>, ApiError> {
    let requests = body.into_iter().map(LimitRequest::from).collect();
    let answers = state.service.multi_limit(&caller, requests).await?;
    let limits: Vec<MultiLimitCheck> = answers
        .into_iter()
        .map(|a: LimitAnswer| MultiLimitCheck {
            namespace: a.namespace,
            identifier: a.identifier,
            limit: a.limit,
            remaining: a.remaining,
            reset: a.reset,
            passed: a.success,
            override_id: a.override_id,
        })
        .collect();
    Ok(Data(MultiLimitData { passed: limits.iter().all(|l| l.passed), limits }))
}

/// `POST /v2/ratelimit.setOverride`: needs `ratelimit.<namespaceId>.set_override`.
#[utoipa::path(post, path = "/v2/ratelimit.setOverride", tag = "ratelimit", request_body = SetOverride,
    responses((status = 200, description = "Creates or replaces the override. data: {overrideId}.", body = super::openapi::SetOverrideResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn set_override(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<SetOverride>,
) -> Result<Data<SetOverrideData>, ApiError> {
    let override_id = state
        .service
        .set_override(&caller, &body.namespace, &body.identifier, body.limit, body.duration)
        .await?;
    Ok(Data(SetOverrideData { override_id }))
}

/// `POST /v2/ratelimit.getOverride`: needs `ratelimit.<namespaceId>.read_override`.
#[utoipa::path(post, path = "/v2/ratelimit.getOverride", tag = "ratelimit", request_body = OverrideRef,
    responses((status = 200, description = "The override set for exactly this identifier or pattern.", body = super::openapi::OverrideResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn get_override(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<OverrideRef>,
) -> Result<Data<OverrideData>, ApiError> {
    let found = state.service.get_override(&caller, &body.namespace, &body.identifier).await?;
    Ok(Data(OverrideData::from(&found)))
}

/// `POST /v2/ratelimit.deleteOverride`: needs `ratelimit.<namespaceId>.delete_override`.
#[utoipa::path(post, path = "/v2/ratelimit.deleteOverride", tag = "ratelimit", request_body = OverrideRef,
    responses((status = 200, description = "Deleted. data: {}.", body = super::openapi::EmptyResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn delete_override(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<OverrideRef>,
) -> Result<Data<EmptyData>, ApiError> {
    state.service.delete_override(&caller, &body.namespace, &body.identifier).await?;
    Ok(Data(EmptyData {}))
}

/// `POST /v2/ratelimit.listOverrides`: needs `ratelimit.<namespaceId>.read_override`.
#[utoipa::path(post, path = "/v2/ratelimit.listOverrides", tag = "ratelimit", request_body = ListOverrides,
    responses((status = 200, description = "A page of overrides ordered by id, with pagination.", body = super::openapi::OverrideListResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn list_overrides(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<ListOverrides>,
) -> Result<Page<OverrideData>, ApiError> {
    let page =
        state.service.list_overrides(&caller, &body.namespace, body.cursor, body.limit).await?;
    Ok(Page { data: page.overrides.iter().map(OverrideData::from).collect(), cursor: page.cursor })
}
