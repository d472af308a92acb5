//! Key verification: hash → in-process cache → Postgres, then Unkey's checks in Unkey's order.
//! It never calls the vault, so a locked or unreachable vault cannot stop it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strongbox_shared::permissions::{Action, Perm};
use time::OffsetDateTime;

use super::{Principal, Service, ServiceError};
use crate::domain::Invalid;
use crate::domain::keys::Key;
use crate::domain::verify::{Code, LimitResult, Verdict, VerifyRequest, period_start, precheck};
use crate::ratelimit::Check;
use crate::store;

impl Service {
    /// Finds a key by its plaintext: cache first, then Postgres.
    pub async fn find_key(&self, plaintext: &str) -> Result<Option<Arc<Key>>, ServiceError> {
        let hash = strongbox_shared::keys::hash(plaintext);
        if let Some(key) = self.cache.key(&hash) {
            return Ok(Some(key));
        }
        let epoch = self.cache.epoch();
        let Some(key) = store::keys::by_hash(&self.db().await?, &hash).await? else {
            return Ok(None);
        };
        let key = Arc::new(key);
        self.cache.put_key_if_current(hash, key.clone(), epoch);
        Ok(Some(key))
    }

    /// v2 `keys.verifyKey`: finds only keys of the caller's workspace, and needs
    /// `api.<apiId>.verify_key` for the key's API.
    pub async fn verify_key(
        &self,
        caller: &Principal,
        request: VerifyRequest,
    ) -> Result<Verdict, ServiceError> {
        self.verify(Some(caller.workspace_id()), request, |key| {
            caller.require(Perm::api(&key.api_id, Action::VerifyKey)).map(|()| true)
        })
        .await
    }

    /// v1 `keys.verifyKey`, open as v1 was: a key of another API than `api_id` is `FORBIDDEN`.
    pub async fn verify_key_open(
        &self,
        api_id: Option<&str>,
        request: VerifyRequest,
    ) -> Result<Verdict, ServiceError> {
        self.verify(None, request, |key| Ok(api_id.is_none_or(|a| a == key.api_id))).await
    }

    /// Verifies. `workspace` limits the search; `authorize` checks the caller may verify keys
    /// of the key's API, answering `false` for the FORBIDDEN outcome.
    async fn verify(
        &self,
        workspace: Option<&str>,
        request: VerifyRequest,
        authorize: impl FnOnce(&Key) -> Result<bool, ServiceError>,
    ) -> Result<Verdict, ServiceError> {
        let verdict = self.decide(workspace, request, authorize).await?;
        metrics::counter!("strongbox_verify_outcomes_total", "code" => verdict.code.as_str())
            .increment(1);
        Ok(verdict)
    }

    async fn decide(
        &self,
        workspace: Option<&str>,
        request: VerifyRequest,
        authorize: impl FnOnce(&Key) -> Result<bool, ServiceError>,
    ) -> Result<Verdict, ServiceError> {
        let found = self
            .find_key(&request.key)
            .await?
            .filter(|k| workspace.is_none_or(|w| k.workspace_id == w));
        let Some(key) = found else {
            return Ok(Verdict {
                code: Code::NotFound,
                key: None,
                credits: None,
                ratelimits: Vec::new(),
            });
        };
        if !authorize(&key)? {
            return Ok(Verdict {
                code: Code::Forbidden,
                key: None,
                credits: None,
                ratelimits: Vec::new(),
            });
        }
        let verdict = |code, credits, ratelimits| {
            Ok(Verdict { code, key: Some(key.clone()), credits, ratelimits })
        };
        let now = OffsetDateTime::now_utc();
        let checked = precheck(&key, now, request.permissions.as_ref()).map_err(|_| {
            Invalid::new(
                "PERMISSION_TOO_COMPLEX",
                "permissions",
                "this permission query is too complex to check against the key's permissions",
            )
        })?;
        if let Some(code) = checked {
            return verdict(code, key.credits_remaining, Vec::new());
        }
        // Which limits apply is decided before anything is spent: a name the key and its
        // identity lack, without a limit and window of its own, is the caller's mistake.
        let plan = plan_limits(&key, &request.ratelimits)?;
        let mut credits = None;
        if key.credits_remaining.is_some() {
            let start = key.refill.as_ref().map(|r| period_start(r, now));
            match self.spends.spend(&self.pool, &key.id, request.cost, start).await? {
                Some(spent) if spent.applied => credits = Some(spent.left),
                spent => {
                    self.touches.record(&key.id);
                    return verdict(Code::UsageExceeded, spent.map(|s| s.left), Vec::new());
                }
            }
        }
        let mut applied = Vec::new();
        for planned in plan {
            let check = Check {
                bucket: &planned.bucket,
                limit: planned.limit,
                duration: planned.duration,
                cost: planned.cost,
            };
            let outcome = self.limiter.hit(&self.pool, check).await;
            applied.push(LimitResult {
                id: planned.id,
                name: planned.name,
                limit: planned.limit,
                duration: planned.duration,
                reset: outcome.reset,
                remaining: outcome.remaining,
                exceeded: outcome.exceeded,
                auto_apply: planned.auto_apply,
            });
        }
        self.touches.record(&key.id);
        let code = if applied.iter().any(|l| l.exceeded) { Code::RateLimited } else { Code::Valid };
        verdict(code, credits.or(key.credits_remaining), applied)
    }
}

