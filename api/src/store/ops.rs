//! What the ops port reads: a liveness query and the rewrap job's progress.

use deadpool_postgres::GenericClient;
use strongbox_shared::db::prepared;

use super::{Context as _, StoreError};

/// One round trip, for readiness.
pub async fn ping(c: &impl GenericClient) -> Result<(), StoreError> {
    prepared::execute(c, "SELECT 1", &[]).await.context("checking the database answers")?;
    Ok(())
}

/// The rewrap job's progress, summed over keyrings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RewrapProgress {
    /// Rows moved to their keyring's target version.
    pub done: i64,
    /// Rows the vault could not rewrap.
    pub failed: i64,
    /// Rows still below their keyring's target version.
    pub remaining: i64,
    /// Whether a run holds the advisory lock `lock` in this database.
    pub running: bool,
}

/// Reads the rewrap progress; `lock` is the job's advisory lock key.
pub async fn rewrap_progress(
    c: &impl GenericClient,
    lock: i64,
) -> Result<RewrapProgress, StoreError> {
    let row = prepared::query_one(c,
            "SELECT \
               (SELECT coalesce(sum(rows_done), 0)::bigint FROM rewrap_progress), \
               (SELECT coalesce(sum(rows_failed), 0)::bigint FROM rewrap_progress), \
               (SELECT count(*) FROM encrypted_keys e JOIN rewrap_progress p ON p.keyring = e.keyring \
                  WHERE e.dek_version < p.target_version), \
               (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                  AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                  AND ((classid::bigint << 32) | objid::bigint) = $1)",
            &[&lock],
        )
        .await
        .context("reading rewrap progress")?;
    Ok(RewrapProgress {
        done: row.get(0),
        failed: row.get(1),
        remaining: row.get(2),
        running: row.get::<_, i64>(3) > 0,
    })
}
