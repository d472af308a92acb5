//! The data plane: encrypt, decrypt and rewrap, batch-first.
//!
//! Every call reads its keyring row, so encryption always uses the newest version the database
//! confirms and never one below `min_decryption_version`: a retirement that committed before a
//! call began is always seen by it.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::GenericClient;
use serde::Serialize;
use zeroize::Zeroizing;

use super::{CachedDek, UnlockedKeys, Vault};
use crate::crypto::CryptoError;
use crate::crypto::envelope::{self, Ciphertext};
use crate::domain::KeyringName;
use crate::error::VaultError;
use crate::store::{self, KeyringRow};

/// Attempts at finding a usable DEK before giving up (first use and budget rotations race).
const DEK_ATTEMPTS: usize = 5;

/// A per-item failure: one bad item never fails the whole call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ItemError {
    /// Not a ciphertext of a format this vault knows.
    MalformedCiphertext,
    /// Sealed under a version below `min_decryption_version`.
    VersionRetired,
    /// Sealed under a version that was trimmed: gone for good.
    VersionDestroyed,
    /// Sealed under a version this keyring never had.
    VersionNotFound,
    /// Authentication failed: tampered, or the wrong keyring or context.
    DecryptionFailed,
}

impl ItemError {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Self::MalformedCiphertext => "MALFORMED_CIPHERTEXT",
            Self::VersionRetired => "VERSION_RETIRED",
            Self::VersionDestroyed => "VERSION_DESTROYED",
            Self::VersionNotFound => "VERSION_NOT_FOUND",
            Self::DecryptionFailed => "DECRYPTION_FAILED",
        }
    }

    /// A message for people.
    pub fn message(self) -> &'static str {
        match self {
            Self::MalformedCiphertext => "not a Strongbox ciphertext",
            Self::VersionRetired => "sealed under a retired key version",
            Self::VersionDestroyed => "sealed under a trimmed key version; it cannot be recovered",
            Self::VersionNotFound => "sealed under a key version this keyring does not have",
            Self::DecryptionFailed => "failed authentication (tampered, or wrong keyring/context)",
        }
    }
}

/// One sealed item, as `/v1/encrypt` answers it.
#[derive(Debug, Clone, Serialize)]
pub struct Sealed {
    /// The ciphertext string.
    pub ciphertext: String,
    /// The DEK version it is sealed under.
    pub dek_version: i32,
}

fn version_of(ct: &Ciphertext) -> i32 {
    i32::try_from(ct.dek_version()).unwrap_or(i32::MAX)
}

impl Vault {
    async fn live_keyring(
        &self,
        client: &impl GenericClient,
        keyring: &KeyringName,
    ) -> Result<KeyringRow, VaultError> {
        match store::keyring(client, keyring.as_str()).await? {
            None => Err(VaultError::KeyringNotFound),
            Some(row) if row.deleted => Err(VaultError::KeyringDeleted),
            Some(row) => Ok(row),
        }
    }

    /// The newest DEK of `keyring` with budget for `n` encryptions, creating the keyring on
    /// first use and rotating a DEK whose budget is spent.
    async fn dek_for_encryption(
        &self,
        client: &mut deadpool_postgres::Object,
        keys: &UnlockedKeys,
        keyring: &KeyringName,
        n: usize,
    ) -> Result<(i32, Arc<CachedDek>), VaultError> {
        let name = keyring.as_str();
        for _ in 0..DEK_ATTEMPTS {
            let row = match store::keyring(&*client, name).await? {
                Some(row) if row.deleted => return Err(VaultError::KeyringDeleted),
                Some(row) => row,
                None => {
                    self.create_keyring(client, keys, keyring).await?;
                    continue;
                }
            };
            let version = row.latest_version;
            let deks = self.deks(&*client, keys, name, &[version]).await?;
            let dek = deks.get(&version).ok_or(VaultError::Integrity)?.clone();
            if self.take_budget(&*client, name, version, &dek, n).await? {
                return Ok((version, dek));
            }
            tracing::info!(keyring = name, version, "DEK reached its encryption budget; rotating");
            self.rotate_keyring_from(client, keys, keyring, version).await?;
        }
        Err(VaultError::Conflict("the keyring kept changing; retry".to_owned()))
    }

    /// Creates `keyring` at version 1. Two replicas racing to create it produce one keyring.
    async fn create_keyring(
        &self,
        client: &mut deadpool_postgres::Object,
        keys: &UnlockedKeys,
        keyring: &KeyringName,
    ) -> Result<(), VaultError> {
        let tx = client.transaction().await?;
        if !store::insert_keyring(&tx, keyring.as_str()).await? {
            return Ok(()); // someone else created it (or it is a tombstone); re-read
        }
        self.create_dek(&tx, keys, keyring.as_str(), 1).await?;
        store::notify(&tx, &format!("keyring:{}", keyring.as_str())).await?;
        tx.commit().await?;
        tracing::info!(keyring = keyring.as_str(), "created keyring");
        Ok(())
    }

