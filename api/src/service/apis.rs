//! `apis.*`: create, read, update (the recovery opt-in), delete, and the key listing.

use std::collections::HashMap;
use std::sync::Arc;

use strongbox_shared::permissions::{Action, Perm};
use zeroize::Zeroizing;

use super::recovery::Mode;
use super::{Changed, Principal, Service, ServiceError, new_id};
use crate::domain::apis::{Api, ApiPatch, check_name};
use crate::domain::keys::Key;
use crate::domain::{cut_page, page_limit};
use crate::store::{self, Context as _};

/// What `apis.listKeys` (v2) and `GET /v1/apis.listKeys` ask for.
#[derive(Debug, Clone, Default)]
pub struct ListKeys {
    /// The API.
    pub api_id: String,
    /// Only the keys of this identity.
    pub external_id: Option<String>,
    /// After this key id.
    pub cursor: Option<String>,
    /// Page size (1-100, default 100).
    pub limit: Option<i64>,
    /// With the plaintexts of recoverable keys (needs `decrypt_key`).
    pub decrypt: bool,
    /// Also count the API's keys (v1's `total`).
    pub total: bool,
}

/// A page of keys.
pub struct KeyPage {
    /// The keys, ordered by id.
    pub keys: Vec<Key>,
    /// Plaintexts of the recoverable ones, by key id, when asked to decrypt.
    pub plaintexts: HashMap<String, Zeroizing<String>>,
    /// Where the next page starts.
    pub cursor: Option<String>,
    /// How many keys the API has, when asked.
    pub total: Option<i64>,
}

impl Service {
    /// An API of the caller's workspace: 404 for missing or foreign ones.
    pub(crate) async fn api(&self, caller: &Principal, api_id: &str) -> Result<Api, ServiceError> {
        let epoch = self.cache.epoch();
        if let Some(api) = self.cache.api(api_id)
            && api.workspace_id == caller.workspace_id()
        {
            return Ok(Api::clone(&api));
        }
        let api = self.api_fresh(caller, api_id).await?;
        self.cache.put_api_if_current(Arc::new(api.clone()), epoch);
        Ok(api)
    }

    /// An API as Postgres has it now, bypassing the cache: for the recovery opt-in, which
    /// must not be read stale from a replica that has not yet heard of an opt-out.
    pub(crate) async fn api_fresh(
        &self,
        caller: &Principal,
        api_id: &str,
    ) -> Result<Api, ServiceError> {
        store::apis::get(&self.db().await?, caller.workspace_id(), api_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("API {api_id} does not exist")))
    }

    /// `apis.createApi`. Returns the new API's id.
    pub async fn create_api(
        &self,
        caller: &Principal,
        name: String,
    ) -> Result<String, ServiceError> {
        caller.require(Perm::create_api())?;
        check_name(&name)?;
        let api = Api {
            id: new_id("api")?,
            workspace_id: caller.workspace_id().to_owned(),
            name,
            store_encrypted_keys: false,
        };
        store::apis::insert(&self.db().await?, &api).await?;
        Ok(api.id)
    }

    /// `apis.getApi`.
    pub async fn get_api(&self, caller: &Principal, api_id: &str) -> Result<Api, ServiceError> {
        let api = self.api(caller, api_id).await?;
        caller.require(Perm::api(&api.id, Action::ReadApi))?;
        Ok(api)
    }

    /// `apis.updateApi`: rename, or opt in to (or out of) recoverable keys. The opt-in is not
    /// retroactive: keys created before it were never stored.
    pub async fn update_api(
        &self,
        caller: &Principal,
        api_id: &str,
        patch: ApiPatch,
    ) -> Result<(), ServiceError> {
        let api = self.api(caller, api_id).await?;
        caller.require(Perm::api(&api.id, Action::UpdateApi))?;
        if let Some(name) = &patch.name {
            check_name(name)?;
        }
        let mut db = self.db().await?;
        let tx = db.transaction().await.context("starting a transaction")?;
        if !store::apis::update(&tx, caller.workspace_id(), &api.id, &patch).await? {
            return Err(ServiceError::NotFound(format!("API {api_id} does not exist")));
        }
        self.commit(tx, Changed::default().and_api(&api.id)).await?;
        if let Some(on) = patch.store_encrypted_keys {
            tracing::info!(api_id = %api.id, store_encrypted_keys = on, "changed the recovery opt-in");
        }
        Ok(())
    }

    /// `apis.deleteApi`: its keys stop verifying at once, on every replica.
    pub async fn delete_api(&self, caller: &Principal, api_id: &str) -> Result<(), ServiceError> {
        let api = self.api(caller, api_id).await?;
        caller.require(Perm::api(&api.id, Action::DeleteApi))?;
        let mut db = self.db().await?;
        let tx = db.transaction().await.context("starting a transaction")?;
        let deleted = store::apis::delete(&tx, caller.workspace_id(), &api.id).await?;
        self.commit(tx, Changed::keys(deleted).and_api(&api.id)).await
    }

    /// `apis.listKeys`: a page of keys ordered by id, with plaintexts when asked to decrypt.
    pub async fn list_keys(
        &self,
        caller: &Principal,
        ask: ListKeys,
    ) -> Result<KeyPage, ServiceError> {
        let api = self.api(caller, &ask.api_id).await?;
        caller.require(Perm::api(&api.id, Action::ReadKey))?;
        if ask.decrypt {
            caller.require(Perm::api(&api.id, Action::DecryptKey))?;
        }
        let limit = page_limit(ask.limit)?;
        let (mut keys, total) = {
            let db = self.db().await?;
            let keys = store::keys::list(
                &db,
                &api.id,
                ask.external_id.as_deref(),
                ask.cursor.as_deref(),
                limit + 1,
            )
            .await?;
            let total =
                if ask.total { Some(store::keys::count(&db, &api.id).await?) } else { None };
            (keys, total)
        };
        let cursor = cut_page(&mut keys, limit, |k| &k.id);
        let plaintexts = if ask.decrypt {
            let ids: Vec<String> = keys.iter().map(|k| k.id.clone()).collect();
            self.open(caller, &ids, Mode::Page).await?
        } else {
            HashMap::new()
        };
        Ok(KeyPage { keys, plaintexts, cursor, total })
    }
}
