//! Wire shapes shared by several routes, typed so that the served OpenAPI document describes
//! exactly what is sent: keys, credits and rate limits out; credits and rate limits in. Every
//! constraint in a `#[schema(...)]` attribute is one the service enforces.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::keys::{Key, Ratelimit, RatelimitSpec, Refill, RefillInterval};
use crate::domain::{Invalid, unix_ms};
use crate::service::ServiceError;

/// A key in an answer (created, rerolled or decrypted), wiped from memory when the answer has
/// been written.
pub struct KeyText(zeroize::Zeroizing<String>);

impl KeyText {
    /// A copy of `key` that is wiped on drop.
    pub fn new(key: &str) -> Self {
        Self(zeroize::Zeroizing::new(key.to_owned()))
    }
}

impl std::fmt::Debug for KeyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyText(<redacted>)")
    }
}

impl Serialize for KeyText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// `daily` or `monthly`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    /// At 00:00 UTC.
    Daily,
    /// On `refillDay` (the last day of shorter months).
    Monthly,
}

impl From<RefillInterval> for Interval {
    fn from(interval: RefillInterval) -> Self {
        match interval {
            RefillInterval::Daily => Self::Daily,
            RefillInterval::Monthly => Self::Monthly,
        }
    }
}

/// How credits refill.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefillData {
    /// `daily` or `monthly`.
    pub interval: Interval,
    /// Credits after each refill.
    pub amount: i64,
    /// Day of the month, for monthly refills.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refill_day: Option<i16>,
}

/// `KeyCreditsData`: what is left, and how it refills.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreditsData {
    /// Credits left; null is unlimited.
    #[schema(required)]
    pub remaining: Option<i64>,
    /// The refill rule, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refill: Option<RefillData>,
}

impl CreditsData {
    /// Credits as answered.
    pub fn new(remaining: Option<i64>, refill: Option<&Refill>) -> Self {
        Self {
            remaining,
            refill: refill.map(|r| RefillData {
                interval: r.interval.into(),
                amount: r.amount,
                refill_day: r.day,
            }),
        }
    }
}

/// An identity: the one a key belongs to, or one of `identities.*`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentityData {
    /// `id_…`.
    pub id: String,
    /// The caller's own id for it.
    pub external_id: String,
    /// Free-form JSON object.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub meta: Option<Value>,
    /// Rate limits shared by all its keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratelimits: Option<Vec<RatelimitData>>,
}

impl IdentityData {
    /// The identity of `key`, with its meta and rate limits.
    pub fn of(key: &Key) -> Option<Self> {
        key.identity.as_ref().map(|(id, external_id)| Self {
            id: id.clone(),
            external_id: external_id.clone(),
            meta: key.identity_meta.clone(),
            ratelimits: Some(key.identity_ratelimits.iter().map(RatelimitData::from).collect()),
        })
    }

    /// An identity of `identities.*`.
    pub fn from_identity(identity: &crate::domain::identities::Identity) -> Self {
        Self {
            id: identity.id.clone(),
            external_id: identity.external_id.clone(),
            meta: identity.meta.clone(),
            ratelimits: Some(identity.ratelimits.iter().map(RatelimitData::from).collect()),
        }
    }
}

/// A rate limit of a key.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RatelimitData {
    /// `rl_…`.
    pub id: String,
    /// Name, unique per key.
    pub name: String,
    /// Requests per window.
    pub limit: i64,
    /// Window, ms.
    pub duration: i64,
    /// Applied on every verification.
    pub auto_apply: bool,
}

impl From<&Ratelimit> for RatelimitData {
    fn from(r: &Ratelimit) -> Self {
        Self {
            id: r.id.clone(),
            name: r.name.clone(),
            limit: r.limit,
            duration: r.duration,
            auto_apply: r.auto_apply,
        }
    }
}

