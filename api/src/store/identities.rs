//! Identities.

use deadpool_postgres::GenericClient;
use strongbox_shared::db::prepared;

use super::{Context as _, StoreError};
use crate::domain::identities::Identity;
use crate::domain::keys::Ratelimit;

const SELECT: &str = "SELECT id, external_id, meta, ratelimits FROM identities";

fn from_row(r: &tokio_postgres::Row) -> Result<Identity, tokio_postgres::Error> {
    let ratelimits: serde_json::Value = r.try_get(3)?;
    Ok(Identity {
        id: r.get(0),
        external_id: r.get(1),
        meta: r.try_get(2)?,
        ratelimits: serde_json::from_value(ratelimits).unwrap_or_default(),
    })
}

fn json(ratelimits: &[Ratelimit]) -> serde_json::Value {
    serde_json::to_value(ratelimits).unwrap_or(serde_json::Value::Array(Vec::new()))
}

/// Inserts `identity`; `false` when its external id is taken in the workspace.
pub async fn insert(
    c: &impl GenericClient,
    workspace_id: &str,
    identity: &Identity,
) -> Result<bool, StoreError> {
    let n = prepared::execute(
        c,
        "INSERT INTO identities (id, workspace_id, external_id, meta, ratelimits) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (workspace_id, external_id) DO NOTHING",
        &[
            &identity.id,
            &workspace_id,
            &identity.external_id,
            &identity.meta,
            &json(&identity.ratelimits),
        ],
    )
    .await
    .context("inserting an identity")?;
    Ok(n == 1)
}

/// The identity of `workspace_id` with id `identity`, else the one with that external id;
/// `lock` holds its row until the transaction ends.
pub async fn get(
    c: &impl GenericClient,
    workspace_id: &str,
    identity: &str,
    lock: bool,
) -> Result<Option<Identity>, StoreError> {
    let sql = format!(
        "{SELECT} WHERE workspace_id = $1 AND (id = $2 OR external_id = $2) \
         ORDER BY id = $2 DESC LIMIT 1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = prepared::query_opt(c, &sql, &[&workspace_id, &identity])
        .await
        .context("reading an identity")?;
    row.as_ref().map(from_row).transpose().context("decoding an identity")
}

/// A page of the workspace's identities ordered by id after `after`, whose external id starts
/// with `search` when given.
pub async fn list(
    c: &impl GenericClient,
    workspace_id: &str,
    after: &str,
    search: Option<&str>,
    limit: i64,
) -> Result<Vec<Identity>, StoreError> {
    let rows = prepared::query(
        c,
        &format!(
            "{SELECT} WHERE workspace_id = $1 AND id > $2 \
             AND ($3::text IS NULL OR starts_with(external_id, $3)) ORDER BY id LIMIT $4"
        ),
        &[&workspace_id, &after, &search, &limit],
    )
    .await
    .context("listing identities")?;
    rows.iter().map(from_row).collect::<Result<_, _>>().context("decoding an identity")
}

/// Writes `meta` and `ratelimits` where given.
pub async fn update(
    c: &impl GenericClient,
    id: &str,
    meta: Option<&serde_json::Value>,
    ratelimits: Option<&[Ratelimit]>,
) -> Result<(), StoreError> {
    prepared::execute(
        c,
        "UPDATE identities SET meta = CASE WHEN $2 THEN $3 ELSE meta END, \
             ratelimits = CASE WHEN $4 THEN $5 ELSE ratelimits END, updated_at = now() \
         WHERE id = $1",
        &[&id, &meta.is_some(), &meta, &ratelimits.is_some(), &ratelimits.map(json)],
    )
    .await
    .context("updating an identity")?;
    Ok(())
}

/// Deletes an identity; its keys keep working, without it.
pub async fn delete(c: &impl GenericClient, id: &str) -> Result<(), StoreError> {
    prepared::execute(c, "DELETE FROM identities WHERE id = $1", &[&id])
        .await
        .context("deleting an identity")?;
    Ok(())
}
