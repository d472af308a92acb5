//! Moving the server key between seals (`seal migrate`), and the recovery shares that stand in
//! for a held key under the PKCS#11 seal.
//!
//! A migration is a rekey whose new key may be held differently: one key, k-of-n shares, or a
//! random key the token seals. It re-seals the same root key under a new unlock key in one
//! compare-and-swap of the root record, so the old seal works until the new one does and
//! nothing else changes (KEKs, DEKs and ciphertexts stay as they are).
//!
//! Under the PKCS#11 seal nobody holds the server key, so k-of-n recovery shares authorise what
//! a held key would: rekey, rotate-root and migration. They split a random secret unrelated to
//! the server key, and the root record stores only an HMAC of it under a subkey of the root: they
//! never unlock or decrypt, and the database alone can neither test guesses nor plant a split.

use std::net::IpAddr;

use secrecy::SecretString;
use zeroize::Zeroizing;

use super::lifecycle::Presented;
use super::{UnlockMaterial, UnlockedKeys, Vault};
use crate::crypto::SecretKey;
use crate::crypto::hierarchy;
use crate::crypto::shares::{self as sss, Share};
use crate::error::VaultError;
use crate::store::{self, Recovery, RootRow, Seal};

/// Recovery shares made when none are asked for: five, any three of which authorise.
pub const DEFAULT_RECOVERY: (u8, u8) = (5, 3);
/// Longest token key label accepted.
const MAX_LABEL_CHARS: usize = 64;

/// What the server key becomes.
pub enum NewSeal {
    /// One key the operator chose.
    Key(SecretString),
    /// A fresh key split into `shares`, `threshold` of which rebuild it.
    Shares {
        /// N.
        shares: u8,
        /// K.
        threshold: u8,
    },
    /// A fresh random key that this replica's token seals.
    Pkcs11 {
        /// The token's key to seal under (made when absent); `None`: `seal.key_label`.
        key_label: Option<String>,
        /// New recovery shares (N, K); `None` keeps the current ones when the vault has some,
        /// else makes [`DEFAULT_RECOVERY`].
        recovery: Option<(u8, u8)>,
    },
}

/// What a migration (or rekey) hands back, shown once.
#[derive(Default)]
pub struct Migrated {
    /// The seal now: `key`, `shares` or `pkcs11`.
    pub seal: &'static str,
    /// New unlock shares (to `shares`).
    pub shares: Option<Vec<Zeroizing<String>>>,
    /// New recovery shares (to `pkcs11`, when made).
    pub recovery_shares: Option<Vec<Zeroizing<String>>>,
}

/// A fresh split of recovery shares, before it is bound to a root key.
pub struct RecoverySplit {
    shares: u8,
    threshold: u8,
    set: [u8; 4],
    secret: Zeroizing<Vec<u8>>,
    /// The shares, printed.
    pub printed: Vec<Zeroizing<String>>,
}

impl RecoverySplit {
    /// `n` shares of a fresh secret, `k` of which rebuild it.
    pub fn new((n, k): (u8, u8)) -> Result<Self, VaultError> {
        let (secret, made) = sss::split(n, k)?;
        let set = made.first().map(|s| s.set).unwrap_or_default();
        Ok(Self {
            shares: n,
            threshold: k,
            set,
            secret,
            printed: made.iter().map(Share::encode).collect(),
        })
    }

    /// The stored form, checked under `root`.
    pub fn record(&self, root: &SecretKey) -> Result<Recovery, VaultError> {
        Ok(Recovery {
            shares: self.shares,
            threshold: self.threshold,
            set: self.set,
            check: hierarchy::recovery_check(root, self.set, self.threshold, &self.secret)?
                .to_vec(),
        })
    }
}

/// The seal's name, as status reports it.
pub fn seal_name(seal: Seal) -> &'static str {
    match seal {
        Seal::Key => "key",
        Seal::Shares { .. } => "shares",
        Seal::Pkcs11 => "pkcs11",
    }
}

fn check_label(label: &str) -> Result<(), VaultError> {
    if label.is_empty()
        || label.chars().count() > MAX_LABEL_CHARS
        || label.chars().any(|c| c.is_control())
    {
        return Err(VaultError::InvalidRequest(format!(
            "key_label must be 1 to {MAX_LABEL_CHARS} printable characters"
        )));
    }
    Ok(())
}

