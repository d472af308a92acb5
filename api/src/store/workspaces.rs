//! Workspaces.

use deadpool_postgres::GenericClient;
use strongbox_shared::db::prepared;

use super::{Context as _, StoreError};

/// Creates a workspace; `false` when the name is taken.
pub async fn create(c: &impl GenericClient, id: &str, name: &str) -> Result<bool, StoreError> {
    let n = prepared::execute(
        c,
        "INSERT INTO workspaces (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        &[&id, &name],
    )
    .await
    .context("creating a workspace")?;
    Ok(n == 1)
}

/// The id of the workspace named, or with the id, `name_or_id`.
pub async fn find(c: &impl GenericClient, name_or_id: &str) -> Result<Option<String>, StoreError> {
    Ok(prepared::query_opt(
        c,
        "SELECT id FROM workspaces WHERE name = $1 OR id = $1",
        &[&name_or_id],
    )
    .await
    .context("finding a workspace")?
    .map(|r| r.get(0)))
}
