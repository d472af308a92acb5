//! Root keys: workspace admin tokens.

use deadpool_postgres::GenericClient;
use time::OffsetDateTime;

/// A stored root key, everything but its hash.
#[derive(Debug, Clone)]
pub struct RootKey {
    /// `rk_…`.
    pub id: String,
    /// The workspace it administers.
    pub workspace_id: String,
    /// First characters, for display.
    pub start: String,
    /// Last characters, for display.
    pub end: String,
    /// Display name.
    pub name: Option<String>,
    /// Permission patterns.
    pub permissions: Vec<String>,
    /// Disabled keys authenticate nothing.
    pub enabled: bool,
    /// Expiry.
    pub expires_at: Option<OffsetDateTime>,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last used.
    pub last_used_at: Option<OffsetDateTime>,
}

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
pub async fn by_hash(
    c: &impl GenericClient,
    hash: &[u8],
) -> Result<Option<RootKey>, tokio_postgres::Error> {
    Ok(c.query_opt(&format!("{SELECT} WHERE hash = $1"), &[&hash]).await?.as_ref().map(from_row))
}

/// A root key of `workspace_id`.
pub async fn get(
    c: &impl GenericClient,
    workspace_id: &str,
    id: &str,
) -> Result<Option<RootKey>, tokio_postgres::Error> {
    let row = c
        .query_opt(&format!("{SELECT} WHERE id = $1 AND workspace_id = $2"), &[&id, &workspace_id])
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// A page of a workspace's root keys, after `after`.
pub async fn list(
    c: &impl GenericClient,
    workspace_id: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<RootKey>, tokio_postgres::Error> {
    let rows = c
        .query(
            &format!("{SELECT} WHERE workspace_id = $1 AND ($2::text IS NULL OR id > $2) ORDER BY id LIMIT $3"),
            &[&workspace_id, &after, &limit],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Inserts a root key with its hash.
pub async fn insert(
    c: &impl GenericClient,
    key: &RootKey,
    hash: &[u8],
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "INSERT INTO root_keys (id, workspace_id, hash, start, end_chars, name, permissions, enabled, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[&key.id, &key.workspace_id, &hash, &key.start, &key.end, &key.name, &key.permissions, &key.enabled, &key.expires_at],
    )
    .await?;
    Ok(())
}

/// Writes name, permissions, enabled and expiry back.
pub async fn update(c: &impl GenericClient, key: &RootKey) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "UPDATE root_keys SET name = $2, permissions = $3, enabled = $4, expires_at = $5, updated_at = now() WHERE id = $1",
        &[&key.id, &key.name, &key.permissions, &key.enabled, &key.expires_at],
    )
    .await?;
    Ok(())
}

/// Deletes a root key. `false` when it did not exist in the workspace.
pub async fn delete(
    c: &impl GenericClient,
    workspace_id: &str,
    id: &str,
) -> Result<bool, tokio_postgres::Error> {
    Ok(c.execute(
        "DELETE FROM root_keys WHERE id = $1 AND workspace_id = $2",
        &[&id, &workspace_id],
    )
    .await?
        == 1)
}
