//! Shared rate-limit windows, the replica heartbeat, namespaces and overrides.

use deadpool_postgres::GenericClient;
use strongbox_shared::db::prepared;

use super::{Context as _, StoreError};
use crate::domain::ratelimit::{MAX_OVERRIDES, Namespace, Override};

/// What [`take`] granted.
#[derive(Debug, Clone, Copy)]
pub struct Taken {
    /// Units granted: the cost plus a lease, or 0 when refused.
    pub granted: i64,
    /// The window's weighted count after the grant.
    pub used: i64,
    /// The window's start, Unix ms by the database's clock.
    pub window_start: i64,
    /// The database's now, Unix ms.
    pub now_ms: i64,
}

/// Takes `cost` units of `bucket` and `share` of what is left as a lease, in one round trip
/// (the `ratelimit_take` function of `V0005`). Windows start at `offset` past multiples of
/// `duration`.
pub async fn take(
    c: &impl GenericClient,
    bucket: &str,
    limit: i64,
    duration: i64,
    offset: i64,
    cost: i64,
    share: f64,
) -> Result<Taken, StoreError> {
    let row = prepared::query_one(
        c,
        "SELECT granted, used, window_start, now_ms FROM ratelimit_take($1, $2, $3, $4, $5, $6)",
        &[&bucket, &limit, &duration, &offset, &cost, &share],
    )
    .await
    .context("taking rate-limit units")?;
    Ok(Taken {
        granted: row.get(0),
        used: row.get(1),
        window_start: row.get(2),
        now_ms: row.get(3),
    })
}

/// Writes this replica's heartbeat and counts the replicas seen within `live_ms`.
pub async fn heartbeat(
    c: &impl GenericClient,
    replica: &str,
    live_ms: i64,
) -> Result<i64, StoreError> {
    prepared::execute(
        c,
        "INSERT INTO api_replicas (id, seen_at) VALUES ($1, now()) \
         ON CONFLICT (id) DO UPDATE SET seen_at = now()",
        &[&replica],
    )
    .await
    .context("writing the replica heartbeat")?;
    let row = prepared::query_one(
        c,
        "SELECT count(*) FROM api_replicas \
         WHERE seen_at > now() - make_interval(secs => $1::bigint / 1000.0)",
        &[&live_ms],
    )
    .await
    .context("counting live replicas")?;
    Ok(row.get(0))
}

/// Removes this replica's heartbeat (at shutdown).
pub async fn leave(c: &impl GenericClient, replica: &str) -> Result<(), StoreError> {
    prepared::execute(c, "DELETE FROM api_replicas WHERE id = $1", &[&replica])
        .await
        .context("removing the replica heartbeat")?;
    Ok(())
}

/// Deletes windows no longer read and replicas gone for an hour.
pub async fn sweep(c: &impl GenericClient) -> Result<u64, StoreError> {
    prepared::execute(c, "DELETE FROM api_replicas WHERE seen_at < now() - interval '1 hour'", &[])
        .await
        .context("sweeping old replica heartbeats")?;
    prepared::execute(
        c,
        "DELETE FROM ratelimit_windows \
         WHERE expires_at < floor(extract(epoch FROM now()) * 1000)::bigint",
        &[],
    )
    .await
    .context("sweeping old rate-limit windows")
}

const NAMESPACE: &str = "SELECT id, workspace_id, name FROM ratelimit_namespaces";

/// A namespace of `workspace_id` by id or name.
pub async fn namespace(
    c: &impl GenericClient,
    workspace_id: &str,
    id_or_name: &str,
) -> Result<Option<Namespace>, StoreError> {
    let row = prepared::query_opt(
        c,
        &format!("{NAMESPACE} WHERE workspace_id = $1 AND (id = $2 OR name = $2) ORDER BY id = $2 DESC LIMIT 1"),
        &[&workspace_id, &id_or_name],
    )
    .await
    .context("finding a rate-limit namespace")?;
    let Some(row) = row else { return Ok(None) };
    let id: String = row.get(0);
    // Bounded by the cap setOverride keeps (MAX_OVERRIDES); the LIMIT is a backstop.
    let limit = i64::try_from(MAX_OVERRIDES).unwrap_or(i64::MAX) * 2;
    let overrides = overrides(c, &id, "", limit).await?;
    Ok(Some(Namespace::new(id, row.get(1), row.get(2), overrides)))
}

