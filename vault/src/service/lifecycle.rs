//! Initialize, unlock, lock, rekey, KEK rotation and root rotation.

use std::net::IpAddr;
use std::sync::Arc;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;

use super::{State, UnlockMaterial, UnlockedKeys, Vault};
use crate::crypto::SecretKey;
use crate::crypto::hierarchy;
use crate::error::VaultError;
use crate::store::{self, KekRow, RootRow, Seal};

/// The current server key, as an operator presents it.
pub enum Presented {
    /// One key.
    Key(SecretString),
    /// A complete set of shares, printed.
    Shares(Vec<SecretString>),
    /// Under the PKCS#11 seal: a complete set of the recovery shares, printed.
    Recovery(Vec<SecretString>),
}

/// What the server key becomes at a rekey.
pub enum NewKey {
    /// One key the operator chose.
    Key(SecretString),
    /// A fresh key split into `shares`, `threshold` of which rebuild it; under the PKCS#11
    /// seal, a fresh key the token seals and `shares` new recovery shares.
    Shares {
        /// N.
        shares: u8,
        /// K.
        threshold: u8,
    },
    /// Under the PKCS#11 seal: a fresh key the token seals; the recovery shares stay.
    Token,
}

/// Shortest server key an operator may choose.
pub const MIN_KEY_CHARS: usize = 16;

/// What `GET /v1/sys/status` reports. Nothing in it is secret.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// A root record exists.
    pub initialized: bool,
    /// This replica holds its keys.
    pub unlocked: bool,
    /// `uninitialized`, `locked` or `unlocked`.
    pub state: &'static str,
    /// Version of the root key (when initialized).
    pub root_version: Option<i32>,
    /// Newest KEK version (when initialized).
    pub kek_version: Option<i32>,
    /// Argon2 parameters of the stored root record (when initialized).
    pub argon2: Option<hierarchy::Argon2Params>,
    /// How the server key is held: `key` (one secret) or `shares` (k-of-n), when initialized.
    pub seal: Option<&'static str>,
    /// Shares mode: shares an unlock needs.
    pub threshold: Option<u8>,
    /// Shares mode: shares given on this replica towards the next unlock.
    pub progress: Option<u8>,
    /// PKCS#11 seal: recovery shares that authorise rekey, rotate-root and `seal migrate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_threshold: Option<u8>,
    /// PKCS#11 seal: the label of the token's key that seals the server key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_key_label: Option<String>,
    /// PKCS#11 seal: why this replica could not unlock itself through the token, while it
    /// cannot (it retries with backoff).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_unlock_error: Option<String>,
}

pub(super) fn check_strength(key: &SecretString) -> Result<(), VaultError> {
    if key.expose_secret().chars().count() < MIN_KEY_CHARS {
        return Err(VaultError::WeakKey { min: MIN_KEY_CHARS });
    }
    Ok(())
}

impl Vault {
    /// This replica's state, with the stored record's public facts.
    pub async fn status(&self) -> Result<Status, VaultError> {
        let client = self.pool.get().await?;
        let root = store::root(&client).await?;
        let kek_version = match root {
            Some(_) => store::latest_kek(&client).await?.map(|k| k.version),
            None => None,
        };
        if root.is_some() {
            // Another replica may have initialized since this one started.
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            if matches!(*state, State::Uninitialized) {
                *state = State::Locked;
            }
        }
        let unlocked = self.is_unlocked();
        Ok(Status {
            initialized: root.is_some(),
            unlocked,
            state: match (&root, unlocked) {
                (None, _) => "uninitialized",
                (Some(_), false) => "locked",
                (Some(_), true) => "unlocked",
            },
            root_version: root.as_ref().map(|r| r.root_version),
            kek_version,
            argon2: root.as_ref().map(|r| r.params),
            seal: root.as_ref().map(|r| super::seal::seal_name(r.seal)),
            threshold: match root.as_ref().map(|r| r.seal) {
                Some(Seal::Shares { threshold, .. }) => Some(threshold),
                _ => None,
            },
            progress: match root.as_ref().map(|r| r.seal) {
                Some(Seal::Shares { .. }) => Some(self.share_progress()),
                _ => None,
            },
            recovery_threshold: root
                .as_ref()
                .and_then(|r| r.recovery.as_ref())
                .map(|r| r.threshold),
            token_key_label: root
                .as_ref()
                .and_then(|r| r.token.as_ref())
                .map(|t| t.key_label.clone()),
            auto_unlock_error: if unlocked { None } else { self.auto_unlock_error() },
        })
    }