impl Vault {
    /// Moves the server key to `to`. Needs this replica unlocked (the current seal available)
    /// and the current authority: the server key, a complete set of the shares, or, under the
    /// PKCS#11 seal, a complete set of the recovery shares. One compare-and-swap of the root
    /// record; the root key, KEKs and DEKs do not change.
    pub async fn migrate_seal(
        &self,
        current: Presented,
        to: NewSeal,
        identity: &str,
        ip: IpAddr,
    ) -> Result<Migrated, VaultError> {
        let keys = self.keys()?;
        // Everything about the new seal that can be refused is checked before any authority is
        // evaluated (and counted) and before the token makes a key.
        match &to {
            NewSeal::Key(key) => super::lifecycle::check_strength(key)?,
            NewSeal::Shares { shares, threshold } => sss::check_range(*shares, *threshold)?,
            NewSeal::Pkcs11 { key_label, recovery } => {
                self.token_seal()?;
                if let Some(label) = key_label {
                    check_label(label)?;
                }
                if let Some((n, k)) = recovery {
                    sss::check_range(*n, *k)?;
                }
            }
        }
        let (record, root) = self.authorise(&keys, current, identity, ip).await?;

        let mut migrated = Migrated::default();
        let (new_key, seal, token, recovery) = match to {
            NewSeal::Key(key) => (key, Seal::Key, None, None),
            NewSeal::Shares { shares, threshold } => {
                let (key, seal, printed) = super::shares::new_split(shares, threshold)?;
                migrated.shares = Some(printed);
                (key, seal, None, None)
            }
            NewSeal::Pkcs11 { key_label, recovery } => {
                let label = match key_label {
                    Some(label) => label,
                    None => self.token_seal()?.key_label().to_owned(),
                };
                let kept = record.recovery.clone().filter(|_| record.seal == Seal::Pkcs11);
                let recovery = match (recovery, kept) {
                    (None, Some(kept)) => kept,
                    (asked, _) => {
                        let split = RecoverySplit::new(asked.unwrap_or(DEFAULT_RECOVERY))?;
                        let stored = split.record(&root)?;
                        migrated.recovery_shares = Some(split.printed);
                        stored
                    }
                };
                let (key, sealed) = self.token_sealed_key(&label).await?;
                (key, Seal::Pkcs11, Some(sealed), Some(recovery))
            }
        };
        migrated.seal = seal_name(seal);

        let params = self.settings.unlock.argon2;
        let salt = hierarchy::new_salt()?.to_vec();
        let unlock = self.derive(new_key, params, salt.clone()).await?;
        let replacement = RootRow {
            generation: record.generation + 1,
            root_version: record.root_version,
            params,
            sealed_root: hierarchy::seal_root(&unlock, params, &salt, &root)?,
            salt: salt.clone(),
            seal,
            token,
            recovery,
        };
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if !store::replace_root(&tx, record.generation, &replacement).await? {
            return Err(VaultError::Conflict(
                "the root record changed meanwhile (another rekey, migration or rotation); check \
                 status and retry"
                    .to_owned(),
            ));
        }
        store::notify(&tx, &super::lifecycle::root_notice(&replacement)).await?;
        tx.commit().await?;
        // This replica keeps its keys; it now holds the new unlock key and generation.
        let audit = self.audit_key.read().unwrap_or_else(|e| e.into_inner()).clone();
        let fresh = UnlockedKeys::new(
            &root,
            replacement.root_version,
            replacement.generation,
            UnlockMaterial { key: unlock, params, salt, token: replacement.seal == Seal::Pkcs11 },
        )?
        .with_loaded_audit_key(audit);
        self.replace_keys(&keys, fresh);
        tracing::info!(
            identity,
            generation = replacement.generation,
            seal = migrated.seal,
            "server key re-sealed"
        );
        Ok(migrated)
    }

