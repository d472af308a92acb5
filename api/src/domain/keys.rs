//! Customer keys: what is stored, what createKey and updateKey may change, and the rules each
//! input passes first.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::Invalid;

/// Largest `meta`, serialized.
pub const MAX_META_BYTES: usize = 10 * 1024;
/// Longest key name, in characters.
pub const MAX_NAME_LEN: usize = 255;
/// Most credits a key may hold, refill or spend at once (10^15): far beyond any real use, and
/// far enough from `i64::MAX` that no sum of two overflows.
pub const MAX_CREDITS: i64 = 1_000_000_000_000_000;
/// Longest rate-limit window: 30 days, in ms.
pub const MAX_WINDOW_MS: i64 = 30 * 86_400_000;

/// A rate limit attached to a key, stored and answered in Unkey's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ratelimit {
    /// `rl_…`.
    pub id: String,
    /// Name, unique per key.
    pub name: String,
    /// Requests per window.
    pub limit: i64,
    /// Window in milliseconds.
    pub duration: i64,
    /// Applied on every verification, not only when named in the request.
    pub auto_apply: bool,
}

/// A rate limit as createKey or updateKey give it, before it has an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatelimitSpec {
    /// Name, unique per key.
    pub name: String,
    /// Requests per window.
    pub limit: i64,
    /// Window in milliseconds.
    pub duration: i64,
    /// Applied on every verification.
    pub auto_apply: bool,
}

/// Most rate limits a key or an identity holds: each applied one is a check per verification.
pub const MAX_RATELIMITS: usize = 100;

/// Checks a key's (or an identity's) rate limits: at most [`MAX_RATELIMITS`], names 1-128
/// characters and unique, limit ≥ 1, a window of 1 s to 30 days.
pub fn check_ratelimits(items: &[RatelimitSpec]) -> Result<(), Invalid> {
    if items.len() > MAX_RATELIMITS {
        return Err(Invalid::new(
            "INVALID_RATELIMIT",
            "ratelimits",
            format!("at most {MAX_RATELIMITS} rate limits"),
        ));
    }
    for (i, r) in items.iter().enumerate() {
        let at = |field: &str| format!("ratelimits[{i}].{field}");
        if r.name.is_empty() || r.name.chars().count() > 128 {
            return Err(Invalid::new(
                "INVALID_RATELIMIT",
                at("name"),
                "name must be 1-128 characters",
            ));
        }
        if items[..i].iter().any(|o| o.name == r.name) {
            return Err(Invalid::new(
                "INVALID_RATELIMIT",
                at("name"),
                "rate limit names must be unique",
            ));
        }
        if !(1..=MAX_CREDITS).contains(&r.limit) {
            return Err(Invalid::new("INVALID_RATELIMIT", at("limit"), "limit must be 1 to 10^15"));
        }
        if !(1_000..=MAX_WINDOW_MS).contains(&r.duration) {
            return Err(Invalid::new(
                "INVALID_RATELIMIT",
                at("duration"),
                "duration must be 1000 ms to 30 days",
            ));
        }
    }
    Ok(())
}

/// How often credits refill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefillInterval {
    /// At midnight UTC.
    Daily,
    /// On the refill day (the last day of shorter months).
    Monthly,
}

impl RefillInterval {
    /// As stored and answered.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Monthly => "monthly",
        }
    }

    /// From the stored or requested text.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "daily" => Some(Self::Daily),
            "monthly" => Some(Self::Monthly),
            _ => None,
        }
    }
}

/// How credits refill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refill {
    /// Daily or monthly.
    pub interval: RefillInterval,
    /// Credits after a refill.
    pub amount: i64,
    /// Day of the month for monthly refills (1-31; short months refill on their last day).
    pub day: Option<i16>,
}

impl Refill {
    /// A refill rule as requested at `location`: a known interval, a non-negative amount, and a
    /// day of the month (1 when absent) for monthly refills only.
    pub fn new(
        interval: &str,
        amount: i64,
        day: Option<i64>,
        location: &str,
    ) -> Result<Self, Invalid> {
        let interval = RefillInterval::parse(interval).ok_or_else(|| {
            Invalid::new(
                "INVALID_CREDITS",
                format!("{location}.interval"),
                "interval must be daily or monthly",
            )
        })?;
        if !(0..=MAX_CREDITS).contains(&amount) {
            return Err(Invalid::new(
                "INVALID_CREDITS",
                format!("{location}.amount"),
                "amount must be 0 to 10^15",
            ));
        }
        let day = match (interval, day) {
            (RefillInterval::Monthly, None) => Some(1),
            (RefillInterval::Monthly, Some(d)) => {
                Some(i16::try_from(d).ok().filter(|d| (1..=31).contains(d)).ok_or_else(|| {
                    Invalid::new(
                        "INVALID_CREDITS",
                        format!("{location}.refillDay"),
                        "refillDay must be 1-31",
                    )
                })?)
            }
            (RefillInterval::Daily, Some(_)) => {
                return Err(Invalid::new(
                    "INVALID_CREDITS",
                    format!("{location}.refillDay"),
                    "refillDay applies to monthly refills only",
                ));
            }
            (RefillInterval::Daily, None) => None,
        };
        Ok(Self { interval, amount, day })
    }
}

