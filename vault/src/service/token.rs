//! The PKCS#11 seal. `initialize` makes a random server key, has the token seal it under a key
//! that never leaves the token, and stores only the sealed form. Each replica has the token
//! unseal it at start and unlocks itself; while the token is unreachable or refuses the PIN, the
//! replica stays locked, says why in its log and status, and tries again with backoff.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cryptoki::types::AuthPin;
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::Vault;
use crate::config::SealConfig;
use crate::crypto::pkcs11::{Token, TokenError};
use crate::error::VaultError;
use crate::store::{self, Seal, TokenSealed};

/// Bound into every sealing, so the sealed server key opens as nothing else.
const AAD: &[u8] = b"strongbox-vault server key v1";
/// Bytes of a generated server key.
const KEY_BYTES: usize = 32;
/// The first retry after a failed auto-unlock; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often a replica that is unlocked, or waits for `initialize`, looks again.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The token a replica seals and unseals the server key with. The module is loaded once per
/// process (a PKCS#11 library is initialised once), on first use.
pub struct TokenSeal {
    module: PathBuf,
    token_label: String,
    key_label: String,
    pin_file: PathBuf,
    /// A PIN the token refused: never presented again (a token locks its PIN after a few
    /// wrong ones), until `seal.pin_file` holds another.
    refused: std::sync::Mutex<Option<Zeroizing<String>>>,
    /// A PIN the token accepted in this process: presented even when the token warns that few
    /// tries are left.
    accepted: std::sync::Mutex<Option<Zeroizing<String>>>,
    token: tokio::sync::OnceCell<Arc<Token>>,
}

impl std::fmt::Debug for TokenSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSeal")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .finish_non_exhaustive()
    }
}

