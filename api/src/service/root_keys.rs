//! `rootKeys.*`. Every call needs `root_key.*.manage`; a root key grants only what its own
//! permissions cover, acts only on root keys whose permissions it covers, and never makes a
//! root key that outlives itself.

use strongbox_shared::keys as keygen;
use strongbox_shared::permissions::Perm;
use time::OffsetDateTime;

use super::keys::{Created, too_far};
use super::{Changed, Principal, Service, ServiceError, new_id};
use crate::domain::keys::MAX_NAME_LEN;
use crate::domain::root_keys::{NewRootKey, RootKey, RootKeyPatch, earliest, mint};
use crate::domain::{Invalid, cut_page, future_time, page_limit, reroll_expiration};
use crate::store::{self, Context as _};

fn not_found(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("root key {id} does not exist"))
}

fn check_name(name: Option<&str>) -> Result<(), ServiceError> {
    if name.is_some_and(|n| n.len() > MAX_NAME_LEN) {
        return Err(
            Invalid::new("INVALID_NAME", "name", "name must be at most 255 characters").into()
        );
    }
    Ok(())
}

/// Locks the caller's row and `id`'s (in id order), confirms the caller is unchanged, and
/// returns the target, which the caller must then cover.
async fn lock_target(
    tx: &impl deadpool_postgres::GenericClient,
    caller: &Principal,
    id: &str,
) -> Result<RootKey, ServiceError> {
    let rows = store::root_keys::lock(tx, caller.workspace_id(), &[caller.key_id(), id]).await?;
    caller.confirm(rows.iter().find(|k| k.id == caller.key_id()))?;
    let target = rows.into_iter().find(|k| k.id == id).ok_or_else(|| not_found(id))?;
    caller.may_act_on(&target.id, &target.permissions).await?;
    Ok(target)
}

impl Service {
    /// `rootKeys.createKey`. Its expiry is clamped to the caller's own.
    pub async fn create_root_key(
        &self,
        caller: &Principal,
        new: NewRootKey,
    ) -> Result<Created, ServiceError> {
        caller.require(Perm::manage_root_keys())?;
        caller.may_grant(&new.permissions, "permissions").await?;
        check_name(new.name.as_deref())?;
        let expires_at = new.expires.map(|ms| future_time(ms, "expires")).transpose()?;
        let minted = mint(
            new_id("rk")?,
            caller.workspace_id(),
            new.name,
            new.permissions,
            true,
            caller.clamp_expiry(expires_at),
        )
        .map_err(|e| ServiceError::internal("minting a root key", e))?;
        let mut db = self.db().await?;
        let tx = db.transaction().await.context("starting a transaction")?;
        let me = store::root_keys::lock(&tx, caller.workspace_id(), &[caller.key_id()]).await?;
        caller.confirm(me.first())?;
        store::root_keys::insert(&tx, &minted.key, &keygen::hash(&minted.plaintext)).await?;
        self.commit(tx, Changed::nothing()).await?;
        tracing::info!(created_root_key = %minted.key.id, "created root key");
        Ok(Created { key_id: minted.key.id, key: minted.plaintext })
    }

    /// `rootKeys.listKeys`: a page of the workspace's root keys, never the keys themselves.
    pub async fn list_root_keys(
        &self,
        caller: &Principal,
        cursor: Option<&str>,
        limit: Option<i64>,
    ) -> Result<(Vec<RootKey>, Option<String>), ServiceError> {
        caller.require(Perm::manage_root_keys())?;
        let limit = page_limit(limit)?;
        let mut page =
            store::root_keys::list(&self.db().await?, caller.workspace_id(), cursor, limit + 1)
                .await?;
        let next = cut_page(&mut page, limit, |k| &k.id);
        Ok((page, next))
    }

    /// `rootKeys.updateKey`: only the fields given, on a root key the caller covers (checked on
    /// the locked row, so a concurrent widening cannot slip past), with new permissions the
    /// caller may grant. Granting or enabling hands rights on, so the target then expires no
    /// later than the caller. Takes effect at once on every replica.
    pub async fn update_root_key(
        &self,
        caller: &Principal,
        id: &str,
        patch: RootKeyPatch,
    ) -> Result<(), ServiceError> {
        caller.require(Perm::manage_root_keys())?;
        if let Some(permissions) = &patch.permissions {
            caller.may_grant(permissions, "permissions").await?;
        }
        check_name(patch.name.as_ref().and_then(|n| n.as_deref()))?;
        let hands_on = patch.permissions.is_some() || patch.enabled == Some(true);
        let expire_by = if hands_on { caller.expires_at() } else { None };
        let mut db = self.db().await?;
        let tx = db.transaction().await.context("starting a transaction")?;
        let target = lock_target(&tx, caller, id).await?;
        store::root_keys::update(&tx, &target.id, &patch, expire_by).await?;
        self.commit(tx, Changed::root_key(&target.id)).await?;
        tracing::info!(root_key = %target.id, "updated root key");
        Ok(())
    }

    /// `rootKeys.rerollKey`: a new root key with the old one's name, permissions and `enabled`,
    /// expiring no later than the old one or the caller; the old one stops working after
    /// `expiration` (at once when `None`).
    pub async fn reroll_root_key(
        &self,
        caller: &Principal,
        id: &str,
        expiration_ms: Option<i64>,
    ) -> Result<Created, ServiceError> {
        caller.require(Perm::manage_root_keys())?;
        let expiration = reroll_expiration(expiration_ms)?;
        let new_key_id = new_id("rk")?;
        let mut db = self.db().await?;
        let tx = db.transaction().await.context("starting a transaction")?;
        let old = lock_target(&tx, caller, id).await?;
        let minted = mint(
            new_key_id,
            caller.workspace_id(),
            old.name.clone(),
            old.permissions.clone(),
            old.enabled,
            caller.clamp_expiry(old.expires_at),
        )
        .map_err(|e| ServiceError::internal("minting a root key", e))?;
        store::root_keys::insert(&tx, &minted.key, &keygen::hash(&minted.plaintext)).await?;
        match expiration {
            None => {
                store::root_keys::delete(&tx, caller.workspace_id(), &old.id).await?;
            }
            Some(after) => {
                let at = OffsetDateTime::now_utc().checked_add(after).ok_or_else(too_far)?;
                store::root_keys::expire_by(
                    &tx,
                    &old.id,
                    earliest(Some(at), old.expires_at).unwrap_or(at),
                )
                .await?;
            }
        }
        self.commit(tx, Changed::root_key(&old.id)).await?;
        tracing::info!(old_root_key = %old.id, root_key = %minted.key.id, "rerolled root key");
        Ok(Created { key_id: minted.key.id, key: minted.plaintext })
    }

    /// `rootKeys.deleteKey`, of a root key the caller covers; at once on every replica.
    pub async fn delete_root_key(&self, caller: &Principal, id: &str) -> Result<(), ServiceError> {
        caller.require(Perm::manage_root_keys())?;
        let mut db = self.db().await?;
        let tx = db.transaction().await.context("starting a transaction")?;
        let target = lock_target(&tx, caller, id).await?;
        store::root_keys::delete(&tx, caller.workspace_id(), &target.id).await?;
        self.commit(tx, Changed::root_key(&target.id)).await?;
        tracing::info!(root_key = %target.id, "deleted root key");
        Ok(())
    }
}