/// A stored key, everything but its hash.
#[derive(Debug, Clone)]
pub struct Key {
    /// `key_…`.
    pub id: String,
    /// Owner.
    pub workspace_id: String,
    /// The API it belongs to.
    pub api_id: String,
    /// Prefix and first characters, for display.
    pub start: String,
    /// The prefix the key was made with.
    pub prefix: Option<String>,
    /// Random bytes in the key.
    pub byte_length: i16,
    /// Display name.
    pub name: Option<String>,
    /// `(identity id, externalId)`.
    pub identity: Option<(String, String)>,
    /// The identity's `meta`.
    pub identity_meta: Option<Value>,
    /// The identity's rate limits, shared by all its keys.
    pub identity_ratelimits: Vec<Ratelimit>,
    /// Free-form JSON object.
    pub meta: Option<Value>,
    /// Permission patterns.
    pub permissions: Vec<String>,
    /// Expiry.
    pub expires_at: Option<OffsetDateTime>,
    /// Disabled keys do not verify.
    pub enabled: bool,
    /// Remaining credits; `None` is unlimited.
    pub credits_remaining: Option<i64>,
    /// Refill rule.
    pub refill: Option<Refill>,
    /// When credits were last refilled.
    pub last_refill_at: Option<OffsetDateTime>,
    /// Rate limits.
    pub ratelimits: Vec<Ratelimit>,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: Option<OffsetDateTime>,
    /// Last verified (written in batches).
    pub last_used_at: Option<OffsetDateTime>,
}

/// A validated createKey (its API and recoverability travel beside it: they are checked first).
#[derive(Debug, Clone)]
pub struct NewKey {
    /// `[A-Za-z0-9_]{1,16}`.
    pub prefix: Option<String>,
    /// 16-255.
    pub byte_length: usize,
    /// Display name.
    pub name: Option<String>,
    /// The identity's external id.
    pub external_id: Option<String>,
    /// A JSON object of at most 10 KB.
    pub meta: Option<Value>,
    /// Parsed permission patterns.
    pub permissions: Vec<String>,
    /// In the future.
    pub expires_at: Option<OffsetDateTime>,
    /// Starting credits; `None` is unlimited.
    pub credits_remaining: Option<i64>,
    /// Refill rule (needs credits).
    pub refill: Option<Refill>,
    /// Checked rate limits.
    pub ratelimits: Vec<RatelimitSpec>,
    /// Enabled from the start.
    pub enabled: bool,
}

/// `credits` of updateKey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditsPatch {
    /// `credits: null`: unlimited, no refill.
    Clear,
    /// Change what is given; `None` leaves a part as it is, `Some(None)` clears it.
    Change {
        /// Remaining credits.
        remaining: Option<Option<i64>>,
        /// Refill rule.
        refill: Option<Option<Refill>>,
    },
}

/// A validated updateKey: `None` leaves a field as it is, `Some(None)` clears it. Only the
/// fields given are written, so concurrent changes to the others (credits spent by
/// verifications, a disable) are never undone.
#[derive(Debug, Clone, Default)]
pub struct KeyPatch {
    /// Display name.
    pub name: Option<Option<String>>,
    /// The identity's external id.
    pub external_id: Option<Option<String>>,
    /// A JSON object of at most 10 KB.
    pub meta: Option<Option<Value>>,
    /// Expiry.
    pub expires_at: Option<Option<OffsetDateTime>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// New permissions.
    pub permissions: Option<Vec<String>>,
    /// New rate limits (an empty list removes them all).
    pub ratelimits: Option<Vec<RatelimitSpec>>,
    /// Credits.
    pub credits: Option<CreditsPatch>,
}

/// A credit operation of `keys.updateCredits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditOp {
    /// Set to a number, or to unlimited (`None`).
    Set(Option<i64>),
    /// Add.
    Increment(i64),
    /// Subtract, stopping at 0.
    Decrement(i64),
}

impl CreditOp {
    /// From updateCredits' `operation` and `value`.
    pub fn new(operation: &str, value: Option<i64>) -> Result<Self, Invalid> {
        let bad_value = || {
            Invalid::new(
                "INVALID_CREDITS",
                "value",
                "value must be an integer from 0 to 10^15 (null only with set)",
            )
        };
        if value.is_some_and(|v| v > MAX_CREDITS) {
            return Err(bad_value());
        }
        match (operation, value) {
            ("set", v) if v.is_none_or(|v| v >= 0) => Ok(Self::Set(v)),
            ("increment", Some(v)) if v >= 0 => Ok(Self::Increment(v)),
            ("decrement", Some(v)) if v >= 0 => Ok(Self::Decrement(v)),
            ("set" | "increment" | "decrement", _) => Err(bad_value()),
            _ => Err(Invalid::new(
                "INVALID_CREDITS",
                "operation",
                "operation must be set, increment or decrement",
            )),
        }
    }
}

