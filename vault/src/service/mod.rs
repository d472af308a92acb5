//! The vault's behaviour, independent of HTTP: lifecycle ([`lifecycle`]), the data plane
//! ([`data`]) and keyring administration ([`keyrings`]).
//!
//! State lives in two places. Postgres holds every wrapped key and is the only source of truth
//! for versions: each data-plane call reads its keyring row, so no replica ever encrypts under a
//! version the database no longer confirms. Memory holds the unwrapped keys of an unlocked
//! replica, dropped (and zeroized) on lock.

pub mod data;
pub mod keyrings;
pub mod lifecycle;
pub mod maintenance;
pub mod seal;
pub mod shares;
pub mod throttle;
pub mod token;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};

use crate::config::{LimitsConfig, UnlockConfig};
use crate::crypto::SecretKey;
use crate::crypto::hierarchy::{self, Argon2Params};
use crate::error::VaultError;
use crate::store::{self, DekRow, KekRow};

/// Encryptions leased from the database at a time, per DEK and replica.
const LEASE_BLOCK: i64 = 1 << 16;
/// Most encryptions one DEK version may perform: with random 96-bit nonces this keeps the chance
/// of a nonce collision below 2^-32 (NIST SP 800-38D §8.3).
pub const DEK_ENCRYPTION_LIMIT: i64 = 1 << 31;

/// Settings the service needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Unlock and KDF settings.
    pub unlock: UnlockConfig,
    /// Request limits.
    pub limits: LimitsConfig,
    /// The PKCS#11 token, under `seal.kind = "pkcs11"`.
    pub token: Option<Arc<token::TokenSeal>>,
}

/// Where a replica stands.
pub enum State {
    /// No root record exists yet.
    Uninitialized,
    /// Initialized, keys not in memory.
    Locked,
    /// Keys in memory.
    Unlocked(Arc<UnlockedKeys>),
}

/// A DEK in memory, with this replica's lease of its encryption budget.
pub struct CachedDek {
    key: SecretKey,
    lease: Mutex<Lease>,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    next: i64,
    end: i64,
}

impl CachedDek {
    fn new(key: SecretKey) -> Self {
        Self { key, lease: Mutex::new(Lease { next: 0, end: 0 }) }
    }

    /// The key.
    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    fn try_take(&self, n: i64) -> bool {
        let mut lease = self.lease.lock().unwrap_or_else(|e| e.into_inner());
        if lease.next + n <= lease.end {
            lease.next += n;
            true
        } else {
            false
        }
    }

    fn install(&self, start: i64, end: i64) {
        *self.lease.lock().unwrap_or_else(|e| e.into_inner()) = Lease { next: start, end };
    }
}

/// The keys of an unlocked replica. Dropping it zeroizes every key it holds.
pub struct UnlockedKeys {
    /// Version of the root key held.
    pub root_version: i32,
    /// Root-record generation when unlocked; a different one in the database means a rekey
    /// happened elsewhere and this replica's unlock key is stale.
    pub generation: i64,
    /// The unlock key, its parameters and salt: root rotation re-seals under them.
    unlock: Mutex<Option<UnlockMaterial>>,
    kek_wrapping: SecretKey,
    keks: RwLock<HashMap<i32, Arc<SecretKey>>>,
    deks: RwLock<HashMap<(String, i32), Arc<CachedDek>>>,
    /// The audit key, once loaded: entries written while this replica is unlocked carry an
    /// HMAC under it.
    audit: Option<Arc<SecretKey>>,
}

struct UnlockMaterial {
    key: SecretKey,
    params: Argon2Params,
    salt: Vec<u8>,
    /// The server key it came from is sealed by a PKCS#11 token.
    token: bool,
}

impl UnlockedKeys {
    fn new(
        root: &SecretKey,
        root_version: i32,
        generation: i64,
        unlock: UnlockMaterial,
    ) -> Result<Self, VaultError> {
        Ok(Self {
            root_version,
            generation,
            unlock: Mutex::new(Some(unlock)),
            kek_wrapping: hierarchy::kek_wrapping_key(root)?,
            keks: RwLock::new(HashMap::new()),
            deks: RwLock::new(HashMap::new()),
            audit: None,
        })
    }

    /// Loads the audit key from its stored record (wrapped under this root's wrapping key).
    fn with_audit_key(mut self, row: &store::AuditKeyRow) -> Result<Self, VaultError> {
        let key = hierarchy::unwrap_audit_key(&self.kek_wrapping, row.keyed_after(), &row.wrapped)?;
        self.audit = Some(Arc::new(key));
        Ok(self)
    }

