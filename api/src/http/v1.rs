//! Unkey's v1 calls that seed 003 names, in v1 shapes: `POST /v1/keys.createKey`,
//! `GET /v1/keys.getKey`, `GET /v1/apis.listKeys` and the open `POST /v1/keys.verifyKey`.
//! v1 errors are `{"error":{"code","message","docs","requestId"}}`.

use axum::Json;
use axum::extract::{FromRequest, Query, Request, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::Body;
use crate::context::request_id;
use crate::domain::keys::Key;
use crate::domain::verify::Code;
use crate::domain::{Invalid, unix_ms};
use crate::service::apis::ListKeys;
use crate::service::{Principal, ServiceError};

/// Error codes of `@unkey/api` 0.38.0's v1 errors (it also declares `DELETE_PROTECTED`, which
/// Strongbox never answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V1Code {
    /// The request is malformed.
    BadRequest,
    /// No valid root key.
    Unauthorized,
    /// The root key may not do this.
    Forbidden,
    /// No such resource.
    NotFound,
    /// A conflicting change.
    Conflict,
    /// The call needs something first, or the resource can no longer do it.
    PreconditionFailed,
    /// Too many requests.
    TooManyRequests,
    /// Failed on our side, or a service behind us is down.
    InternalServerError,
}

impl V1Code {
    /// As sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "BAD_REQUEST",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::Conflict => "CONFLICT",
            Self::PreconditionFailed => "PRECONDITION_FAILED",
            Self::TooManyRequests => "TOO_MANY_REQUESTS",
            Self::InternalServerError => "INTERNAL_SERVER_ERROR",
        }
    }

    /// The v1 code for a v2 error code: chosen by the cause, never by the HTTP status alone
    /// (a 410 and a 412 are both preconditions; a locked vault is a 503 that v1 can only call
    /// an internal error, with a message that names the cause).
    pub fn for_code(code: &str) -> Self {
        match code {
            "UNAUTHORIZED" => Self::Unauthorized,
            "INSUFFICIENT_PERMISSIONS" | "FORBIDDEN" => Self::Forbidden,
            "NOT_FOUND" => Self::NotFound,
            "CONFLICT" => Self::Conflict,
            "PRECONDITION_FAILED" | "KEY_NOT_RECOVERABLE" => Self::PreconditionFailed,
            "TOO_MANY_REQUESTS" | "RATE_LIMITED" => Self::TooManyRequests,
            "VAULT_LOCKED"
            | "VAULT_UNAVAILABLE"
            | "DATABASE_UNAVAILABLE"
            | "KEY_INTEGRITY_ERROR"
            | "INTERNAL_SERVER_ERROR" => Self::InternalServerError,
            // Every other code is a refused input: BAD_REQUEST, INVALID_*, PAYLOAD_TOO_LARGE,
            // PERMISSION_TOO_COMPLEX, NOT_SUPPORTED (roles), METHOD_NOT_ALLOWED.
            _ => Self::BadRequest,
        }
    }
}

/// A v1 error: the v2 error's status, a v1 code chosen by its cause, and its message.
pub struct V1Error(ApiError);

impl From<ApiError> for V1Error {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl From<ServiceError> for V1Error {
    fn from(error: ServiceError) -> Self {
        Self(error.into())
    }
}

impl From<Invalid> for V1Error {
    fn from(error: Invalid) -> Self {
        Self(error.into())
    }
}

impl IntoResponse for V1Error {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let code = V1Code::for_code(self.0.code()).as_str();
        let message = self.0.detail().to_owned();
        // Log 5xx once, through the v2 error's own logging.
        if status.is_server_error() {
            drop(self.0.into_response());
        }
        let body = json!({"error": {
            "code": code,
            "message": message,
            "docs": format!("tag:strongbox,2026:errors/{code}"),
            "requestId": request_id(),
        }});
        (status, Json(body)).into_response()
    }
}

/// A root key, refused in the v1 error shape.
pub struct CallerV1(Principal);

