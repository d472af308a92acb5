//! Root keys: workspace admin tokens.

use deadpool_postgres::GenericClient;
use strongbox_shared::db::prepared;
use time::OffsetDateTime;

use super::{Context as _, StoreError};
use crate::domain::root_keys::{RootKey, RootKeyPatch};

const SELECT: &str = "SELECT id, workspace_id, start, end_chars, name, permissions, enabled, \
    expires_at, created_at, last_used_at FROM root_keys";

fn from_row(r: &tokio_postgres::Row) -> RootKey {
    RootKey {
        id: r.get(0),
        workspace_id: r.get(1),
        start: r.get(2),
        end: r.get(3),
        name: r.get(4),
        permissions: r.get(5),
        enabled: r.get(6),
        expires_at: r.get(7),
        created_at: r.get(8),
        last_used_at: r.get(9),
    }
}

/// The root key with this hash.
pub async fn by_hash(c: &impl GenericClient, hash: &[u8]) -> Result<Option<RootKey>, StoreError> {
    Ok(prepared::query_opt(c, &format!("{SELECT} WHERE hash = $1"), &[&hash])
        .await
        .context("finding a root key by its hash")?
        .as_ref()
        .map(from_row))
}

/// The root keys `ids` of `workspace_id` that exist, their rows locked until the transaction
/// ends. Rows are locked in id order, so two requests locking the same pair cannot deadlock.
pub async fn lock(
    c: &impl GenericClient,
    workspace_id: &str,
    ids: &[&str],
) -> Result<Vec<RootKey>, StoreError> {
    let rows = prepared::query(
        c,
        &format!("{SELECT} WHERE id = ANY($1) AND workspace_id = $2 ORDER BY id FOR UPDATE"),
        &[&ids, &workspace_id],
    )
    .await
    .context("locking root keys")?;
    Ok(rows.iter().map(from_row).collect())
}

/// A page of a workspace's root keys, after `after`.
pub async fn list(
    c: &impl GenericClient,
    workspace_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<RootKey>, StoreError> {
    let rows = prepared::query(c,
            &format!("{SELECT} WHERE workspace_id = $1 AND ($2::text IS NULL OR id > $2) ORDER BY id LIMIT $3"),
            &[&workspace_id, &after, &limit],
        )
        .await
        .context("listing root keys")?;
    Ok(rows.iter().map(from_row).collect())
}

/// Inserts a root key with its hash.
pub async fn insert(c: &impl GenericClient, key: &RootKey, hash: &[u8]) -> Result<(), StoreError> {
    prepared::execute(c,
        "INSERT INTO root_keys (id, workspace_id, hash, start, end_chars, name, permissions, enabled, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[&key.id, &key.workspace_id, &hash, &key.start, &key.end, &key.name, &key.permissions, &key.enabled, &key.expires_at],
    )
    .await
    .context("inserting a root key")?;
    Ok(())
}

/// Writes exactly the fields `patch` gives, in one statement, and makes the key expire by
/// `expire_by` at the latest when given.
pub async fn update(
    c: &impl GenericClient,
    id: &str,
    patch: &RootKeyPatch,
    expire_by: Option<OffsetDateTime>,
) -> Result<(), StoreError> {
    prepared::execute(
        c,
        "UPDATE root_keys SET name = CASE WHEN $2 THEN $3 ELSE name END, \
         permissions = coalesce($4, permissions), enabled = coalesce($5, enabled), \
         expires_at = CASE WHEN $6::timestamptz IS NULL THEN expires_at \
                           ELSE LEAST(coalesce(expires_at, $6), $6) END, \
         updated_at = now() WHERE id = $1",
        &[
            &id,
            &patch.name.is_some(),
            &patch.name.clone().flatten(),
            &patch.permissions,
            &patch.enabled,
            &expire_by,
        ],
    )
    .await
    .context("updating a root key")?;
    Ok(())
}

/// Makes a root key expire at `at` at the latest (an earlier expiry stays).
pub async fn expire_by(
    c: &impl GenericClient,
    id: &str,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    prepared::execute(
        c,
        "UPDATE root_keys SET expires_at = LEAST(coalesce(expires_at, $2), $2), updated_at = now() \
         WHERE id = $1",
        &[&id, &at],
    )
    .await
    .context("setting a rerolled root key's expiry")?;
    Ok(())
}

/// Deletes a root key. `false` when it did not exist in the workspace.
pub async fn delete(
    c: &impl GenericClient,
    workspace_id: &str,
    id: &str,
) -> Result<bool, StoreError> {
    Ok(prepared::execute(
        c,
        "DELETE FROM root_keys WHERE id = $1 AND workspace_id = $2",
        &[&id, &workspace_id],
    )
    .await
    .context("deleting a root key")?
        == 1)
}