impl TokenSeal {
    /// The token `config` names, with the PIN read from `seal.pin_file`.
    pub fn from_config(config: &SealConfig) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let (Some(module), Some(token_label), Some(pin_file)) =
            (&config.module, &config.token_label, &config.pin_file)
        else {
            anyhow::bail!(
                "seal.kind = \"pkcs11\" needs seal.module, seal.token_label and seal.pin_file"
            );
        };
        let seal = Self {
            module: module.clone(),
            token_label: token_label.clone(),
            key_label: config.key_label().to_owned(),
            pin_file: pin_file.clone(),
            refused: std::sync::Mutex::new(None),
            accepted: std::sync::Mutex::new(None),
            token: tokio::sync::OnceCell::new(),
        };
        seal.read_pin().with_context(|| format!("reading seal.pin_file {}", pin_file.display()))?;
        Ok(seal)
    }

    /// The PIN as `seal.pin_file` holds it now (a mounted secret may change).
    fn read_pin(&self) -> std::io::Result<Zeroizing<String>> {
        let text = Zeroizing::new(std::fs::read_to_string(&self.pin_file)?);
        Ok(Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_owned()))
    }

    /// The PIN to present, unless it is one the token refused.
    fn pin(&self) -> Result<(AuthPin, Zeroizing<String>), TokenError> {
        let pin = self.read_pin().map_err(|e| {
            TokenError::Library(format!("reading seal.pin_file {}: {e}", self.pin_file.display()))
        })?;
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        if refused.as_ref().is_some_and(|r| **r == *pin) {
            return Err(TokenError::Library(
                "the PKCS#11 token refused the PIN in seal.pin_file; waiting for that file to \
                 hold another (a token locks its PIN after a few wrong ones)"
                    .to_owned(),
            ));
        }
        Ok((AuthPin::from(pin.to_string()), pin))
    }

    /// Remembers `pin` as refused or accepted.
    fn note<T>(
        &self,
        pin: Zeroizing<String>,
        result: Result<T, TokenError>,
    ) -> Result<T, TokenError> {
        match &result {
            Err(TokenError::WrongPin) => {
                *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = Some(pin);
            }
            Ok(_) => *self.accepted.lock().unwrap_or_else(|e| e.into_inner()) = Some(pin),
            Err(_) => {}
        }
        result
    }

    /// Whether `pin` worked before in this process.
    fn known_good(&self, pin: &str) -> bool {
        let accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        accepted.as_ref().is_some_and(|a| a.as_str() == pin)
    }

    /// The label of the key this replica seals with.
    pub fn key_label(&self) -> &str {
        &self.key_label
    }

    async fn token(&self) -> Result<Arc<Token>, TokenError> {
        let token = self
            .token
            .get_or_try_init(|| async {
                let (module, label) = (self.module.clone(), self.token_label.clone());
                tokio::task::spawn_blocking(move || open_once(module, label))
                    .await
                    .map_err(|e| TokenError::Library(e.to_string()))?
            })
            .await?;
        Ok(token.clone())
    }

    /// Makes the token's key `label` when absent, and seals `secret` under it.
    async fn seal(
        &self,
        label: &str,
        secret: Zeroizing<Vec<u8>>,
    ) -> Result<TokenSealed, TokenError> {
        let token = self.token().await?;
        let ((pin, text), owned) = (self.pin()?, label.to_owned());
        let known = self.known_good(&text);
        let sealed = tokio::task::spawn_blocking(move || {
            let label = owned;
            may_present(&token, known)?;
            if token.ensure_key(&pin, &label)? {
                tracing::info!(key_label = %label, "made the seal's key in the PKCS#11 token");
            }
            // A key found under the label must be one that cannot leave the token: otherwise
            // its value and the vault database would give the server key.
            if !token.key_is_held(&pin, &label)? {
                return Err(TokenError::Library(format!(
                    "the token's key {label:?} is not local, sensitive and never extractable; \
                     use another seal.key_label"
                )));
            }
            token.seal(&pin, &label, AAD, &secret)
        })
        .await
        .map_err(|e| TokenError::Library(e.to_string()))?;
        let sealed = self.note(text, sealed)?;
        Ok(TokenSealed { key_label: label.to_owned(), sealed })
    }

    /// Opens what [`seal`](Self::seal) made, with the key it names.
    async fn unseal(&self, sealed: &TokenSealed) -> Result<Zeroizing<Vec<u8>>, TokenError> {
        let token = self.token().await?;
        let ((pin, text), sealed) = (self.pin()?, sealed.clone());
        let known = self.known_good(&text);
        let opened = tokio::task::spawn_blocking(move || {
            may_present(&token, known)?;
            token.unseal(&pin, &sealed.key_label, AAD, &sealed.sealed)
        })
        .await
        .map_err(|e| TokenError::Library(e.to_string()))?;
        self.note(text, opened)
    }
}

impl TokenSeal {
    /// Offline (`recover --token`): the server key of the vault database `database`, unsealed
    /// by the token.
    pub async fn server_key_from(
        &self,
        database: &strongbox_shared::db::DatabaseConfig,
    ) -> anyhow::Result<SecretString> {
        let pool = strongbox_shared::db::pool(database)?;
        let record = store::root(&pool.get().await?).await?;
        pool.close();
        let record =
            record.ok_or_else(|| anyhow::anyhow!("the vault database holds no root record"))?;
        let sealed = record
            .token
            .filter(|_| record.seal == Seal::Pkcs11)
            .ok_or_else(|| anyhow::anyhow!("this vault's server key is not sealed by a token"))?;
        let bytes = self.unseal(&sealed).await?;
        Ok(server_key(&bytes))
    }
}

/// The token `label` of `module`, opened once per process however many vaults the process runs
/// (tests run several): a PKCS#11 library is initialised once, and some (SoftHSM2) crash when
/// two threads initialise it at the same time.
fn open_once(module: PathBuf, label: String) -> Result<Arc<Token>, TokenError> {
    type Opened = std::collections::HashMap<(PathBuf, String), Arc<Token>>;
    static OPENED: std::sync::OnceLock<std::sync::Mutex<Opened>> = std::sync::OnceLock::new();
    let mut opened = OPENED.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(token) = opened.get(&(module.clone(), label.clone())) {
        return Ok(token.clone());
    }
    let token = Arc::new(Token::open(&module, &label)?);
    opened.insert((module, label), token.clone());
    Ok(token)
}

