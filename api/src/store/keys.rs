//! Customer keys.

use deadpool_postgres::GenericClient;
use strongbox_shared::db::prepared;
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;

use super::encrypted::Sealed;
use super::{Context as _, StoreError};
use crate::domain::keys::{
    CreditOp, CreditsPatch, Key, KeyPatch, Ratelimit, Refill, RefillInterval,
};

const SELECT: &str = "SELECT k.id, k.workspace_id, k.api_id, k.start, k.name, i.id, i.external_id, \
    k.meta, k.permissions, k.expires_at, k.enabled, k.credits_remaining, k.refill_amount, \
    k.refill_interval, k.refill_day, k.last_refill_at, k.ratelimits, k.created_at, k.updated_at, \
    k.last_used_at, k.prefix, k.byte_length, i.meta, i.ratelimits \
    FROM keys k LEFT JOIN identities i ON i.id = k.identity_id";

/// A key from its row. Decoding does not panic: a value that does not decode (which the checks
/// on the way in should make impossible) is an error naming the query.
fn from_row(r: &tokio_postgres::Row) -> Result<Key, tokio_postgres::Error> {
    let identity = match (r.get::<_, Option<String>>(5), r.get::<_, Option<String>>(6)) {
        (Some(id), Some(external)) => Some((id, external)),
        _ => None,
    };
    let interval = r.get::<_, Option<String>>(13).as_deref().and_then(RefillInterval::parse);
    let refill = match (r.get::<_, Option<i64>>(12), interval) {
        (Some(amount), Some(interval)) => Some(Refill { interval, amount, day: r.get(14) }),
        _ => None,
    };
    let ratelimits: serde_json::Value = r.try_get(16)?;
    let identity_ratelimits: Option<serde_json::Value> = r.try_get(23)?;
    Ok(Key {
        id: r.get(0),
        workspace_id: r.get(1),
        api_id: r.get(2),
        start: r.get(3),
        prefix: r.get(20),
        byte_length: r.get(21),
        name: r.get(4),
        identity,
        identity_meta: r.try_get(22)?,
        identity_ratelimits: identity_ratelimits
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
        meta: r.try_get(7)?,
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
    })
}

fn refill_columns(refill: Option<&Refill>) -> (Option<i64>, Option<&'static str>, Option<i16>) {
    match refill {
        Some(r) => (Some(r.amount), Some(r.interval.as_str()), r.day),
        None => (None, None, None),
    }
}

fn ratelimits_json(ratelimits: &[Ratelimit]) -> serde_json::Value {
    serde_json::to_value(ratelimits).unwrap_or(serde_json::Value::Array(Vec::new()))
}

/// The key with this hash, in any workspace (callers check the workspace).
pub async fn by_hash(c: &impl GenericClient, hash: &[u8]) -> Result<Option<Key>, StoreError> {
    let row = prepared::query_opt(c, &format!("{SELECT} WHERE k.hash = $1"), &[&hash])
        .await
        .context("finding a key by its hash")?;
    row.as_ref().map(from_row).transpose().context("decoding a key")
}

/// A key of `workspace_id`; another workspace's key is `None`.
pub async fn get(
    c: &impl GenericClient,
    workspace_id: &str,
    id: &str,
) -> Result<Option<Key>, StoreError> {
    one(c, workspace_id, id, "", "reading a key").await
}

/// Like [`get`], with the key's row locked until the transaction ends.
pub async fn get_for_update(
    c: &impl GenericClient,
    workspace_id: &str,
    id: &str,
) -> Result<Option<Key>, StoreError> {
    one(c, workspace_id, id, " FOR UPDATE OF k", "locking a key").await
}

async fn one(
    c: &impl GenericClient,
    workspace_id: &str,
    id: &str,
    lock: &str,
    what: &'static str,
) -> Result<Option<Key>, StoreError> {
    let sql = format!("{SELECT} WHERE k.id = $1 AND k.workspace_id = $2{lock}");
    let row = prepared::query_opt(c, &sql, &[&id, &workspace_id]).await.context(what)?;
    row.as_ref().map(from_row).transpose().context("decoding a key")
}

