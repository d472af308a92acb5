//! Recoverable keys: sealing a new key through the vault, and opening stored ones for
//! `decrypt=true`. A locked or unreachable vault fails these calls fast (503) and never leaves a
//! half-created key or a silently missing plaintext.

use std::collections::HashMap;

use zeroize::Zeroizing;

use super::{Principal, Service, ServiceError};
use crate::context::request_id;
use crate::store::encrypted::{self, Sealed};
use crate::vault_client::{VaultClient, VaultFailure};

/// How to treat a key that is no longer recoverable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One key was asked for: 410 `KEY_NOT_RECOVERABLE`.
    One,
    /// A page: that key simply comes without `plaintext`.
    Page,
}

fn failure(error: VaultFailure) -> ServiceError {
    match error {
        VaultFailure::Locked => ServiceError::VaultLocked,
        VaultFailure::Unavailable(why) => {
            ServiceError::VaultUnavailable(format!("the vault cannot be reached ({why})"))
        }
        VaultFailure::KeyringDeleted | VaultFailure::KeyringNotFound => {
            ServiceError::NotRecoverable(
                "this workspace's recovery keys were destroyed; the key can no longer be recovered"
                    .to_owned(),
            )
        }
        VaultFailure::Refused { status, code } => {
            ServiceError::Internal(anyhow::anyhow!("the vault refused a call: {status} {code}"))
        }
    }
}

impl Service {
    fn vault_client(&self) -> Result<&VaultClient, ServiceError> {
        self.vault.as_deref().ok_or_else(|| {
            ServiceError::VaultUnavailable(
                "recoverable keys need the vault, and this api has no vault configured".to_owned(),
            )
        })
    }

    /// Seals `plaintext` for `key_id` under the workspace's keyring. Called before the key's
    /// transaction, so a failing vault leaves nothing written.
    pub(crate) async fn seal(
        &self,
        workspace_id: &str,
        key_id: &str,
        plaintext: &str,
    ) -> Result<Sealed, ServiceError> {
        let sealed = self
            .vault_client()?
            .encrypt(workspace_id, &[(plaintext, key_id)])
            .await
            .map_err(failure)?;
        let (ciphertext, dek_version) = sealed
            .into_iter()
            .next()
            .ok_or_else(|| ServiceError::Internal(anyhow::anyhow!("empty vault answer")))?;
        Ok(Sealed {
            key_id: key_id.to_owned(),
            keyring: workspace_id.to_owned(),
            ciphertext,
            dek_version,
        })
    }

    /// Opens the recoverable keys among `key_ids` with ONE vault call, writes the decrypt audit
    /// row, and returns the plaintexts by key id. Keys that were never recoverable are absent.
    pub(crate) async fn open(
        &self,
        caller: &Principal,
        key_ids: &[String],
        mode: Mode,
    ) -> Result<HashMap<String, Zeroizing<String>>, ServiceError> {
        // No pooled connection is held across the vault call, which may take up to its timeout.
        let sealed: Vec<Sealed> = encrypted::for_keys(&self.db().await?, key_ids).await?;
        if sealed.is_empty() {
            return Ok(HashMap::new());
        }
        let vault = self.vault_client()?;
        let items: Vec<(&str, &str)> =
            sealed.iter().map(|s| (s.ciphertext.as_str(), s.key_id.as_str())).collect();
        let opened = match vault.decrypt(caller.workspace_id(), &items).await {
            Ok(opened) => opened,
            Err(VaultFailure::KeyringDeleted | VaultFailure::KeyringNotFound)
                if mode == Mode::Page =>
            {
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
                    return Err(ServiceError::Integrity(format!(
                        "the stored ciphertext of {} failed its integrity check",
                        s.key_id
                    )));
                }
                Err(code) if mode == Mode::One => {
                    tracing::info!(key_id = %s.key_id, code, "key is no longer recoverable");
                    return Err(ServiceError::NotRecoverable(format!(
                        "{} can no longer be recovered: its key version was retired or destroyed",
                        s.key_id
                    )));
                }
                Err(_) => {}
            }
        }
        let decrypted: Vec<String> = plaintexts.keys().cloned().collect();
        if !decrypted.is_empty() {
            encrypted::audit(
                &self.db().await?,
                caller.workspace_id(),
                caller.key_id(),
                &request_id(),
                &decrypted,
            )
            .await?;
            tracing::info!(keys = decrypted.len(), "decrypted recoverable keys");
        }
        Ok(plaintexts)
    }

    /// Applies the decrypt audit retention at start and then every `purge_interval_ms`, until
    /// `stop`. Every replica may run it; the deletes are idempotent.
    pub fn spawn_audit_purge(
        &self,
        config: crate::config::AuditConfig,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let every = std::time::Duration::from_millis(config.purge_interval_ms.max(1_000));
        let service = self.clone();
        tokio::spawn(async move {
            loop {
                let purged = match service.db().await {
                    Ok(db) => encrypted::purge_decrypt_audit(&db, config.decrypt_retention_days)
                        .await
                        .map_err(|e| format!("{:#}", anyhow::Error::new(e))),
                    Err(e) => Err(format!("{:#}", anyhow::Error::new(e))),
                };
                match purged {
                    Ok(0) => {}
                    Ok(rows) => tracing::info!(
                        rows,
                        days = config.decrypt_retention_days,
                        "purged old decrypt audit rows"
                    ),
                    Err(error) => tracing::warn!(%error, "could not purge old decrypt audit rows"),
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
            }
        });
    }
}
