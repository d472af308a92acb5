//! Ciphertexts of recoverable keys, and the decrypt audit.

use deadpool_postgres::GenericClient;
use strongbox_shared::db::prepared;

use super::{Context as _, StoreError};

/// A stored ciphertext.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// The key it recovers.
    pub key_id: String,
    /// The vault keyring (the workspace id).
    pub keyring: String,
    /// The vault's ciphertext string.
    pub ciphertext: String,
    /// The DEK version that sealed it.
    pub dek_version: i32,
}

/// The ciphertexts of these keys (those that have one).
pub async fn for_keys(
    c: &impl GenericClient,
    key_ids: &[String],
) -> Result<Vec<Sealed>, StoreError> {
    let rows = prepared::query(c, "SELECT key_id, keyring, ciphertext, dek_version FROM encrypted_keys WHERE key_id = ANY($1)", &[&key_ids])
        .await
        .context("reading ciphertexts")?;
    Ok(rows
        .iter()
        .map(|r| Sealed {
            key_id: r.get(0),
            keyring: r.get(1),
            ciphertext: r.get(2),
            dek_version: r.get(3),
        })
        .collect())
}

/// Every ciphertext of a workspace, for `export-encrypted`.
pub async fn for_workspace(
    c: &impl GenericClient,
    workspace_id: &str,
) -> Result<Vec<Sealed>, StoreError> {
    let rows = prepared::query(c,
            "SELECT key_id, keyring, ciphertext, dek_version FROM encrypted_keys WHERE workspace_id = $1 ORDER BY key_id",
            &[&workspace_id],
        )
        .await
        .context("reading a workspace's ciphertexts")?;
    Ok(rows
        .iter()
        .map(|r| Sealed {
            key_id: r.get(0),
            keyring: r.get(1),
            ciphertext: r.get(2),
            dek_version: r.get(3),
        })
        .collect())
}

/// Records a decrypt.
pub async fn audit(
    c: &impl GenericClient,
    workspace_id: &str,
    root_key_id: &str,
    request_id: &str,
    key_ids: &[String],
) -> Result<(), StoreError> {
    prepared::execute(c,
        "INSERT INTO decrypt_audit (workspace_id, root_key_id, request_id, key_ids) VALUES ($1, $2, $3, $4)",
        &[&workspace_id, &root_key_id, &request_id, &key_ids],
    )
    .await
    .context("recording a decrypt")?;
    Ok(())
}

/// Deletes decrypt audit rows older than `days`; returns how many went.
pub async fn purge_decrypt_audit(c: &impl GenericClient, days: u32) -> Result<u64, StoreError> {
    prepared::execute(
        c,
        "DELETE FROM decrypt_audit WHERE created_at < now() - make_interval(days => $1)",
        &[&i32::try_from(days).unwrap_or(i32::MAX)],
    )
    .await
    .context("purging old decrypt audit rows")
}
