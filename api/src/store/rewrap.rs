//! The rewrap job's SQL: its advisory lock, its progress row per keyring, and the walk over
//! `encrypted_keys` below a target DEK version. The job runs on connections of its own (not the
//! pool), so these take tokio-postgres' own client trait.

use tokio_postgres::GenericClient;

use super::{Context as _, StoreError};

/// Waits for the session advisory lock `lock`.
pub async fn lock(c: &impl GenericClient, lock: i64) -> Result<(), StoreError> {
    c.execute("SELECT pg_advisory_lock($1)", &[&lock])
        .await
        .context("waiting for the rewrap lock")?;
    Ok(())
}

/// Takes the session advisory lock `lock` if free.
pub async fn try_lock(c: &impl GenericClient, lock: i64) -> Result<bool, StoreError> {
    Ok(c.query_one("SELECT pg_try_advisory_lock($1)", &[&lock])
        .await
        .context("trying the rewrap lock")?
        .get(0))
}

/// Releases the session advisory lock `lock`.
pub async fn unlock(c: &impl GenericClient, lock: i64) -> Result<(), StoreError> {
    c.execute("SELECT pg_advisory_unlock($1)", &[&lock])
        .await
        .context("releasing the rewrap lock")?;
    Ok(())
}

/// Every keyring with stored ciphertexts.
pub async fn keyrings(c: &impl GenericClient) -> Result<Vec<String>, StoreError> {
    Ok(c.query("SELECT DISTINCT keyring FROM encrypted_keys ORDER BY keyring", &[])
        .await
        .context("listing keyrings with stored keys")?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Starts or resumes `keyring`'s run towards `target`: an unfinished run for the same target
/// resumes after its last key id, anything else walks from the start. `rows_done` counts every
/// row moved to this target, across runs. Returns `(last key id, rows done before)`.
pub async fn start(
    c: &impl GenericClient,
    keyring: &str,
    target: i32,
) -> Result<(String, i64), StoreError> {
    let row = c
        .query_one(
            "INSERT INTO rewrap_progress (keyring, target_version) VALUES ($1, $2) \
             ON CONFLICT (keyring) DO UPDATE SET \
               last_key_id = CASE WHEN rewrap_progress.target_version = $2 AND rewrap_progress.finished_at IS NULL \
                                  THEN rewrap_progress.last_key_id ELSE '' END, \
               rows_done = CASE WHEN rewrap_progress.target_version = $2 \
                                THEN rewrap_progress.rows_done ELSE 0 END, \
               rows_failed = 0, target_version = $2, finished_at = NULL, updated_at = now() \
             RETURNING last_key_id, rows_done",
            &[&keyring, &target],
        )
        .await
        .context("starting rewrap progress")?;
    Ok((row.get(0), row.get(1)))
}

/// Stored keys of `keyring` below `version`.
pub async fn count_below(
    c: &impl GenericClient,
    keyring: &str,
    version: i32,
) -> Result<i64, StoreError> {
    Ok(c.query_one(
        "SELECT count(*) FROM encrypted_keys WHERE keyring = $1 AND dek_version < $2",
        &[&keyring, &version],
    )
    .await
    .context("counting keys below a version")?
    .get(0))
}

/// The next `limit` `(key id, ciphertext)` of `keyring` below `target`, after `after`.
pub async fn batch(
    c: &impl GenericClient,
    keyring: &str,
    target: i32,
    after: &str,
    limit: i64,
) -> Result<Vec<(String, String)>, StoreError> {
    Ok(c.query(
        "SELECT key_id, ciphertext FROM encrypted_keys WHERE keyring = $1 AND dek_version < $2 \
         AND key_id > $3 ORDER BY key_id LIMIT $4",
        &[&keyring, &target, &after, &limit],
    )
    .await
    .context("reading a rewrap batch")?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

/// Replaces each `(key id, old ciphertext, new ciphertext, version)` in one statement, a row only
/// if it still holds its `old` ciphertext (a reroll or delete meanwhile wins). Returns how many
/// rows it replaced.
pub async fn replace_all(
    c: &impl GenericClient,
    rows: &[(&str, &str, &str, i32)],
) -> Result<u64, StoreError> {
    let ids: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let old: Vec<&str> = rows.iter().map(|r| r.1).collect();
    let new: Vec<&str> = rows.iter().map(|r| r.2).collect();
    let versions: Vec<i32> = rows.iter().map(|r| r.3).collect();
    c.execute(
        "UPDATE encrypted_keys e SET ciphertext = t.new, dek_version = t.version, \
         updated_at = now() \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::int4[]) AS t(key_id, old, new, version) \
         WHERE e.key_id = t.key_id AND e.ciphertext = t.old",
        &[&ids, &old, &new, &versions],
    )
    .await
    .context("replacing rewrapped ciphertexts")
}

/// Records a finished batch.
pub async fn advance(
    c: &impl GenericClient,
    keyring: &str,
    last_key_id: &str,
    moved: i64,
    failed: i64,
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE rewrap_progress SET last_key_id = $2, rows_done = rows_done + $3, \
         rows_failed = rows_failed + $4, updated_at = now() WHERE keyring = $1",
        &[&keyring, &last_key_id, &moved, &failed],
    )
    .await
    .context("recording rewrap progress")?;
    Ok(())
}

/// Marks `keyring`'s run finished.
pub async fn finish(c: &impl GenericClient, keyring: &str) -> Result<(), StoreError> {
    c.execute("UPDATE rewrap_progress SET finished_at = now() WHERE keyring = $1", &[&keyring])
        .await
        .context("finishing rewrap progress")?;
    Ok(())
}
