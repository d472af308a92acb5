//! Change notifications: every replica LISTENs on [`CHANNEL`] and drops what changed from its
//! caches. A NOTIFY sent inside a transaction is delivered when it commits, never before.

use deadpool_postgres::GenericClient;
use strongbox_shared::db::prepared;

use super::{Context as _, StoreError};

/// Channel of the api's change notifications.
pub const CHANNEL: &str = "strongbox_api";

/// Tells every replica that these keys changed.
pub async fn keys(c: &impl GenericClient, ids: &[String]) -> Result<(), StoreError> {
    announce(c, "key", ids, "announcing changed keys").await
}

/// Tells every replica that these root keys changed.
pub async fn root_keys(c: &impl GenericClient, ids: &[String]) -> Result<(), StoreError> {
    announce(c, "root_key", ids, "announcing changed root keys").await
}

/// Tells every replica that these APIs changed.
pub async fn apis(c: &impl GenericClient, ids: &[String]) -> Result<(), StoreError> {
    announce(c, "api", ids, "announcing changed APIs").await
}

/// Tells every replica that these identities changed (their keys carry them).
pub async fn identities(c: &impl GenericClient, ids: &[String]) -> Result<(), StoreError> {
    announce(c, "identity", ids, "announcing changed identities").await
}

/// Tells every replica that these rate-limit namespaces (or their overrides) changed.
pub async fn namespaces(c: &impl GenericClient, ids: &[String]) -> Result<(), StoreError> {
    announce(c, "ns", ids, "announcing changed rate-limit namespaces").await
}

/// One `<kind>:<id>` notification per id.
async fn announce(
    c: &impl GenericClient,
    kind: &str,
    ids: &[String],
    what: &'static str,
) -> Result<(), StoreError> {
    if !ids.is_empty() {
        prepared::execute(
            c,
            "SELECT pg_notify($1, $2 || ':' || id) FROM unnest($3::text[]) AS id",
            &[&CHANNEL, &kind, &ids],
        )
        .await
        .context(what)?;
    }
    Ok(())
}