/// `KeyResponseData`: a key as getKey, listKeys and whoami answer it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyData {
    /// `key_…`.
    pub key_id: String,
    /// The prefix and the first characters, for display.
    pub start: String,
    /// Disabled keys do not verify.
    pub enabled: bool,
    /// Unix ms.
    pub created_at: i64,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free-form JSON object.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub meta: Option<Value>,
    /// Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    /// Credits, when limited or refilled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<CreditsData>,
    /// The identity, when the key has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityData>,
    /// Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
    /// Unix ms; written in batches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<i64>,
    /// The key itself, for recoverable keys asked for with `decrypt`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub plaintext: Option<KeyText>,
    /// Permission patterns.
    pub permissions: Vec<String>,
    /// Always empty: Strongbox has no roles.
    pub roles: Vec<String>,
    /// Rate limits.
    pub ratelimits: Vec<RatelimitData>,
}

impl KeyData {
    /// A key as answered, with its plaintext when decrypted.
    pub fn new(key: &Key, plaintext: Option<&str>) -> Self {
        Self {
            key_id: key.id.clone(),
            start: key.start.clone(),
            enabled: key.enabled,
            created_at: unix_ms(key.created_at),
            name: key.name.clone(),
            meta: key.meta.clone(),
            expires: key.expires_at.map(unix_ms),
            credits: (key.credits_remaining.is_some() || key.refill.is_some())
                .then(|| CreditsData::new(key.credits_remaining, key.refill.as_ref())),
            identity: IdentityData::of(key),
            updated_at: key.updated_at.map(unix_ms),
            last_used_at: key.last_used_at.map(unix_ms),
            plaintext: plaintext.map(KeyText::new),
            permissions: key.permissions.clone(),
            roles: Vec::new(),
            ratelimits: key.ratelimits.iter().map(RatelimitData::from).collect(),
        }
    }
}

/// A key made by createKey or rerollKey.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKeyData {
    /// `key_…` or `rk_…`.
    pub key_id: String,
    /// The key itself, shown here and never again.
    #[schema(value_type = String)]
    pub key: KeyText,
}

/// A permission pattern: segments split by `.`, none empty, without whitespace, control
/// characters or parentheses; `*` matches one segment and `**` any number. At most 512 bytes.
/// (A schema-only type: permissions travel as strings.)
#[derive(ToSchema)]
#[schema(
    max_length = 512,
    pattern = "^[^ ().\\x00-\\x1f\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff]+(\\.[^ ().\\x00-\\x1f\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff]+)*$"
)]
#[allow(dead_code)]
pub struct PermissionName(String);

/// `set`, `increment` or `decrement` (a schema-only type: the operation travels as a string,
/// and anything else is 400 `INVALID_CREDITS`).
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum CreditOperation {
    /// Set to `value` (null: unlimited).
    Set,
    /// Add `value`.
    Increment,
    /// Subtract `value`, stopping at 0.
    Decrement,
}

/// An empty `data`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmptyData {}

/// `credits` of createKey.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreditsIn {
    /// Starting credits, 0 to 10^15; null is unlimited.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_000_i64)]
    pub remaining: Option<i64>,
    /// Refill rule (needs a number of remaining credits).
    #[serde(default)]
    pub refill: Option<RefillIn>,
}

/// A refill rule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefillIn {
    /// `daily` or `monthly` (anything else is 400 `INVALID_CREDITS`).
    #[schema(value_type = Interval)]
    pub interval: String,
    /// Credits after each refill, 0 to 10^15.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_000_i64)]
    pub amount: i64,
    /// Day of the month (1-31, default 1), for monthly refills only.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 31)]
    pub refill_day: Option<i64>,
}

impl RefillIn {
    /// The domain's refill rule; `location` names the field.
    pub fn parse(self, location: &str) -> Result<Refill, Invalid> {
        Refill::new(&self.interval, self.amount, self.refill_day, location)
    }
}

/// A rate limit of createKey or updateKey.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RatelimitIn {
    /// Name, 1-128 characters, unique per key.
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
    /// Requests per window, 1 to 10^15.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_i64)]
    pub limit: i64,
    /// Window in milliseconds: 1 s to 30 days.
    #[schema(minimum = 1000, maximum = 2_592_000_000_i64)]
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
