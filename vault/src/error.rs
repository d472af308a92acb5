//! The vault's errors. They name no transport: the HTTP edge gives each a status and a stable
//! code (`{"error":{"code","message"}}`), so the service layer stays free of the web framework.

/// Everything a vault call can fail with. Messages never carry keys, plaintexts or ciphertexts.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The vault is locked (or not yet initialized) and the route needs it unlocked.
    #[error("the vault is locked; an operator must unlock it")]
    Locked,
    /// The vault has no root record yet.
    #[error("the vault is not initialized; run `strongbox-vault initialize`")]
    NotInitialized,
    /// `initialize` on an initialized vault.
    #[error("the vault is already initialized")]
    AlreadyInitialized,
    /// The server key does not open the root record.
    #[error("wrong server key")]
    WrongKey,
    /// Too many wrong keys from this client; try again later.
    #[error("too many failed attempts; retry after {retry_after_seconds} s")]
    TooManyAttempts {
        /// Seconds to wait.
        retry_after_seconds: u64,
    },
    /// A chosen server key is too short.
    #[error("the server key must be at least {min} characters")]
    WeakKey {
        /// The minimum length.
        min: usize,
    },
    /// The client's identity lacks the role this route needs.
    #[error("identity {identity} may not call this route")]
    Forbidden {
        /// The caller's SPIFFE id, or a description of why it has none.
        identity: String,
    },
    /// The body is not the JSON this route takes.
    #[error("{0}")]
    InvalidRequest(String),
    /// A share that fails its checksum or belongs to another split; never counted.
    #[error("{0}")]
    InvalidShare(String),
    /// A keyring name outside `[A-Za-z0-9_-]{{1,64}}`.
    #[error("keyring names are 1-64 characters of A-Z, a-z, 0-9, '_' and '-'")]
    InvalidKeyring,
    /// A context outside 1-256 bytes.
    #[error("item {index}: context must be 1-256 bytes of UTF-8")]
    InvalidContext {
        /// The item.
        index: usize,
    },
    /// A plaintext that is not standard padded base64.
    #[error("item {index}: plaintext must be standard padded base64")]
    InvalidPlaintext {
        /// The item.
        index: usize,
    },
    /// A plaintext over the size limit.
    #[error("item {index}: plaintext exceeds {limit} bytes")]
    PlaintextTooLarge {
        /// The item.
        index: usize,
        /// The limit.
        limit: usize,
    },
    /// Too many items in one batch.
    #[error("at most {limit} items per call")]
    TooManyItems {
        /// The limit.
        limit: usize,
    },
    /// An empty batch.
    #[error("items must not be empty")]
    NoItems,
    /// The body exceeds the size limit.
    #[error("request body exceeds {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// No such keyring.
    #[error("keyring not found")]
    KeyringNotFound,
    /// The keyring was crypto-shredded.
    #[error("keyring was deleted; its data can no longer be decrypted")]
    KeyringDeleted,
    /// A version argument outside what the keyring allows.
    #[error("{0}")]
    InvalidVersion(String),
    /// A concurrent change won; the caller may retry.
    #[error("{0}")]
    Conflict(String),
    /// Stored key material failed to authenticate: tampering or corruption.
    #[error("stored key material failed an integrity check")]
    Integrity,
    /// The PKCS#11 token could not seal or unseal (unreachable, PIN refused, key missing).
    #[error("the PKCS#11 token is not available: {0}")]
    TokenUnavailable(String),
    /// The database is unreachable, restarting or out of connections for now.
    #[error("the vault database is not answering right now; retry shortly")]
    DatabaseUnavailable,
    /// The audit log could not be written, so the call's result is withheld.
    #[error("the audit log cannot be written; the call's result is withheld")]
    AuditUnavailable,
    /// Anything else; logged where it happens, never echoed.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<tokio_postgres::Error> for VaultError {
    fn from(error: tokio_postgres::Error) -> Self {
        if strongbox_shared::db::is_unavailable(&error) {
            tracing::warn!(%error, "vault database unavailable");
            return Self::DatabaseUnavailable;
        }
        Self::Internal(anyhow::Error::new(error).context("vault database"))
    }
}

impl From<deadpool_postgres::PoolError> for VaultError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        if strongbox_shared::db::is_unavailable(&error) {
            tracing::warn!(%error, "vault database unavailable");
            return Self::DatabaseUnavailable;
        }
        Self::Internal(anyhow::Error::new(error).context("vault database pool"))
    }
}

impl From<crate::crypto::CryptoError> for VaultError {
    fn from(error: crate::crypto::CryptoError) -> Self {
        match error {
            crate::crypto::CryptoError::Authentication => Self::Integrity,
            other => Self::Internal(anyhow::Error::new(other)),
        }
    }
}