    /// Checks the authority presented against the stored seal; returns the record it was
    /// checked against and the root key, which must be the one this replica holds: a root
    /// record rewritten in the database (a root sealed under a key of someone's choosing) is
    /// refused, so a migration never installs a root other than the running one.
    async fn authorise(
        &self,
        keys: &UnlockedKeys,
        current: Presented,
        identity: &str,
        ip: IpAddr,
    ) -> Result<(RootRow, SecretKey), VaultError> {
        let (record, root) = self.authorise_any(keys, current, identity, ip).await?;
        self.check_current(keys, &record)?;
        check_same_root(keys, &root)?;
        Ok((record, root))
    }

    /// `record` is of the root this replica holds; else it is stale and locks itself.
    fn check_current(&self, keys: &UnlockedKeys, record: &RootRow) -> Result<(), VaultError> {
        if record.root_version != keys.root_version {
            self.lock_stale("the root key was rotated by another replica");
            return Err(VaultError::Locked);
        }
        Ok(())
    }

    async fn authorise_any(
        &self,
        keys: &UnlockedKeys,
        current: Presented,
        identity: &str,
        ip: IpAddr,
    ) -> Result<(RootRow, SecretKey), VaultError> {
        let stored = {
            let client = self.pool.get().await?;
            store::root(&client).await?.ok_or(VaultError::NotInitialized)?
        };
        let key = match (current, stored.seal) {
            (Presented::Key(key), Seal::Key) => key,
            (Presented::Shares(given), Seal::Shares { threshold, set, .. }) => {
                super::shares::key_from(&given, threshold, set)?
            }
            (Presented::Recovery(given), Seal::Pkcs11) => {
                let (root, _) = self.check_recovery(keys, &stored, &given, identity, ip).await?;
                return Ok((stored, root));
            }
            (_, Seal::Key) => {
                return Err(VaultError::InvalidRequest(
                    "this vault's key is one secret: give it as \"current_key\"".to_owned(),
                ));
            }
            (_, Seal::Shares { .. }) => {
                return Err(VaultError::InvalidRequest(
                    "this vault's key is held in shares: give a complete set as \"shares\""
                        .to_owned(),
                ));
            }
            (_, Seal::Pkcs11) => {
                return Err(VaultError::InvalidRequest(
                    "this vault's server key is sealed by a PKCS#11 token, which nobody can \
                     present: give a complete set of its recovery shares as \"recovery_shares\""
                        .to_owned(),
                ));
            }
        };
        let (record, _, root) = self.open_root_with(key, identity, ip).await?;
        Ok((record, root))
    }

    /// Checks a complete set of recovery shares against `record`, counted by the unlock
    /// throttle like a server key. Returns the root key (from this replica's memory, or the
    /// token when this replica's unlock key is stale) and the split's secret.
    pub(super) async fn check_recovery(
        &self,
        keys: &UnlockedKeys,
        record: &RootRow,
        given: &[SecretString],
        identity: &str,
        ip: IpAddr,
    ) -> Result<(SecretKey, Zeroizing<Vec<u8>>), VaultError> {
        let Some(recovery) = &record.recovery else {
            return Err(VaultError::InvalidRequest(
                "this vault has no recovery shares: a vault held by a key or shares has none, \
                 and one sealed by a PKCS#11 token before they existed gets them offline with \
                 strongbox-vault seal init-recovery"
                    .to_owned(),
            ));
        };
        // A share of another split, or mistyped, is refused before anything is counted.
        let secret = super::shares::secret_from(given, recovery.threshold, recovery.set)?;
        let attempt = match self.throttle.begin(&self.pool, identity, ip).await {
            Ok(attempt) => attempt,
            Err(throttled @ VaultError::TooManyAttempts { .. }) => {
                metrics::counter!("strongbox_vault_unlock_failures_total", "reason" => "throttled")
                    .increment(1);
                return Err(throttled);
            }
            Err(other) => return Err(other),
        };
        // Counted first: the token and the KDF may be needed to reach the root.
        let (_, root) = self.unlock_and_root(keys, record).await?;
        let client = self.pool.get().await?;
        if hierarchy::recovery_matches(
            &root,
            recovery.set,
            recovery.threshold,
            &secret,
            &recovery.check,
        )? {
            if let Err(error) = self.throttle.success(&client, attempt).await {
                tracing::warn!(%error, "could not reset the unlock throttle after right shares");
            }
            Ok((root, secret))
        } else {
            self.throttle.end(&client, attempt).await?;
            metrics::counter!("strongbox_vault_unlock_failures_total", "reason" => "wrong_key")
                .increment(1);
            tracing::warn!(identity, %ip, "a wrong set of recovery shares was presented");
            Err(VaultError::WrongKey)
        }
    }

