//! Key verification: hash → in-process cache → Postgres, then Unkey's checks in Unkey's order.
//! It never calls the vault, so a locked or unreachable vault cannot stop it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use strongbox_shared::permissions::{Permission, Query};
use time::OffsetDateTime;

use crate::http::error::ApiError;
use crate::startup::AppState;
use crate::store::keys::{self, Key, Refill};
use crate::store::unix_ms;

/// A verification outcome code, as Unkey names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// All checks passed.
    Valid,
    /// No such key (in this workspace).
    NotFound,
    /// The key is disabled.
    Disabled,
    /// The key has expired.
    Expired,
    /// The permission query does not hold.
    InsufficientPermissions,
    /// Not enough credits.
    UsageExceeded,
    /// Over a rate limit.
    RateLimited,
    /// The key belongs to another API than the one named (v1 `apiId`).
    Forbidden,
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl Code {
    /// The code as it appears on the wire and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "VALID",
            Self::NotFound => "NOT_FOUND",
            Self::Disabled => "DISABLED",
            Self::Expired => "EXPIRED",
            Self::InsufficientPermissions => "INSUFFICIENT_PERMISSIONS",
            Self::UsageExceeded => "USAGE_EXCEEDED",
            Self::RateLimited => "RATE_LIMITED",
            Self::Forbidden => "FORBIDDEN",
        }
    }
}

/// A rate limit asked for by name in the request.
#[derive(Debug, Clone)]
pub struct RequestedLimit {
    /// The key's limit of this name (or an ad-hoc one when limit and duration are given).
    pub name: String,
    /// Units to count.
    pub cost: i64,
    /// Override of the limit.
    pub limit: Option<i64>,
    /// Override of the window, ms.
    pub duration: Option<i64>,
}

/// What to verify.
pub struct Request {
    /// The key.
    pub key: String,
    /// The permission query, parsed.
    pub permissions: Option<Query>,
    /// Credits to spend (default 1).
    pub cost: i64,
    /// Rate limits named in the request.
    pub ratelimits: Vec<RequestedLimit>,
}

/// One applied rate limit, as answered.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitResult {
    /// `rl_…`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Limit.
    pub limit: i64,
    /// Window, ms.
    pub duration: i64,
    /// End of the window, Unix ms.
    pub reset: i64,
    /// Left in the window.
    pub remaining: i64,
    /// Over the limit.
    pub exceeded: bool,
    /// Applied automatically.
    pub auto_apply: bool,
}

/// The outcome.
pub struct Verdict {
    /// The code.
    pub code: Code,
    /// The key, when it exists.
    pub key: Option<Arc<Key>>,
    /// Credits left after this verification.
    pub credits: Option<i64>,
    /// Rate limits applied.
    pub ratelimits: Vec<LimitResult>,
}

/// Finds a key by its plaintext: cache first, then Postgres.
pub async fn lookup(state: &AppState, plaintext: &str) -> Result<Option<Arc<Key>>, ApiError> {
    let hash = strongbox_shared::keys::hash(plaintext);
    if let Some(key) = state.cache.key(&hash) {
        return Ok(Some(key));
    }
    let epoch = state.cache.epoch();
    let client = state.pool.get().await?;
    let Some(key) = keys::by_hash(&client, &hash).await? else {
        return Ok(None);
    };
    let key = Arc::new(key);
    state.cache.put_key_if_current(hash, key.clone(), epoch);
    Ok(Some(key))
}

/// Start of the credit period that contains `now`: today, or this month's refill day (the last
/// day for short months).
pub fn period_start(refill: &Refill, now: OffsetDateTime) -> OffsetDateTime {
    let today = now.date().midnight().assume_utc();
    if refill.interval != "monthly" {
        return today;
    }
    let day = u8::try_from(refill.day.unwrap_or(1)).unwrap_or(1);
    let on = |year: i32, month: time::Month| {
        let last = time::util::days_in_month(month, year);
        time::Date::from_calendar_date(year, month, day.min(last))
            .map(|d| d.midnight().assume_utc())
            .unwrap_or(today)
    };
    let this = on(now.year(), now.month());
    if now >= this {
        return this;
    }
    let (year, month) = match now.month() {
        time::Month::January => (now.year() - 1, time::Month::December),
        m => (now.year(), m.previous()),
    };
    on(year, month)
}

/// Verifies. `workspace` limits the search (v2); `authorize` checks the caller may verify keys
/// of the key's API, answering `false` for the FORBIDDEN outcome (v1's `apiId` mismatch).
pub async fn verify(
    state: &AppState,
    workspace: Option<&str>,
    request: Request,
    authorize: impl FnOnce(&Key) -> Result<bool, ApiError>,
) -> Result<Verdict, ApiError> {
    let verdict = decide(state, workspace, request, authorize).await?;
    metrics::counter!("strongbox_verify_outcomes_total", "code" => verdict.code.as_str())
        .increment(1);
    Ok(verdict)
}

