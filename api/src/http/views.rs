//! Wire shapes shared by several routes: key data out, credits and rate limits in.

use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use crate::store::keys::{Key, Ratelimit, Refill};
use crate::store::unix_ms;

/// Largest `meta`, serialized.
pub const MAX_META_BYTES: usize = 10 * 1024;

/// `KeyResponseData`: a key as getKey, listKeys and whoami answer it.
pub fn key_data(key: &Key, plaintext: Option<&str>) -> Value {
    let mut v = json!({
        "keyId": key.id,
        "start": key.start,
        "enabled": key.enabled,
        "createdAt": unix_ms(key.created_at),
        "permissions": key.permissions,
        "roles": [],
        "ratelimits": key.ratelimits,
    });
    if let Some(name) = &key.name {
        v["name"] = json!(name);
    }
    if let Some(meta) = &key.meta {
        v["meta"] = meta.clone();
    }
    if let Some(expires) = key.expires_at {
        v["expires"] = json!(unix_ms(expires));
    }
    if key.credits_remaining.is_some() || key.refill.is_some() {
        v["credits"] = credits_data(key.credits_remaining, key.refill.as_ref());
    }
    if let Some((id, external_id)) = &key.identity {
        v["identity"] = json!({"id": id, "externalId": external_id});
    }
    if let Some(updated) = key.updated_at {
        v["updatedAt"] = json!(unix_ms(updated));
    }
    if let Some(used) = key.last_used_at {
        v["lastUsedAt"] = json!(unix_ms(used));
    }
    if let Some(plaintext) = plaintext {
        v["plaintext"] = json!(plaintext);
    }
    v
}

/// `KeyCreditsData`.
pub fn credits_data(remaining: Option<i64>, refill: Option<&Refill>) -> Value {
    let mut v = json!({"remaining": remaining});
    if let Some(r) = refill {
        v["refill"] = json!({"interval": r.interval, "amount": r.amount});
        if let Some(day) = r.day {
            v["refill"]["refillDay"] = json!(day);
        }
    }
    v
}

/// `credits` of createKey.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreditsIn {
    /// Starting credits; null is unlimited.
    pub remaining: Option<i64>,
    /// Refill rule.
    #[serde(default)]
    pub refill: Option<RefillIn>,
}

/// A refill rule.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefillIn {
    /// `daily` or `monthly`.
    pub interval: String,
    /// Credits after each refill.
    pub amount: i64,
    /// Day of the month, for monthly refills.
    #[serde(default)]
    pub refill_day: Option<i64>,
}

impl RefillIn {
    /// Checks and converts.
    pub fn parse(self, location: &str) -> Result<Refill, ApiError> {
        if self.interval != "daily" && self.interval != "monthly" {
            return Err(ApiError::invalid(
                "INVALID_CREDITS",
                &format!("{location}.interval"),
                "interval must be daily or monthly",
            ));
        }
        if self.amount < 0 {
            return Err(ApiError::invalid(
                "INVALID_CREDITS",
                &format!("{location}.amount"),
                "amount must not be negative",
            ));
        }
        let day = match (self.interval.as_str(), self.refill_day) {
            ("monthly", Some(d)) if (1..=31).contains(&d) => Some(d as i16),
            ("monthly", None) => Some(1),
            ("monthly", Some(_)) => {
                return Err(ApiError::invalid(
                    "INVALID_CREDITS",
                    &format!("{location}.refillDay"),
                    "refillDay must be 1-31",
                ));
            }
            (_, Some(_)) => {
                return Err(ApiError::invalid(
                    "INVALID_CREDITS",
                    &format!("{location}.refillDay"),
                    "refillDay applies to monthly refills only",
                ));
            }
            (_, None) => None,
        };
        Ok(Refill { interval: self.interval, amount: self.amount, day })
    }
}

/// A rate limit of createKey or updateKey.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RatelimitIn {
    /// Name, unique per key.
    pub name: String,
    /// Requests per window.
    pub limit: i64,
    /// Window in milliseconds.
    pub duration: i64,
    /// Applied on every verification.
    #[serde(default)]
    pub auto_apply: Option<bool>,
}

/// Checks rate limits and gives each an id.
pub fn parse_ratelimits(items: Vec<RatelimitIn>) -> Result<Vec<Ratelimit>, ApiError> {
    let mut out: Vec<Ratelimit> = Vec::with_capacity(items.len());
    for (i, r) in items.into_iter().enumerate() {
        let at = format!("ratelimits[{i}]");
        if r.name.is_empty() || r.name.len() > 128 {
            return Err(ApiError::invalid(
                "INVALID_RATELIMIT",
                &format!("{at}.name"),
                "name must be 1-128 characters",
            ));
        }
        if out.iter().any(|o| o.name == r.name) {
            return Err(ApiError::invalid(
                "INVALID_RATELIMIT",
                &format!("{at}.name"),
                "rate limit names must be unique",
            ));
        }
        if r.limit < 1 {
            return Err(ApiError::invalid(
                "INVALID_RATELIMIT",
                &format!("{at}.limit"),
                "limit must be at least 1",
            ));
        }
        if !(1_000..=86_400_000 * 30).contains(&r.duration) {
            return Err(ApiError::invalid(
                "INVALID_RATELIMIT",
                &format!("{at}.duration"),
                "duration must be 1000 ms to 30 days",
            ));
        }
        out.push(Ratelimit {
            id: strongbox_shared::id::new_id("rl")?,
            name: r.name,
            limit: r.limit,
            duration: r.duration,
            auto_apply: r.auto_apply.unwrap_or(false),
        });
    }
    Ok(out)
}

/// Checks `meta`: a JSON object of at most 10 KB.
pub fn check_meta(meta: &Value) -> Result<(), ApiError> {
    if !meta.is_object() {
        return Err(ApiError::invalid("INVALID_META", "meta", "meta must be a JSON object"));
    }
    if serde_json::to_vec(meta).map(|v| v.len()).unwrap_or(usize::MAX) > MAX_META_BYTES {
        return Err(ApiError::invalid(
            "META_TOO_LARGE",
            "meta",
            "meta must be at most 10 KB of JSON",
        ));
    }
    Ok(())
}

/// Checks permission strings.
pub fn check_permissions(permissions: &[String]) -> Result<(), ApiError> {
    for (i, p) in permissions.iter().enumerate() {
        strongbox_shared::permissions::Permission::parse(p).map_err(|e| {
            ApiError::invalid("INVALID_PERMISSION", &format!("permissions[{i}]"), e.to_string())
        })?;
    }
    Ok(())
}

/// Refuses roles, which Strongbox does not support.
pub fn refuse_roles(roles: &Option<Vec<String>>) -> Result<(), ApiError> {
    match roles {
        Some(r) if !r.is_empty() => Err(ApiError::not_supported(
            "roles are not supported by Strongbox; attach permissions to keys directly",
        )),
        _ => Ok(()),
    }
}

/// Checks an expiry in Unix milliseconds: in the future.
pub fn parse_expires(ms: i64, location: &str) -> Result<time::OffsetDateTime, ApiError> {
    let at = crate::store::from_unix_ms(ms).ok_or_else(|| {
        ApiError::invalid("INVALID_EXPIRES", location, "expires is not a valid time")
    })?;
    if at <= time::OffsetDateTime::now_utc() {
        return Err(ApiError::invalid(
            "INVALID_EXPIRES",
            location,
            "expires must be in the future (Unix milliseconds)",
        ));
    }
    Ok(at)
}

/// Deserializes a field that may be absent (outer `None`), null (`Some(None)`) or a value.
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
