//! `keys.*`: create, read, update, delete, reroll, credits and whoami.

use std::sync::Arc;

use strongbox_shared::keys as keygen;
use strongbox_shared::permissions::{Action, Perm};
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use zeroize::Zeroizing;

use super::recovery::Mode;
use super::{Changed, Parsed, Principal, Service, ServiceError, new_id};
use crate::domain::keys::{CreditOp, Key, KeyPatch, NewKey, Ratelimit, RatelimitSpec, Refill};
use crate::domain::keys::{check_external_id, check_meta, check_name, check_ratelimits};
use crate::domain::{Invalid, MAX_KEY_PERMISSIONS, check_permissions, reroll_expiration};
use crate::store::keys::CreditChange;
use crate::store::{self, Context as _};

/// A key made by createKey or rerollKey: its id and the key itself, shown once.
pub struct Created {
    /// `key_…` or `rk_…`.
    pub key_id: String,
    /// The key, wiped from memory when dropped.
    pub key: Zeroizing<String>,
}

/// An `expiration` past the end of representable time.
pub(crate) fn too_far() -> ServiceError {
    Invalid::new("INVALID_EXPIRATION", "expiration", "expiration is too far in the future").into()
}

fn not_found(key_id: &str) -> ServiceError {
    ServiceError::NotFound(format!("key {key_id} does not exist"))
}

pub(crate) fn with_ids(specs: Vec<RatelimitSpec>) -> Result<Vec<Ratelimit>, ServiceError> {
    specs
        .into_iter()
        .map(|s| {
            Ok(Ratelimit {
                id: new_id("rl")?,
                name: s.name,
                limit: s.limit,
                duration: s.duration,
                auto_apply: s.auto_apply,
            })
        })
        .collect()
}

fn new_plaintext(
    prefix: Option<&str>,
    byte_length: usize,
) -> Result<Zeroizing<String>, ServiceError> {
    keygen::new_customer_key(prefix, byte_length)
        .map(Zeroizing::new)
        .map_err(|e| ServiceError::internal("generating a key", e))
}

impl Service {
    /// A key of the caller's workspace: 404 for missing or foreign ones.
    async fn key(&self, caller: &Principal, key_id: &str) -> Result<Key, ServiceError> {
        store::keys::get(&self.db().await?, caller.workspace_id(), key_id)
            .await?
            .ok_or_else(|| not_found(key_id))
    }

