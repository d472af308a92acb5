//! Verification outcomes and the checks that need no database: Unkey's codes in Unkey's order.

use std::sync::Arc;

use serde::Serialize;
use strongbox_shared::permissions::{Budget, Permission, Query, TooComplex};
use time::OffsetDateTime;

use super::keys::{Key, Refill, RefillInterval};

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
    /// The key's (or else its identity's) limit of this name; a name neither has is ignored.
    pub name: String,
    /// Units to count.
    pub cost: i64,
    /// Override of the limit.
    pub limit: Option<i64>,
    /// Override of the window, ms.
    pub duration: Option<i64>,
}

/// What to verify.
pub struct VerifyRequest {
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

/// Start of the credit period that contains `now`: today, or this month's refill day (the last
/// day for short months).
pub fn period_start(refill: &Refill, now: OffsetDateTime) -> OffsetDateTime {
    let today = now.date().midnight().assume_utc();
    if refill.interval != RefillInterval::Monthly {
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

/// The work one verification may spend on its permission query: the key's permissions and the
/// query both come from callers, and the matching cost is their product. Real queries against
/// real keys spend a few hundred units; the budget keeps the worst case near a millisecond.
pub const QUERY_BUDGET: usize = 200_000;

/// The checks before credits and rate limits, in Unkey's order: enabled, not expired, the
/// permission query. `None` when all pass; `TooComplex` when the query could not be decided
/// within [`QUERY_BUDGET`].
pub fn precheck(
    key: &Key,
    now: OffsetDateTime,
    query: Option<&Query>,
) -> Result<Option<Code>, TooComplex> {
    if !key.enabled {
        return Ok(Some(Code::Disabled));
    }
    if key.expires_at.is_some_and(|t| t <= now) {
        return Ok(Some(Code::Expired));
    }
    if let Some(query) = query {
        let held: Vec<Permission> =
            key.permissions.iter().filter_map(|p| Permission::parse(p).ok()).collect();
        if !query.holds_within(&held, &mut Budget::new(QUERY_BUDGET))? {
            return Ok(Some(Code::InsufficientPermissions));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn refill(interval: &str, day: Option<i16>) -> Refill {
        Refill { interval: RefillInterval::parse(interval).unwrap(), amount: 10, day }
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