    /// Whether `root` is the root key these keys came from (compared through the KEK-wrapping
    /// subkey, in constant time).
    fn same_root(&self, root: &SecretKey) -> Result<bool, VaultError> {
        let wrapping = hierarchy::kek_wrapping_key(root)?;
        Ok(aws_lc_rs::constant_time::verify_slices_are_equal(
            wrapping.expose(),
            self.kek_wrapping.expose(),
        )
        .is_ok())
    }

    /// This replica's unlock key when `record` is the root record it was unlocked with
    /// (`None`: a rekey elsewhere made it stale, or it was forgotten). The same generation
    /// holding another salt, parameters or seal was rewritten in place: `Integrity`.
    fn unlock_key_for(&self, record: &store::RootRow) -> Result<Option<SecretKey>, VaultError> {
        let guard = self.unlock.lock().unwrap_or_else(|e| e.into_inner());
        match (&*guard, record.generation == self.generation) {
            (Some(m), true) => {
                let token = record.seal == store::Seal::Pkcs11;
                if m.params != record.params || m.salt != record.salt || m.token != token {
                    tracing::error!(
                        "the root record was rewritten in place (same generation, another \
                         seal); refusing"
                    );
                    return Err(VaultError::Integrity);
                }
                Ok(Some(m.key.duplicate()?))
            }
            _ => Ok(None),
        }
    }

    /// Keeps `audit` as this replica's audit key (a rekey changes the unlock key, not it).
    fn with_loaded_audit_key(mut self, audit: Option<Arc<SecretKey>>) -> Self {
        self.audit = audit;
        self
    }

    /// A new audit key keying the chain after entry `keyed_after`, wrapped under this root's
    /// wrapping key for storing.
    fn new_audit_key(&self, keyed_after: i64) -> Result<store::AuditKeyRow, VaultError> {
        let key = SecretKey::generate()?;
        let bound = u64::try_from(keyed_after).unwrap_or(0);
        Ok(store::AuditKeyRow {
            root_version: self.root_version,
            keyed_after,
            wrapped: hierarchy::wrap_audit_key(&self.kek_wrapping, bound, &key)?,
        })
    }

    /// Unwraps (or finds) a KEK. A KEK wrapped under another root version means the root was
    /// rotated by another replica: this one is stale and must lock.
    pub(crate) fn kek(&self, row: &KekRow) -> Result<Arc<SecretKey>, VaultError> {
        if let Some(kek) = self.keks.read().unwrap_or_else(|e| e.into_inner()).get(&row.version) {
            return Ok(kek.clone());
        }
        if row.root_version != self.root_version {
            return Err(VaultError::Locked);
        }
        let version = u32::try_from(row.version).map_err(|_| VaultError::Integrity)?;
        let kek = Arc::new(hierarchy::unwrap_kek(&self.kek_wrapping, version, &row.wrapped)?);
        self.keks.write().unwrap_or_else(|e| e.into_inner()).insert(row.version, kek.clone());
        Ok(kek)
    }