impl axum::extract::FromRequestParts<AppState> for CallerV1 {
    type Rejection = V1Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, V1Error> {
        Ok(Self(Caller::from_request_parts(parts, state).await?.0))
    }
}

/// Query parameters, refused in the v1 error shape.
pub struct QueryV1<T>(T);

impl<T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<AppState> for QueryV1<T> {
    type Rejection = V1Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, V1Error> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await.map_err(|e| {
            ApiError::bad_request(format!("invalid query string: {}", e.body_text()), Vec::new())
        })?;
        Ok(Self(value))
    }
}

/// The v1 key object.
fn key_v1(key: &Key) -> Value {
    let mut v = json!({
        "id": key.id,
        "start": key.start,
        "apiId": key.api_id,
        "workspaceId": key.workspace_id,
        "createdAt": unix_ms(key.created_at),
        "enabled": key.enabled,
        "permissions": key.permissions,
        "roles": [],
    });
    if let Some(name) = &key.name {
        v["name"] = json!(name);
    }
    if let Some(meta) = &key.meta {
        v["meta"] = meta.clone();
    }
    if let Some(t) = key.updated_at {
        v["updatedAt"] = json!(unix_ms(t));
    }
    if let Some(t) = key.expires_at {
        v["expires"] = json!(unix_ms(t));
    }
    if let Some(remaining) = key.credits_remaining {
        v["remaining"] = json!(remaining);
    }
    if let Some(r) = &key.refill {
        v["refill"] =
            json!({"interval": r.interval.as_str(), "amount": r.amount, "refillDay": r.day});
    }
    if let Some(limit) = key.ratelimits.iter().find(|l| l.auto_apply) {
        v["ratelimit"] = json!({"async": false, "type": "fast", "limit": limit.limit, "duration": limit.duration,
            "refillRate": limit.limit, "refillInterval": limit.duration});
    }
    if let Some((id, external_id)) = &key.identity {
        v["ownerId"] = json!(external_id);
        v["identity"] = json!({"id": id, "externalId": external_id});
    }
    v
}

/// The v1 createKey request.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateKeyV1 {
    api_id: String,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    byte_length: Option<i64>,
    #[serde(default)]
    owner_id: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    meta: Option<Value>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    #[serde(default)]
    expires: Option<i64>,
    #[serde(default)]
    remaining: Option<i64>,
    #[serde(default)]
    refill: Option<super::views::RefillIn>,
    #[serde(default)]
    ratelimit: Option<RatelimitV1>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    recoverable: Option<bool>,
}

/// v1's single rate limit.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RatelimitV1 {
    limit: i64,
    #[serde(default)]
    duration: Option<i64>,
    #[serde(default)]
    refill_interval: Option<i64>,
}

/// `POST /v1/keys.createKey`: the v2 call underneath, answered as v1 (`{keyId, key}`).
#[utoipa::path(post, path = "/v1/keys.createKey", tag = "v1", request_body = CreateKeyV1,
    responses((status = 200, description = "Unkey v1 createKey: {keyId, key}.", body = Object),
        (status = "4XX", description = "v1 error: {error: {code, message, docs, requestId}}", body = Object)),
    security(("rootKey" = [])),)]
pub async fn create_key(
    State(state): State<AppState>,
    CallerV1(caller): CallerV1,
    body: Result<Body<CreateKeyV1>, ApiError>,
) -> Result<Response, V1Error> {
    let Body(body) = body?;
    let mut v2 = json!({
        "apiId": body.api_id,
        "prefix": body.prefix,
        "name": body.name,
        "byteLength": body.byte_length,
        "externalId": body.external_id.or(body.owner_id),
        "meta": body.meta,
        "permissions": body.permissions,
        "expires": body.expires,
        "enabled": body.enabled,
        "recoverable": body.recoverable,
    });
    if body.remaining.is_some() || body.refill.is_some() {
        v2["credits"] = json!({"remaining": body.remaining, "refill": body.refill.map(|r| json!({"interval": r.interval, "amount": r.amount, "refillDay": r.refill_day}))});
    }
    if let Some(r) = body.ratelimit {
        let duration = r.duration.or(r.refill_interval).unwrap_or(1000);
        v2["ratelimits"] =
            json!([{"name": "default", "limit": r.limit, "duration": duration, "autoApply": true}]);
    }
    let request = serde_json::from_value(v2)
        .map_err(|_| ApiError::bad_request("invalid body", Vec::new()))?;
    let (api_id, recoverable, new) = super::keys::CreateKey::into_parts(request);
    let created = state.service.create_key(&caller, &api_id, recoverable, new).await?;
    Ok(Json(super::keys::created(&created)).into_response())
}

