//! The api's behaviour, independent of HTTP. Every call takes an authenticated [`Principal`]
//! (only [`Service::authenticate`] makes one), states what it needs through the one policy
//! ([`policy`]), and writes through one transaction discipline: a transaction, the store's
//! SQL, the change announced to every replica inside it, commit, then this replica's caches.
//!
//! - [`apis`], [`keys`], [`root_keys`]: the admin calls.
//! - [`verify`]: key verification and batched usage writes.
//! - [`credits`]: the group commit of credit spends.
//! - [`recovery`]: sealing and opening recoverable keys through the vault.
//! - [`rewrap`]: moving stored ciphertexts to a keyring's newest DEK version.
//! - [`workspaces`]: bootstrap and export, for the command line.

pub mod apis;
pub mod credits;
pub mod identities;
pub mod keys;
pub mod policy;
pub mod ratelimits;
pub mod recovery;
pub mod rewrap;
pub mod root_keys;
pub mod verify;
pub mod workspaces;

use std::sync::Arc;

use deadpool_postgres::{Object, Pool, Transaction};

use crate::cache::Cache;
use crate::domain::Invalid;
use crate::ratelimit::Limiter;
use crate::store::{self, Context as _, StoreError};
use crate::vault_client::VaultClient;

pub use policy::Principal;
pub use verify::Touches;

/// Why a call failed. Each variant has one stable code; the HTTP layer picks the status.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input breaks a rule (400).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// No valid root key (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// The root key lacks a permission, or does not cover the root key it acts on (403).
    #[error("{0}")]
    Forbidden(String),
    /// Missing, or another workspace's (404).
    #[error("{0}")]
    NotFound(String),
    /// The call needs something set up first (412).
    #[error("{0}")]
    PreconditionFailed(String),
    /// Already exists (409).
    #[error("{0}")]
    Conflict(String),
    /// Something Strongbox does not do (501).
    #[error("{0}")]
    NotSupported(String),
    /// The vault is locked (503).
    #[error("the vault is locked; an operator must unlock it")]
    VaultLocked,
    /// The vault is unreachable or not configured (503).
    #[error("{0}")]
    VaultUnavailable(String),
    /// The key's recovery material was destroyed or retired (410).
    #[error("{0}")]
    NotRecoverable(String),
    /// Stored key material failed authentication (500, logged as ERROR).
    #[error("{0}")]
    Integrity(String),
    /// The database is unreachable, restarting or out of connections (503).
    #[error("the database is not answering right now; retry shortly")]
    DatabaseUnavailable(#[source] anyhow::Error),
    /// Anything else (500): logged with its cause, answered without it.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ServiceError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(invalid) => invalid.code,
            Self::Unauthenticated(_) => "UNAUTHORIZED",
            Self::Forbidden(_) => "INSUFFICIENT_PERMISSIONS",
            Self::NotFound(_) => "NOT_FOUND",
            Self::PreconditionFailed(_) => "PRECONDITION_FAILED",
            Self::Conflict(_) => "CONFLICT",
            Self::NotSupported(_) => "NOT_SUPPORTED",
            Self::VaultLocked => "VAULT_LOCKED",
            Self::VaultUnavailable(_) => "VAULT_UNAVAILABLE",
            Self::NotRecoverable(_) => "KEY_NOT_RECOVERABLE",
            Self::Integrity(_) => "KEY_INTEGRITY_ERROR",
            Self::DatabaseUnavailable(_) => "DATABASE_UNAVAILABLE",
            Self::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    /// A 500 with its cause.
    pub fn internal(
        what: &'static str,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Internal(anyhow::Error::new(cause).context(what))
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        if error.is_unavailable() {
            Self::DatabaseUnavailable(error.into())
        } else {
            Self::Internal(error.into())
        }
    }
}

impl From<deadpool_postgres::PoolError> for ServiceError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        let unavailable = strongbox_shared::db::is_unavailable(&error);
        let error = anyhow::Error::new(error).context("taking a database connection");
        if unavailable { Self::DatabaseUnavailable(error) } else { Self::Internal(error) }
    }
}

/// A request body as the HTTP layer turned it into domain terms. A refused input is answered
/// only after the call's authorization: a caller without the right learns nothing of the input
/// rules, and a missing resource is a 404 whatever the body says.
pub type Parsed<T> = Result<T, ServiceError>;

/// What a transaction changed, announced to every replica when it commits.
#[derive(Debug, Default)]
pub(crate) struct Changed {
    keys: Vec<String>,
    root_keys: Vec<String>,
    apis: Vec<String>,
    identities: Vec<String>,
    namespaces: Vec<String>,
}

