//! `strongbox-api`: the Unkey-compatible keys service.
//!
//! [`startup::Application`] builds and runs the service; `main.rs` only parses the command line.
//!
//! Layers, each depending only on those below it:
//! - [`http`] parses requests and renders answers (Unkey's v2 and v1 wire formats);
//! - [`service`] decides: who may do what, which transaction, which cache announcement;
//! - [`domain`] holds plain types and rules;
//! - [`store`] holds all SQL.
//!
//! Nothing below `http` names axum, `crate::http` or `crate::startup`; a test reads the sources
//! to keep it so.

pub mod cache;
pub mod cli;
pub mod config;
pub mod context;
pub mod domain;
pub mod http;
pub mod ratelimit;
pub mod service;
pub mod startup;
pub mod store;
pub mod vault_client;

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

pub use service::rewrap;
pub use service::workspaces::{Bootstrapped, bootstrap, export_encrypted, workspace_id};
