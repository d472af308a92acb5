//! `keys.verifyKey` (v2): every outcome is HTTP 200 with `valid` and `code`.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use strongbox_shared::permissions::Query;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::envelope::Data;
use super::error::ApiError;
use super::extract::Body;
use super::views::IdentityData;
use crate::domain::keys::{MAX_CREDITS, MAX_RATELIMITS, MAX_WINDOW_MS};
use crate::domain::unix_ms;
use crate::domain::verify::{Code, RequestedLimit, Verdict, VerifyRequest};

/// The verifyKey request.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyKey {
    /// The key to verify, 1-1024 characters.
    #[schema(min_length = 1, max_length = 1024)]
    key: String,
    /// A query of permission names with `AND`, `OR` and parentheses, at most 1000 characters.
    #[serde(default)]
    #[schema(max_length = 1000)]
    permissions: Option<String>,
    /// Credits to spend (default 1).
    #[serde(default)]
    credits: Option<Cost>,
    /// Rate limits to apply by name, with optional overrides; at most 100.
    #[serde(default)]
    #[schema(max_items = 100)]
    ratelimits: Option<Vec<LimitIn>>,
}

/// `{"cost"}`.
#[derive(Deserialize, ToSchema)]
pub struct Cost {
    /// 0 to 10^15.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_000_i64)]
    cost: i64,
}

/// A rate limit named in the request.
#[derive(Deserialize, ToSchema)]
pub struct LimitIn {
    /// The key's (or its identity's) rate limit of this name, 1-128 characters. A name neither
    /// has needs `limit` and `duration`: it is then applied to this key for this call (else 400
    /// `INVALID_RATELIMIT`).
    #[schema(min_length = 1, max_length = 128)]
    name: String,
    /// Units to count (default 1), 0 to 10^15.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_000_i64)]
    cost: Option<i64>,
    /// Override of the limit, 1 to 10^15.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_i64)]
    limit: Option<i64>,
    /// Override of the window, 1 s to 30 days in ms.
    #[serde(default)]
    #[schema(minimum = 1000, maximum = 2_592_000_000_i64)]
    duration: Option<i64>,
}

/// Unkey's verification codes.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VerifyCode {
    /// All checks passed.
    Valid,
    /// No such key.
    NotFound,
    /// The key belongs to another API than the one named (v1).
    Forbidden,
    /// Not enough credits.
    UsageExceeded,
    /// Over a rate limit.
    RateLimited,
    /// The key is disabled.
    Disabled,
    /// The permission query does not hold.
    InsufficientPermissions,
    /// The key has expired.
    Expired,
}

impl From<Code> for VerifyCode {
    fn from(code: Code) -> Self {
        match code {
            Code::Valid => Self::Valid,
            Code::NotFound => Self::NotFound,
            Code::Forbidden => Self::Forbidden,
            Code::UsageExceeded => Self::UsageExceeded,
            Code::RateLimited => Self::RateLimited,
            Code::Disabled => Self::Disabled,
            Code::InsufficientPermissions => Self::InsufficientPermissions,
            Code::Expired => Self::Expired,
        }
    }
}

/// One rate limit applied by a verification.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppliedLimit {
    /// `rl_…`; for a limit the key and its identity do not have (given with its limit and
    /// duration in the request), its name.
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

/// The `data` of a verification.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyData {
    /// Whether every check passed.
    pub valid: bool,
    /// Why (or why not).
    pub code: VerifyCode,
    /// The key, when found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
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
    /// Credits left after this verification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<i64>,
    /// Whether the key is enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The key's permissions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
    /// Always empty: Strongbox has no roles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// The key's identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityData>,
    /// Rate limits applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratelimits: Option<Vec<AppliedLimit>>,
}

