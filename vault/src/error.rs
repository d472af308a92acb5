//! The vault's errors, each with an HTTP status and a stable code (`{"error":{"code","message"}}`).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Header set on every 503 caused by a locked vault.
pub const LOCKED_HEADER: &str = "x-strongbox-locked";

/// Everything a vault call can fail with. Messages never carry keys, plaintexts or ciphertexts.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The vault is locked (or not yet initialized) and the route needs it unlocked.
    #[error("the vault is locked; an operator must unlock it")]
    Locked,
    /// The vault has no root record yet.
    #[error("the vault is not initialized; run `strongbox-vault initialize`")]
    NotInitialized,
    /// `initialize` on an initialized vault.
    #[error("the vault is already initialized")]
    AlreadyInitialized,
    /// The server key does not open the root record.
    #[error("wrong server key")]
    WrongKey,
    /// Too many wrong keys from this client; try again later.
    #[error("too many failed attempts; retry after {retry_after_seconds} s")]
    TooManyAttempts {
        /// Seconds to wait.
        retry_after_seconds: u64,
    },
    /// A chosen server key is too short.
    #[error("the server key must be at least {min} characters")]
    WeakKey {
        /// The minimum length.
        min: usize,
    },
    /// The client's identity lacks the role this route needs.
    #[error("identity {identity} may not call this route")]
    Forbidden {
        /// The caller's SPIFFE id, or a description of why it has none.
        identity: String,
    },
    /// The body is not the JSON this route takes.
    #[error("{0}")]
    InvalidRequest(String),
    /// A keyring name outside `[A-Za-z0-9_-]{{1,64}}`.
    #[error("keyring names are 1-64 characters of A-Z, a-z, 0-9, '_' and '-'")]
    InvalidKeyring,
    /// A context outside 1-256 bytes.
    #[error("item {index}: context must be 1-256 bytes of UTF-8")]
    InvalidContext {
        /// The item.
        index: usize,
    },
    /// A plaintext that is not standard padded base64.
    #[error("item {index}: plaintext must be standard padded base64")]
    InvalidPlaintext {
        /// The item.
        index: usize,
    },
    /// A plaintext over the size limit.
    #[error("item {index}: plaintext exceeds {limit} bytes")]
    PlaintextTooLarge {
        /// The item.
        index: usize,
        /// The limit.
        limit: usize,
    },
    /// Too many items in one batch.
    #[error("at most {limit} items per call")]
    TooManyItems {
        /// The limit.
        limit: usize,
    },
    /// An empty batch.
    #[error("items must not be empty")]
    NoItems,
    /// The body exceeds the size limit.
    #[error("request body exceeds {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// No such keyring.
    #[error("keyring not found")]
    KeyringNotFound,
    /// The keyring was crypto-shredded.
    #[error("keyring was deleted; its data can no longer be decrypted")]
    KeyringDeleted,
    /// A version argument outside what the keyring allows.
    #[error("{0}")]
    InvalidVersion(String),
    /// A concurrent change won; the caller may retry.
    #[error("{0}")]
    Conflict(String),
    /// Stored key material failed to authenticate: tampering or corruption.
    #[error("stored key material failed an integrity check")]
    Integrity,
    /// The database is unreachable, restarting or out of connections for now.
    #[error("the vault database is not answering right now; retry shortly")]
    DatabaseUnavailable,
    /// The audit log could not be written, so the call's result is withheld.
    #[error("the audit log cannot be written; the call's result is withheld")]
    AuditUnavailable,
    /// Anything else; logged where it happens, never echoed.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl VaultError {
    /// HTTP status and stable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use VaultError as E;
        match self {
            E::Locked => (StatusCode::SERVICE_UNAVAILABLE, "VAULT_LOCKED"),
            E::NotInitialized => (StatusCode::CONFLICT, "NOT_INITIALIZED"),
            E::AlreadyInitialized => (StatusCode::CONFLICT, "ALREADY_INITIALIZED"),
            E::WrongKey => (StatusCode::FORBIDDEN, "WRONG_KEY"),
            E::TooManyAttempts { .. } => (StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_ATTEMPTS"),
            E::WeakKey { .. } => (StatusCode::BAD_REQUEST, "WEAK_KEY"),
            E::Forbidden { .. } => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            E::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
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
            E::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
        }
    }
}

impl From<tokio_postgres::Error> for VaultError {
    fn from(error: tokio_postgres::Error) -> Self {
        if strongbox_shared::db::is_unavailable(&error) {
            tracing::warn!(%error, "vault database unavailable");
            return Self::DatabaseUnavailable;
        }
        Self::Internal(anyhow::Error::new(error).context("vault database"))
    }
}

impl From<deadpool_postgres::PoolError> for VaultError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        if strongbox_shared::db::is_unavailable(&error) {
            tracing::warn!(%error, "vault database unavailable");
            return Self::DatabaseUnavailable;
        }
        Self::Internal(anyhow::Error::new(error).context("vault database pool"))
    }
}

impl From<crate::crypto::CryptoError> for VaultError {
    fn from(error: crate::crypto::CryptoError) -> Self {
        match error {
            crate::crypto::CryptoError::Authentication => Self::Integrity,
            other => Self::Internal(anyhow::Error::new(other)),
        }
    }
}

impl IntoResponse for VaultError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            Self::Internal(error) => {
                tracing::error!(code, error = format!("{error:#}"), "vault request failed");
            }
            Self::Integrity => {
                tracing::error!(code, "stored key material failed authentication");
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