    /// Creates the root record and KEK 1 under `key`, leaving this replica unlocked.
    pub async fn initialize(&self, key: SecretString) -> Result<(), VaultError> {
        check_strength(&key)?;
        self.initialize_sealed(key, Seal::Key, None, None).await
    }

    /// Initializes under a fresh server key split into `shares` shares, `threshold` of which
    /// unlock; returns the shares, printed. They are shown once and kept nowhere.
    pub async fn initialize_shares(
        &self,
        shares: u8,
        threshold: u8,
    ) -> Result<Vec<zeroize::Zeroizing<String>>, VaultError> {
        let (key, seal, printed) = super::shares::new_split(shares, threshold)?;
        self.initialize_sealed(key, seal, None, None).await?;
        Ok(printed)
    }

    pub(super) async fn initialize_sealed(
        &self,
        key: SecretString,
        seal: Seal,
        token: Option<store::TokenSealed>,
        recovery: Option<super::seal::RecoverySplit>,
    ) -> Result<(), VaultError> {
        let params = self.settings.unlock.argon2;
        let salt = hierarchy::new_salt()?.to_vec();
        let unlock = self.derive(key, params, salt.clone()).await?;
        let root = SecretKey::generate()?;
        let recovery = recovery.map(|split| split.record(&root)).transpose()?;
        let record = RootRow {
            generation: 1,
            root_version: 1,
            params,
            sealed_root: hierarchy::seal_root(&unlock, params, &salt, &root)?,
            salt: salt.clone(),
            seal,
            token,
            recovery,
        };
        let material = UnlockMaterial { key: unlock, params, salt, token: seal == Seal::Pkcs11 };
        let keys = UnlockedKeys::new(&root, 1, 1, material)?;
        let kek = SecretKey::generate()?;
        let kek_row = KekRow {
            version: 1,
            root_version: 1,
            wrapped: hierarchy::wrap_kek(&keys.kek_wrapping, 1, &kek)?,
        };

        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if !store::insert_root(&tx, &record).await? {
            drop(tx);
            self.set_state_if_uninitialized();
            return Err(VaultError::AlreadyInitialized);
        }
        store::insert_kek(&tx, &kek_row).await?;
        // Entries so far were written by locked replicas, with plain hashes.
        let (head, _) = store::audit_head(&tx).await?;
        let audit_key = keys.new_audit_key(head)?;
        if !store::insert_audit_key(&tx, &audit_key).await? {
            // An audit key without a root record: left behind, or planted. Keying entries under
            // a key that is not the stored one would make them unverifiable.
            tracing::error!("an audit key exists in a vault database with no root record");
            return Err(VaultError::Integrity);
        }
        let keys = keys.with_audit_key(&audit_key)?;
        store::notify(&tx, &root_notice(&record)).await?;
        tx.commit().await?;
        self.set_state(State::Unlocked(Arc::new(keys)));
        tracing::info!("vault initialized and unlocked");
        Ok(())
    }

