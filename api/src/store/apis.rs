//! APIs.

use deadpool_postgres::GenericClient;

/// An API.
#[derive(Debug, Clone)]
pub struct Api {
    /// `api_…`.
    pub id: String,
    /// Owner.
    pub workspace_id: String,
    /// Display name.
    pub name: String,
    /// Recoverable keys allowed.
    pub store_encrypted_keys: bool,
}

fn from_row(r: &tokio_postgres::Row) -> Api {
    Api { id: r.get(0), workspace_id: r.get(1), name: r.get(2), store_encrypted_keys: r.get(3) }
}

/// Inserts an API.
pub async fn insert(c: &impl GenericClient, api: &Api) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "INSERT INTO apis (id, workspace_id, name, store_encrypted_keys) VALUES ($1, $2, $3, $4)",
        &[&api.id, &api.workspace_id, &api.name, &api.store_encrypted_keys],
    )
    .await?;
    Ok(())
}

/// An API of `workspace_id`; another workspace's API is `None`, exactly like a missing one.
pub async fn get(
    c: &impl GenericClient,
    workspace_id: &str,
    id: &str,
) -> Result<Option<Api>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "SELECT id, workspace_id, name, store_encrypted_keys FROM apis \
             WHERE id = $1 AND workspace_id = $2",
            &[&id, &workspace_id],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// Deletes an API and, by cascade, its keys. Returns the deleted key ids.
pub async fn delete(
    c: &impl GenericClient,
    workspace_id: &str,
    id: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let keys = c.query("SELECT id FROM keys WHERE api_id = $1", &[&id]).await?;
    c.execute("DELETE FROM apis WHERE id = $1 AND workspace_id = $2", &[&id, &workspace_id])
        .await?;
    Ok(keys.iter().map(|r| r.get(0)).collect())
}

/// Sets the recovery opt-in.
pub async fn set_store_encrypted_keys(
    c: &impl GenericClient,
    id: &str,
    on: bool,
) -> Result<(), tokio_postgres::Error> {
    c.execute("UPDATE apis SET store_encrypted_keys = $2 WHERE id = $1", &[&id, &on]).await?;
    Ok(())
}

/// Renames an API.
pub async fn rename(
    c: &impl GenericClient,
    id: &str,
    name: &str,
) -> Result<(), tokio_postgres::Error> {
    c.execute("UPDATE apis SET name = $2 WHERE id = $1", &[&id, &name]).await?;
    Ok(())
}