/// A page of an API's keys, ordered by id, after `after`.
pub async fn list(
    c: &impl GenericClient,
    api_id: &str,
    external_id: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Key>, StoreError> {
    let rows = prepared::query(
        c,
        &format!(
            "{SELECT} WHERE k.api_id = $1 AND ($2::text IS NULL OR i.external_id = $2) \
                 AND ($3::text IS NULL OR k.id > $3) ORDER BY k.id LIMIT $4"
        ),
        &[&api_id, &external_id, &after, &limit],
    )
    .await
    .context("listing an API's keys")?;
    rows.iter().map(from_row).collect::<Result<_, _>>().context("decoding keys")
}

/// How many keys an API has.
pub async fn count(c: &impl GenericClient, api_id: &str) -> Result<i64, StoreError> {
    Ok(prepared::query_one(c, "SELECT count(*) FROM keys WHERE api_id = $1", &[&api_id])
        .await
        .context("counting an API's keys")?
        .get(0))
}

/// The id of the identity for `external_id`, created on first use with `new_id`.
pub async fn identity(
    c: &impl GenericClient,
    workspace_id: &str,
    external_id: &str,
    new_id: &str,
) -> Result<String, StoreError> {
    let row = prepared::query_one(c,
            "INSERT INTO identities (id, workspace_id, external_id) VALUES ($1, $2, $3) \
             ON CONFLICT (workspace_id, external_id) DO UPDATE SET external_id = EXCLUDED.external_id \
             RETURNING id",
            &[&new_id, &workspace_id, &external_id],
        )
        .await
        .context("finding or creating an identity")?;
    Ok(row.get(0))
}

macro_rules! insert_key {
    () => {
        "INSERT INTO keys (id, workspace_id, api_id, hash, start, name, identity_id, meta, \
         permissions, expires_at, enabled, credits_remaining, refill_amount, refill_interval, \
         refill_day, ratelimits, prefix, byte_length) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
    };
}
const INSERT_KEY: &str = insert_key!();
/// The key and its ciphertext in one statement, so they commit together with no transaction
/// around them.
const INSERT_SEALED_KEY: &str = concat!(
    "WITH k AS (",
    insert_key!(),
    " RETURNING id, workspace_id) \
     INSERT INTO encrypted_keys (key_id, workspace_id, keyring, ciphertext, dek_version) \
     SELECT id, workspace_id, $19, $20, $21 FROM k"
);

/// Inserts a key with its hash and, for a recoverable key, its ciphertext. A missing API is a
/// foreign-key violation.
pub async fn insert(
    c: &impl GenericClient,
    key: &Key,
    hash: &[u8],
    sealed: Option<&Sealed>,
) -> Result<(), StoreError> {
    let identity_id = key.identity.as_ref().map(|(id, _)| id.as_str());
    let (refill_amount, refill_interval, refill_day) = refill_columns(key.refill.as_ref());
    let ratelimits = ratelimits_json(&key.ratelimits);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![
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
    ];
    let statement = match sealed {
        None => INSERT_KEY,
        Some(sealed) => {
            params.extend([
                &sealed.keyring as &(dyn ToSql + Sync),
                &sealed.ciphertext,
                &sealed.dek_version,
            ]);
            INSERT_SEALED_KEY
        }
    };
    prepared::execute(c, statement, &params).await.context("inserting a key")?;
    Ok(())
}

/// Writes exactly the fields `patch` gives, in one statement: a column the patch leaves alone is
/// never written, so credits spent or a disable committed meanwhile stay. `identity_id` is the
/// resolved identity when `patch.external_id` is given. `false` when the key is gone.
pub async fn update(
    c: &impl GenericClient,
    workspace_id: &str,
    id: &str,
    patch: &KeyPatch,
    identity_id: Option<&str>,
    ratelimits: Option<&[Ratelimit]>,
) -> Result<bool, StoreError> {
    let (set_remaining, remaining, set_refill, refill) = match &patch.credits {
        None => (false, None, false, None),
        Some(CreditsPatch::Clear) => (true, None, true, None),
        Some(CreditsPatch::Change { remaining, refill }) => {
            (remaining.is_some(), remaining.flatten(), refill.is_some(), refill.clone().flatten())
        }
    };
    let (refill_amount, refill_interval, refill_day) = refill_columns(refill.as_ref());
    let n = prepared::execute(
        c,
        "UPDATE keys SET \
               name = CASE WHEN $3 THEN $4 ELSE name END, \
               identity_id = CASE WHEN $5 THEN $6 ELSE identity_id END, \
               meta = CASE WHEN $7 THEN $8 ELSE meta END, \
               expires_at = CASE WHEN $9 THEN $10 ELSE expires_at END, \
               enabled = coalesce($11, enabled), \
               permissions = coalesce($12, permissions), \
               ratelimits = coalesce($13, ratelimits), \
               credits_remaining = CASE WHEN $14 THEN $15 ELSE credits_remaining END, \
               refill_amount = CASE WHEN $16 THEN $17 ELSE refill_amount END, \
               refill_interval = CASE WHEN $16 THEN $18 ELSE refill_interval END, \
               refill_day = CASE WHEN $16 THEN $19 ELSE refill_day END, \
               updated_at = now() \
             WHERE id = $1 AND workspace_id = $2",
        &[
            &id,
            &workspace_id,
            &patch.name.is_some(),
            &patch.name.clone().flatten(),
            &patch.external_id.is_some(),
            &identity_id,
            &patch.meta.is_some(),
            &patch.meta.clone().flatten(),
            &patch.expires_at.is_some(),
            &patch.expires_at.flatten(),
            &patch.enabled,
            &patch.permissions,
            &ratelimits.map(ratelimits_json),
            &set_remaining,
            &remaining,
            &set_refill,
            &refill_amount,
            &refill_interval,
            &refill_day,
        ],
    )
    .await
    .context("updating a key")?;
    Ok(n == 1)
}

/// Makes a key expire at `at` at the latest (an earlier expiry stays).
pub async fn expire_by(
    c: &impl GenericClient,
    id: &str,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    prepared::execute(
        c,
        "UPDATE keys SET expires_at = LEAST(coalesce(expires_at, $2), $2), updated_at = now() \
         WHERE id = $1",
        &[&id, &at],
    )
    .await
    .context("setting a rerolled key's expiry")?;
    Ok(())
}

/// Deletes a key. `false` when it did not exist in the workspace.
pub async fn delete(
    c: &impl GenericClient,
    workspace_id: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let n = prepared::execute(
        c,
        "DELETE FROM keys WHERE id = $1 AND workspace_id = $2",
        &[&id, &workspace_id],
    )
    .await
    .context("deleting a key")?;
    Ok(n == 1)
}

/// One spend in a batch: whether it was applied, and the credits left after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spent {
    /// Whether the credits covered it.
    pub applied: bool,
    /// The credits left after it.
    pub left: i64,
}