/// Checks a key name: at most 255 characters.
pub fn check_name(name: &str) -> Result<(), Invalid> {
    if name.chars().count() > MAX_NAME_LEN {
        return Err(Invalid::new("INVALID_NAME", "name", "name must be at most 255 characters"));
    }
    Ok(())
}

/// Longest identity external id, in characters (it is indexed).
pub const MAX_EXTERNAL_ID_LEN: usize = 255;

/// Checks an identity's external id: 1-255 characters.
pub fn check_external_id(external_id: &str) -> Result<(), Invalid> {
    let len = external_id.chars().count();
    if len == 0 || len > MAX_EXTERNAL_ID_LEN {
        return Err(Invalid::new(
            "INVALID_EXTERNAL_ID",
            "externalId",
            "externalId must be 1-255 characters",
        ));
    }
    Ok(())
}

/// Checks `meta`: a JSON object of at most 10 KB.
pub fn check_meta(meta: &Value) -> Result<(), Invalid> {
    if !meta.is_object() {
        return Err(Invalid::new("INVALID_META", "meta", "meta must be a JSON object"));
    }
    if serde_json::to_vec(meta).map(|v| v.len()).unwrap_or(usize::MAX) > MAX_META_BYTES {
        return Err(Invalid::new("META_TOO_LARGE", "meta", "meta must be at most 10 KB of JSON"));
    }
    if !numbers_within(meta, MAX_META_NUMBER) {
        return Err(Invalid::new("INVALID_META", "meta", "numbers in meta must lie within ±1e300"));
    }
    Ok(())
}

/// Largest magnitude of a number in `meta`. Postgres keeps a JSON number as an exact decimal
/// and writes it back in full; near `f64::MAX` that text no longer parses back into a double,
/// so such numbers are refused on the way in rather than being unreadable on the way out.
pub const MAX_META_NUMBER: f64 = 1e300;

fn numbers_within(value: &Value, max: f64) -> bool {
    match value {
        Value::Number(n) => n.as_f64().is_some_and(|f| f.abs() <= max),
        Value::Array(items) => items.iter().all(|v| numbers_within(v, max)),
        Value::Object(fields) => fields.values().all(|v| numbers_within(v, max)),
        Value::Null | Value::Bool(_) | Value::String(_) => true,
    }
}

/// Checks a requested byte length: 16-255, 16 when absent.
pub fn byte_length(requested: Option<i64>) -> Result<usize, Invalid> {
    use strongbox_shared::keys::{MAX_BYTE_LENGTH, MIN_BYTE_LENGTH};
    usize::try_from(requested.unwrap_or(16))
        .ok()
        .filter(|n| (MIN_BYTE_LENGTH..=MAX_BYTE_LENGTH).contains(n))
        .ok_or_else(|| {
            Invalid::new("INVALID_BYTE_LENGTH", "byteLength", "byteLength must be 16-255")
        })
}

/// Checks starting credits: 0 to 10^15.
pub fn check_remaining(remaining: Option<i64>) -> Result<(), Invalid> {
    if remaining.is_some_and(|r| !(0..=MAX_CREDITS).contains(&r)) {
        return Err(Invalid::new(
            "INVALID_CREDITS",
            "credits.remaining",
            "remaining must be 0 to 10^15",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_operations_need_a_non_negative_value_and_only_set_takes_null() {
        assert_eq!(CreditOp::new("set", None), Ok(CreditOp::Set(None)));
        assert_eq!(CreditOp::new("increment", Some(3)), Ok(CreditOp::Increment(3)));
        assert_eq!(CreditOp::new("decrement", None).unwrap_err().location, "value");
        assert_eq!(CreditOp::new("set", Some(-1)).unwrap_err().location, "value");
        assert_eq!(CreditOp::new("double", Some(1)).unwrap_err().location, "operation");
    }

    #[test]
    fn meta_numbers_that_postgres_would_give_back_unreadable_are_refused() {
        assert!(check_meta(&serde_json::json!({"a": [1, {"b": 1e300}]})).is_ok());
        assert!(check_meta(&serde_json::json!({"a": [1, {"b": f64::MAX}]})).is_err());
        assert!(check_meta(&serde_json::json!({"a": -1.7e308})).is_err());
        assert!(check_meta(&serde_json::json!({"a": u64::MAX})).is_ok());
    }

    #[test]
    fn a_monthly_refill_defaults_to_the_first_and_a_daily_one_takes_no_day() {
        assert_eq!(Refill::new("monthly", 5, None, "credits.refill").unwrap().day, Some(1));
        assert!(Refill::new("daily", 5, Some(3), "credits.refill").is_err());
        assert!(Refill::new("monthly", 5, Some(32), "credits.refill").is_err());
        assert!(Refill::new("monthly", 5, Some(i64::from(i16::MAX) + 40), "r").is_err());
        assert!(Refill::new("hourly", 5, None, "credits.refill").is_err());
    }
}
