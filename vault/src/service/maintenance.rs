//! Background key maintenance on each unlocked replica: periodic KEK and DEK rotation,
//! re-wrapping DEKs under the newest KEK, and deleting KEKs no DEK uses any more.
//!
//! Replicas do not coordinate beyond the database: rotations are compare-and-swap on versions
//! (one winner per period), and re-wrapping takes rows with `FOR UPDATE SKIP LOCKED`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Vault;
use crate::config::RotationConfig;
use crate::crypto::hierarchy;
use crate::domain::KeyringName;
use crate::error::VaultError;
use crate::store;

impl Vault {
    /// One maintenance pass. Does nothing while locked.
    pub async fn maintain(&self, rotation: RotationConfig) -> Result<(), VaultError> {
        let Ok(keys) = self.keys() else { return Ok(()) };
        let client = self.pool.get().await?;
        if rotation.kek_period_seconds > 0
            && store::latest_kek_age(&client)
                .await?
                .is_some_and(|age| age >= rotation.kek_period_seconds as f64)
        {
            let version = self.rotate_kek().await?;
            tracing::info!(kek_version = version, "periodic KEK rotation");
            self.audit_scheduled("rotate kek", None, None).await;
        }
        if rotation.dek_period_seconds > 0 {
            for (name, seen) in
                store::keyrings_older_than(&client, rotation.dek_period_seconds as f64).await?
            {
                let keyring = KeyringName::parse(&name)?;
                let mut object = self.pool.get().await?;
                let version = self.rotate_keyring_from(&mut object, &keys, &keyring, seen).await?;
                tracing::info!(keyring = name, version, "periodic keyring rotation");
                self.audit_scheduled("rotate keyring", Some(name), None).await;
            }
        }
        drop(client);
        self.rewrap_deks(rotation.rewrap_batch.max(1)).await?;
        Ok(())
    }

    /// Re-wraps every DEK under the newest KEK, then deletes KEKs nothing uses.
    async fn rewrap_deks(&self, batch_size: i64) -> Result<(), VaultError> {
        let keys = self.keys()?;
        loop {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let Some(latest) = store::latest_kek(&tx).await? else { return Ok(()) };
            let new_kek = keys.kek(&latest)?;
            let batch = store::deks_under_old_kek(&tx, latest.version, batch_size).await?;
            if batch.is_empty() {
                let deleted = store::delete_unused_keks(&tx, latest.version).await?;
                for version in &deleted {
                    store::notify(&tx, &format!("kekdel:{version}")).await?;
                }
                tx.commit().await?;
                if !deleted.is_empty() {
                    keys.forget_keks(&deleted);
                    tracing::info!(?deleted, "deleted KEKs no DEK uses");
                    self.audit_scheduled("delete unused keks", None, Some(deleted.len())).await;
                }
                return Ok(());
            }
            for (keyring, row) in &batch {
                let old_kek = keys.kek(&row.kek)?;
                let v = u32::try_from(row.version).map_err(|_| VaultError::Integrity)?;
                let dek = hierarchy::unwrap_dek(&old_kek, keyring, v, &row.wrapped)?;
                let wrapped = hierarchy::wrap_dek(&new_kek, keyring, v, &dek)?;
                store::rewrap_dek(&tx, keyring, row.version, latest.version, &wrapped).await?;
            }
            tx.commit().await?;
            self.audit_scheduled("rewrap deks under the newest kek", None, Some(batch.len())).await;
            tracing::info!(
                deks = batch.len(),
                kek_version = latest.version,
                "re-wrapped DEKs under the newest KEK"
            );
        }
    }

    /// Records a change this replica made on its own. It is already committed, so a failed
    /// audit write is logged (and counted) rather than undone.
    async fn audit_scheduled(&self, what: &str, keyring: Option<String>, items: Option<usize>) {
        let entry = crate::audit::Entry {
            identity: crate::audit::SCHEDULER.to_owned(),
            action: format!("scheduled {what}"),
            keyring,
            items: items.map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
            status: 200,
            trace_id: String::new(),
        };
        if !self.audit.record(entry).await {
            tracing::error!(what, "a scheduled change is missing from the audit log");
        }
    }

    /// Runs [`Vault::maintain`] every `check_interval_ms` until `stop`.
    pub fn spawn_maintenance(self: Arc<Self>, rotation: RotationConfig, stop: CancellationToken) {
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_millis(rotation.check_interval_ms.max(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(error) = self.maintain(rotation).await {
                    tracing::warn!(%error, "key maintenance failed; will retry");
                }
            }
        });
    }
}
