//! Command-line operations on a workspace: bootstrap (a workspace and its first root key) and
//! the export of its ciphertexts for disaster recovery. Each opens and closes a pool of its own.

use strongbox_shared::db::DatabaseConfig;

use crate::domain::root_keys::mint;
use crate::store::{self, Context as _};

/// What [`bootstrap`] made. Its `Debug` leaves the root key out, so no log line can carry it.
#[derive(Clone)]
pub struct Bootstrapped {
    /// The new workspace.
    pub workspace_id: String,
    /// Its first root key's id.
    pub root_key_id: String,
    /// Its first root key (`sb_…`), shown once.
    pub root_key: String,
}

impl std::fmt::Debug for Bootstrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bootstrapped")
            .field("workspace_id", &self.workspace_id)
            .field("root_key_id", &self.root_key_id)
            .field("root_key", &"<redacted>")
            .finish()
    }
}

/// Creates workspace `name` and its first root key, which holds every permission (`**`).
pub async fn bootstrap(database: &DatabaseConfig, name: &str) -> anyhow::Result<Bootstrapped> {
    if name.trim().is_empty() || name.len() > 255 {
        anyhow::bail!("--workspace must be 1-255 characters");
    }
    crate::migrate(database).await?;
    let pool = strongbox_shared::db::pool(database)?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await.context("starting a transaction")?;
    let workspace_id = strongbox_shared::id::new_id("ws")?;
    if !store::workspaces::create(&tx, &workspace_id, name).await? {
        anyhow::bail!(
            "a workspace named {name:?} exists already; use one of its root keys, or choose another name"
        );
    }
    let minted = mint(
        strongbox_shared::id::new_id("rk")?,
        &workspace_id,
        Some("bootstrap".to_owned()),
        vec!["**".to_owned()],
        true,
        None,
    )?;
    store::root_keys::insert(&tx, &minted.key, &strongbox_shared::keys::hash(&minted.plaintext))
        .await?;
    tx.commit().await.context("committing")?;
    drop(client);
    pool.close();
    Ok(Bootstrapped {
        workspace_id,
        root_key_id: minted.key.id,
        root_key: minted.plaintext.as_str().to_owned(),
    })
}

/// The id of workspace `workspace` (a name or an id).
pub async fn workspace_id(database: &DatabaseConfig, workspace: &str) -> anyhow::Result<String> {
    let pool = strongbox_shared::db::pool(database)?;
    let found = store::workspaces::find(&pool.get().await?, workspace).await?;
    pool.close();
    found.ok_or_else(|| anyhow::anyhow!("no workspace named or with id {workspace:?}"))
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
    let rows = store::encrypted::for_workspace(&pool.get().await?, &id).await?;
    pool.close();
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
    Ok(rows.len())
}