impl Changed {
    /// Keys changed or deleted.
    pub(crate) fn keys(ids: impl IntoIterator<Item = String>) -> Self {
        Self { keys: ids.into_iter().collect(), ..Self::default() }
    }

    /// An API changed or was deleted, as well.
    pub(crate) fn and_api(mut self, id: &str) -> Self {
        self.apis.push(id.to_owned());
        self
    }

    /// A root key changed or deleted.
    pub(crate) fn root_key(id: &str) -> Self {
        Self { root_keys: vec![id.to_owned()], ..Self::default() }
    }

    /// An identity changed or was deleted.
    pub(crate) fn identity(id: &str) -> Self {
        Self { identities: vec![id.to_owned()], ..Self::default() }
    }

    /// A rate-limit namespace's overrides changed.
    pub(crate) fn namespace(id: &str) -> Self {
        Self { namespaces: vec![id.to_owned()], ..Self::default() }
    }

    /// Nothing cached changed (an insert of something new).
    pub(crate) fn nothing() -> Self {
        Self::default()
    }
}

/// The api's service: everything a call needs. A clone is one reference count, which matters
/// because the HTTP layer clones its state for every request.
#[derive(Clone)]
pub struct Service(Arc<Parts>);

/// What the service holds.
pub struct Parts {
    pool: Pool,
    cache: Arc<Cache>,
    limiter: Arc<Limiter>,
    touches: Arc<Touches>,
    spends: Arc<credits::Spends>,
    vault: Option<Arc<VaultClient>>,
}

impl std::ops::Deref for Service {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

impl Service {
    /// A service over `pool`, with `vault` for recoverable keys when configured.
    pub fn new(
        pool: Pool,
        cache: Arc<Cache>,
        limiter: Arc<Limiter>,
        vault: Option<Arc<VaultClient>>,
    ) -> Self {
        Self(Arc::new(Parts {
            pool,
            cache,
            limiter,
            touches: Arc::new(Touches::default()),
            spends: Arc::new(credits::Spends::default()),
            vault,
        }))
    }

    /// The database pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The key and root-key caches.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// The rate limiter shared by every replica.
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    /// Pending `last_used_at` writes.
    pub fn touches(&self) -> &Arc<Touches> {
        &self.touches
    }

    /// The vault client, when configured.
    pub fn vault(&self) -> Option<&Arc<VaultClient>> {
        self.vault.as_ref()
    }

    /// One pooled connection. A call holds at most one at a time: holding one while waiting
    /// for a second could leave every request of a busy pool waiting for the others.
    async fn db(&self) -> Result<Object, ServiceError> {
        Ok(self.pool.get().await?)
    }

    /// Announces `changed` inside `tx`, commits, then drops it from this replica's caches
    /// (the other replicas drop it when the notification arrives).
    async fn commit(&self, tx: Transaction<'_>, changed: Changed) -> Result<(), ServiceError> {
        store::notify::keys(&tx, &changed.keys).await?;
        store::notify::root_keys(&tx, &changed.root_keys).await?;
        store::notify::apis(&tx, &changed.apis).await?;
        store::notify::identities(&tx, &changed.identities).await?;
        store::notify::namespaces(&tx, &changed.namespaces).await?;
        tx.commit().await.context("committing")?;
        if !changed.keys.is_empty() {
            self.cache.forget_keys(&changed.keys);
        }
        for id in &changed.root_keys {
            self.cache.forget_root_key(id);
        }
        for id in &changed.apis {
            self.cache.forget_api(id);
        }
        for id in &changed.identities {
            self.cache.forget_identity(id);
        }
        for id in &changed.namespaces {
            self.cache.forget_namespace(id);
        }
        Ok(())
    }

    /// Readiness: the database answers.
    pub async fn ping(&self) -> Result<(), ServiceError> {
        store::ops::ping(&self.db().await?).await?;
        Ok(())
    }

    /// The rewrap job's progress, for the ops port's metrics.
    pub async fn rewrap_progress(&self) -> Result<store::ops::RewrapProgress, ServiceError> {
        Ok(store::ops::rewrap_progress(&self.db().await?, rewrap::LOCK).await?)
    }
}

/// A new id with `prefix`; the random source failing is a 500.
pub(crate) fn new_id(prefix: &str) -> Result<String, ServiceError> {
    strongbox_shared::id::new_id(prefix).map_err(|e| ServiceError::internal("making an id", e))
}