    fn set_state_if_uninitialized(&self) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if matches!(*state, State::Uninitialized) {
            *state = State::Locked;
        }
    }

    /// Opens the root record with `key` and loads the KEKs. Repeated wrong keys from one client
    /// are slowed down.
    pub async fn unlock(
        &self,
        key: SecretString,
        identity: &str,
        ip: IpAddr,
    ) -> Result<(), VaultError> {
        self.unlock_as(key, identity, ip, true).await
    }

    /// Unlocks with `key` whatever the seal (shares mode passes the key the shares rebuilt).
    pub(super) async fn unlock_with(
        &self,
        key: SecretString,
        identity: &str,
        ip: IpAddr,
    ) -> Result<(), VaultError> {
        self.unlock_as(key, identity, ip, false).await
    }

    /// Unlocks with the key the token unsealed, unless an operator locked this replica, before
    /// or while it was derived: `Ok(false)` then, and the keys are dropped.
    pub(super) async fn unlock_auto(
        &self,
        key: SecretString,
        identity: &str,
        ip: IpAddr,
    ) -> Result<bool, VaultError> {
        let keys = self.open_unlocked(key, identity, ip, false).await?;
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        // An operator's lock holds; an unlock that came first (an operator's) stands.
        if self.held_locked() || matches!(*state, State::Unlocked(_)) {
            return Ok(false);
        }
        if let Some(audit) = &keys.audit {
            *self.audit_key.write().unwrap_or_else(|e| e.into_inner()) = Some(audit.clone());
        }
        let root_version = keys.root_version;
        *state = State::Unlocked(Arc::new(keys));
        tracing::info!(identity, root_version, "vault unlocked");
        Ok(true)
    }

    /// `typed`: the key came from an operator as one key, which a vault held in shares refuses
    /// (after the attempt is counted, like any other refusal of the key).
    async fn unlock_as(
        &self,
        key: SecretString,
        identity: &str,
        ip: IpAddr,
        typed: bool,
    ) -> Result<(), VaultError> {
        let keys = self.open_unlocked(key, identity, ip, typed).await?;
        let root_version = keys.root_version;
        {
            // Under the state lock: an operator's unlock releases an operator's lock.
            let _state = self.state.read().unwrap_or_else(|e| e.into_inner());
            self.held_locked.store(false, std::sync::atomic::Ordering::SeqCst);
        }
        self.set_state(State::Unlocked(Arc::new(keys)));
        tracing::info!(identity, root_version, "vault unlocked");
        Ok(())
    }

    /// Opens the root record with `key` and loads every KEK and the audit key.
    async fn open_unlocked(
        &self,
        key: SecretString,
        identity: &str,
        ip: IpAddr,
        typed: bool,
    ) -> Result<UnlockedKeys, VaultError> {
        let (record, unlock, root) = self.open_root_as(key, identity, ip, typed).await?;
        let keys = UnlockedKeys::new(
            &root,
            record.root_version,
            record.generation,
            UnlockMaterial {
                key: unlock,
                params: record.params,
                salt: record.salt,
                token: record.seal == Seal::Pkcs11,
            },
        )?;
        let client = self.pool.get().await?;
        for kek in store::keks(&client).await? {
            // A KEK that fails here is corrupt or tampered with; refuse to come up half-keyed.
            keys.kek(&kek)?;
        }
        load_audit_key(&client, keys).await
    }

    /// Opens the root record with a server key an operator presented (to unlock or to rekey):
    /// repeated wrong keys from one client are slowed down, and every refusal is counted and a
    /// wrong key logged. Returns the record, the unlock key derived and the root key.
    pub(super) async fn open_root_with(
        &self,
        key: SecretString,
        identity: &str,
        ip: IpAddr,
    ) -> Result<(RootRow, SecretKey, SecretKey), VaultError> {
        self.open_root_as(key, identity, ip, false).await
    }

    async fn open_root_as(
        &self,
        key: SecretString,
        identity: &str,
        ip: IpAddr,
        typed: bool,
    ) -> Result<(RootRow, SecretKey, SecretKey), VaultError> {
        let refused = |reason: &'static str| {
            metrics::counter!("strongbox_vault_unlock_failures_total", "reason" => reason)
                .increment(1);
        };
        let attempt = {
            match self.throttle.begin(&self.pool, identity, ip).await {
                Ok(attempt) => attempt,
                Err(throttled @ VaultError::TooManyAttempts { .. }) => {
                    refused("throttled");
                    return Err(throttled);
                }
                Err(other) => return Err(other),
            }
        };
        // The attempt is counted; whatever happens next, it ends (right key: forgotten), if
        // need be when `attempt` is dropped.
        let opened = self.evaluate(key, typed).await;
        match opened {
            Ok(opened) => {
                let forgotten = match self.pool.get().await {
                    Ok(client) => self.throttle.success(&client, attempt).await,
                    Err(error) => Err(error.into()),
                };
                if let Err(error) = forgotten {
                    // The key was right; the count merely stays until the next success.
                    tracing::warn!(%error, "could not reset the unlock throttle after a right key");
                }
                Ok(opened)
            }
            Err(error) => {
                let client = self.pool.get().await?;
                self.throttle.end(&client, attempt).await?;
                if matches!(error, VaultError::WrongKey) {
                    refused("wrong_key");
                    tracing::warn!(identity, %ip, "a wrong server key was presented");
                }
                Err(error)
            }
        }
    }

    /// Derives the unlock key from `key` and opens the root record with it.
    async fn evaluate(
        &self,
        key: SecretString,
        typed: bool,
    ) -> Result<(RootRow, SecretKey, SecretKey), VaultError> {
        let record = {
            let client = self.pool.get().await?;
            store::root(&client).await?.ok_or(VaultError::NotInitialized)?
        };
        if let (true, Seal::Shares { threshold, .. }) = (typed, record.seal) {
            return Err(VaultError::InvalidRequest(format!(
                "this vault unlocks with {threshold} shares: send {{\"share\"}} once per share"
            )));
        }
        if let (true, Seal::Pkcs11) = (typed, record.seal) {
            return Err(VaultError::InvalidRequest(
                "this vault's server key is sealed by a PKCS#11 token: each replica unlocks \
                 itself through the token (see status)"
                    .to_owned(),
            ));
        }
        let unlock = self.derive(key, record.params, record.salt.clone()).await?;
        match hierarchy::open_root(&unlock, record.params, &record.salt, &record.sealed_root) {
            Ok(root) => Ok((record, unlock, root)),
            Err(crate::crypto::CryptoError::Authentication) => Err(VaultError::WrongKey),
            Err(other) => Err(other.into()),
        }
    }

    /// Drops this replica's keys.
    pub async fn lock(&self) -> Result<(), VaultError> {
        let client = self.pool.get().await?;
        if store::root(&client).await?.is_none() {
            return Err(VaultError::NotInitialized);
        }
        {
            // Held and locked under one state lock: an auto-unlock in flight checks the hold
            // under the same lock before it installs its keys.
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            self.held_locked.store(true, std::sync::atomic::Ordering::SeqCst);
            *state = State::Locked;
        }
        self.forget_shares();
        tracing::info!("vault locked by an operator");
        Ok(())
    }

    /// Changes the server key: re-seals the root key under a new unlock key, in one
    /// compare-and-swap of the root record. Nothing else changes, so there is no partial state.
    /// The current key is given as it is held (one key, a complete set of shares, or under the
    /// PKCS#11 seal the recovery shares); the new one may be one key or shares (rekey also moves
    /// between them), or under the PKCS#11 seal a fresh key the same token key seals, with new
    /// recovery shares when `NewKey::Shares` asks for them. Moving to or from the token is
    /// `seal migrate`.
    pub async fn rekey(
        &self,
        current: Presented,
        new: NewKey,
        identity: &str,
        ip: IpAddr,
    ) -> Result<super::seal::Migrated, VaultError> {
        use super::seal::NewSeal;
        self.keys()?;
        let stored = {
            let client = self.pool.get().await?;
            store::root(&client).await?.ok_or(VaultError::NotInitialized)?
        };
        let to = match (stored.seal, new) {
            (Seal::Pkcs11, NewKey::Key(_)) => {
                return Err(VaultError::InvalidRequest(
                    "this vault's server key is sealed by a PKCS#11 token: to hold a key                      instead, use seal migrate --to key"
                        .to_owned(),
                ));
            }
            (Seal::Pkcs11, new) => NewSeal::Pkcs11 {
                key_label: stored.token.as_ref().map(|t| t.key_label.clone()),
                recovery: match new {
                    NewKey::Shares { shares, threshold } => Some((shares, threshold)),
                    NewKey::Key(_) | NewKey::Token => None,
                },
            },
            (_, NewKey::Token) => {
                return Err(VaultError::InvalidRequest(
                    "give the new key as \"new_key\", or as \"new_shares\" and \"new_threshold\""
                        .to_owned(),
                ));
            }
            (_, NewKey::Key(key)) => NewSeal::Key(key),
            (_, NewKey::Shares { shares, threshold }) => NewSeal::Shares { shares, threshold },
        };
        self.migrate_seal(current, to, identity, ip).await
    }

    /// Adds a KEK version; new DEKs are wrapped under it. Concurrent rotations produce one new
    /// version, which every caller gets back.
    pub async fn rotate_kek(&self) -> Result<i32, VaultError> {
        let keys = self.keys()?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Share-lock the root so a root rotation cannot commit between wrap and insert.
        let root_version =
            store::root_version_for_share(&tx).await?.ok_or(VaultError::NotInitialized)?;
        if root_version != keys.root_version {
            drop(tx);
            self.lock_stale("the root key was rotated by another replica");
            return Err(VaultError::Locked);
        }
        let latest = store::latest_kek(&tx).await?.map_or(0, |k| k.version);
        let version = latest + 1;
        let kek = SecretKey::generate()?;
        let v = u32::try_from(version).map_err(|_| VaultError::Integrity)?;
        let row = KekRow {
            version,
            root_version,
            wrapped: hierarchy::wrap_kek(&keys.kek_wrapping, v, &kek)?,
        };
        if !store::insert_kek(&tx, &row).await? {
            // Another replica inserted this version first: theirs is the rotation.
            return Ok(version);
        }
        store::notify(&tx, &format!("kek:{version}")).await?;
        tx.commit().await?;
        tracing::info!(kek_version = version, "rotated the KEK");
        Ok(version)
    }

    /// Replaces the root key and re-wraps every KEK under it, in one transaction. Other replicas
    /// see the new root version and lock themselves. Under the PKCS#11 seal it needs a complete
    /// set of the recovery shares (`recovery`), whose check is re-made under the new root.
    pub async fn rotate_root(
        &self,
        recovery: Option<Vec<SecretString>>,
        identity: &str,
        ip: IpAddr,
    ) -> Result<i32, VaultError> {
        let keys = self.keys()?;
        let stored = {
            let client = self.pool.get().await?;
            store::root(&client).await?.ok_or(VaultError::NotInitialized)?
        };
        if stored.root_version != keys.root_version {
            self.lock_stale("the root key was rotated by another replica");
            return Err(VaultError::Locked);
        }
        let secret = match (stored.seal, recovery) {
            (Seal::Pkcs11, Some(given)) => {
                Some(self.check_recovery(&keys, &stored, &given, identity, ip).await?.1)
            }
            (Seal::Pkcs11, None) => {
                return Err(VaultError::InvalidRequest(
                    "this vault is sealed by a PKCS#11 token: rotating its root needs a \
                     complete set of its recovery shares as \"recovery_shares\""
                        .to_owned(),
                ));
            }
            (_, Some(_)) => {
                return Err(VaultError::InvalidRequest(
                    "this vault has no recovery shares: rotate-root takes no body".to_owned(),
                ));
            }
            (_, None) => None,
        };
        // The current unlock key re-seals the new root: this replica's, or under the token one
        // it unseals again when another replica's rekey made this one's stale.
        let (unlock_key, _) = self.unlock_and_root(&keys, &stored).await?;
        let (params, salt) = (stored.params, stored.salt.clone());
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let record = store::root_for_update(&tx).await?.ok_or(VaultError::NotInitialized)?;
        if record.generation != stored.generation {
            return Err(VaultError::Conflict(
                "the root record changed meanwhile (a rekey, migration or rotation); retry"
                    .to_owned(),
            ));
        }
        let new_root = SecretKey::generate()?;
        let new_wrapping = hierarchy::kek_wrapping_key(&new_root)?;
        let new_version = record.root_version + 1;
        let mut new_keks = Vec::new();
        for row in store::keks_for_update(&tx).await? {
            let kek = keys.kek(&row)?;
            let v = u32::try_from(row.version).map_err(|_| VaultError::Integrity)?;
            let rewrapped = KekRow {
                version: row.version,
                root_version: new_version,
                wrapped: hierarchy::wrap_kek(&new_wrapping, v, &kek)?,
            };
            store::rewrap_kek(&tx, &rewrapped).await?;
            new_keks.push(rewrapped);
        }
        let audit_key = match store::audit_key(&tx).await? {
            Some(row) => {
                let key = hierarchy::unwrap_audit_key(
                    &keys.kek_wrapping,
                    row.keyed_after(),
                    &row.wrapped,
                )?;
                let rewrapped = hierarchy::wrap_audit_key(&new_wrapping, row.keyed_after(), &key)?;
                store::rewrap_audit_key(&tx, new_version, &rewrapped).await?;
                Some(store::AuditKeyRow { root_version: new_version, wrapped: rewrapped, ..row })
            }
            None => None,
        };
        let replacement = RootRow {
            generation: record.generation + 1,
            root_version: new_version,
            params,
            sealed_root: hierarchy::seal_root(&unlock_key, params, &salt, &new_root)?,
            salt: salt.clone(),
            seal: record.seal,
            token: record.token.clone(),
            recovery: match (&record.recovery, &secret) {
                (Some(r), Some(secret)) => Some(store::Recovery {
                    check: hierarchy::recovery_check(&new_root, r.set, r.threshold, secret)?
                        .to_vec(),
                    ..r.clone()
                }),
                _ => None,
            },
        };
        if !store::replace_root(&tx, record.generation, &replacement).await? {
            return Err(VaultError::Conflict("the root record changed; retry".to_owned()));
        }
        store::notify(&tx, &root_notice(&replacement)).await?;
        tx.commit().await?;
        let mut fresh = UnlockedKeys::new(
            &new_root,
            new_version,
            replacement.generation,
            UnlockMaterial { key: unlock_key, params, salt, token: record.seal == Seal::Pkcs11 },
        )?;
        if let Some(wrapped) = &audit_key {
            fresh = fresh.with_audit_key(wrapped)?;
        }
        for row in &new_keks {
            fresh.kek(row)?;
        }
        self.replace_keys(&keys, fresh);
        tracing::info!(root_version = new_version, "rotated the root key");
        Ok(new_version)
    }

    /// Applies a root record seen in the database (from a notification or a periodic re-check):
    /// a new root version locks this replica; a new generation makes its unlock key stale.
    pub fn observe_root(&self, root_version: i32, generation: i64) {
        self.set_state_if_uninitialized();
        if let Ok(keys) = self.keys() {
            if root_version != keys.root_version {
                self.lock_stale("the root key was rotated by another replica");
            } else if generation != keys.generation {
                keys.forget_unlock_key();
            }
        }
        // After the state is settled: a locked replica under the token tries again at once.
        let seen = self.seen_generation.swap(generation, std::sync::atomic::Ordering::SeqCst);
        if seen != generation {
            self.root_changed.notify_one();
        }
    }
}

