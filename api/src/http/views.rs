//! Wire shapes shared by several routes: key data out, credits and rate limits in.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::domain::keys::{Key, RatelimitSpec, Refill};
use crate::domain::{Invalid, unix_ms};
use crate::service::ServiceError;

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
        v["refill"] = json!({"interval": r.interval.as_str(), "amount": r.amount});
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
    /// The domain's refill rule; `location` names the field.
    pub fn parse(self, location: &str) -> Result<Refill, Invalid> {
        Refill::new(&self.interval, self.amount, self.refill_day, location)
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

/// The domain's rate-limit specs (checked by the service).
pub fn ratelimit_specs(items: Vec<RatelimitIn>) -> Vec<RatelimitSpec> {
    items
        .into_iter()
        .map(|r| RatelimitSpec {
            name: r.name,
            limit: r.limit,
            duration: r.duration,
            auto_apply: r.auto_apply.unwrap_or(false),
        })
        .collect()
}

/// Refuses roles, which Strongbox does not support.
pub fn refuse_roles(roles: &Option<Vec<String>>) -> Result<(), ServiceError> {
    match roles {
        Some(r) if !r.is_empty() => Err(ServiceError::NotSupported(
            "roles are not supported by Strongbox; attach permissions to keys directly".to_owned(),
        )),
        _ => Ok(()),
    }
}

/// Deserializes a field that may be absent (outer `None`), null (`Some(None)`) or a value.
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
