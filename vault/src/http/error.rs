//! How a [`VaultError`] goes on the wire: an HTTP status, a stable code in
//! `{"error":{"code","message"}}`, and the headers that tell a client what to do next. Kept at the
//! HTTP edge so the service layer below never depends on the web framework.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::VaultError;

/// Header set on every 503 caused by a locked vault.
pub const LOCKED_HEADER: &str = "x-strongbox-locked";

/// HTTP status and stable code of `error`.
pub fn status_and_code(error: &VaultError) -> (StatusCode, &'static str) {
    use VaultError as E;
    match error {
        E::Locked => (StatusCode::SERVICE_UNAVAILABLE, "VAULT_LOCKED"),
        E::NotInitialized => (StatusCode::CONFLICT, "NOT_INITIALIZED"),
        E::AlreadyInitialized => (StatusCode::CONFLICT, "ALREADY_INITIALIZED"),
        E::WrongKey => (StatusCode::FORBIDDEN, "WRONG_KEY"),
        E::TooManyAttempts { .. } => (StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_ATTEMPTS"),
        E::WeakKey { .. } => (StatusCode::BAD_REQUEST, "WEAK_KEY"),
        E::Forbidden { .. } => (StatusCode::FORBIDDEN, "FORBIDDEN"),
        E::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
        E::InvalidShare(_) => (StatusCode::BAD_REQUEST, "INVALID_SHARE"),
        E::InvalidKeyring => (StatusCode::BAD_REQUEST, "INVALID_KEYRING"),
        E::InvalidContext { .. } => (StatusCode::BAD_REQUEST, "INVALID_CONTEXT"),
        E::InvalidPlaintext { .. } => (StatusCode::BAD_REQUEST, "INVALID_PLAINTEXT"),
        E::PlaintextTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "PLAINTEXT_TOO_LARGE"),
        E::TooManyItems { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "TOO_MANY_ITEMS"),
        E::NoItems => (StatusCode::BAD_REQUEST, "NO_ITEMS"),
        E::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "BODY_TOO_LARGE"),
        E::KeyringNotFound => (StatusCode::NOT_FOUND, "KEYRING_NOT_FOUND"),
        E::KeyringDeleted => (StatusCode::GONE, "KEYRING_DELETED"),
        E::InvalidVersion(_) => (StatusCode::BAD_REQUEST, "INVALID_VERSION"),
        E::Conflict(_) => (StatusCode::CONFLICT, "CONFLICT"),
        E::Integrity => (StatusCode::INTERNAL_SERVER_ERROR, "INTEGRITY_ERROR"),
        E::AuditUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "AUDIT_UNAVAILABLE"),
        E::DatabaseUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "DATABASE_UNAVAILABLE"),
        E::TokenUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "TOKEN_UNAVAILABLE"),
        E::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
    }
}

impl IntoResponse for VaultError {
    fn into_response(self) -> Response {
        let (status, code) = status_and_code(&self);
        // 5xx are logged here, once, where they are answered. The target is pinned to the one
        // these lines had before this impl moved out of `error.rs`, so log filters and the JSON
        // log lines that operators already match on do not change.
        match &self {
            Self::Internal(error) => {
                tracing::error!(
                    target: "strongbox_vault::error",
                    code,
                    error = format!("{error:#}"),
                    "vault request failed"
                );
            }
            Self::Integrity => {
                tracing::error!(
                    target: "strongbox_vault::error",
                    code,
                    "stored key material failed authentication"
                );
            }
            _ => {}
        }
        let body = axum::Json(json!({"error": {"code": code, "message": self.to_string()}}));
        let mut response = (status, body).into_response();
        match &self {
            Self::Locked => {
                response.headers_mut().insert(LOCKED_HEADER, HeaderValue::from_static("true"));
            }
            Self::TooManyAttempts { retry_after_seconds } => {
                if let Ok(value) = HeaderValue::from_str(&retry_after_seconds.to_string()) {
                    response.headers_mut().insert(axum::http::header::RETRY_AFTER, value);
                }
            }
            _ => {}
        }
        response
    }
}
