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
    let serving = database.user().context("database.url names no user")?;
    let split = owner.user().as_deref() != Some(serving.as_str());
    if split {
        // Before migrating: the owner cannot migrate tables the serving role owns anyway.
        let owner_role = owner.user().unwrap_or_default();
        let client = strongbox_shared::db::connect(&owner).await?;
        refuse_unconfined(&client, &serving, &owner_role, OWNS_OR_SUPER).await?;
    }
    let report =
        strongbox_shared::db::migrate(&owner, embedded::migrations::runner(), MIGRATION_LOCK)
            .await
            .context("migrating as the owner (database.migration_url)")?;
    if split {
        grant_serving(&owner, &serving).await?;
    } else {
        tracing::warn!(
            "database.migration_url names the serving role: the vault serves as the owner, and \
             the audit log rests on its triggers alone"
        );
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

/// The serving role's rights, granted by the owner after every migration (idempotent, and under
/// the migration lock, since concurrent grants on one object fail), then checked: a serving role
/// that owns a table (say, restored with `pg_restore --no-owner` as it), or can still change the
/// audit log or the audit key, makes the split void, and the vault refuses to start.
async fn grant_serving(owner: &DatabaseConfig, serving: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let role = format!("\"{}\"", serving.replace('"', "\"\""));
    let mut client = strongbox_shared::db::connect(owner).await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    let owner_role = owner.user().unwrap_or_default();
    refuse_unconfined(&tx, serving, &owner_role, OWNS_OR_SUPER).await?;
    tx.batch_execute(&format!(
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC; \
         GRANT USAGE ON SCHEMA public TO {role}; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}; \
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}; \
         REVOKE UPDATE, DELETE, TRUNCATE, TRIGGER, REFERENCES ON audit_log FROM {role}; \
         REVOKE DELETE, TRUNCATE ON audit_key, root_record FROM {role}; \
         REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON refinery_schema_history FROM {role};"
    ))
    .await
    .with_context(|| format!("granting the serving role {serving} its rights"))?;
    refuse_unconfined(&tx, serving, &owner_role, MAY_CHANGE).await?;
    // PUBLIC keeps CREATE on schema public where the owner does not own it (PostgreSQL 14 and
    // older, or a cluster upgraded from one): creating tables does not reach the audit log, so
    // this is said, not refused.
    let create: bool = tx
        .query_one("SELECT has_schema_privilege($1::name, 'public', 'CREATE')", &[&serving])
        .await?
        .get(0);
    if create {
        tracing::warn!(
            serving,
            "the serving role may create objects in schema public; as a superuser run \
             ALTER SCHEMA public OWNER TO <owner>; REVOKE CREATE ON SCHEMA public FROM PUBLIC"
        );
    }
    tx.commit().await?;
    Ok(())
}

/// Owning a table or the schema, being a superuser, able to make roles, or a member of the
/// owner role makes every grant moot. `$1` is the serving role, `$2` the owner.
const OWNS_OR_SUPER: &str = "SELECT array_remove(ARRAY[ \
       CASE WHEN EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE n.nspname = 'public' AND pg_get_userbyid(c.relowner) = $1::name) \
            THEN 'it owns tables in schema public' END, \
       CASE WHEN EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'public' \
                         AND pg_get_userbyid(nspowner) = $1::name) \
            THEN 'it owns schema public' END, \
       CASE WHEN (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = $1::name) \
            THEN 'it is a superuser or may create roles' END, \
       CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1::name) \
                 AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $2::name) \
            THEN CASE WHEN pg_has_role($1::name, $2::name, 'MEMBER') \
                      THEN 'it is a member of the owner role' END END], NULL)";

/// Rights the serving role must not have once granted. `$2` is unused.
const MAY_CHANGE: &str = "SELECT array_remove(ARRAY[ \
       CASE WHEN has_table_privilege($1::name, 'audit_log', 'UPDATE, DELETE, TRUNCATE, TRIGGER') \
            THEN 'it can change or unguard audit_log' END, \
       CASE WHEN has_table_privilege($1::name, 'audit_key', 'DELETE, TRUNCATE') \
            OR has_table_privilege($1::name, 'root_record', 'DELETE, TRUNCATE') \
            THEN 'it can delete the audit key or the root record' END, \
       CASE WHEN has_table_privilege($1::name, 'refinery_schema_history', 'INSERT, UPDATE, DELETE, TRUNCATE') \
            THEN 'it can rewrite the migration history' END, \
       CASE WHEN $2::name IS NULL THEN NULL END], NULL)";

/// Fails with every reason `check` (one of the queries above) finds the serving role is not
/// confined.
async fn refuse_unconfined(
    c: &impl tokio_postgres::GenericClient,
    serving: &str,
    owner: &str,
    check: &str,
) -> anyhow::Result<()> {
    let problems: Vec<String> = c.query_one(check, &[&serving, &owner]).await?.get(0);
    if problems.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "the serving role {serving} is not confined: {} (restore and migrate as the owner of \
         database.migration_url; see ops/RUNBOOK.md)",
        problems.join("; ")
    )
}