    /// The unlock key and root key of `record`: with this replica's unlock key when it is
    /// current, else (under the PKCS#11 seal) with the server key the token unseals. The root
    /// must be the one this replica holds.
    pub(super) async fn unlock_and_root(
        &self,
        keys: &UnlockedKeys,
        record: &RootRow,
    ) -> Result<(SecretKey, SecretKey), VaultError> {
        self.check_current(keys, record)?;
        let unlock = match keys.unlock_key_for(record)? {
            Some(unlock) => unlock,
            None if record.seal == Seal::Pkcs11 && self.sealed_by_token() => {
                let key = self.token_unsealed_key(record).await?;
                self.derive(key, record.params, record.salt.clone()).await?
            }
            None => {
                return Err(VaultError::Conflict(
                    "the server key was changed on another replica since this one was \
                     unlocked; lock and unlock this replica with the current key or shares, then \
                     retry"
                        .to_owned(),
                ));
            }
        };
        let root = hierarchy::open_root(&unlock, record.params, &record.salt, &record.sealed_root)
            .map_err(|_| VaultError::Integrity)?;
        check_same_root(keys, &root)?;
        Ok((unlock, root))
    }
}

/// `root` is the root key this replica holds: a root record rewritten in the database (a root
/// of someone's own, sealed under a key they chose) opens to another.
fn check_same_root(keys: &UnlockedKeys, root: &SecretKey) -> Result<(), VaultError> {
    if keys.same_root(root)? {
        return Ok(());
    }
    tracing::error!("the root record opens to a root key this replica does not hold; refusing");
    Err(VaultError::Integrity)
}

/// Offline (`seal init-recovery`): gives a vault that was sealed by the token before recovery
/// shares existed a split of `recovery` (N, K) of them, and returns them printed. It needs what
/// recovers every key anyway (the token with its PIN, and the vault database), so it grants
/// nothing new; online, nothing can add a split to a vault that has none.
pub async fn add_recovery_offline(
    database: &strongbox_shared::db::DatabaseConfig,
    token: &super::token::TokenSeal,
    recovery: (u8, u8),
) -> anyhow::Result<Vec<Zeroizing<String>>> {
    use anyhow::Context as _;
    let split = RecoverySplit::new(recovery)?;
    let pool = strongbox_shared::db::pool(database)?;
    let client = pool.get().await?;
    let record = store::root(&client).await?.context("the vault database holds no root record")?;
    if record.seal != Seal::Pkcs11 {
        anyhow::bail!(
            "this vault's server key is not sealed by a token: it has no recovery shares"
        );
    }
    if record.recovery.is_some() {
        anyhow::bail!(
            "this vault has recovery shares already; a quorum of them re-splits them (rekey)"
        );
    }
    let key = token.server_key_from(database).await?;
    let (params, salt) = (record.params, record.salt.clone());
    let root = tokio::task::spawn_blocking(move || -> anyhow::Result<SecretKey> {
        let unlock = hierarchy::derive_unlock_key(&key, params, &salt)?;
        hierarchy::open_root(&unlock, params, &salt, &record.sealed_root)
            .context("the token's server key does not open this vault's root record")
    })
    .await??;
    // The root must be this database's: its newest KEK opens under it.
    let kek = store::latest_kek(&client).await?.context("the vault database holds no KEK")?;
    let wrapping = hierarchy::kek_wrapping_key(&root)?;
    let version = u32::try_from(kek.version).context("a KEK version out of range")?;
    if kek.root_version != record.root_version
        || hierarchy::unwrap_kek(&wrapping, version, &kek.wrapped).is_err()
    {
        anyhow::bail!("the root record does not open this database's KEKs; refusing");
    }
    let stored = split.record(&root)?;
    let Some((root_version, generation)) =
        store::add_recovery(&client, record.generation, &stored).await?
    else {
        anyhow::bail!("the root record changed meanwhile; run it again");
    };
    store::notify(&client, &format!("root:{root_version}:{generation}")).await?;
    drop(client);
    pool.close();
    Ok(split.printed)
}
