//! `strongbox-api`: the Unkey-compatible keys service.
//!
//! [`startup::Application`] builds and runs the service; `main.rs` only parses the command line.

pub mod cache;
pub mod cli;
pub mod config;
pub mod http;
pub mod ratelimit;
pub mod recovery;
pub mod rewrap;
pub mod startup;
pub mod store;
pub mod vault_client;
pub mod verify;

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

/// What [`bootstrap`] made.
#[derive(Debug, Clone)]
pub struct Bootstrapped {
    /// The new workspace.
    pub workspace_id: String,
    /// Its first root key's id.
    pub root_key_id: String,
    /// Its first root key (`sb_…`), shown once.
    pub root_key: String,
}

/// Creates workspace `name` and its first root key, which holds every permission (`**`).
pub async fn bootstrap(database: &DatabaseConfig, name: &str) -> anyhow::Result<Bootstrapped> {
    if name.trim().is_empty() || name.len() > 255 {
        anyhow::bail!("--workspace must be 1-255 characters");
    }
    migrate(database).await?;
    let pool = strongbox_shared::db::pool(database)?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let workspace_id = strongbox_shared::id::new_id("ws")?;
    if !store::workspaces::create(&tx, &workspace_id, name).await? {
        anyhow::bail!(
            "a workspace named {name:?} exists already; use one of its root keys, or choose another name"
        );
    }
    let (root_key, key) = http::root_keys::mint(
        &workspace_id,
        Some("bootstrap".to_owned()),
        vec!["**".to_owned()],
        None,
    )
    .map_err(|e| anyhow::anyhow!("cannot mint a root key: {}", e.code()))?;
    store::root_keys::insert(&tx, &key, &strongbox_shared::keys::hash(&root_key)).await?;
    tx.commit().await?;
    pool.close();
    Ok(Bootstrapped { workspace_id, root_key_id: key.id, root_key })
}

/// The id of workspace `workspace` (a name or an id).
pub async fn workspace_id(database: &DatabaseConfig, workspace: &str) -> anyhow::Result<String> {
    let client = strongbox_shared::db::connect(database).await?;
    let row = client
        .query_opt("SELECT id FROM workspaces WHERE name = $1 OR id = $1", &[&workspace])
        .await?;
    row.map(|r| r.get(0))
        .ok_or_else(|| anyhow::anyhow!("no workspace named or with id {workspace:?}"))
}

/// Writes the ciphertexts of workspace `workspace` (a name or an id) as JSON lines
/// `{key_id, keyring, context, ciphertext, dek_version}`. Returns how many.
pub async fn export_encrypted(
    database: &DatabaseConfig,
    workspace: &str,
    mut out: impl std::io::Write,
) -> anyhow::Result<usize> {
    let id = workspace_id(database, workspace).await?;
    let pool = strongbox_shared::db::pool(database)?;
    let client = pool.get().await?;
    let rows = store::encrypted::for_workspace(&client, &id).await?;
    for row in &rows {
        let line = serde_json::json!({
            "key_id": row.key_id,
            "keyring": row.keyring,
            "context": row.key_id,
            "ciphertext": row.ciphertext,
            "dek_version": row.dek_version,
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    pool.close();
    Ok(rows.len())
}
