//! The rewrap job: after a keyring rotation in the vault, move every stored ciphertext below the
//! newest DEK version forward with vault `rewrap`, which never hands the api a plaintext.
//!
//! - **Resumable**: progress (the key id reached, rows moved) is kept in `rewrap_progress`.
//! - **Single-flight**: a Postgres advisory lock; a second run waits, or says so and stops.
//! - **Live**: a row is updated only if it still holds the ciphertext that was read, so it can
//!   run while the api serves traffic (a concurrent reroll or delete simply wins).

use std::time::Duration;

use serde::Serialize;
use strongbox_shared::db::DatabaseConfig;
use tokio_util::sync::CancellationToken;

use crate::vault_client::{VaultClient, VaultFailure};

/// Session advisory lock held by a running rewrap.
pub const LOCK: i64 = 0x5342_5257_5250_0001;

/// What one keyring's rewrap did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The keyring (workspace id).
    pub keyring: String,
    /// The DEK version rows were moved to.
    pub target_version: i32,
    /// Rows moved in this run.
    pub moved: u64,
    /// Rows the vault could not rewrap (retired or destroyed versions, failed authentication).
    pub failed: u64,
    /// Rows still below the target afterwards.
    pub remaining: i64,
}

/// Why a run did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RewrapError {
    /// Another rewrap holds the lock.
    #[error("another rewrap is running (advisory lock held); it will finish the work")]
    Busy,
    /// The vault refused or could not be reached.
    #[error("vault: {0:?}")]
    Vault(VaultFailure),
    /// Anything else.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<tokio_postgres::Error> for RewrapError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Other(e.into())
    }
}

/// Progress reports: `(keyring, rows done so far, rows to do)`.
pub type Progress<'a> = &'a mut (dyn FnMut(&str, u64, i64) + Send);

/// Runs the job over `keyring`, or over every keyring with stored ciphertexts.
pub async fn run(
    database: &DatabaseConfig,
    vault: &VaultClient,
    keyring: Option<&str>,
    batch: i64,
    wait: bool,
    progress: Progress<'_>,
) -> Result<Vec<Outcome>, RewrapError> {
    let lock = strongbox_shared::db::connect(database).await?;
    if wait {
        lock.execute("SELECT pg_advisory_lock($1)", &[&LOCK]).await?;
    } else {
        let got: bool = lock.query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK]).await?.get(0);
        if !got {
            return Err(RewrapError::Busy);
        }
    }
    let db = strongbox_shared::db::connect(database).await?;
    let keyrings: Vec<String> = match keyring {
        Some(k) => vec![k.to_owned()],
        None => db
            .query("SELECT DISTINCT keyring FROM encrypted_keys ORDER BY keyring", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect(),
    };
    let mut outcomes = Vec::new();
    for keyring in keyrings {
        let target = match vault.versions(&keyring).await {
            Ok((latest, _)) => latest,
            Err(VaultFailure::KeyringDeleted | VaultFailure::KeyringNotFound) => continue,
            Err(e) => return Err(RewrapError::Vault(e)),
        };
        outcomes.push(one(&db, vault, &keyring, target, batch.max(1), progress).await?);
    }
    // Closing the lock's connection releases it even if this unlock is never sent.
    lock.execute("SELECT pg_advisory_unlock($1)", &[&LOCK]).await?;
    Ok(outcomes)
}