/// Creates namespace `name` with `id`, or finds the one a concurrent call created; its id.
pub async fn create_namespace(
    c: &impl GenericClient,
    workspace_id: &str,
    name: &str,
    id: &str,
) -> Result<String, StoreError> {
    // DO UPDATE (a no-op) rather than DO NOTHING: a concurrent first use that commits first
    // makes this statement wait, then return that row's id. With DO NOTHING and a SELECT in the
    // same statement, the SELECT's snapshot predates the other commit and finds nothing.
    let row = prepared::query_one(
        c,
        "INSERT INTO ratelimit_namespaces (id, workspace_id, name) VALUES ($1, $2, $3) \
         ON CONFLICT (workspace_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        &[&id, &workspace_id, &name],
    )
    .await
    .context("creating a rate-limit namespace")?;
    Ok(row.get(0))
}

/// A page of a namespace's overrides, ordered by id, after `after`.
pub async fn overrides(
    c: &impl GenericClient,
    namespace_id: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<Override>, StoreError> {
    let rows = prepared::query(
        c,
        "SELECT id, identifier, \"limit\", duration FROM ratelimit_overrides \
         WHERE namespace_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        &[&namespace_id, &after, &limit],
    )
    .await
    .context("listing rate-limit overrides")?;
    Ok(rows
        .iter()
        .map(|r| Override {
            id: r.get(0),
            identifier: r.get(1),
            limit: r.get(2),
            duration: r.get(3),
        })
        .collect())
}

/// Locks the namespace's row until the transaction ends (serializing override changes), and
/// counts its overrides other than `identifier`'s: all of them, and the patterns.
pub async fn lock_and_count_overrides(
    c: &impl GenericClient,
    namespace_id: &str,
    identifier: &str,
) -> Result<(i64, i64), StoreError> {
    prepared::execute(
        c,
        "SELECT 1 FROM ratelimit_namespaces WHERE id = $1 FOR UPDATE",
        &[&namespace_id],
    )
    .await
    .context("locking a rate-limit namespace")?;
    let row = prepared::query_one(
        c,
        "SELECT count(*), count(*) FILTER (WHERE strpos(identifier, '*') > 0) \
         FROM ratelimit_overrides WHERE namespace_id = $1 AND identifier <> $2",
        &[&namespace_id, &identifier],
    )
    .await
    .context("counting rate-limit overrides")?;
    Ok((row.get(0), row.get(1)))
}

/// Sets the override of `identifier` (a new one gets `id`); the override's id.
pub async fn set_override(
    c: &impl GenericClient,
    namespace_id: &str,
    id: &str,
    identifier: &str,
    limit: i64,
    duration: i64,
) -> Result<String, StoreError> {
    let row = prepared::query_one(
        c,
        "INSERT INTO ratelimit_overrides (id, namespace_id, identifier, \"limit\", duration) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (namespace_id, identifier) DO UPDATE \
         SET \"limit\" = EXCLUDED.\"limit\", duration = EXCLUDED.duration, updated_at = now() \
         RETURNING id",
        &[&id, &namespace_id, &identifier, &limit, &duration],
    )
    .await
    .context("setting a rate-limit override")?;
    Ok(row.get(0))
}

/// Deletes the override of `identifier`; `false` when there was none.
pub async fn delete_override(
    c: &impl GenericClient,
    namespace_id: &str,
    identifier: &str,
) -> Result<bool, StoreError> {
    let n = prepared::execute(
        c,
        "DELETE FROM ratelimit_overrides WHERE namespace_id = $1 AND identifier = $2",
        &[&namespace_id, &identifier],
    )
    .await
    .context("deleting a rate-limit override")?;
    Ok(n > 0)
}
