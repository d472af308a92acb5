//! Customer keys.

use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A rate limit attached to a key, stored and answered in Unkey's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ratelimit {
    /// `rl_…`.
    pub id: String,
    /// Name, unique per key.
    pub name: String,
    /// Requests per window.
    pub limit: i64,
    /// Window in milliseconds.
    pub duration: i64,
    /// Applied on every verification, not only when named in the request.
    pub auto_apply: bool,
}

/// How credits refill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refill {
    /// `daily` or `monthly`.
    pub interval: String,
    /// Credits after a refill.
    pub amount: i64,
    /// Day of the month for monthly refills (1-31; short months refill on their last day).
    pub day: Option<i16>,
}

/// A stored key, everything but its hash.
#[derive(Debug, Clone)]
pub struct Key {
    /// `key_…`.
    pub id: String,
    /// Owner.
    pub workspace_id: String,
    /// The API it belongs to.
    pub api_id: String,
    /// Prefix and first characters, for display.
    pub start: String,
    /// The prefix the key was made with.
    pub prefix: Option<String>,
    /// Random bytes in the key.
    pub byte_length: i16,
    /// Display name.
    pub name: Option<String>,
    /// `(identity id, externalId)`.
    pub identity: Option<(String, String)>,
    /// Free-form JSON object.
    pub meta: Option<serde_json::Value>,
    /// Permission patterns.
    pub permissions: Vec<String>,
    /// Expiry.
    pub expires_at: Option<OffsetDateTime>,
    /// Disabled keys do not verify.
    pub enabled: bool,
    /// Remaining credits; `None` is unlimited.
    pub credits_remaining: Option<i64>,
    /// Refill rule.
    pub refill: Option<Refill>,
    /// When credits were last refilled.
    pub last_refill_at: Option<OffsetDateTime>,
    /// Rate limits.
    pub ratelimits: Vec<Ratelimit>,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: Option<OffsetDateTime>,
    /// Last verified (written in batches).
    pub last_used_at: Option<OffsetDateTime>,
}

const SELECT: &str = "SELECT k.id, k.workspace_id, k.api_id, k.start, k.name, i.id, i.external_id, \
    k.meta, k.permissions, k.expires_at, k.enabled, k.credits_remaining, k.refill_amount, \
    k.refill_interval, k.refill_day, k.last_refill_at, k.ratelimits, k.created_at, k.updated_at, \
    k.last_used_at, k.prefix, k.byte_length FROM keys k LEFT JOIN identities i ON i.id = k.identity_id";

fn from_row(r: &tokio_postgres::Row) -> Key {
    let identity = match (r.get::<_, Option<String>>(5), r.get::<_, Option<String>>(6)) {
        (Some(id), Some(external)) => Some((id, external)),
        _ => None,
    };
    let refill = match (r.get::<_, Option<i64>>(12), r.get::<_, Option<String>>(13)) {
        (Some(amount), Some(interval)) => Some(Refill { interval, amount, day: r.get(14) }),
        _ => None,
    };
    let ratelimits: serde_json::Value = r.get(16);
    Key {
        id: r.get(0),
        workspace_id: r.get(1),
        api_id: r.get(2),
        start: r.get(3),
        prefix: r.get(20),
        byte_length: r.get(21),
        name: r.get(4),
        identity,
        meta: r.get(7),
        permissions: r.get(8),
        expires_at: r.get(9),
        enabled: r.get(10),
        credits_remaining: r.get(11),
        refill,
        last_refill_at: r.get(15),
        ratelimits: serde_json::from_value(ratelimits).unwrap_or_default(),
        created_at: r.get(17),
        updated_at: r.get(18),
        last_used_at: r.get(19),
    }
}

/// The key with this hash, in any workspace (callers check the workspace).
pub async fn by_hash(
    c: &impl GenericClient,
    hash: &[u8],
) -> Result<Option<Key>, tokio_postgres::Error> {
    let row = c.query_opt(&format!("{SELECT} WHERE k.hash = $1"), &[&hash]).await?;
    Ok(row.as_ref().map(from_row))
}

/// A key of `workspace_id`; another workspace's key is `None`.
pub async fn get(
    c: &impl GenericClient,
    workspace_id: &str,
    id: &str,
) -> Result<Option<Key>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            &format!("{SELECT} WHERE k.id = $1 AND k.workspace_id = $2"),
            &[&id, &workspace_id],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// A page of an API's keys, ordered by id, after `after`.
