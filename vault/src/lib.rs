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
///
/// With `database.migration_url`, the owner role migrates and then grants the serving role (the
/// user of `database.url`) reading and writing on every table but `audit_log`, where it may only
/// read and append: the role the vault serves with cannot rewrite, truncate or unguard its own
/// audit trail. Without it, the serving role migrates when something is pending; when the schema
/// is current nothing is run, so a serving role that does not own the schema still starts.
pub async fn migrate(database: &DatabaseConfig) -> anyhow::Result<MigrationReport> {
    use anyhow::Context as _;
    let Some(owner) = database.owner() else {
        if schema_is_current(database).await? {
            return Ok(MigrationReport { applied: Vec::new() });
        }
        return strongbox_shared::db::migrate(
            database,
            embedded::migrations::runner(),
            MIGRATION_LOCK,
        )
        .await
        .context(
            "migrating as the serving role (set database.migration_url to migrate as the owner)",
        );
    };
    let report =
        strongbox_shared::db::migrate(&owner, embedded::migrations::runner(), MIGRATION_LOCK)
            .await
            .context("migrating as the owner (database.migration_url)")?;
    let serving = database.user().context("database.url names no user")?;
    if owner.user().as_deref() != Some(serving.as_str()) {
        grant_serving(&owner, &serving).await?;
    }
    Ok(report)
}

/// Whether every embedded migration is already applied (read with the serving role).
async fn schema_is_current(database: &DatabaseConfig) -> anyhow::Result<bool> {
    let newest = embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(refinery::Migration::version)
        .max()
        .unwrap_or(0);
    let client = strongbox_shared::db::connect(database).await?;
    let applied: Option<i32> = client
        .query_one(
            "SELECT CASE WHEN to_regclass('refinery_schema_history') IS NULL THEN NULL \
             ELSE (SELECT max(version) FROM refinery_schema_history) END",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(None);
    Ok(applied.is_some_and(|v| i64::from(v) >= i64::from(newest)))
}

/// The serving role's rights, granted by the owner after every migration (idempotent).
async fn grant_serving(owner: &DatabaseConfig, serving: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let role = format!("\"{}\"", serving.replace('"', "\"\""));
    let client = strongbox_shared::db::connect(owner).await?;
    client
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA public TO {role}; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}; \
             GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}; \
             REVOKE UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES ON audit_log FROM {role}; \
             REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON refinery_schema_history FROM {role};"
        ))
        .await
        .with_context(|| format!("granting the serving role {serving} its rights"))?;
    Ok(())
}
