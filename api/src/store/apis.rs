//! APIs.

use deadpool_postgres::GenericClient;
use strongbox_shared::db::prepared;

use super::{Context as _, StoreError};
use crate::domain::apis::{Api, ApiPatch};

fn from_row(r: &tokio_postgres::Row) -> Api {
    Api { id: r.get(0), workspace_id: r.get(1), name: r.get(2), store_encrypted_keys: r.get(3) }
}

/// Inserts an API.
pub async fn insert(c: &impl GenericClient, api: &Api) -> Result<(), StoreError> {
    prepared::execute(
        c,
        "INSERT INTO apis (id, workspace_id, name, store_encrypted_keys) VALUES ($1, $2, $3, $4)",
        &[&api.id, &api.workspace_id, &api.name, &api.store_encrypted_keys],
    )
    .await
    .context("inserting an API")?;
    Ok(())
}

/// An API of `workspace_id`; another workspace's API is `None`, exactly like a missing one.
pub async fn get(
    c: &impl GenericClient,
    workspace_id: &str,
    id: &str,
) -> Result<Option<Api>, StoreError> {
    let row = prepared::query_opt(
        c,
        "SELECT id, workspace_id, name, store_encrypted_keys FROM apis \
             WHERE id = $1 AND workspace_id = $2",
        &[&id, &workspace_id],
    )
    .await
    .context("reading an API")?;
    Ok(row.as_ref().map(from_row))
}

/// Deletes an API and, by cascade, its keys. Returns the deleted key ids.
pub async fn delete(
    c: &impl GenericClient,
    workspace_id: &str,
    id: &str,
) -> Result<Vec<String>, StoreError> {
    // The API's row is locked first: a key inserted meanwhile must share-lock it for its
    // foreign key, so it either committed before (and is listed below) or waits and then fails
    // on the missing API. No key escapes the list, and so the cache eviction.
    prepared::query_opt(
        c,
        "SELECT 1 FROM apis WHERE id = $1 AND workspace_id = $2 FOR UPDATE",
        &[&id, &workspace_id],
    )
    .await
    .context("locking an API")?;
    let keys = prepared::query(c, "SELECT id FROM keys WHERE api_id = $1", &[&id])
        .await
        .context("listing an API's keys")?;
    prepared::execute(
        c,
        "DELETE FROM apis WHERE id = $1 AND workspace_id = $2",
        &[&id, &workspace_id],
    )
    .await
    .context("deleting an API")?;
    Ok(keys.iter().map(|r| r.get(0)).collect())
}

/// Writes the fields `patch` gives, in one statement. `false` when the API is gone.
pub async fn update(
    c: &impl GenericClient,
    workspace_id: &str,
    id: &str,
    patch: &ApiPatch,
) -> Result<bool, StoreError> {
    let n = prepared::execute(
        c,
        "UPDATE apis SET name = coalesce($3, name), \
             store_encrypted_keys = coalesce($4, store_encrypted_keys) \
             WHERE id = $1 AND workspace_id = $2",
        &[&id, &workspace_id, &patch.name, &patch.store_encrypted_keys],
    )
    .await
    .context("updating an API")?;
    Ok(n == 1)
}
