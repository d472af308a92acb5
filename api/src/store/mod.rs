//! All SQL of the api database, one module per aggregate. Functions take any client or
//! transaction (`&impl GenericClient`), so the service composes them inside one transaction.
//!
//! Every statement's error carries what it was doing ([`StoreError`]), so a 500's log line names
//! the query that failed.

pub mod apis;
pub mod encrypted;
pub mod identities;
pub mod keys;
pub mod notify;
pub mod ops;
pub mod ratelimit;
pub mod rewrap;
pub mod root_keys;
pub mod workspaces;

/// A failed statement, with what it was doing ("reading a key", "inserting a root key").
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct StoreError {
    what: &'static str,
    #[source]
    source: tokio_postgres::Error,
}

impl StoreError {
    /// Whether the database was unreachable, restarting or shutting down (worth a 503 and a
    /// retry), rather than a fault in the statement.
    pub fn is_unavailable(&self) -> bool {
        strongbox_shared::db::is_unavailable(&self.source)
    }

    /// The SQLSTATE, when Postgres answered with an error.
    pub fn sqlstate(&self) -> Option<&tokio_postgres::error::SqlState> {
        self.source.code()
    }
}

/// `.context("verb phrase")` for statement results.
pub trait Context<T> {
    /// Names what the statement was doing.
    fn context(self, what: &'static str) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, tokio_postgres::Error> {
    fn context(self, what: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError { what, source })
    }
}
