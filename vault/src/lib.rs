//! `strongbox-vault`: envelope encryption for recoverable keys, deployed apart from the api.
//!
//! [`startup::Application`] builds and runs the service; `main.rs` only parses the command line.

pub mod audit;
pub mod certs;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod error;
pub mod hardening;
mod http;
pub mod recover;
pub mod replication;
pub mod service;
pub mod startup;
pub mod store;
pub mod tls_listener;

use strongbox_shared::db::{DatabaseConfig, MigrationReport};

mod embedded {
    refinery::embed_migrations!("../sql/vault");
}

/// Session advisory lock held while migrating, so vault replicas starting together take turns.
const MIGRATION_LOCK: i64 = 0x5342_5641_554c_0001;

/// Brings the vault database schema up to date (`sql/vault/`).
pub async fn migrate(database: &DatabaseConfig) -> anyhow::Result<MigrationReport> {
    strongbox_shared::db::migrate(database, embedded::migrations::runner(), MIGRATION_LOCK).await
}