/// Checks the request's own shape: a bad query or cost is a 400, not an outcome.
pub fn parse(
    key: String,
    permissions: Option<&str>,
    cost: Option<i64>,
    limits: Vec<LimitIn>,
) -> Result<VerifyRequest, ApiError> {
    if key.is_empty() || key.chars().count() > 1024 {
        return Err(ApiError::invalid("INVALID_KEY", "key", "key must be 1-1024 characters"));
    }
    let permissions = permissions
        .map(Query::parse)
        .transpose()
        .map_err(|e| ApiError::invalid("INVALID_PERMISSION_QUERY", "permissions", e.to_string()))?;
    let cost = cost.unwrap_or(1);
    if !(0..=MAX_CREDITS).contains(&cost) {
        return Err(ApiError::invalid("INVALID_COST", "credits.cost", "cost must be 0 to 10^15"));
    }
    if limits.len() > MAX_RATELIMITS {
        return Err(ApiError::invalid(
            "INVALID_RATELIMIT",
            "ratelimits",
            format!("at most {MAX_RATELIMITS} rate limits per verification"),
        ));
    }
    let mut ratelimits = Vec::new();
    for (i, l) in limits.into_iter().enumerate() {
        if l.name.is_empty() || l.name.chars().count() > 128 {
            return Err(ApiError::invalid(
                "INVALID_RATELIMIT",
                &format!("ratelimits[{i}].name"),
                "name must be 1-128 characters",
            ));
        }
        if l.cost.is_some_and(|c| !(0..=MAX_CREDITS).contains(&c))
            || l.limit.is_some_and(|c| !(1..=MAX_CREDITS).contains(&c))
            || l.duration.is_some_and(|d| !(1000..=MAX_WINDOW_MS).contains(&d))
        {
            return Err(ApiError::invalid(
                "INVALID_RATELIMIT",
                &format!("ratelimits[{i}]"),
                "cost 0 to 10^15, limit 1 to 10^15, duration 1 s to 30 days in ms",
            ));
        }
        ratelimits.push(RequestedLimit {
            name: l.name,
            cost: l.cost.unwrap_or(1),
            limit: l.limit,
            duration: l.duration,
        });
    }
    Ok(VerifyRequest { key, permissions, cost, ratelimits })
}

/// `POST /v2/keys.verifyKey`: needs `api.<apiId>.verify_key` and finds only keys of the root
/// key's workspace.
#[utoipa::path(post, path = "/v2/keys.verifyKey", tag = "keys", request_body = VerifyKey,
    responses((status = 200, description = "Every outcome is 200, with valid and code.", body = super::openapi::VerifyResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn verify_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<VerifyKey>,
) -> Result<Data<VerifyData>, ApiError> {
    let request = parse(
        body.key,
        body.permissions.as_deref(),
        body.credits.map(|c| c.cost),
        body.ratelimits.unwrap_or_default(),
    )?;
    let verdict = state.service.verify_key(&caller, request).await?;
    Ok(Data(data(&verdict)))
}

/// The `data` of a verification answer.
pub fn data(verdict: &Verdict) -> VerifyData {
    let key = verdict.key.as_deref();
    VerifyData {
        valid: verdict.code == Code::Valid,
        code: verdict.code.into(),
        key_id: key.map(|k| k.id.clone()),
        name: key.and_then(|k| k.name.clone()),
        meta: key.and_then(|k| k.meta.clone()),
        expires: key.and_then(|k| k.expires_at.map(unix_ms)),
        credits: key.and(verdict.credits),
        enabled: key.map(|k| k.enabled),
        permissions: key.map(|k| k.permissions.clone()),
        roles: key.map(|_| Vec::new()),
        identity: key.and_then(IdentityData::of),
        ratelimits: (key.is_some() && !verdict.ratelimits.is_empty()).then(|| {
            verdict
                .ratelimits
                .iter()
                .map(|l| AppliedLimit {
                    id: l.id.clone(),
                    name: l.name.clone(),
                    limit: l.limit,
                    duration: l.duration,
                    reset: l.reset,
                    remaining: l.remaining,
                    exceeded: l.exceeded,
                    auto_apply: l.auto_apply,
                })
                .collect()
        }),
    }
}