/// `?keyId=…&decrypt=…`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GetKeyQuery {
    key_id: String,
    #[serde(default)]
    decrypt: Option<bool>,
}

/// `GET /v1/keys.getKey?keyId=…&decrypt=true`.
#[utoipa::path(get, path = "/v1/keys.getKey", tag = "v1", params(("keyId" = String, Query, description = "The key"), ("decrypt" = Option<bool>, Query, description = "Include plaintext of recoverable keys")),
    responses((status = 200, description = "Unkey v1 key object.", body = Object),
        (status = "4XX", description = "v1 error: {error: {code, message, docs, requestId}}", body = Object)),
    security(("rootKey" = [])),)]
pub async fn get_key(
    State(state): State<AppState>,
    CallerV1(caller): CallerV1,
    QueryV1(q): QueryV1<GetKeyQuery>,
) -> Result<Response, V1Error> {
    let (key, plaintext) =
        state.service.get_key(&caller, &q.key_id, q.decrypt == Some(true)).await?;
    let mut body = key_v1(&key);
    if let Some(plaintext) = plaintext {
        body["plaintext"] = json!(plaintext.as_str());
    }
    Ok(Json(body).into_response())
}

/// `?apiId=…&limit=…&cursor=…&ownerId=…&externalId=…&decrypt=…`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListKeysQuery {
    api_id: String,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    owner_id: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default)]
    decrypt: Option<bool>,
}

/// `GET /v1/apis.listKeys?apiId=…&decrypt=true`: `{keys, cursor?, total}`.
#[utoipa::path(get, path = "/v1/apis.listKeys", tag = "v1", params(("apiId" = String, Query, description = "The API"), ("limit" = Option<i64>, Query, description = "1-100"), ("cursor" = Option<String>, Query, description = "From the previous page"), ("ownerId" = Option<String>, Query, description = "Filter by owner"), ("decrypt" = Option<bool>, Query, description = "Include plaintexts")),
    responses((status = 200, description = "Unkey v1 {keys, cursor?, total}.", body = Object),
        (status = "4XX", description = "v1 error: {error: {code, message, docs, requestId}}", body = Object)),
    security(("rootKey" = [])),)]
pub async fn list_keys(
    State(state): State<AppState>,
    CallerV1(caller): CallerV1,
    QueryV1(q): QueryV1<ListKeysQuery>,
) -> Result<Response, V1Error> {
    let ask = ListKeys {
        api_id: q.api_id,
        external_id: q.external_id.or(q.owner_id),
        cursor: q.cursor,
        limit: q.limit,
        decrypt: q.decrypt == Some(true),
        total: true,
    };
    let page = state.service.list_keys(&caller, ask).await?;
    let keys: Vec<Value> = page
        .keys
        .iter()
        .map(|k| {
            let mut v = key_v1(k);
            if let Some(p) = page.plaintexts.get(&k.id) {
                v["plaintext"] = json!(p.as_str());
            }
            v
        })
        .collect();
    let mut body = json!({"keys": keys, "total": page.total.unwrap_or(0)});
    if let Some(cursor) = page.cursor {
        body["cursor"] = json!(cursor);
    }
    Ok(Json(body).into_response())
}

/// The v1 verifyKey request.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyKeyV1 {
    key: String,
    #[serde(default)]
    api_id: Option<String>,
    #[serde(default)]
    authorization: Option<Authorization>,
}