/// Most limits one verification may apply that the key and its identity do not have: each is a
/// bucket of its own, counted in the database.
const MAX_INLINE_LIMITS: usize = 10;

/// A rate limit one verification applies.
struct Planned {
    id: String,
    name: String,
    limit: i64,
    duration: i64,
    bucket: String,
    cost: i64,
    auto_apply: bool,
}

/// The limits a verification applies, as Unkey does: the key's, then its identity's (shared by
/// all its keys) unless the key has one of the same name; each auto-applied or named in the
/// request, whose limit and duration override the stored ones. A name neither has is applied
/// just for this call when the request gives its limit and duration (counted per key), and is
/// refused otherwise.
fn plan_limits(
    key: &Key,
    asked: &[crate::domain::verify::RequestedLimit],
) -> Result<Vec<Planned>, ServiceError> {
    let own = key.ratelimits.iter().map(|l| (l, "k", key.id.as_str()));
    let identity_limits = key.identity.as_ref().map_or(&[][..], |_| &key.identity_ratelimits[..]);
    let identity_id = key.identity.as_ref().map_or("", |(id, _)| id.as_str());
    let shared = identity_limits
        .iter()
        .filter(|l| !key.ratelimits.iter().any(|k| k.name == l.name))
        .map(|l| (l, "i", identity_id));
    let mut plan = Vec::new();
    let mut inline = 0;
    for (limit, scope, owner) in own.chain(shared) {
        let named = asked.iter().find(|r| r.name == limit.name);
        if !limit.auto_apply && named.is_none() {
            continue;
        }
        let max = named.and_then(|a| a.limit).unwrap_or(limit.limit);
        let duration = named.and_then(|a| a.duration).unwrap_or(limit.duration);
        plan.push(Planned {
            id: limit.id.clone(),
            name: limit.name.clone(),
            limit: max,
            duration,
            bucket: format!("{scope}:{owner}:{}:{duration}", limit.name),
            cost: named.map_or(1, |a| a.cost),
            auto_apply: limit.auto_apply,
        });
    }
    for (i, extra) in asked.iter().enumerate() {
        let known =
            |limits: &[crate::domain::keys::Ratelimit]| limits.iter().any(|l| l.name == extra.name);
        if known(&key.ratelimits)
            || known(identity_limits)
            || asked[..i].iter().any(|a| a.name == extra.name)
        {
            continue;
        }
        let (Some(max), Some(duration)) = (extra.limit, extra.duration) else {
            return Err(Invalid::new(
                "INVALID_RATELIMIT",
                format!("ratelimits[{i}].name"),
                format!(
                    "neither the key nor its identity has a rate limit named {:?}; give its \
                     limit and duration to apply it to this key just for this call",
                    extra.name
                ),
            )
            .into());
        };
        inline += 1;
        if inline > MAX_INLINE_LIMITS {
            return Err(Invalid::new(
                "INVALID_RATELIMIT",
                "ratelimits",
                format!(
                    "at most {MAX_INLINE_LIMITS} rate limits per verification that the key and \
                     its identity do not have"
                ),
            )
            .into());
        }
        plan.push(Planned {
            id: extra.name.clone(),
            name: extra.name.clone(),
            limit: max,
            duration,
            bucket: format!("k:{}:{}:{duration}", key.id, extra.name),
            cost: extra.cost,
            auto_apply: false,
        });
    }
    Ok(plan)
}

/// `last_used_at` writes, batched off the request path.
#[derive(Default)]
pub struct Touches {
    pending: Mutex<HashSet<String>>,
}

impl Touches {
    /// Notes that a key was used.
    pub fn record(&self, key_id: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !pending.contains(key_id) {
            pending.insert(key_id.to_owned());
        }
    }

    /// Writes what is pending in one statement.
    pub async fn flush(&self, pool: &deadpool_postgres::Pool) -> Result<(), ServiceError> {
        let ids: Vec<String> =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
                .into_iter()
                .collect();
        if ids.is_empty() {
            return Ok(());
        }
        store::keys::touch(&pool.get().await?, &ids).await?;
        Ok(())
    }

    /// Flushes every `every` until `stop`; the caller flushes once more after it.
    pub fn spawn_flusher(
        self: Arc<Self>,
        pool: deadpool_postgres::Pool,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(error) = self.flush(&pool).await {
                    tracing::warn!(
                        error = format!("{:#}", anyhow::Error::new(error)),
                        "could not record key usage; will retry"
                    );
                }
            }
        })
    }
}