    /// Encrypts every plaintext for its context under the keyring's newest DEK.
    pub async fn encrypt(
        &self,
        keyring: &KeyringName,
        items: &[(Zeroizing<Vec<u8>>, String)],
    ) -> Result<Vec<Sealed>, VaultError> {
        let keys = self.keys()?;
        let mut client = self.pool.get().await?;
        let (version, dek) =
            self.dek_for_encryption(&mut client, &keys, keyring, items.len()).await?;
        let v = u32::try_from(version).map_err(|_| VaultError::Integrity)?;
        let items =
            items.iter().map(|(plaintext, context)| (context.as_str(), plaintext.as_slice()));
        Ok(envelope::seal_all(dek.key(), keyring.as_str(), v, items)?
            .into_iter()
            .map(|ct| Sealed { ciphertext: ct.encode(), dek_version: version })
            .collect())
    }

    /// Opens the items that can be opened; the others get their own error.
    async fn open_items(
        &self,
        client: &impl GenericClient,
        keys: &UnlockedKeys,
        keyring: &KeyringName,
        row: KeyringRow,
        items: &[(String, String)],
    ) -> Result<Vec<Result<(Zeroizing<Vec<u8>>, i32), ItemError>>, VaultError> {
        let parsed: Vec<Result<Ciphertext, ItemError>> = items
            .iter()
            .map(|(ct, _)| {
                let ct = Ciphertext::parse(ct).map_err(|_| ItemError::MalformedCiphertext)?;
                let v = version_of(&ct);
                // A version the keyring never had is "not found", never "destroyed": 0 or a
                // negative one would otherwise read as lost data.
                if v > row.latest_version || v < 1 {
                    Err(ItemError::VersionNotFound)
                } else if v < row.trimmed_below {
                    Err(ItemError::VersionDestroyed)
                } else if v < row.min_decryption_version {
                    Err(ItemError::VersionRetired)
                } else {
                    Ok(ct)
                }
            })
            .collect();
        let mut versions: Vec<i32> = parsed.iter().flatten().map(version_of).collect();
        versions.sort_unstable();
        versions.dedup();
        let deks: HashMap<i32, Arc<CachedDek>> =
            self.deks(client, keys, keyring.as_str(), &versions).await?;
        Ok(parsed
            .into_iter()
            .zip(items)
            .enumerate()
            .map(|(index, (ct, (_, context)))| {
                let ct = ct?;
                let version = version_of(&ct);
                let dek = deks.get(&version).ok_or(ItemError::VersionNotFound)?;
                match ct.open(dek.key(), keyring.as_str(), context) {
                    Ok(plaintext) => Ok((plaintext, version)),
                    Err(CryptoError::Authentication) => {
                        tracing::warn!(
                            keyring = keyring.as_str(),
                            index,
                            version,
                            "ciphertext failed authentication"
                        );
                        Err(ItemError::DecryptionFailed)
                    }
                    Err(_) => Err(ItemError::MalformedCiphertext),
                }
            })
            .collect())
    }

    /// Decrypts each item; a bad item gets its own error.
    pub async fn decrypt(
        &self,
        keyring: &KeyringName,
        items: &[(String, String)],
    ) -> Result<Vec<Result<Zeroizing<Vec<u8>>, ItemError>>, VaultError> {
        let keys = self.keys()?;
        let client = self.pool.get().await?;
        let row = self.live_keyring(&client, keyring).await?;
        let opened = self.open_items(&client, &keys, keyring, row, items).await?;
        Ok(opened.into_iter().map(|r| r.map(|(plaintext, _)| plaintext)).collect())
    }

    /// Re-seals each item under the newest DEK, never returning plaintext. Items already under
    /// the newest version come back unchanged.
    pub async fn rewrap(
        &self,
        keyring: &KeyringName,
        items: &[(String, String)],
    ) -> Result<Vec<Result<Sealed, ItemError>>, VaultError> {
        let keys = self.keys()?;
        let mut client = self.pool.get().await?;
        let row = self.live_keyring(&client, keyring).await?;
        let opened = self.open_items(&client, &keys, keyring, row, items).await?;
        let stale =
            opened.iter().filter(|r| matches!(r, Ok((_, v)) if *v != row.latest_version)).count();
        let target = if stale > 0 {
            Some(self.dek_for_encryption(&mut client, &keys, keyring, stale).await?)
        } else {
            None
        };
        opened
            .into_iter()
            .zip(items)
            .map(|(opened, (ciphertext, context))| {
                let (plaintext, version) = match opened {
                    Ok(ok) => ok,
                    Err(e) => return Ok(Err(e)),
                };
                match &target {
                    Some((latest, dek)) if version != *latest => {
                        let v = u32::try_from(*latest).map_err(|_| VaultError::Integrity)?;
                        let ct =
                            envelope::seal(dek.key(), keyring.as_str(), v, context, &plaintext)?;
                        Ok(Ok(Sealed { ciphertext: ct.encode(), dek_version: *latest }))
                    }
                    _ => Ok(Ok(Sealed { ciphertext: ciphertext.clone(), dek_version: version })),
                }
            })
            .collect()
    }
}
