//! Recoverable keys: sealing a new key through the vault, and opening stored ones for
//! `decrypt=true`. A locked or unreachable vault fails these calls fast (503) and never leaves a
//! half-created key or a silently missing plaintext.

use std::collections::HashMap;

use zeroize::Zeroizing;

use crate::http::envelope::request_id;
use crate::http::error::ApiError;
use crate::startup::AppState;
use crate::store::encrypted::{self, Sealed};
use crate::vault_client::{VaultClient, VaultFailure};

/// The answer when no vault is configured.
pub fn unavailable() -> ApiError {
    ApiError::unavailable(
        "VAULT_UNAVAILABLE",
        "recoverable keys need the vault, and this api has no vault configured",
    )
}

fn client(state: &AppState) -> Result<&VaultClient, ApiError> {
    state.vault.as_deref().ok_or_else(unavailable)
}

fn failure(error: VaultFailure) -> ApiError {
    match error {
        VaultFailure::Locked => {
            ApiError::unavailable("VAULT_LOCKED", "the vault is locked; an operator must unlock it")
        }
        VaultFailure::Unavailable(why) => ApiError::unavailable(
            "VAULT_UNAVAILABLE",
            format!("the vault cannot be reached ({why})"),
        ),
        VaultFailure::KeyringDeleted | VaultFailure::KeyringNotFound => ApiError::gone(
            "KEY_NOT_RECOVERABLE",
            "this workspace's recovery keys were destroyed; the key can no longer be recovered",
        ),
        VaultFailure::Refused { status, code } => {
            ApiError::internal(anyhow::anyhow!("the vault refused a call: {status} {code}"))
        }
    }
}

/// Seals `plaintext` for `key_id` under the workspace's keyring.
pub async fn seal(
    state: &AppState,
    workspace_id: &str,
    key_id: &str,
    plaintext: &str,
) -> Result<Sealed, ApiError> {
    let sealed =
        client(state)?.encrypt(workspace_id, &[(plaintext, key_id)]).await.map_err(failure)?;
    let (ciphertext, dek_version) = sealed
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("empty vault answer")))?;
    Ok(Sealed {
        key_id: key_id.to_owned(),
        keyring: workspace_id.to_owned(),
        ciphertext,
        dek_version,
    })
}

/// How to treat a key that is no longer recoverable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One key was asked for: 410 `KEY_NOT_RECOVERABLE`.
    One,
    /// A page: that key simply comes without `plaintext`.
    Page,
}

/// Opens the recoverable keys among `key_ids` with ONE vault call, writes the decrypt audit row,
/// and returns the plaintexts by key id. Keys that were never recoverable are simply absent.
pub async fn open(
    state: &AppState,
    workspace_id: &str,
    root_key_id: &str,
    key_ids: &[String],
    mode: Mode,
) -> Result<HashMap<String, Zeroizing<String>>, ApiError> {
    // No pooled connection is held across the vault call, which may take up to its timeout.
    let sealed: Vec<Sealed> = {
        let client = state.pool.get().await?;
        encrypted::for_keys(&client, key_ids).await?
    };
    if sealed.is_empty() {
        return Ok(HashMap::new());
    }
    let vault = client(state)?;
    let items: Vec<(&str, &str)> =
        sealed.iter().map(|s| (s.ciphertext.as_str(), s.key_id.as_str())).collect();
    let opened = match vault.decrypt(workspace_id, &items).await {
        Ok(opened) => opened,
        Err(VaultFailure::KeyringDeleted | VaultFailure::KeyringNotFound) if mode == Mode::Page => {
            return Ok(HashMap::new());
        }
        Err(error) => return Err(failure(error)),
    };
    let mut plaintexts = HashMap::new();
    for (s, result) in sealed.iter().zip(opened) {
        match result {
            Ok(plaintext) => {
                plaintexts.insert(s.key_id.clone(), plaintext);
            }
            Err(code) if code == "DECRYPTION_FAILED" || code == "MALFORMED_CIPHERTEXT" => {
                tracing::error!(key_id = %s.key_id, code, "a stored ciphertext failed authentication: tampering or corruption");
                return Err(ApiError::integrity(format!(
                    "the stored ciphertext of {} failed its integrity check",
                    s.key_id
                )));
            }
            Err(code) if mode == Mode::One => {
                tracing::info!(key_id = %s.key_id, code, "key is no longer recoverable");
                return Err(ApiError::gone(
                    "KEY_NOT_RECOVERABLE",
                    format!(
                        "{} can no longer be recovered: its key version was retired or destroyed",
                        s.key_id
                    ),
                ));
            }
            Err(_) => {}
        }
    }
    let decrypted: Vec<String> = plaintexts.keys().cloned().collect();
    if !decrypted.is_empty() {
        let client_db = state.pool.get().await?;
        encrypted::audit(&client_db, workspace_id, root_key_id, &request_id(), &decrypted).await?;
        tracing::info!(keys = decrypted.len(), "decrypted recoverable keys");
    }
    Ok(plaintexts)
}