pub async fn list(
    c: &impl GenericClient,
    api_id: &str,
    external_id: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Key>, tokio_postgres::Error> {
    let rows = c
        .query(
            &format!(
                "{SELECT} WHERE k.api_id = $1 AND ($2::text IS NULL OR i.external_id = $2) \
                 AND ($3::text IS NULL OR k.id > $3) ORDER BY k.id LIMIT $4"
            ),
            &[&api_id, &external_id, &after, &limit],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// The id of the identity for `external_id`, created on first use.
pub async fn identity(
    c: &impl GenericClient,
    workspace_id: &str,
    external_id: &str,
) -> Result<String, anyhow::Error> {
    let id = strongbox_shared::id::new_id("id")?;
    let row = c
        .query_one(
            "INSERT INTO identities (id, workspace_id, external_id) VALUES ($1, $2, $3) \
             ON CONFLICT (workspace_id, external_id) DO UPDATE SET external_id = EXCLUDED.external_id \
             RETURNING id",
            &[&id, &workspace_id, &external_id],
        )
        .await?;
    Ok(row.get(0))
}

/// Inserts a key with its hash.
pub async fn insert(
    c: &impl GenericClient,
    key: &Key,
    hash: &[u8],
) -> Result<(), tokio_postgres::Error> {
    let identity_id = key.identity.as_ref().map(|(id, _)| id.as_str());
    let ratelimits =
        serde_json::to_value(&key.ratelimits).unwrap_or(serde_json::Value::Array(Vec::new()));
    let (refill_amount, refill_interval, refill_day) = match &key.refill {
        Some(r) => (Some(r.amount), Some(r.interval.as_str()), r.day),
        None => (None, None, None),
    };
    c.execute(
        "INSERT INTO keys (id, workspace_id, api_id, hash, start, name, identity_id, meta, \
         permissions, expires_at, enabled, credits_remaining, refill_amount, refill_interval, \
         refill_day, ratelimits, prefix, byte_length) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        &[
            &key.id,
            &key.workspace_id,
            &key.api_id,
            &hash,
            &key.start,
            &key.name,
            &identity_id,
            &key.meta,
            &key.permissions,
            &key.expires_at,
            &key.enabled,
            &key.credits_remaining,
            &refill_amount,
            &refill_interval,
            &refill_day,
            &ratelimits,
            &key.prefix,
            &key.byte_length,
        ],
    )
    .await?;
    Ok(())
}

/// Writes every mutable field of `key` back.
pub async fn update(c: &impl GenericClient, key: &Key) -> Result<(), tokio_postgres::Error> {
    let identity_id = key.identity.as_ref().map(|(id, _)| id.as_str());
    let ratelimits =
        serde_json::to_value(&key.ratelimits).unwrap_or(serde_json::Value::Array(Vec::new()));
    let (refill_amount, refill_interval, refill_day) = match &key.refill {
        Some(r) => (Some(r.amount), Some(r.interval.as_str()), r.day),
        None => (None, None, None),
    };
    c.execute(
        "UPDATE keys SET name = $2, identity_id = $3, meta = $4, permissions = $5, expires_at = $6, \
         enabled = $7, credits_remaining = $8, refill_amount = $9, refill_interval = $10, \
         refill_day = $11, ratelimits = $12, updated_at = now() WHERE id = $1",
        &[
            &key.id,
            &key.name,
            &identity_id,
            &key.meta,
            &key.permissions,
            &key.expires_at,
            &key.enabled,
            &key.credits_remaining,
            &refill_amount,
            &refill_interval,
            &refill_day,
            &ratelimits,
        ],
    )
    .await?;
    Ok(())
}

/// Deletes a key. `false` when it did not exist in the workspace.
pub async fn delete(
    c: &impl GenericClient,
    workspace_id: &str,
    id: &str,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute("DELETE FROM keys WHERE id = $1 AND workspace_id = $2", &[&id, &workspace_id])
        .await?;
    Ok(n == 1)
}

/// Spends `cost` credits atomically, refilling first when `period_start` is later than the last
/// refill. Returns the credits left, or `None` when there were not enough.
pub async fn spend_credits(
    c: &impl GenericClient,
    id: &str,
    cost: i64,
    period_start: Option<OffsetDateTime>,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "WITH due AS (SELECT id, refill_interval IS NOT NULL AND $3::timestamptz IS NOT NULL \
                 AND coalesce(last_refill_at, created_at) < $3 AS refill FROM keys WHERE id = $1) \
             UPDATE keys k SET \
                 credits_remaining = (CASE WHEN due.refill THEN k.refill_amount ELSE k.credits_remaining END) - $2, \
                 last_refill_at = CASE WHEN due.refill THEN now() ELSE k.last_refill_at END \
             FROM due WHERE k.id = due.id AND k.credits_remaining IS NOT NULL \
                 AND (CASE WHEN due.refill THEN k.refill_amount ELSE k.credits_remaining END) >= $2 \
             RETURNING k.credits_remaining",
            &[&id, &cost, &period_start],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Credits left now (after any due refill), for an answer when spending failed.
pub async fn credits(
    c: &impl GenericClient,
    id: &str,
) -> Result<Option<i64>, tokio_postgres::Error> {
    Ok(c.query_opt("SELECT credits_remaining FROM keys WHERE id = $1", &[&id])
        .await?
        .and_then(|r| r.get(0)))
}

/// `set`, `increment` or `decrement` credits; `set` with `None` makes them unlimited.
pub async fn change_credits(
    c: &impl GenericClient,
    id: &str,
    operation: &str,
    value: Option<i64>,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let sql = match operation {
        "set" => {
            "UPDATE keys SET credits_remaining = $2, updated_at = now() WHERE id = $1 RETURNING credits_remaining"
        }
        "increment" => {
            "UPDATE keys SET credits_remaining = credits_remaining + $2, updated_at = now() WHERE id = $1 RETURNING credits_remaining"
        }
        _ => {
            "UPDATE keys SET credits_remaining = greatest(credits_remaining - $2, 0), updated_at = now() WHERE id = $1 RETURNING credits_remaining"
        }
    };
    Ok(c.query_opt(sql, &[&id, &value]).await?.and_then(|r| r.get(0)))
}

/// Records verification times, in one statement for a batch of keys.
pub async fn touch(c: &impl GenericClient, ids: &[String]) -> Result<(), tokio_postgres::Error> {
    c.execute("UPDATE keys SET last_used_at = now() WHERE id = ANY($1)", &[&ids]).await?;
    Ok(())
}
