//! Recoverable keys need the vault. Until a vault client is configured, every call that needs
//! plaintext fails fast with 503 `VAULT_UNAVAILABLE`, and nothing is written.

use crate::http::error::ApiError;

/// The answer when no vault can be reached.
pub fn unavailable() -> ApiError {
    ApiError::unavailable(
        "VAULT_UNAVAILABLE",
        "recoverable keys need the vault, and this api has no vault configured",
    )
}