/// Spends a batch of costs on one key in one statement, in order, each one only if the credits
/// left after the ones before it cover it. The row is locked first, and a refill is applied once
/// when `period_start` is later than the last refill. `None` when the key is gone or has
/// unlimited credits.
///
/// The statement is the group commit of concurrent verifications of one key: one row lock and
/// one round trip for all of them, and each caller still gets its own exact answer.
pub async fn spend_credits(
    c: &impl GenericClient,
    id: &str,
    costs: &[i64],
    period_start: Option<OffsetDateTime>,
) -> Result<Option<Vec<Spent>>, StoreError> {
    debug_assert!(costs.iter().all(|c| *c >= 0), "costs are checked on the way in");
    let rows = prepared::query(
        c,
        "WITH RECURSIVE locked AS ( \
                 SELECT id, refill_interval IS NOT NULL AND $3::timestamptz IS NOT NULL \
                     AND coalesce(last_refill_at, created_at) < $3 AS refill, \
                     credits_remaining, refill_amount \
                 FROM keys WHERE id = $1 AND credits_remaining IS NOT NULL FOR UPDATE), \
             walk(n, left_over, applied) AS ( \
                 SELECT 0::bigint, \
                     CASE WHEN refill THEN coalesce(refill_amount, credits_remaining) \
                         ELSE credits_remaining END, \
                     true \
                 FROM locked \
                 UNION ALL \
                 SELECT w.n + 1, \
                     CASE WHEN w.left_over >= ($2::bigint[])[w.n + 1] \
                         THEN w.left_over - ($2::bigint[])[w.n + 1] ELSE w.left_over END, \
                     w.left_over >= ($2::bigint[])[w.n + 1] \
                 FROM walk w WHERE w.n < cardinality($2::bigint[])), \
             spent AS ( \
                 UPDATE keys k SET \
                     credits_remaining = (SELECT left_over FROM walk ORDER BY n DESC LIMIT 1), \
                     last_refill_at = CASE WHEN l.refill THEN now() ELSE k.last_refill_at END \
                 FROM locked l WHERE k.id = l.id RETURNING k.id) \
             SELECT applied, left_over FROM walk WHERE n > 0 ORDER BY n",
        &[&id, &costs, &period_start],
    )
    .await
    .context("spending credits")?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(rows.iter().map(|r| Spent { applied: r.get(0), left: r.get(1) }).collect()))
}