/// The notification payload announcing a root record.
pub(super) fn root_notice(record: &RootRow) -> String {
    format!("root:{}:{}", record.root_version, record.generation)
}

/// Loads the audit key into `keys`, making it on first use (a vault initialized before the
/// chain was keyed); replicas unlocking together keep whichever key was stored first. A log
/// with keyed entries and no key means the key was deleted: the vault refuses to make a new
/// one, which would leave the earlier entries' MACs uncheckable.
async fn load_audit_key(
    c: &impl deadpool_postgres::GenericClient,
    keys: UnlockedKeys,
) -> Result<UnlockedKeys, VaultError> {
    if store::audit_key(c).await?.is_none() {
        let (head, any_keyed) = store::audit_head(c).await?;
        if !any_keyed {
            store::insert_audit_key(c, &keys.new_audit_key(head)?).await?;
        } else if store::audit_key(c).await?.is_none() {
            // (Re-read: a replica unlocking at the same time may have made it meanwhile.)
            tracing::error!(
                "the audit log has keyed entries but the audit key is gone; refusing to unlock"
            );
            return Err(VaultError::Integrity);
        }
    }
    match store::audit_key(c).await? {
        Some(row) if row.root_version == keys.root_version => keys.with_audit_key(&row),
        // Wrapped under another root version: the root was rotated meanwhile.
        Some(row) if row.root_version > keys.root_version => Err(VaultError::Locked),
        Some(_) => {
            tracing::error!("the audit key is wrapped under an older root than the root record");
            Err(VaultError::Integrity)
        }
        None => Err(VaultError::Internal(anyhow::anyhow!("the audit key was not stored"))),
    }
}