async fn one(
    db: &tokio_postgres::Client,
    vault: &VaultClient,
    keyring: &str,
    target: i32,
    batch: i64,
    progress: Progress<'_>,
) -> Result<Outcome, RewrapError> {
    // Resume an unfinished run for the same target; otherwise walk from the start. `rows_done`
    // counts every row moved to this target, across runs.
    let row = db
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
        .await?;
    let mut cursor: String = row.get(0);
    let done_before: i64 = row.get(1);
    let total: i64 = db
        .query_one(
            "SELECT count(*) FROM encrypted_keys WHERE keyring = $1 AND dek_version < $2",
            &[&keyring, &target],
        )
        .await?
        .get(0);
    let (mut moved, mut failed) = (0u64, 0u64);
    loop {
        let rows = db
            .query(
                "SELECT key_id, ciphertext FROM encrypted_keys WHERE keyring = $1 AND dek_version < $2 \
                 AND key_id > $3 ORDER BY key_id LIMIT $4",
                &[&keyring, &target, &cursor, &batch],
            )
            .await?;
        if rows.is_empty() {
            break;
        }
        let read: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let items: Vec<(&str, &str)> =
            read.iter().map(|(id, ct)| (ct.as_str(), id.as_str())).collect();
        let results = vault.rewrap(keyring, &items).await.map_err(RewrapError::Vault)?;
        let (mut batch_moved, mut batch_failed) = (0i64, 0i64);
        db.batch_execute("BEGIN").await?;
        for ((key_id, old), result) in read.iter().zip(results) {
            match result {
                Ok((new, version)) => {
                    // Only if the row still holds what was read: a reroll or delete wins.
                    let n = db
                        .execute(
                            "UPDATE encrypted_keys SET ciphertext = $3, dek_version = $4, updated_at = now() \
                             WHERE key_id = $1 AND ciphertext = $2",
                            &[key_id, old, &new, &version],
                        )
                        .await?;
                    batch_moved += i64::try_from(n).unwrap_or(0);
                }
                Err(code) => {
                    batch_failed += 1;
                    tracing::warn!(
                        key_id,
                        code,
                        keyring,
                        "the vault could not rewrap a stored key"
                    );
                }
            }
        }
        cursor = read.last().map(|(id, _)| id.clone()).unwrap_or_default();
        db.execute(
            "UPDATE rewrap_progress SET last_key_id = $2, rows_done = rows_done + $3, \
             rows_failed = rows_failed + $4, updated_at = now() WHERE keyring = $1",
            &[&keyring, &cursor, &batch_moved, &batch_failed],
        )
        .await?;
        db.batch_execute("COMMIT").await?;
        moved += u64::try_from(batch_moved).unwrap_or(0);
        failed += u64::try_from(batch_failed).unwrap_or(0);
        progress(keyring, u64::try_from(done_before).unwrap_or(0) + moved, total + done_before);
    }
    db.execute("UPDATE rewrap_progress SET finished_at = now() WHERE keyring = $1", &[&keyring])
        .await?;
    let remaining: i64 = db
        .query_one(
            "SELECT count(*) FROM encrypted_keys WHERE keyring = $1 AND dek_version < $2",
            &[&keyring, &target],
        )
        .await?
        .get(0);
    tracing::info!(keyring, target, moved, failed, remaining, "rewrap finished");
    Ok(Outcome { keyring: keyring.to_owned(), target_version: target, moved, failed, remaining })
}

/// Raises each keyring's `min_decryption_version` to its newest version, with the operator's
/// identity, once no stored row depends on an older one; checks again afterwards and undoes the
/// change if a row below it appeared meanwhile.
pub async fn retire(
    database: &DatabaseConfig,
    vault: &VaultClient,
    operator: &VaultClient,
    outcomes: &[Outcome],
) -> Result<Vec<(String, i32)>, RewrapError> {
    let db = strongbox_shared::db::connect(database).await?;
    let below = |keyring: String, version: i32| {
        let db = &db;
        async move {
            let n: i64 = db
                .query_one(
                    "SELECT count(*) FROM encrypted_keys WHERE keyring = $1 AND dek_version < $2",
                    &[&keyring, &version],
                )
                .await?
                .get(0);
            Ok::<i64, tokio_postgres::Error>(n)
        }
    };
    let mut retired = Vec::new();
    for outcome in outcomes {
        let keyring = outcome.keyring.clone();
        let (latest, previous_min) = vault.versions(&keyring).await.map_err(RewrapError::Vault)?;
        let waiting = below(keyring.clone(), latest).await?;
        if waiting > 0 {
            return Err(RewrapError::Other(anyhow::anyhow!(
                "{waiting} stored key(s) of keyring {keyring} are still below version {latest}; run rewrap first"
            )));
        }
        operator.set_min_decryption_version(&keyring, latest).await.map_err(RewrapError::Vault)?;
        // Every api write after this point uses the newest version; check what landed before.
        let late = below(keyring.clone(), latest).await?;
        if late > 0 {
            operator
                .set_min_decryption_version(&keyring, previous_min)
                .await
                .map_err(RewrapError::Vault)?;
            return Err(RewrapError::Other(anyhow::anyhow!(
                "{late} key(s) of keyring {keyring} appeared below version {latest} during retirement; undone — run rewrap again"
            )));
        }
        retired.push((keyring, latest));
    }
    Ok(retired)
}

/// Runs the job in the background every `every`, skipping a turn when another run holds the
/// lock, until `stop`.
pub fn spawn_background(
    database: DatabaseConfig,
    vault: std::sync::Arc<VaultClient>,
    every: Duration,
    batch: i64,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let mut quiet = |_: &str, _: u64, _: i64| {};
            match run(&database, &vault, None, batch, false, &mut quiet).await {
                Ok(outcomes) => {
                    for o in outcomes.iter().filter(|o| o.moved > 0 || o.remaining > 0) {
                        tracing::info!(keyring = %o.keyring, moved = o.moved, remaining = o.remaining, "background rewrap");
                    }
                }
                Err(RewrapError::Busy) => {}
                Err(error) => tracing::warn!(%error, "background rewrap failed; will retry"),
            }
        }
    });
}
