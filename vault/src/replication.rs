//! Keeping replicas in step. Every replica LISTENs on the vault database; each change commits a
//! NOTIFY with it, so the others learn at once of a new root (and lock themselves), a rekey, new
//! KEKs, and keyring rotations, retirements, trims and shreds. A periodic re-read of the root
//! record covers notifications lost while the listening connection was down, and every
//! reconnect drops the DEK cache.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use strongbox_shared::db::DatabaseConfig;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use crate::service::Vault;
use crate::store;

/// Starts the listener; it runs until `stop` is cancelled.
pub fn spawn(
    vault: Arc<Vault>,
    database: DatabaseConfig,
    recheck: Duration,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match listen(&vault, &database, recheck, &stop).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "vault change listener lost; reconnecting"
                    );
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}

/// One listening session; returns `Ok` only when stopped.
async fn listen(
    vault: &Arc<Vault>,
    database: &DatabaseConfig,
    recheck: Duration,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let (client, mut connection) = database.open_as("strongbox-vault change listener").await?;
    let (tx, mut notices) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "listener connection error");
                    break;
                }
            }
        }
    });
    let _abort_driver = AbortOnDrop(driver);
    client.batch_execute(&format!("LISTEN {}", store::CHANNEL)).await?;
    // Anything may have changed while we were not listening.
    if let Ok(keys) = vault.keys() {
        keys.forget_all_deks();
    }
    recheck_root(vault, &client).await?;

    let mut tick = tokio::time::interval(recheck);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            notice = notices.recv() => match notice {
                Some(payload) => apply(vault, &client, &payload).await?,
                None => anyhow::bail!("notification stream ended"),
            },
            _ = tick.tick() => recheck_root(vault, &client).await?,
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn recheck_root(vault: &Vault, client: &tokio_postgres::Client) -> anyhow::Result<()> {
    let row = client.query_opt("SELECT root_version, generation FROM root_record", &[]).await?;
    if let Some(row) = row {
        vault.observe_root(row.get(0), row.get(1));
    }
    Ok(())
}

async fn apply(
    vault: &Vault,
    client: &tokio_postgres::Client,
    payload: &str,
) -> anyhow::Result<()> {
    let mut parts = payload.split(':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("root"), Some(root_version), Some(generation)) => {
            vault.observe_root(root_version.parse()?, generation.parse()?);
        }
        (Some("kek"), Some(version), None) => {
            if let Ok(keys) = vault.keys() {
                let version: i32 = version.parse()?;
                let row = client
                    .query_opt(
                        "SELECT version, root_version, wrapped FROM keks WHERE version = $1",
                        &[&version],
                    )
                    .await?;
                if let Some(row) = row {
                    keys.learn_kek(&store::KekRow {
                        version: row.get(0),
                        root_version: row.get(1),
                        wrapped: row.get(2),
                    });
                }
            }
        }
        (Some("kekdel"), Some(version), None) => {
            if let Ok(keys) = vault.keys() {
                keys.forget_keks(&[version.parse()?]);
            }
        }
        (Some("keyring"), Some(_), _) => {
            // Keyring names cannot contain ':', so everything after the prefix is the name.
            let name = &payload["keyring:".len()..];
            if let Ok(keys) = vault.keys() {
                keys.forget_keyring(name);
            }
        }
        _ => tracing::warn!(payload, "unknown vault notification"),
    }
    Ok(())
}
