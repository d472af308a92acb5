//! The OpenAPI document, generated from the handlers' annotations (utoipa) and served at
//! `GET /openapi.json`. Response bodies follow Unkey's v2 shapes, each `data` typed field by
//! field from the same types the answers are serialized from.

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// `meta` of every v2 answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// `req_…`, also in the logs.
    pub request_id: String,
}

/// A field-level problem of a 400.
#[derive(Serialize, ToSchema)]
pub struct FieldProblem {
    /// `body.<path>`.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

/// `error` of a failed v2 call.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The HTTP reason phrase.
    pub title: String,
    /// What went wrong, for people.
    pub detail: String,
    /// The HTTP status.
    pub status: u16,
    /// A URI ending in `/<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The stable code, such as `NOT_FOUND` or `VAULT_LOCKED`.
    pub code: String,
    /// Field-level problems (400s only).
    pub errors: Option<Vec<FieldProblem>>,
}

/// A failed v2 call.
#[derive(Serialize, ToSchema)]
pub struct ErrorResponse {
    /// Request metadata.
    pub meta: Meta,
    /// The error.
    pub error: ErrorDetail,
}

/// Where a list continues.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Whether another page follows.
    pub has_more: bool,
}

/// `{apiId}`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateApiData {
    /// `api_…`.
    pub api_id: String,
}

/// An API.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiData {
    /// `api_…`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Whether new keys may be recoverable (Strongbox's extension).
    pub store_encrypted_keys: bool,
}

/// A root key as listed: never the key itself.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RootKeyData {
    /// `rk_…`.
    pub key_id: String,
    /// The first characters.
    pub start: String,
    /// The last characters.
    pub end: String,
    /// Display name, or null.
    #[schema(required)]
    pub name: Option<String>,
    /// Permission patterns.
    pub permissions: Vec<String>,
    /// Disabled keys authenticate nothing.
    pub enabled: bool,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms; 0 when never used.
    pub last_used_at: i64,
    /// Unix ms, or null for never.
    #[schema(required)]
    pub expires: Option<i64>,
}

/// `{message: "OK"}`.
#[derive(Serialize, ToSchema)]
pub struct LivenessData {
    /// `OK`.
    pub message: String,
}

/// Declares a success envelope `{meta, data}` for the OpenAPI document; answers are built by
/// [`super::envelope::Data`] from the same `data` type.
macro_rules! envelope {
    ($($name:ident($data:ty): $doc:literal;)*) => {$(
        #[doc = $doc]
        #[derive(ToSchema)]
        #[allow(dead_code)]
        pub struct $name {
            /// Request metadata.
            meta: Meta,
            /// The result.
            data: $data,
        }
    )*};
}

/// Declares a list envelope `{meta, data: [...], pagination}`.
macro_rules! list_envelope {
    ($($name:ident($item:ty): $doc:literal;)*) => {$(
        #[doc = $doc]
        #[derive(ToSchema)]
        #[allow(dead_code)]
        pub struct $name {
            /// Request metadata.
            meta: Meta,
            /// The page.
            data: Vec<$item>,
            /// Where the list continues.
            pagination: Pagination,
        }
    )*};
}

envelope! {
    CreateApiResponse(CreateApiData): "apis.createApi's answer.";
    ApiResponse(ApiData): "apis.getApi's answer.";
    EmptyResponse(super::views::EmptyData): "An answer without data: `{meta, data: {}}`.";
    KeyResponse(super::views::KeyData): "A key (KeyResponseData).";
    CreatedKeyResponse(super::views::CreatedKeyData): "A new key, shown once.";
    CreditsResponse(super::views::CreditsData): "Credits after keys.updateCredits.";
    VerifyResponse(super::verify::VerifyData): "A verification: every outcome is 200.";
    LivenessResponse(LivenessData): "The liveness probe's answer.";
    CreateIdentityResponse(super::identities::CreateIdentityData): "identities.createIdentity's answer.";
    IdentityResponse(super::views::IdentityData): "An identity.";
    LimitResponse(super::ratelimit::LimitData): "ratelimit.limit's answer.";
    MultiLimitResponse(super::ratelimit::MultiLimitData): "ratelimit.multiLimit's answer.";
    SetOverrideResponse(super::ratelimit::SetOverrideData): "ratelimit.setOverride's answer.";
    OverrideResponse(super::ratelimit::OverrideData): "ratelimit.getOverride's answer.";
}

/// An answer without data: `{meta}` (identities.deleteIdentity, as Unkey's).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MetaOnlyResponse {
    /// Request metadata.
    meta: Meta,
}

list_envelope! {
    KeyListResponse(super::views::KeyData): "A page of keys ordered by id.";
    RootKeyListResponse(RootKeyData): "A page of root keys ordered by id.";
    IdentityListResponse(super::views::IdentityData): "A page of identities ordered by id.";
    OverrideListResponse(super::ratelimit::OverrideData): "A page of overrides ordered by id.";
}

struct BearerRootKey;

impl Modify for BearerRootKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "rootKey",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A root key, sb_ + 64 hex characters. Only as a Bearer header.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document's frame; `routes!` adds every path.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Strongbox API",
        description = "Self-hosted API keys in the wire format of Unkey's v2 keys API, plus seed 003's v1 calls.",
    ),
    modifiers(&BearerRootKey),
    components(schemas(ErrorResponse))
)]
pub struct ApiDoc;
