//! `identities.*`: Unkey's identities, with `meta` and rate limits shared by all their keys.
//! The permissions are Unkey's, one per action for every identity: `identity.*.<action>`.

use serde_json::Value;
use strongbox_shared::permissions::{IdentityAction, Perm};

use super::keys::with_ids;
use super::{Changed, Principal, Service, ServiceError, new_id};
use crate::domain::identities::Identity;
use crate::domain::keys::{
    Ratelimit, RatelimitSpec, check_external_id, check_meta, check_ratelimits,
};
use crate::domain::{cut_page, page_limit};
use crate::store::{self, Context as _};

/// A page of identities.
pub struct IdentityPage {
    /// Ordered by id.
    pub identities: Vec<Identity>,
    /// Where the next page starts.
    pub cursor: Option<String>,
}

/// Keeps the id of a limit whose name stays, so answers that name it stay stable.
fn keep_ids(old: &[Ratelimit], specs: Vec<RatelimitSpec>) -> Result<Vec<Ratelimit>, ServiceError> {
    let mut new = with_ids(specs)?;
    for limit in &mut new {
        if let Some(before) = old.iter().find(|o| o.name == limit.name) {
            limit.id.clone_from(&before.id);
        }
    }
    Ok(new)
}

impl Service {
    /// `identities.createIdentity`: 409 `CONFLICT` when the external id is taken.
    pub async fn create_identity(
        &self,
        caller: &Principal,
        external_id: String,
        meta: Option<Value>,
        ratelimits: Vec<RatelimitSpec>,
    ) -> Result<String, ServiceError> {
        caller.require(Perm::identity(IdentityAction::Create))?;
        check_external_id(&external_id)?;
        if let Some(meta) = &meta {
            check_meta(meta)?;
        }
        check_ratelimits(&ratelimits)?;
        let identity =
            Identity { id: new_id("id")?, external_id, meta, ratelimits: with_ids(ratelimits)? };
        if !store::identities::insert(&self.db().await?, caller.workspace_id(), &identity).await? {
            return Err(ServiceError::Conflict(
                "an identity with this externalId already exists in the workspace".to_owned(),
            ));
        }
        Ok(identity.id)
    }

    /// `identities.getIdentity`, by id or external id.
    pub async fn get_identity(
        &self,
        caller: &Principal,
        identity: &str,
    ) -> Result<Identity, ServiceError> {
        caller.require(Perm::identity(IdentityAction::Read))?;
        check_ref(identity)?;
        store::identities::get(&self.db().await?, caller.workspace_id(), identity, false)
            .await?
            .ok_or_else(|| not_found(identity))
    }

    /// `identities.listIdentities`: a page ordered by id; `search` matches the start of the
    /// external id.
    pub async fn list_identities(
        &self,
        caller: &Principal,
        limit: Option<i64>,
        cursor: Option<String>,
        search: Option<String>,
    ) -> Result<IdentityPage, ServiceError> {
        caller.require(Perm::identity(IdentityAction::Read))?;
        let limit = page_limit(limit)?;
        if search
            .as_ref()
            .is_some_and(|s| s.chars().count() > crate::domain::keys::MAX_EXTERNAL_ID_LEN)
        {
            return Err(crate::domain::Invalid::new(
                "INVALID_SEARCH",
                "search",
                "search must be at most 255 characters",
            )
            .into());
        }
        let mut identities = store::identities::list(
            &self.db().await?,
            caller.workspace_id(),
            cursor.as_deref().unwrap_or(""),
            search.as_deref(),
            limit + 1,
        )
        .await?;
        let cursor = cut_page(&mut identities, limit, |i| &i.id);
        Ok(IdentityPage { identities, cursor })
    }

    /// `identities.updateIdentity`: writes `meta` and replaces the rate limits where given,
    /// under the identity's row lock; its keys see the change on every replica at once.
    pub async fn update_identity(
        &self,
        caller: &Principal,
        identity: &str,
        meta: Option<Value>,
        ratelimits: Option<Vec<RatelimitSpec>>,
    ) -> Result<Identity, ServiceError> {
        caller.require(Perm::identity(IdentityAction::Update))?;
        check_ref(identity)?;
        if let Some(meta) = &meta {
            check_meta(meta)?;
        }
        if let Some(specs) = &ratelimits {
            check_ratelimits(specs)?;
        }
        let mut db = self.db().await?;
        let tx = db.transaction().await.context("starting a transaction")?;
        let mut current = store::identities::get(&tx, caller.workspace_id(), identity, true)
            .await?
            .ok_or_else(|| not_found(identity))?;
        let ratelimits = ratelimits.map(|s| keep_ids(&current.ratelimits, s)).transpose()?;
        store::identities::update(&tx, &current.id, meta.as_ref(), ratelimits.as_deref()).await?;
        self.commit(tx, Changed::identity(&current.id)).await?;
        if let Some(meta) = meta {
            current.meta = Some(meta);
        }
        if let Some(ratelimits) = ratelimits {
            current.ratelimits = ratelimits;
        }
        Ok(current)
    }

    /// `identities.deleteIdentity`: its keys keep working, without the identity.
    pub async fn delete_identity(
        &self,
        caller: &Principal,
        identity: &str,
    ) -> Result<(), ServiceError> {
        caller.require(Perm::identity(IdentityAction::Delete))?;
        check_ref(identity)?;
        let mut db = self.db().await?;
        let tx = db.transaction().await.context("starting a transaction")?;
        let current = store::identities::get(&tx, caller.workspace_id(), identity, true)
            .await?
            .ok_or_else(|| not_found(identity))?;
        store::identities::delete(&tx, &current.id).await?;
        self.commit(tx, Changed::identity(&current.id)).await
    }
}

/// An `identity` field names an id or an external id: 1-255 characters.
fn check_ref(identity: &str) -> Result<(), ServiceError> {
    let len = identity.chars().count();
    if len == 0 || len > crate::domain::keys::MAX_EXTERNAL_ID_LEN {
        return Err(crate::domain::Invalid::new(
            "INVALID_IDENTITY",
            "identity",
            "identity must be an identity id or externalId of 1-255 characters",
        )
        .into());
    }
    Ok(())
}

fn not_found(identity: &str) -> ServiceError {
    ServiceError::NotFound(format!("identity {identity} does not exist"))
}
