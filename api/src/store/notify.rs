//! Change notifications: every replica LISTENs on [`CHANNEL`] and drops what changed from its
//! caches. A NOTIFY sent inside a transaction is delivered when it commits, never before.

use deadpool_postgres::GenericClient;
use strongbox_shared::db::prepared;

use super::{Context as _, StoreError};

/// Channel of the api's change notifications.
pub const CHANNEL: &str = "strongbox_api";

/// Tells every replica that these keys changed.
pub async fn keys(c: &impl GenericClient, ids: &[String]) -> Result<(), StoreError> {
    if !ids.is_empty() {
        prepared::execute(
            c,
            "SELECT pg_notify($1, 'key:' || id) FROM unnest($2::text[]) AS id",
            &[&CHANNEL, &ids],
        )
        .await
        .context("announcing changed keys")?;
    }
    Ok(())
}

/// Tells every replica that these root keys changed.
pub async fn root_keys(c: &impl GenericClient, ids: &[String]) -> Result<(), StoreError> {
    if !ids.is_empty() {
        prepared::execute(
            c,
            "SELECT pg_notify($1, 'root_key:' || id) FROM unnest($2::text[]) AS id",
            &[&CHANNEL, &ids],
        )
        .await
        .context("announcing changed root keys")?;
    }
    Ok(())
}

/// Tells every replica that these APIs changed.
pub async fn apis(c: &impl GenericClient, ids: &[String]) -> Result<(), StoreError> {
    if !ids.is_empty() {
        prepared::execute(
            c,
            "SELECT pg_notify($1, 'api:' || id) FROM unnest($2::text[]) AS id",
            &[&CHANNEL, &ids],
        )
        .await
        .context("announcing changed APIs")?;
    }
    Ok(())
}
