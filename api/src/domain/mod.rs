//! The api's plain types and rules: keys, root keys, APIs and verification outcomes, and the
//! checks every input passes before anything is written. No I/O beyond the random source, no
//! HTTP: the service layer decides with these, the HTTP layer renders them.

pub mod apis;
pub mod identities;
pub mod keys;
pub mod ratelimit;
pub mod root_keys;
pub mod verify;

use time::OffsetDateTime;

/// An input refused before anything is written: a stable code, the field at fault and why.
/// Never echoes the value, which may be a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {detail}")]
pub struct Invalid {
    /// Stable code (`INVALID_NAME`, `PERMISSION_TOO_COMPLEX`, …).
    pub code: &'static str,
    /// The field, as a path in the request body (`credits.refill.amount`).
    pub location: String,
    /// What is wrong, for people.
    pub detail: String,
}

impl Invalid {
    /// An input refused with `code` at `location`.
    pub fn new(code: &'static str, location: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { code, location: location.into(), detail: detail.into() }
    }
}

/// Milliseconds since the Unix epoch, as Unkey's wire format counts time.
pub fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The time `ms` milliseconds after the Unix epoch.
pub fn from_unix_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// An expiry in Unix milliseconds, which must lie in the future.
pub fn future_time(ms: i64, location: &str) -> Result<OffsetDateTime, Invalid> {
    let at = from_unix_ms(ms)
        .ok_or_else(|| Invalid::new("INVALID_EXPIRES", location, "expires is not a valid time"))?;
    if at <= OffsetDateTime::now_utc() {
        return Err(Invalid::new(
            "INVALID_EXPIRES",
            location,
            "expires must be in the future (Unix milliseconds)",
        ));
    }
    Ok(at)
}

/// A reroll's `expiration`: milliseconds until the old key stops working, 0 for at once.
pub fn reroll_expiration(ms: Option<i64>) -> Result<Option<time::Duration>, Invalid> {
    match ms.unwrap_or(0) {
        0 => Ok(None),
        ms if ms < 0 => {
            Err(Invalid::new("INVALID_EXPIRATION", "expiration", "expiration must not be negative"))
        }
        ms => Ok(Some(time::Duration::milliseconds(ms))),
    }
}

/// A page size: 1-100, 100 when absent.
pub fn page_limit(limit: Option<i64>) -> Result<i64, Invalid> {
    let limit = limit.unwrap_or(100);
    if !(1..=100).contains(&limit) {
        return Err(Invalid::new("INVALID_LIMIT", "limit", "limit must be 1-100"));
    }
    Ok(limit)
}

/// Cuts `rows` (fetched with `limit + 1`) to `limit` and returns the cursor of the next page:
/// the last id shown, when more rows exist.
pub fn cut_page<T>(rows: &mut Vec<T>, limit: i64, id: impl Fn(&T) -> &str) -> Option<String> {
    let limit = usize::try_from(limit).unwrap_or(100);
    let more = rows.len() > limit;
    rows.truncate(limit);
    if more { rows.last().map(|r| id(r).to_owned()) } else { None }
}

/// Most permissions a customer key may hold.
pub const MAX_KEY_PERMISSIONS: usize = 1000;
/// Most permissions a root key may hold. Acting on a root key means covering each of them.
pub const MAX_ROOT_KEY_PERMISSIONS: usize = 100;

/// Checks permission strings as a key would hold them: at most `max`, each well formed.
pub fn check_permissions(permissions: &[String], max: usize) -> Result<(), Invalid> {
    if permissions.len() > max {
        return Err(Invalid::new(
            "INVALID_PERMISSION",
            "permissions",
            format!("at most {max} permissions"),
        ));
    }
    for (i, p) in permissions.iter().enumerate() {
        strongbox_shared::permissions::Permission::parse(p).map_err(|e| {
            Invalid::new("INVALID_PERMISSION", format!("permissions[{i}]"), e.to_string())
        })?;
    }
    Ok(())
}
