//! `keys.verifyKey` (v2): every outcome is HTTP 200 with `valid` and `code`.

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use strongbox_shared::permissions::Query;

use super::AppState;
use super::auth::Caller;
use super::envelope::Data;
use super::error::ApiError;
use super::extract::Body;
use crate::domain::unix_ms;
use crate::domain::verify::{Code, RequestedLimit, Verdict, VerifyRequest};

/// The verifyKey request.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyKey {
    key: String,
    #[serde(default)]
    permissions: Option<String>,
    #[serde(default)]
    credits: Option<Cost>,
    #[serde(default)]
    ratelimits: Option<Vec<LimitIn>>,
}

/// `{"cost"}`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct Cost {
    cost: i64,
}

/// A rate limit named in the request.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct LimitIn {
    name: String,
    #[serde(default)]
    cost: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    duration: Option<i64>,
}

/// Checks the request's own shape: a bad query or cost is a 400, not an outcome.
pub fn parse(
    key: String,
    permissions: Option<&str>,
    cost: Option<i64>,
    limits: Vec<LimitIn>,
) -> Result<VerifyRequest, ApiError> {
    if key.is_empty() || key.len() > 1024 {
        return Err(ApiError::invalid("INVALID_KEY", "key", "key must be 1-1024 characters"));
    }
    let permissions = permissions
        .map(Query::parse)
        .transpose()
        .map_err(|e| ApiError::invalid("INVALID_PERMISSION_QUERY", "permissions", e.to_string()))?;
    let cost = cost.unwrap_or(1);
    if cost < 0 {
        return Err(ApiError::invalid("INVALID_COST", "credits.cost", "cost must not be negative"));
    }
    let mut ratelimits = Vec::new();
    for (i, l) in limits.into_iter().enumerate() {
        if l.cost.is_some_and(|c| c < 0)
            || l.limit.is_some_and(|c| c < 1)
            || l.duration.is_some_and(|d| d < 1000)
        {
            return Err(ApiError::invalid(
                "INVALID_RATELIMIT",
                &format!("ratelimits[{i}]"),
                "cost ≥ 0, limit ≥ 1 and duration ≥ 1000 ms",
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
    responses((status = 200, description = "Every outcome is 200. data: {valid, code, keyId?, name?, meta?, expires?, credits?, enabled?, permissions?, roles?, identity?, ratelimits?}.", body = super::openapi::SuccessResponse),
        (status = "4XX", description = "Refused: see error.code", body = super::openapi::ErrorResponse),
        (status = "5XX", description = "Failed: see error.code", body = super::openapi::ErrorResponse)),
    security(("rootKey" = [])))]
pub async fn verify_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(body): Body<VerifyKey>,
) -> Result<Data<Value>, ApiError> {
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
pub fn data(verdict: &Verdict) -> Value {
    let mut v = json!({"valid": verdict.code == Code::Valid, "code": verdict.code});
    if let Some(key) = &verdict.key {
        v["keyId"] = json!(key.id);
        v["enabled"] = json!(key.enabled);
        v["permissions"] = json!(key.permissions);
        v["roles"] = json!([]);
        if let Some(name) = &key.name {
            v["name"] = json!(name);
        }
        if let Some(meta) = &key.meta {
            v["meta"] = meta.clone();
        }
        if let Some(expires) = key.expires_at {
            v["expires"] = json!(unix_ms(expires));
        }
        if let Some(credits) = verdict.credits {
            v["credits"] = json!(credits);
        }
        if let Some((id, external_id)) = &key.identity {
            v["identity"] = json!({"id": id, "externalId": external_id});
        }
        if !verdict.ratelimits.is_empty() {
            v["ratelimits"] = json!(verdict.ratelimits);
        }
    }
    v
}
