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

use crate::store::{StoreError, rewrap as sql};
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

impl From<StoreError> for RewrapError {
    fn from(e: StoreError) -> Self {
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
    // The lock's session may wait for another run as long as that run takes.
    let lock = strongbox_shared::db::connect_patient(database).await?;
    if wait {
        sql::lock(&lock, LOCK).await?;
    } else if !sql::try_lock(&lock, LOCK).await? {
        return Err(RewrapError::Busy);
    }
    let mut db = strongbox_shared::db::connect(database).await?;
    let keyrings: Vec<String> = match keyring {
        Some(k) => vec![k.to_owned()],
        None => sql::keyrings(&db).await?,
    };
    let mut outcomes = Vec::new();
    for keyring in keyrings {
        let target = match vault.versions(&keyring).await {
            Ok((latest, _)) => latest,
            Err(VaultFailure::KeyringDeleted | VaultFailure::KeyringNotFound) => continue,
            Err(e) => return Err(RewrapError::Vault(e)),
        };
        outcomes.push(one(&mut db, vault, &keyring, target, batch.max(1), progress).await?);
    }
    // Closing the lock's connection releases it even if this unlock is never sent.
    sql::unlock(&lock, LOCK).await?;
    Ok(outcomes)
}

async fn one(
    db: &mut tokio_postgres::Client,
    vault: &VaultClient,
    keyring: &str,
    target: i32,
    batch: i64,
    progress: Progress<'_>,
) -> Result<Outcome, RewrapError> {
    let (mut cursor, done_before) = sql::start(&*db, keyring, target).await?;
    let total = sql::count_below(&*db, keyring, target).await?;
    let (mut moved, mut failed) = (0u64, 0u64);
    loop {
        let read = sql::batch(&*db, keyring, target, &cursor, batch).await?;
        if read.is_empty() {
            break;
        }
        let items: Vec<(&str, &str)> =
            read.iter().map(|(id, ct)| (ct.as_str(), id.as_str())).collect();
        let results = vault.rewrap(keyring, &items).await.map_err(RewrapError::Vault)?;
        let mut batch_failed = 0i64;
        let mut replaced = Vec::with_capacity(read.len());
        for ((key_id, old), result) in read.iter().zip(&results) {
            match result {
                Ok((new, version)) => {
                    replaced.push((key_id.as_str(), old.as_str(), new.as_str(), *version))
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
        // The batch's rows and its progress commit together, in two statements.
        let tx = db.transaction().await.map_err(|e| RewrapError::Other(e.into()))?;
        let batch_moved = i64::try_from(sql::replace_all(&tx, &replaced).await?).unwrap_or(0);
        cursor = read.last().map(|(id, _)| id.clone()).unwrap_or_default();
        sql::advance(&tx, keyring, &cursor, batch_moved, batch_failed).await?;
        tx.commit().await.map_err(|e| RewrapError::Other(e.into()))?;
        moved += u64::try_from(batch_moved).unwrap_or(0);
        failed += u64::try_from(batch_failed).unwrap_or(0);
        progress(keyring, u64::try_from(done_before).unwrap_or(0) + moved, total + done_before);
    }
    sql::finish(&*db, keyring).await?;
    let remaining = sql::count_below(&*db, keyring, target).await?;
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
    let mut retired = Vec::new();
    for outcome in outcomes {
        let keyring = outcome.keyring.clone();
        let (latest, previous_min) = vault.versions(&keyring).await.map_err(RewrapError::Vault)?;
        let waiting = sql::count_below(&db, &keyring, latest).await?;
        if waiting > 0 {
            return Err(RewrapError::Other(anyhow::anyhow!(
                "{waiting} stored key(s) of keyring {keyring} are still below version {latest}; run rewrap first"
            )));
        }
        operator.set_min_decryption_version(&keyring, latest).await.map_err(RewrapError::Vault)?;
        // Every api write after this point uses the newest version; check what landed before.
        let late = sql::count_below(&db, &keyring, latest).await?;
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