/// The server key as the unlock derivation takes it: hex of the random bytes.
fn server_key(bytes: &[u8]) -> SecretString {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        text.push(char::from(HEX[usize::from(b >> 4)]));
        text.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    SecretString::from(text)
}

impl Vault {
    /// `initialize` under the PKCS#11 seal: a random server key that nobody sees, sealed by
    /// the token, and `recovery` (N, K) recovery shares, returned printed; this replica is left
    /// unlocked.
    pub async fn initialize_token(
        &self,
        recovery: (u8, u8),
    ) -> Result<Vec<Zeroizing<String>>, VaultError> {
        let seal = self.token_seal()?;
        // Before any token work, so that a stray call makes no key in the token.
        if store::root(&self.pool.get().await?).await?.is_some() {
            return Err(VaultError::AlreadyInitialized);
        }
        let split = super::seal::RecoverySplit::new(recovery)?;
        let (key, sealed) = self.token_sealed_key(seal.key_label()).await?;
        let printed = split.printed.clone();
        self.initialize_sealed(key, Seal::Pkcs11, Some(sealed), Some(split)).await?;
        Ok(printed)
    }

    /// A fresh random server key, and the token's sealing of it under its key `label` (made
    /// when absent).
    pub(super) async fn token_sealed_key(
        &self,
        label: &str,
    ) -> Result<(SecretString, TokenSealed), VaultError> {
        let seal = self.token_seal()?;
        let mut bytes = Zeroizing::new(vec![0u8; KEY_BYTES]);
        crate::crypto::random_fill(&mut bytes).map_err(|e| VaultError::Internal(e.into()))?;
        let key = server_key(&bytes);
        let sealed = seal.seal(label, bytes).await.map_err(token_failure)?;
        Ok((key, sealed))
    }

    /// The server key of `record`, unsealed by this replica's token.
    pub(super) async fn token_unsealed_key(
        &self,
        record: &store::RootRow,
    ) -> Result<SecretString, VaultError> {
        let seal = self.token_seal()?;
        let sealed = record.token.as_ref().ok_or(VaultError::Integrity)?;
        let bytes = seal.unseal(sealed).await.map_err(token_failure)?;
        Ok(server_key(&bytes))
    }

    /// Whether this replica is configured with the PKCS#11 seal.
    pub fn sealed_by_token(&self) -> bool {
        self.token.is_some()
    }

    pub(super) fn token_seal(&self) -> Result<&Arc<TokenSeal>, VaultError> {
        self.token.as_ref().ok_or_else(|| {
            VaultError::InvalidRequest(
                "this replica is not configured with seal.kind = \"pkcs11\" (and seal.module, \
                 seal.token_label, seal.pin_file): it has no token to seal with"
                    .to_owned(),
            )
        })
    }

    /// One try at unlocking through the token, if this replica is locked under the PKCS#11
    /// seal and no operator locked it. `Ok(true)`: this call unlocked it; `Ok(false)`: nothing to
    /// do now.
    async fn try_token_unlock(&self) -> Result<bool, TokenError> {
        let Ok(seal) = self.token_seal() else { return Ok(false) };
        if self.is_unlocked() || self.held_locked() {
            return Ok(false);
        }
        let record = match self.pool.get().await {
            Ok(client) => store::root(&client).await,
            Err(error) => return Err(TokenError::Library(format!("vault database: {error}"))),
        };
        let record = match record {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(false),
            Err(error) => return Err(TokenError::Library(format!("vault database: {error}"))),
        };
        let Some(sealed) = record.token.as_ref().filter(|_| record.seal == Seal::Pkcs11) else {
            return Err(TokenError::Library(
                "seal.kind is \"pkcs11\" but the vault's server key is held by operators; \
                 unlock it with the key or shares, or migrate the seal"
                    .to_owned(),
            ));
        };
        let bytes = seal.unseal(sealed).await?;
        let localhost = std::net::IpAddr::from([127, 0, 0, 1]);
        // Each replica counts against the unlock throttle on its own.
        let identity = format!("pkcs11-auto-unlock/{}", replica_name());
        match self.unlock_auto(server_key(&bytes), &identity, localhost).await {
            Ok(unlocked) => Ok(unlocked),
            Err(error) => Err(TokenError::Library(format!("unlocking: {error}"))),
        }
    }