    fn cached_dek(&self, keyring: &str, version: i32) -> Option<Arc<CachedDek>> {
        self.deks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(keyring.to_owned(), version))
            .cloned()
    }

    fn unwrap_dek(&self, keyring: &str, row: &DekRow) -> Result<Arc<CachedDek>, VaultError> {
        let kek = self.kek(&row.kek)?;
        let version = u32::try_from(row.version).map_err(|_| VaultError::Integrity)?;
        let dek = hierarchy::unwrap_dek(&kek, keyring, version, &row.wrapped)?;
        let cached = Arc::new(CachedDek::new(dek));
        let mut deks = self.deks.write().unwrap_or_else(|e| e.into_inner());
        Ok(deks.entry((keyring.to_owned(), row.version)).or_insert(cached).clone())
    }

    /// Drops the cached DEKs of `keyring` (after a rotation, trim or shred anywhere).
    pub fn forget_keyring(&self, keyring: &str) {
        self.deks.write().unwrap_or_else(|e| e.into_inner()).retain(|(k, _), _| k != keyring);
    }

    /// Drops every cached DEK (after a lost notification connection).
    pub fn forget_all_deks(&self) {
        self.deks.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Drops deleted KEKs from memory.
    pub fn forget_keks(&self, versions: &[i32]) {
        let mut keks = self.keks.write().unwrap_or_else(|e| e.into_inner());
        for v in versions {
            keks.remove(v);
        }
    }

    /// Drops the unlock key: the server key changed elsewhere, so it no longer matches.
    pub fn forget_unlock_key(&self) {
        *self.unlock.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Loads a KEK announced by another replica.
    pub fn learn_kek(&self, row: &KekRow) {
        if let Err(error) = self.kek(row) {
            tracing::warn!(kek_version = row.version, %error, "cannot load announced KEK");
        }
    }
}

/// One replica of the vault.
pub struct Vault {
    pool: Pool,
    settings: Settings,
    state: RwLock<State>,
    /// One argon2 derivation at a time: each takes 64 MiB, so parallel unlock attempts must
    /// queue rather than exhaust memory.
    kdf_gate: Arc<tokio::sync::Mutex<()>>,
    throttle: throttle::Throttle,
    audit: Arc<crate::audit::AuditLog>,
    /// The audit key, from this replica's first unlock on (kept across a lock), shared with the
    /// audit log's writer.
    audit_key: crate::audit::AuditKey,
    /// Shares given towards an unlock, on this replica only.
    progress: std::sync::Mutex<Option<shares::Progress>>,
    /// The PKCS#11 token, under that seal.
    token: Option<Arc<token::TokenSeal>>,
    /// An operator locked this replica: auto-unlock waits for an operator's unlock.
    held_locked: std::sync::atomic::AtomicBool,
    /// Why auto-unlock through the token fails, while it does.
    auto_unlock_error: std::sync::Mutex<Option<String>>,
    /// Woken when this replica sees a root record it had not seen (auto-unlock tries at once).
    root_changed: tokio::sync::Notify,
    /// The root-record generation this replica saw last.
    seen_generation: std::sync::atomic::AtomicI64,
}

impl Vault {
    /// A replica over `pool`: locked, or uninitialized when there is no root record.
    pub async fn start(pool: Pool, settings: Settings) -> anyhow::Result<Arc<Self>> {
        let client = pool.get().await?;
        let initialized = store::root(&client).await?.is_some();
        drop(client);
        let throttle = throttle::Throttle::new(
            settings.unlock.free_failures,
            Duration::from_secs(settings.unlock.max_delay_seconds),
        );
        let audit_key = crate::audit::AuditKey::default();
        let audit = Arc::new(crate::audit::AuditLog::start(pool.clone(), audit_key.clone()));
        let token = settings.token.clone();
        Ok(Arc::new(Self {
            pool,
            settings,
            state: RwLock::new(if initialized { State::Locked } else { State::Uninitialized }),
            kdf_gate: Arc::new(tokio::sync::Mutex::new(())),
            throttle,
            audit,
            audit_key,
            progress: std::sync::Mutex::new(None),
            token,
            held_locked: std::sync::atomic::AtomicBool::new(false),
            auto_unlock_error: std::sync::Mutex::new(None),
            root_changed: tokio::sync::Notify::new(),
            seen_generation: std::sync::atomic::AtomicI64::new(-1),
        }))
    }

    /// The audit log this replica writes to.
    pub fn audit(&self) -> Arc<crate::audit::AuditLog> {
        self.audit.clone()
    }

    /// The database pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Request limits.
    pub fn limits(&self) -> LimitsConfig {
        self.settings.limits
    }

    /// The keys, or [`VaultError::Locked`].
    pub fn keys(&self) -> Result<Arc<UnlockedKeys>, VaultError> {
        match &*self.state.read().unwrap_or_else(|e| e.into_inner()) {
            State::Unlocked(keys) => Ok(keys.clone()),
            State::Locked | State::Uninitialized => Err(VaultError::Locked),
        }
    }

    /// Whether this replica holds its keys.
    pub fn is_unlocked(&self) -> bool {
        self.keys().is_ok()
    }

    fn set_state(&self, state: State) {
        // The audit key outlives a lock: it protects only the log, and keeping it keeps the
        // entries a locked replica writes keyed, so a rewrite cannot pass them off as plain.
        if let State::Unlocked(keys) = &state
            && let Some(audit) = &keys.audit
        {
            *self.audit_key.write().unwrap_or_else(|e| e.into_inner()) = Some(audit.clone());
        }
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// Installs `fresh` (the keys of a root record this replica just committed) in place of
    /// `current`, unless an operator locked this replica meanwhile, or a newer root record was
    /// seen since: then `fresh` is dropped, and the replica picks the record up at its next
    /// unlock. A stale lock in between (this replica's own commit notified before the commit
    /// returned) does not stop it. `true` when installed.
    fn replace_keys(&self, current: &Arc<UnlockedKeys>, fresh: UnlockedKeys) -> bool {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let seen = self.seen_generation.load(std::sync::atomic::Ordering::SeqCst);
        let installable = match &*state {
            State::Unlocked(keys) => {
                Arc::ptr_eq(keys, current) || keys.generation < fresh.generation
            }
            State::Locked => !self.held_locked() && seen <= fresh.generation,
            State::Uninitialized => false,
        };
        if !installable {
            return false;
        }
        if let Some(audit) = &fresh.audit {
            *self.audit_key.write().unwrap_or_else(|e| e.into_inner()) = Some(audit.clone());
        }
        *state = State::Unlocked(Arc::new(fresh));
        true
    }

    /// Locks this replica because its keys no longer match the database.
    pub fn lock_stale(&self, why: &'static str) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if matches!(*state, State::Unlocked(_)) {
            *state = State::Locked;
            tracing::warn!(
                why,
                "locked this replica; it must be unlocked again (under the PKCS#11 seal it \
                 unlocks itself)"
            );
        }
    }

    async fn derive(
        &self,
        key: secrecy::SecretString,
        params: Argon2Params,
        salt: Vec<u8>,
    ) -> Result<SecretKey, VaultError> {
        // The parameters come from the database: past the ceiling they are tampering (or
        // corruption), and deriving with them could exhaust the host.
        if !params.within_ceiling() {
            tracing::error!(
                m_kib = params.m_kib,
                t = params.t,
                p = params.p,
                "the root record asks for argon2 parameters above the ceiling; refusing to derive"
            );
            return Err(VaultError::Integrity);
        }
        // The gate is held by the derivation itself: a caller that hangs up cannot release it
        // while its derivation still runs.
        let one_at_a_time = self.kdf_gate.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || {
            let derived = hierarchy::derive_unlock_key(&key, params, &salt);
            drop(one_at_a_time);
            derived
        })
        .await
        .map_err(|e| VaultError::Internal(anyhow::Error::new(e).context("argon2 task")))?
        .map_err(VaultError::from)
    }

    /// DEKs `versions` of `keyring`, from memory or in one query.
    async fn deks(
        &self,
        client: &impl GenericClient,
        keys: &UnlockedKeys,
        keyring: &str,
        versions: &[i32],
    ) -> Result<HashMap<i32, Arc<CachedDek>>, VaultError> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        for &version in versions {
            match keys.cached_dek(keyring, version) {
                Some(dek) => {
                    found.insert(version, dek);
                }
                None => missing.push(version),
            }
        }
        if !missing.is_empty() {
            for row in store::deks(client, keyring, &missing).await? {
                found.insert(row.version, keys.unwrap_dek(keyring, &row)?);
            }
        }
        Ok(found)
    }

    /// Takes `n` encryptions from a DEK's budget, leasing more from the database when this
    /// replica's lease runs out. `false` when the DEK's 2^31 budget is spent.
    async fn take_budget(
        &self,
        client: &impl GenericClient,
        keyring: &str,
        version: i32,
        dek: &CachedDek,
        n: usize,
    ) -> Result<bool, VaultError> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        if dek.try_take(n) {
            return Ok(true);
        }
        let block = LEASE_BLOCK.max(n);
        match store::lease(client, keyring, version, block, DEK_ENCRYPTION_LIMIT).await? {
            Some(end) => {
                dek.install(end - block + n, end);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Seals a new DEK for `keyring` `version` under the newest KEK, inside the caller's
    /// transaction.
    async fn create_dek(
        &self,
        tx: &impl GenericClient,
        keys: &UnlockedKeys,
        keyring: &str,
        version: i32,
    ) -> Result<(), VaultError> {
        let kek_row = store::latest_kek(tx).await?.ok_or(VaultError::Integrity)?;
        let kek = keys.kek(&kek_row)?;
        let dek = SecretKey::generate()?;
        let v = u32::try_from(version).map_err(|_| VaultError::Integrity)?;
        let wrapped = hierarchy::wrap_dek(&kek, keyring, v, &dek)?;
        store::insert_dek(tx, keyring, version, kek_row.version, &wrapped).await?;
        Ok(())
    }
}
