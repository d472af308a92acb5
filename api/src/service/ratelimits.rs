//! `ratelimit.*`: standalone limits on any identifier, in namespaces of the workspace created on
//! first use, with per-identifier overrides (exact, or `*` patterns). Counted by the same
//! shared limiter as keys' limits, so they hold across replicas.
//!
//! Permissions are Unkey's: `ratelimit.<namespaceId>.limit|set_override|read_override|
//! delete_override`. Creating a namespace on first use needs the action on every namespace
//! (`ratelimit.*.<action>`), since the new one has no id yet.

use std::sync::Arc;

use strongbox_shared::permissions::{Perm, RatelimitAction};

use super::{Changed, Principal, Service, ServiceError, new_id};
use crate::domain::ratelimit::{
    LimitAnswer, LimitRequest, MAX_MULTI, MAX_OVERRIDES, MAX_PAGE, MAX_PATTERN_OVERRIDES,
    Namespace, Override, check_name, check_pattern, check_request, check_window,
};
use crate::domain::{Invalid, cut_page};
use crate::ratelimit::Check;
use crate::store::{self, Context as _};

/// A page of overrides.
pub struct OverridePage {
    /// Ordered by id.
    pub overrides: Vec<Override>,
    /// Where the next page starts.
    pub cursor: Option<String>,
}

impl Service {
    /// The caller's namespace `id_or_name`, cached. When it does not exist, `create` names the
    /// action that may create it (by name); otherwise it is a 404.
    async fn namespace(
        &self,
        caller: &Principal,
        id_or_name: &str,
        create: Option<RatelimitAction>,
    ) -> Result<Arc<Namespace>, ServiceError> {
        check_name("", "namespace", id_or_name)?;
        let workspace = caller.workspace_id();
        if let Some(ns) = self.cache.namespace(workspace, id_or_name) {
            return Ok(ns);
        }
        let epoch = self.cache.epoch();
        let db = self.db().await?;
        let ns = match store::ratelimit::namespace(&db, workspace, id_or_name).await? {
            Some(ns) => ns,
            None => {
                let missing =
                    || ServiceError::NotFound(format!("namespace {id_or_name} does not exist"));
                let action = create.ok_or_else(missing)?;
                caller.require(Perm::ratelimit_any_namespace(action))?;
                let id = store::ratelimit::create_namespace(
                    &db,
                    workspace,
                    id_or_name,
                    &new_id("rlns")?,
                )
                .await?;
                store::ratelimit::namespace(&db, workspace, &id).await?.ok_or_else(missing)?
            }
        };
        let ns = Arc::new(ns);
        self.cache.put_namespace_if_current(id_or_name, ns.clone(), epoch);
        Ok(ns)
    }

    /// `ratelimit.limit`: counts `cost` against the identifier's limit (its override's, if any).
    pub async fn ratelimit(
        &self,
        caller: &Principal,
        request: LimitRequest,
    ) -> Result<LimitAnswer, ServiceError> {
        check_request("", &request)?;
        let ns = self.limit_namespace(caller, &request.namespace).await?;
        Ok(self.count(&ns, request).await)
    }

    /// `ratelimit.multiLimit`: every check counts; it passes when all do. Every element is
    /// checked and authorized before any is counted, so a refused call counts nothing.
    pub async fn multi_limit(
        &self,
        caller: &Principal,
        requests: Vec<LimitRequest>,
    ) -> Result<Vec<LimitAnswer>, ServiceError> {
        if requests.is_empty() || requests.len() > MAX_MULTI {
            return Err(Invalid::new(
                "INVALID_RATELIMIT",
                "",
                format!("multiLimit takes 1-{MAX_MULTI} limits"),
            )
            .into());
        }
        for (i, request) in requests.iter().enumerate() {
            check_request(&format!("[{i}]."), request)?;
        }
        let mut namespaces = Vec::with_capacity(requests.len());
        for request in &requests {
            namespaces.push(self.limit_namespace(caller, &request.namespace).await?);
        }
        let mut answers = Vec::with_capacity(requests.len());
        for (ns, request) in namespaces.iter().zip(requests) {
            answers.push(self.count(ns, request).await);
        }
        Ok(answers)
    }

    /// The namespace a limit counts in, made on first use, once the caller may limit in it.
    async fn limit_namespace(
        &self,
        caller: &Principal,
        namespace: &str,
    ) -> Result<Arc<Namespace>, ServiceError> {
        let ns = self.namespace(caller, namespace, Some(RatelimitAction::Limit)).await?;
        caller.require(Perm::ratelimit(&ns.id, RatelimitAction::Limit))?;
        Ok(ns)
    }