    /// Unlocks this replica through the token now and whenever it finds itself locked (a
    /// restart, or another replica's root rotation), until `stop`. An operator's `lock` holds
    /// until an operator unlocks. A PIN the token has locked is never retried.
    pub fn spawn_token_unlock(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        if self.token.is_none() {
            return;
        }
        tokio::spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            loop {
                let wait = match self.try_token_unlock().await {
                    Ok(unlocked) => {
                        self.set_auto_unlock_error(None);
                        // Only an unlock this loop made is logged and audited (an operator's
                        // initialize or unlock is audited as the call it is).
                        if unlocked {
                            tracing::info!("unlocked through the PKCS#11 token");
                            self.audit_auto_unlock(200).await;
                        }
                        backoff = FIRST_BACKOFF;
                        IDLE_CHECK
                    }
                    Err(TokenError::PinLocked) => {
                        let error = TokenError::PinLocked.to_string();
                        tracing::error!(%error, "auto-unlock stopped: an operator must unlock the PIN on the token, then restart this replica");
                        self.set_auto_unlock_error(Some(error));
                        return;
                    }
                    Err(error) => {
                        let error = error.to_string();
                        tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "auto-unlock through the PKCS#11 token failed; staying locked");
                        // One audit entry per reason, not per retry.
                        if self.auto_unlock_error().as_deref() != Some(error.as_str()) {
                            self.audit_auto_unlock(503).await;
                        }
                        self.set_auto_unlock_error(Some(error));
                        let wait = backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        wait
                    }
                };
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                    // A new root record (a seal migrated to the token, a root rotated): try now.
                    () = self.root_changed.notified() => backoff = FIRST_BACKOFF,
                }
            }
        });
    }
}

impl Vault {
    /// Records an auto-unlock (200) or the start of a failing reason (503) in the audit log,
    /// as the operator calls it replaces would be.
    async fn audit_auto_unlock(&self, status: i16) {
        let entry = crate::audit::Entry {
            identity: format!("pkcs11-auto-unlock/{}", replica_name()),
            action: "auto-unlock through the PKCS#11 token".to_owned(),
            keyring: None,
            items: None,
            status,
            trace_id: String::new(),
        };
        if !self.audit.record(entry).await {
            tracing::error!("an auto-unlock is missing from the audit log");
        }
    }
}

/// Whether a PIN may be presented: always one that worked before in this process (`known`);
/// another only while the token does not say a wrong one would be the last try. Each replica
/// and each restart may spend a try on a wrong PIN, and a locked PIN stops every replica.
fn may_present(token: &Token, known: bool) -> Result<(), TokenError> {
    if known || token.pin_tries_left()? {
        return Ok(());
    }
    Err(TokenError::Library(
        "the PKCS#11 token says a wrong PIN now would lock it; not presenting a PIN not known \
         to work (check seal.pin_file, then log in once on the token to reset the count)"
            .to_owned(),
    ))
}

/// This replica's name for the throttle: the pod's host name, else the process id.
fn replica_name() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| format!("pid-{}", std::process::id()))
}

/// A token failure during `initialize`: the operator's request cannot be served now.
fn token_failure(error: TokenError) -> VaultError {
    tracing::warn!(%error, "the PKCS#11 token refused");
    VaultError::TokenUnavailable(error.to_string())
}

impl Vault {
    /// Whether an operator locked this replica (auto-unlock then waits for an operator).
    pub(super) fn held_locked(&self) -> bool {
        self.held_locked.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Records why auto-unlock fails (`None`: it works); `true` when that changed from failing.
    fn set_auto_unlock_error(&self, error: Option<String>) -> bool {
        let mut held = self.auto_unlock_error.lock().unwrap_or_else(|e| e.into_inner());
        let was_failing = held.is_some();
        *held = error;
        was_failing && held.is_none()
    }

    /// Why auto-unlock is failing, if it is.
    pub fn auto_unlock_error(&self) -> Option<String> {
        self.auto_unlock_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
