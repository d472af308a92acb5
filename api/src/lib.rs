//! `strongbox-api`: the Unkey-compatible keys service.
//!
//! [`startup::Application`] builds and runs the service; `main.rs` only parses the command line.

pub mod cli;
pub mod config;
mod http;
pub mod startup;

use strongbox_shared::db::{DatabaseConfig, MigrationReport};

mod embedded {
    refinery::embed_migrations!("../sql/api");
}

/// Session advisory lock held while migrating, so api replicas starting together take turns.
const MIGRATION_LOCK: i64 = 0x5342_4150_4900_0001;

/// Brings the api database schema up to date (`sql/api/`).
pub async fn migrate(database: &DatabaseConfig) -> anyhow::Result<MigrationReport> {
    strongbox_shared::db::migrate(database, embedded::migrations::runner(), MIGRATION_LOCK).await
}