/// `{"permissions": "a AND b" | {"and":[…]} | {"or":[…]}}`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct Authorization {
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    permissions: Option<Value>,
}

/// v1's permission query object, as a query string.
fn query_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => {
            let (op, items) =
                o.get("and").map(|v| ("AND", v)).or_else(|| o.get("or").map(|v| ("OR", v)))?;
            let parts: Option<Vec<String>> = items.as_array()?.iter().map(query_text).collect();
            Some(format!("({})", parts?.join(&format!(" {op} "))))
        }
        _ => None,
    }
}

/// `POST /v1/keys.verifyKey`: open, as v1 was. A key of another API than `apiId` is FORBIDDEN.
#[utoipa::path(post, path = "/v1/keys.verifyKey", tag = "v1", request_body = VerifyKeyV1,
    responses((status = 200, description = "Unkey v1 verifyKey, open (no root key): {valid, code, keyId?, …}.", body = Object),
        (status = "4XX", description = "v1 error: {error: {code, message, docs, requestId}}", body = Object)),)]
pub async fn verify_key(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, V1Error> {
    let Body(body) = Body::<VerifyKeyV1>::from_request(request, &state).await?;
    let permissions = match body.authorization.and_then(|a| a.permissions) {
        Some(value) => Some(query_text(&value).ok_or_else(|| {
            Invalid::new(
                "INVALID_PERMISSION_QUERY",
                "authorization.permissions",
                "expected a string or {and|or: [...]}",
            )
        })?),
        None => None,
    };
    let request = super::verify::parse(body.key, permissions.as_deref(), None, Vec::new())?;
    let verdict = state.service.verify_key_open(body.api_id.as_deref(), request).await?;
    let mut v = json!({"valid": verdict.code == Code::Valid, "code": verdict.code, "requestId": request_id()});
    if let Some(key) = &verdict.key {
        v["keyId"] = json!(key.id);
        v["enabled"] = json!(key.enabled);
        v["permissions"] = json!(key.permissions);
        if let Some(name) = &key.name {
            v["name"] = json!(name);
        }
        if let Some(meta) = &key.meta {
            v["meta"] = meta.clone();
        }
        if let Some(t) = key.expires_at {
            v["expires"] = json!(unix_ms(t));
        }
        if let Some(c) = verdict.credits {
            v["remaining"] = json!(c);
        }
        if let Some((_, external)) = &key.identity {
            v["ownerId"] = json!(external);
        }
        if let Some(l) = verdict.ratelimits.first() {
            v["ratelimit"] = json!({"limit": l.limit, "remaining": l.remaining, "reset": l.reset});
        }
    }
    Ok(Json(v).into_response())
}

#[cfg(test)]
mod tests {
    use super::V1Code;

    #[test]
    fn v1_codes_follow_the_cause_not_the_status() {
        let cases = [
            ("KEY_NOT_RECOVERABLE", "PRECONDITION_FAILED"),
            ("PRECONDITION_FAILED", "PRECONDITION_FAILED"),
            ("TOO_MANY_REQUESTS", "TOO_MANY_REQUESTS"),
            ("VAULT_LOCKED", "INTERNAL_SERVER_ERROR"),
            ("VAULT_UNAVAILABLE", "INTERNAL_SERVER_ERROR"),
            ("DATABASE_UNAVAILABLE", "INTERNAL_SERVER_ERROR"),
            ("INSUFFICIENT_PERMISSIONS", "FORBIDDEN"),
            ("UNAUTHORIZED", "UNAUTHORIZED"),
            ("NOT_FOUND", "NOT_FOUND"),
            ("PERMISSION_TOO_COMPLEX", "BAD_REQUEST"),
            ("INVALID_PREFIX", "BAD_REQUEST"),
            ("NOT_SUPPORTED", "BAD_REQUEST"),
        ];
        for (v2, v1) in cases {
            assert_eq!(V1Code::for_code(v2).as_str(), v1, "{v2}");
        }
    }
}