async fn decide(
    state: &AppState,
    workspace: Option<&str>,
    request: Request,
    authorize: impl FnOnce(&Key) -> Result<bool, ApiError>,
) -> Result<Verdict, ApiError> {
    let found = lookup(state, &request.key)
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
    if !key.enabled {
        return verdict(Code::Disabled, key.credits_remaining, Vec::new());
    }
    let now = OffsetDateTime::now_utc();
    if key.expires_at.is_some_and(|t| t <= now) {
        return verdict(Code::Expired, key.credits_remaining, Vec::new());
    }
    if let Some(query) = &request.permissions {
        let held: Vec<Permission> =
            key.permissions.iter().filter_map(|p| Permission::parse(p).ok()).collect();
        if !query.holds(&held) {
            return verdict(Code::InsufficientPermissions, key.credits_remaining, Vec::new());
        }
    }
    let mut credits = None;
    if key.credits_remaining.is_some() {
        let start = key.refill.as_ref().map(|r| period_start(r, now));
        let client = state.pool.get().await?;
        match keys::spend_credits(&client, &key.id, request.cost, start).await? {
            Some(left) => credits = Some(left),
            None => {
                let left = keys::credits(&client, &key.id).await?;
                state.touches.record(&key.id);
                return verdict(Code::UsageExceeded, left, Vec::new());
            }
        }
    }
    let mut applied = Vec::new();
    for limit in &key.ratelimits {
        let asked = request.ratelimits.iter().find(|r| r.name == limit.name);
        if !limit.auto_apply && asked.is_none() {
            continue;
        }
        let (max, duration) = (
            asked.and_then(|a| a.limit).unwrap_or(limit.limit),
            asked.and_then(|a| a.duration).unwrap_or(limit.duration),
        );
        let outcome =
            state.limiter.hit(&key.id, &limit.name, max, duration, asked.map_or(1, |a| a.cost));
        applied.push(LimitResult {
            id: limit.id.clone(),
            name: limit.name.clone(),
            limit: max,
            duration,
            reset: outcome.reset,
            remaining: outcome.remaining,
            exceeded: outcome.exceeded,
            auto_apply: limit.auto_apply,
        });
    }
    state.touches.record(&key.id);
    let code = if applied.iter().any(|l| l.exceeded) { Code::RateLimited } else { Code::Valid };
    verdict(code, credits.or(key.credits_remaining), applied)
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
    pub async fn flush(&self, pool: &deadpool_postgres::Pool) -> anyhow::Result<()> {
        let ids: Vec<String> =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
                .into_iter()
                .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let client = pool.get().await?;
        keys::touch(&client, &ids).await?;
        Ok(())
    }

    /// Flushes every `every` until `stop`, then once more.
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
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if let Err(error) = self.flush(&pool).await {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "could not record key usage; will retry"
                    );
                }
            }
            if let Err(error) = self.flush(&pool).await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "could not record key usage at shutdown"
                );
            }
        })
    }
}

/// The `data` of a verification answer.
pub fn data(verdict: &Verdict) -> serde_json::Value {
    let mut v = serde_json::json!({"valid": verdict.code == Code::Valid, "code": verdict.code});
    if let Some(key) = &verdict.key {
        v["keyId"] = serde_json::json!(key.id);
        v["enabled"] = serde_json::json!(key.enabled);
        v["permissions"] = serde_json::json!(key.permissions);
        v["roles"] = serde_json::json!([]);
        if let Some(name) = &key.name {
            v["name"] = serde_json::json!(name);
        }
        if let Some(meta) = &key.meta {
            v["meta"] = meta.clone();
        }
        if let Some(expires) = key.expires_at {
            v["expires"] = serde_json::json!(unix_ms(expires));
        }
        if let Some(credits) = verdict.credits {
            v["credits"] = serde_json::json!(credits);
        }
        if let Some((id, external_id)) = &key.identity {
            v["identity"] = serde_json::json!({"id": id, "externalId": external_id});
        }
        if !verdict.ratelimits.is_empty() {
            v["ratelimits"] = serde_json::json!(verdict.ratelimits);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn refill(interval: &str, day: Option<i16>) -> Refill {
        Refill { interval: interval.into(), amount: 10, day }
    }

    #[test]
    fn daily_periods_start_at_midnight_utc() {
        assert_eq!(
            period_start(&refill("daily", None), datetime!(2026-03-15 13:45 UTC)),
            datetime!(2026-03-15 0:00 UTC)
        );
    }

    #[test]
    fn monthly_periods_start_on_the_refill_day_or_the_last_day_of_short_months() {
        let on_31 = refill("monthly", Some(31));
        assert_eq!(
            period_start(&on_31, datetime!(2026-03-31 10:00 UTC)),
            datetime!(2026-03-31 0:00 UTC)
        );
        assert_eq!(
            period_start(&on_31, datetime!(2026-03-30 10:00 UTC)),
            datetime!(2026-02-28 0:00 UTC)
        );
        assert_eq!(
            period_start(&on_31, datetime!(2026-02-28 10:00 UTC)),
            datetime!(2026-02-28 0:00 UTC)
        );
        let on_5 = refill("monthly", Some(5));
        assert_eq!(
            period_start(&on_5, datetime!(2026-01-04 10:00 UTC)),
            datetime!(2025-12-05 0:00 UTC)
        );
    }
}