    /// Counts one checked and authorized request.
    async fn count(&self, ns: &Namespace, request: LimitRequest) -> LimitAnswer {
        let applied = ns.override_for(&request.identifier);
        let (limit, duration) =
            applied.map_or((request.limit, request.duration), |o| (o.limit, o.duration));
        let bucket = format!("n:{}:{duration}:{}", ns.id, request.identifier);
        let check = Check { bucket: &bucket, limit, duration, cost: request.cost };
        let outcome = self.limiter.hit(&self.pool, check).await;
        metrics::counter!(
            "strongbox_ratelimit_outcomes_total",
            "passed" => if outcome.exceeded { "false" } else { "true" }
        )
        .increment(1);
        LimitAnswer {
            namespace: request.namespace,
            identifier: request.identifier,
            limit,
            remaining: outcome.remaining,
            reset: outcome.reset,
            success: !outcome.exceeded,
            override_id: applied.map(|o| o.id.clone()),
        }
    }

    /// `ratelimit.setOverride`: creates or replaces the override of an identifier or pattern.
    pub async fn set_override(
        &self,
        caller: &Principal,
        namespace: &str,
        identifier: &str,
        limit: i64,
        duration: i64,
    ) -> Result<String, ServiceError> {
        check_name("", "namespace", namespace)?;
        check_pattern(identifier)?;
        check_window("", limit, duration)?;
        let ns = self.namespace(caller, namespace, Some(RatelimitAction::SetOverride)).await?;
        caller.require(Perm::ratelimit(&ns.id, RatelimitAction::SetOverride))?;
        let mut db = self.db().await?;
        let tx = db.transaction().await.context("starting a transaction")?;
        let (all, patterns) =
            store::ratelimit::lock_and_count_overrides(&tx, &ns.id, identifier).await?;
        let pattern = i64::from(identifier.contains('*'));
        if all + 1 > MAX_OVERRIDES as i64 || patterns + pattern > MAX_PATTERN_OVERRIDES as i64 {
            return Err(Invalid::new(
                "TOO_MANY_OVERRIDES",
                "identifier",
                format!(
                    "a namespace holds at most {MAX_OVERRIDES} overrides, {MAX_PATTERN_OVERRIDES} of them patterns"
                ),
            )
            .into());
        }
        let id = store::ratelimit::set_override(
            &tx,
            &ns.id,
            &new_id("rlor")?,
            identifier,
            limit,
            duration,
        )
        .await?;
        self.commit(tx, Changed::namespace(&ns.id)).await?;
        Ok(id)
    }

    /// `ratelimit.getOverride`: the override set for exactly this identifier or pattern.
    pub async fn get_override(
        &self,
        caller: &Principal,
        namespace: &str,
        identifier: &str,
    ) -> Result<Override, ServiceError> {
        let ns = self.namespace(caller, namespace, None).await?;
        caller.require(Perm::ratelimit(&ns.id, RatelimitAction::ReadOverride))?;
        check_name("", "identifier", identifier)?;
        ns.override_named(identifier)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound("no override for this identifier".to_owned()))
    }

    /// `ratelimit.deleteOverride`.
    pub async fn delete_override(
        &self,
        caller: &Principal,
        namespace: &str,
        identifier: &str,
    ) -> Result<(), ServiceError> {
        let ns = self.namespace(caller, namespace, None).await?;
        caller.require(Perm::ratelimit(&ns.id, RatelimitAction::DeleteOverride))?;
        check_name("", "identifier", identifier)?;
        let mut db = self.db().await?;
        let tx = db.transaction().await.context("starting a transaction")?;
        if !store::ratelimit::delete_override(&tx, &ns.id, identifier).await? {
            return Err(ServiceError::NotFound("no override for this identifier".to_owned()));
        }
        self.commit(tx, Changed::namespace(&ns.id)).await
    }

    /// `ratelimit.listOverrides`: a page ordered by id (default 10, at most 100).
    pub async fn list_overrides(
        &self,
        caller: &Principal,
        namespace: &str,
        cursor: Option<String>,
        limit: Option<i64>,
    ) -> Result<OverridePage, ServiceError> {
        let ns = self.namespace(caller, namespace, None).await?;
        caller.require(Perm::ratelimit(&ns.id, RatelimitAction::ReadOverride))?;
        let limit = limit.unwrap_or(10);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Invalid::new("INVALID_LIMIT", "limit", "limit must be 1-100").into());
        }
        let after = cursor.unwrap_or_default();
        let mut overrides =
            store::ratelimit::overrides(&self.db().await?, &ns.id, &after, limit + 1).await?;
        let cursor = cut_page(&mut overrides, limit, |o| &o.id);
        Ok(OverridePage { overrides, cursor })
    }
}
