//! The OpenAPI document, generated from the handlers' annotations (utoipa) and served at
//! `GET /openapi.json`. Response bodies follow Unkey's v2 shapes; their `data` is described per
//! call.

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

/// A successful v2 call: `data` is the call's result (see its description); lists add
/// `pagination: {cursor?, hasMore}`.
#[derive(Serialize, ToSchema)]
pub struct SuccessResponse {
    /// Request metadata.
    pub meta: Meta,
    /// The result.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
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
    components(schemas(ErrorResponse, SuccessResponse))
)]
pub struct ApiDoc;