    /// `keys.createKey`. A recoverable key is sealed by the vault before anything is written,
    /// and stored with its ciphertext in one transaction: it exists whole or not at all.
    pub async fn create_key(
        &self,
        caller: &Principal,
        api_id: &str,
        recoverable: bool,
        new: Parsed<NewKey>,
    ) -> Result<Created, ServiceError> {
        let api = if recoverable {
            self.api_fresh(caller, api_id).await?
        } else {
            self.api(caller, api_id).await?
        };
        caller.require(Perm::api(&api.id, Action::CreateKey))?;
        // A refused input is a 400 before any precondition (412) or the vault (503) is asked.
        let new = new?;
        if recoverable {
            caller.require(Perm::api(&api.id, Action::EncryptKey))?;
            if !api.store_encrypted_keys {
                return Err(ServiceError::PreconditionFailed(format!(
                    "API {} does not store encrypted keys; opt in with apis.updateApi {{\"storeEncryptedKeys\": true}} first (it is not retroactive)",
                    api.id
                )));
            }
        }
        if let Some(name) = &new.name {
            check_name(name)?;
        }
        if let Some(meta) = &new.meta {
            check_meta(meta)?;
        }
        if let Some(external_id) = &new.external_id {
            check_external_id(external_id)?;
        }
        check_permissions(&new.permissions, MAX_KEY_PERMISSIONS)?;
        check_ratelimits(&new.ratelimits)?;
        let plaintext = new_plaintext(new.prefix.as_deref(), new.byte_length)?;
        let mut key = Key {
            id: new_id("key")?,
            workspace_id: caller.workspace_id().to_owned(),
            api_id: api.id.clone(),
            start: keygen::start(&plaintext, new.prefix.as_deref()),
            prefix: new.prefix,
            byte_length: i16::try_from(new.byte_length).unwrap_or(16),
            name: new.name,
            identity: None,
            identity_meta: None,
            identity_ratelimits: Vec::new(),
            meta: new.meta,
            permissions: new.permissions,
            expires_at: new.expires_at,
            enabled: new.enabled,
            credits_remaining: new.credits_remaining,
            refill: new.refill,
            last_refill_at: None,
            ratelimits: with_ids(new.ratelimits)?,
            created_at: OffsetDateTime::now_utc(),
            updated_at: None,
            last_used_at: None,
        };
        // The key id exists before encryption and is the ciphertext's context.
        let sealed = if recoverable {
            Some(self.seal(caller.workspace_id(), &key.id, &plaintext).await?)
        } else {
            None
        };
        let hash = keygen::hash(&plaintext);
        let mut db = self.db().await?;
        let inserted = match &new.external_id {
            // One statement needs no transaction around it: one round trip, not three.
            None => store::keys::insert(&db, &key, &hash, sealed.as_ref()).await,
            Some(external_id) => {
                let tx = db.transaction().await.context("starting a transaction")?;
                let id =
                    store::keys::identity(&tx, caller.workspace_id(), external_id, &new_id("id")?)
                        .await?;
                key.identity = Some((id, external_id.clone()));
                let inserted = store::keys::insert(&tx, &key, &hash, sealed.as_ref()).await;
                if inserted.is_ok() {
                    self.commit(tx, Changed::nothing()).await?;
                }
                inserted
            }
        };
        if let Err(error) = inserted {
            if error.sqlstate() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
                // Deleted since it was read (or cached).
                self.cache.forget_api(&api.id);
                return Err(ServiceError::NotFound(format!("API {} does not exist", api.id)));
            }
            return Err(error.into());
        }
        tracing::info!(key_id = %key.id, api_id = %api.id, "created key");
        Ok(Created { key_id: key.id, key: plaintext })
    }

    /// `keys.getKey`, with the plaintext of a recoverable key when asked to decrypt.
    pub async fn get_key(
        &self,
        caller: &Principal,
        key_id: &str,
        decrypt: bool,
    ) -> Result<(Key, Option<Zeroizing<String>>), ServiceError> {
        let key = self.key(caller, key_id).await?;
        caller.require(Perm::api(&key.api_id, Action::ReadKey))?;
        if !decrypt {
            return Ok((key, None));
        }
        caller.require(Perm::api(&key.api_id, Action::DecryptKey))?;
        let mut opened = self.open(caller, std::slice::from_ref(&key.id), Mode::One).await?;
        let plaintext = opened.remove(&key.id);
        Ok((key, plaintext))
    }

    /// `keys.deleteKey`: permanent, and at once on every replica.
    pub async fn delete_key(&self, caller: &Principal, key_id: &str) -> Result<(), ServiceError> {
        let key = self.key(caller, key_id).await?;
        caller.require(Perm::api(&key.api_id, Action::DeleteKey))?;
        let mut db = self.db().await?;
        let tx = db.transaction().await.context("starting a transaction")?;
        if !store::keys::delete(&tx, caller.workspace_id(), &key.id).await? {
            return Err(not_found(key_id));
        }
        self.commit(tx, Changed::keys([key.id.clone()])).await?;
        tracing::info!(key_id = %key.id, "deleted key");
        Ok(())
    }

    /// `keys.updateKey`: writes exactly the fields given, in one statement, so a concurrent
    /// change to another field (credits spent, a disable) is never undone.
    pub async fn update_key(
        &self,
        caller: &Principal,
        key_id: &str,
        patch: Parsed<KeyPatch>,
    ) -> Result<(), ServiceError> {
        let key = self.key(caller, key_id).await?;
        caller.require(Perm::api(&key.api_id, Action::UpdateKey))?;
        let patch = patch?;
        if let Some(Some(name)) = &patch.name {
            check_name(name)?;
        }
        if let Some(Some(meta)) = &patch.meta {
            check_meta(meta)?;
        }
        if let Some(Some(external_id)) = &patch.external_id {
            check_external_id(external_id)?;
        }
        if let Some(permissions) = &patch.permissions {
            check_permissions(permissions, MAX_KEY_PERMISSIONS)?;
        }
        let ratelimits = match &patch.ratelimits {
            Some(specs) => {
                check_ratelimits(specs)?;
                Some(with_ids(specs.clone())?)
            }
            None => None,
        };
        let mut db = self.db().await?;
        let tx = db.transaction().await.context("starting a transaction")?;
        let identity_id = match &patch.external_id {
            Some(Some(external_id)) => Some(
                store::keys::identity(&tx, caller.workspace_id(), external_id, &new_id("id")?)
                    .await?,
            ),
            _ => None,
        };
        let updated = store::keys::update(
            &tx,
            caller.workspace_id(),
            &key.id,
            &patch,
            identity_id.as_deref(),
            ratelimits.as_deref(),
        )
        .await?;
        if !updated {
            return Err(not_found(key_id));
        }
        self.commit(tx, Changed::keys([key.id])).await
    }

    /// `keys.rerollKey`: a new key with the old one's settings, taken from the old row under its
    /// lock; the old key stops verifying after `expiration` (at once when `None`). A recoverable
    /// key stays recoverable while its API opts in; after an opt-out the new key is a plain one.
    pub async fn reroll_key(
        &self,
        caller: &Principal,
        key_id: &str,
        expiration_ms: Option<i64>,
    ) -> Result<Created, ServiceError> {
        let old = self.key(caller, key_id).await?;
        caller.require(Perm::api(&old.api_id, Action::CreateKey))?;
        let expiration = reroll_expiration(expiration_ms)?;
        let new_key_id = new_id("key")?;
        let plaintext =
            new_plaintext(old.prefix.as_deref(), usize::try_from(old.byte_length).unwrap_or(16))?;
        let was_recoverable =
            !store::encrypted::for_keys(&self.db().await?, std::slice::from_ref(&old.id))
                .await?
                .is_empty();
        let sealed =
            if was_recoverable && self.api_fresh(caller, &old.api_id).await?.store_encrypted_keys {
                caller.require(Perm::api(&old.api_id, Action::EncryptKey))?;
                Some(self.seal(caller.workspace_id(), &new_key_id, &plaintext).await?)
            } else {
                None
            };
        let mut db = self.db().await?;
        let tx = db.transaction().await.context("starting a transaction")?;
        // Settings come from the row as it is now, locked: a rename or a spend committed since
        // the read above is carried over, and none can land between the copy and the expiry.
        let current = store::keys::get_for_update(&tx, caller.workspace_id(), &old.id)
            .await?
            .ok_or_else(|| not_found(key_id))?;
        let now = OffsetDateTime::now_utc();
        let new = Key {
            id: new_key_id,
            start: keygen::start(&plaintext, current.prefix.as_deref()),
            created_at: now,
            updated_at: None,
            last_used_at: None,
            ..current.clone()
        };
        store::keys::insert(&tx, &new, &keygen::hash(&plaintext), sealed.as_ref()).await?;
        match expiration {
            None => {
                store::keys::delete(&tx, caller.workspace_id(), &current.id).await?;
            }
            Some(after) => {
                let at = now.checked_add(after).ok_or_else(too_far)?;
                store::keys::expire_by(&tx, &current.id, at).await?;
            }
        }
        self.commit(tx, Changed::keys([current.id.clone()])).await?;
        tracing::info!(old_key_id = %current.id, key_id = %new.id, "rerolled key");
        Ok(Created { key_id: new.id, key: plaintext })
    }

    /// `keys.updateCredits`: `set`, `increment` or `decrement`, in one statement. Returns the
    /// credits now (`None`: unlimited) and the refill rule.
    pub async fn update_credits(
        &self,
        caller: &Principal,
        key_id: &str,
        operation: &str,
        value: Option<i64>,
    ) -> Result<(Option<i64>, Option<Refill>), ServiceError> {
        let key = self.key(caller, key_id).await?;
        caller.require(Perm::api(&key.api_id, Action::UpdateKey))?;
        let op = CreditOp::new(operation, value)?;
        let mut db = self.db().await?;
        let tx = db.transaction().await.context("starting a transaction")?;
        let change = store::keys::change_credits(&tx, caller.workspace_id(), &key.id, op).await?;
        let (remaining, refill) = match change {
            CreditChange::Done(remaining, refill) => (remaining, refill),
            CreditChange::Unlimited => {
                return Err(Invalid::new(
                    "INVALID_CREDITS",
                    "operation",
                    "this key has unlimited credits; use set first",
                )
                .into());
            }
            CreditChange::Missing => return Err(not_found(key_id)),
        };
        self.commit(tx, Changed::keys([key.id])).await?;
        Ok((remaining, if remaining.is_some() { refill } else { None }))
    }

    /// `keys.whoami`: a key found by the key itself, in the caller's workspace.
    pub async fn whoami(
        &self,
        caller: &Principal,
        plaintext: &str,
    ) -> Result<Arc<Key>, ServiceError> {
        if plaintext.is_empty() || plaintext.chars().count() > 1024 {
            return Err(Invalid::new("INVALID_KEY", "key", "key must be 1-1024 characters").into());
        }
        let key = self
            .find_key(plaintext)
            .await?
            .filter(|k| k.workspace_id == caller.workspace_id())
            .ok_or_else(|| ServiceError::NotFound("no such key".to_owned()))?;
        caller.require(Perm::api(&key.api_id, Action::ReadKey))?;
        Ok(key)
    }
}