/// What a credit operation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditChange {
    /// Applied; the credits now (`None`: unlimited) and the refill rule.
    Done(Option<i64>, Option<Refill>),
    /// An increment or decrement of a key with unlimited credits.
    Unlimited,
    /// No such key in the workspace.
    Missing,
}

/// Applies a credit operation in one statement.
pub async fn change_credits(
    c: &impl GenericClient,
    workspace_id: &str,
    id: &str,
    op: CreditOp,
) -> Result<CreditChange, StoreError> {
    let (sql, value) = match op {
        CreditOp::Set(v) => ("credits_remaining = $3", v),
        // Both are at most MAX_CREDITS, so the sum cannot overflow; it is capped again.
        CreditOp::Increment(v) => {
            ("credits_remaining = LEAST(credits_remaining + $3, 1000000000000000)", Some(v))
        }
        CreditOp::Decrement(v) => {
            ("credits_remaining = greatest(credits_remaining - $3, 0)", Some(v))
        }
    };
    let limited_only = !matches!(op, CreditOp::Set(_));
    let row = prepared::query_opt(
        c,
        &format!(
            "UPDATE keys SET {sql}, updated_at = now() \
                 WHERE id = $1 AND workspace_id = $2 AND (NOT $4 OR credits_remaining IS NOT NULL) \
                 RETURNING credits_remaining, refill_amount, refill_interval, refill_day"
        ),
        &[&id, &workspace_id, &value, &limited_only],
    )
    .await
    .context("changing credits")?;
    let Some(row) = row else {
        let exists = prepared::query_opt(
            c,
            "SELECT 1 FROM keys WHERE id = $1 AND workspace_id = $2",
            &[&id, &workspace_id],
        )
        .await
        .context("reading a key")?
        .is_some();
        return Ok(if exists { CreditChange::Unlimited } else { CreditChange::Missing });
    };
    let interval = row.get::<_, Option<String>>(2).as_deref().and_then(RefillInterval::parse);
    let refill = match (row.get::<_, Option<i64>>(1), interval) {
        (Some(amount), Some(interval)) => Some(Refill { interval, amount, day: row.get(3) }),
        _ => None,
    };
    Ok(CreditChange::Done(row.get(0), refill))
}

/// Records verification times, in one statement for a batch of keys.
pub async fn touch(c: &impl GenericClient, ids: &[String]) -> Result<(), StoreError> {
    prepared::execute(c, "UPDATE keys SET last_used_at = now() WHERE id = ANY($1)", &[&ids])
        .await
        .context("recording key usage")?;
    Ok(())
}
