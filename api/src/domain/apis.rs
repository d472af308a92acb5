//! APIs: a namespace of keys, and the recovery opt-in.

use super::Invalid;

/// An API.
#[derive(Debug, Clone)]
pub struct Api {
    /// `api_…`.
    pub id: String,
    /// Owner.
    pub workspace_id: String,
    /// Display name.
    pub name: String,
    /// Recoverable keys allowed.
    pub store_encrypted_keys: bool,
}

/// What `apis.updateApi` changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ApiPatch {
    /// A new name.
    pub name: Option<String>,
    /// Opt in to (or out of) recoverable keys. Not retroactive.
    pub store_encrypted_keys: Option<bool>,
}

/// Checks an API name: 1-255 characters, not blank.
pub fn check_name(name: &str) -> Result<(), Invalid> {
    if name.trim().is_empty() || name.chars().count() > 255 {
        return Err(Invalid::new("INVALID_NAME", "name", "name must be 1-255 characters"));
    }
    Ok(())
}
