//! Keyring administration: describe, rotate, retire (`min_decryption_version`), trim and
//! crypto-shred.

use serde::Serialize;

use super::{UnlockedKeys, Vault};
use crate::domain::KeyringName;
use crate::error::VaultError;
use crate::store::{self, VersionInfo};

/// What `GET /v1/keyrings/{keyring}` returns.
#[derive(Debug, Clone, Serialize)]
pub struct Description {
    /// The keyring.
    pub keyring: String,
    /// Version new encryptions use.
    pub latest_version: i32,
    /// Oldest version that decrypts.
    pub min_decryption_version: i32,
    /// Versions below this were trimmed.
    pub trimmed_below: i32,
    /// Stored versions, oldest first.
    pub versions: Vec<VersionInfo>,
}

/// One keyring's new version after a rotation.
#[derive(Debug, Clone, Serialize)]
pub struct Rotated {
    /// The keyring.
    pub keyring: String,
    /// Its newest version.
    pub version: i32,
}

impl Vault {
    /// Versions and retirement state of a keyring.
    pub async fn describe(&self, keyring: &KeyringName) -> Result<Description, VaultError> {
        self.keys()?;
        let client = self.pool.get().await?;
        let row = self.live_keyring_row(&client, keyring).await?;
        Ok(Description {
            keyring: keyring.as_str().to_owned(),
            latest_version: row.latest_version,
            min_decryption_version: row.min_decryption_version,
            trimmed_below: row.trimmed_below,
            versions: store::versions(&client, keyring.as_str()).await?,
        })
    }

    async fn live_keyring_row(
        &self,
        client: &impl deadpool_postgres::GenericClient,
        keyring: &KeyringName,
    ) -> Result<store::KeyringRow, VaultError> {
        match store::keyring(client, keyring.as_str()).await? {
            None => Err(VaultError::KeyringNotFound),
            Some(row) if row.deleted => Err(VaultError::KeyringDeleted),
            Some(row) => Ok(row),
        }
    }

    /// Adds a DEK version to `keyring`. Concurrent rotations produce one new version, which
    /// every caller gets back. Keyrings come into being on first encryption, never here, so a
    /// misspelt name is an error rather than a new keyring.
    pub async fn rotate_keyring(&self, keyring: &KeyringName) -> Result<Rotated, VaultError> {
        let keys = self.keys()?;
        let mut client = self.pool.get().await?;
        let seen = self.live_keyring_row(&client, keyring).await?.latest_version;
        let version = self.rotate_keyring_from(&mut client, &keys, keyring, seen).await?;
        Ok(Rotated { keyring: keyring.as_str().to_owned(), version })
    }

    /// Rotates `keyring` if its latest version is still `seen`; otherwise someone else just
    /// rotated it and their version is returned.
    pub(super) async fn rotate_keyring_from(
        &self,
        client: &mut deadpool_postgres::Object,
        keys: &UnlockedKeys,
        keyring: &KeyringName,
        seen: i32,
    ) -> Result<i32, VaultError> {
        let name = keyring.as_str();
        let tx = client.transaction().await?;
        let row = store::keyring_for_update(&tx, name).await?.ok_or(VaultError::KeyringNotFound)?;
        if row.deleted {
            return Err(VaultError::KeyringDeleted);
        }
        if seen != row.latest_version {
            return Ok(row.latest_version);
        }
        let version = row.latest_version + 1;
        self.create_dek(&tx, keys, name, version).await?;
        store::set_latest(&tx, name, version).await?;
        store::notify(&tx, &format!("keyring:{name}")).await?;
        tx.commit().await?;
        tracing::info!(keyring = name, version, "rotated keyring");
        Ok(version)
    }

    /// Rotates every live keyring.
    pub async fn rotate_all_keyrings(&self) -> Result<Vec<Rotated>, VaultError> {
        self.keys()?;
        let client = self.pool.get().await?;
        let names = store::keyring_names(&client).await?;
        drop(client);
        let mut rotated = Vec::with_capacity(names.len());
        for name in names {
            let keyring = KeyringName::parse(&name)?;
            match self.rotate_keyring(&keyring).await {
                Ok(r) => rotated.push(r),
                // Shredded between listing and rotating: nothing to rotate.
                Err(VaultError::KeyringDeleted) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(rotated)
    }

    /// Sets the oldest version that still decrypts. Raising it is reversible until a trim.
    pub async fn set_min_decryption_version(
        &self,
        keyring: &KeyringName,
        version: i32,
    ) -> Result<Description, VaultError> {
        let keys = self.keys()?;
        let name = keyring.as_str();
        {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let row =
                store::keyring_for_update(&tx, name).await?.ok_or(VaultError::KeyringNotFound)?;
            if row.deleted {
                return Err(VaultError::KeyringDeleted);
            }
            if version < row.trimmed_below || version > row.latest_version {
                return Err(VaultError::InvalidVersion(format!(
                    "min_decryption_version must be between {} (versions below were trimmed) \
                     and {} (the latest version)",
                    row.trimmed_below, row.latest_version
                )));
            }
            store::set_min_decryption(&tx, name, version).await?;
            store::notify(&tx, &format!("keyring:{name}")).await?;
            tx.commit().await?;
        }
        keys.forget_keyring(name);
        tracing::info!(
            keyring = name,
            min_decryption_version = version,
            "set min decryption version"
        );
        self.describe(keyring).await
    }

    /// Deletes the versions below `min_decryption_version`, for good.
    pub async fn trim(&self, keyring: &KeyringName) -> Result<Vec<i32>, VaultError> {
        let keys = self.keys()?;
        let name = keyring.as_str();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = store::keyring_for_update(&tx, name).await?.ok_or(VaultError::KeyringNotFound)?;
        if row.deleted {
            return Err(VaultError::KeyringDeleted);
        }
        let trimmed = store::trim(&tx, name).await?;
        store::notify(&tx, &format!("keyring:{name}")).await?;
        tx.commit().await?;
        keys.forget_keyring(name);
        tracing::info!(keyring = name, ?trimmed, "trimmed keyring versions");
        Ok(trimmed)
    }

    /// Crypto-shreds `keyring`: every DEK is deleted and a tombstone stays.
    pub async fn delete_keyring(&self, keyring: &KeyringName) -> Result<u64, VaultError> {
        let keys = self.keys()?;
        let name = keyring.as_str();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = store::keyring_for_update(&tx, name).await?.ok_or(VaultError::KeyringNotFound)?;
        if row.deleted {
            return Ok(0);
        }
        let deleted = store::shred(&tx, name).await?;
        store::notify(&tx, &format!("keyring:{name}")).await?;
        tx.commit().await?;
        keys.forget_keyring(name);
        tracing::warn!(keyring = name, versions = deleted, "crypto-shredded keyring");
        Ok(deleted)
    }
}
