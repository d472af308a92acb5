//! Unkey's v1 calls that seed 003 names, in v1 shapes: `POST /v1/keys.createKey`,
//! `GET /v1/keys.getKey`, `GET /v1/apis.listKeys` and the open `POST /v1/keys.verifyKey`.
//! v1 errors are `{"error":{"code","message","docs","requestId"}}`.

use axum::Json;
use axum::extract::{FromRequest, Query, Request, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::Body;
use super::verify::VerifyCode;
use super::views::{IdentityData, Interval};
use crate::context::request_id;
use crate::domain::keys::Key;
use crate::domain::verify::Code;
use crate::domain::{Invalid, unix_ms};
use crate::service::apis::ListKeys;
use crate::service::{Principal, ServiceError};

/// Error codes of `@unkey/api` 0.38.0's v1 errors (it also declares `DELETE_PROTECTED`, which
/// Strongbox never answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
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

/// `error` of a v1 error.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct V1ErrorDetail {
    /// The cause, as one of v1's codes.
    pub code: V1Code,
    /// What went wrong, for people.
    pub message: String,
    /// A URI ending in `/<code>`.
    pub docs: String,
    /// `req_…`, also in the logs.
    pub request_id: String,
}

/// A v1 error: `{"error":{"code","message","docs","requestId"}}`.
#[derive(Serialize, ToSchema)]
pub struct V1ErrorResponse {
    /// The error.
    pub error: V1ErrorDetail,
}

impl IntoResponse for V1Error {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let code = V1Code::for_code(self.0.code());
        let message = self.0.detail().to_owned();
        // Log 5xx once, through the v2 error's own logging.
        if status.is_server_error() {
            drop(self.0.into_response());
        }
        let body = V1ErrorResponse {
            error: V1ErrorDetail {
                code,
                message,
                docs: format!("tag:strongbox,2026:errors/{}", code.as_str()),
                request_id: request_id(),
            },
        };
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
        // A NUL can only arrive percent-encoded; Postgres refuses it in text.
        if parts.uri.query().is_some_and(|q| q.contains("%00")) {
            return Err(Invalid::new(
                "INVALID_STRING",
                "query",
                "query values must not contain the NUL character (U+0000)",
            )
            .into());
        }
        let Query(value) = Query::<T>::from_request_parts(parts, state).await.map_err(|e| {
            ApiError::bad_request(format!("invalid query string: {}", e.body_text()), Vec::new())
        })?;
        Ok(Self(value))
    }
}

/// v1's refill rule.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefillV1 {
    /// `daily` or `monthly`.
    pub interval: Interval,
    /// Credits after each refill.
    pub amount: i64,
    /// Day of the month, or null.
    #[schema(required)]
    pub refill_day: Option<i16>,
}

/// v1's single rate limit, as a key shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRatelimitV1 {
    /// Always false: limits are decided on the request path.
    #[serde(rename = "async")]
    pub is_async: bool,
    /// Always `fast`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Requests per window.
    pub limit: i64,
    /// Window, ms.
    pub duration: i64,
    /// v1's name for the limit.
    pub refill_rate: i64,
    /// v1's name for the window.
    pub refill_interval: i64,
}

/// The v1 key object.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyV1 {
    /// `key_…`.
    pub id: String,
    /// The prefix and the first characters.
    pub start: String,
    /// The API.
    pub api_id: String,
    /// The workspace.
    pub workspace_id: String,
    /// Unix ms.
    pub created_at: i64,
    /// Disabled keys do not verify.
    pub enabled: bool,
    /// Permission patterns.
    pub permissions: Vec<String>,
    /// Always empty.
    pub roles: Vec<String>,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free-form JSON object.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub meta: Option<Value>,
    /// Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
    /// Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    /// Credits left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<i64>,
    /// Refill rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refill: Option<RefillV1>,
    /// The first auto-applied rate limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratelimit: Option<KeyRatelimitV1>,
    /// The identity's external id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// The identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityData>,
    /// The key itself, for recoverable keys asked for with `decrypt`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub plaintext: Option<super::views::KeyText>,
}

fn key_v1(key: &Key, plaintext: Option<&str>) -> KeyV1 {
    KeyV1 {
        id: key.id.clone(),
        start: key.start.clone(),
        api_id: key.api_id.clone(),
        workspace_id: key.workspace_id.clone(),
        created_at: unix_ms(key.created_at),
        enabled: key.enabled,
        permissions: key.permissions.clone(),
        roles: Vec::new(),
        name: key.name.clone(),
        meta: key.meta.clone(),
        updated_at: key.updated_at.map(unix_ms),
        expires: key.expires_at.map(unix_ms),
        remaining: key.credits_remaining,
        refill: key.refill.as_ref().map(|r| RefillV1 {
            interval: r.interval.into(),
            amount: r.amount,
            refill_day: r.day,
        }),
        ratelimit: key.ratelimits.iter().find(|l| l.auto_apply).map(|l| KeyRatelimitV1 {
            is_async: false,
            kind: "fast".to_owned(),
            limit: l.limit,
            duration: l.duration,
            refill_rate: l.limit,
            refill_interval: l.duration,
        }),
        owner_id: key.identity.as_ref().map(|(_, external)| external.clone()),
        identity: key.identity.as_ref().map(|(id, external_id)| IdentityData {
            id: id.clone(),
            external_id: external_id.clone(),
            meta: None,
            ratelimits: None,
        }),
        plaintext: plaintext.map(super::views::KeyText::new),
    }
}

/// `{keys, cursor?, total}`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyListV1 {
    /// The page.
    pub keys: Vec<KeyV1>,
    /// Where the next page starts; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// How many keys the API has.
    pub total: i64,
}

/// A rate limit applied by a v1 verification.
#[derive(Serialize, ToSchema)]
pub struct VerifyRatelimitV1 {
    /// Limit.
    pub limit: i64,
    /// Left in the window.
    pub remaining: i64,
    /// End of the window, Unix ms.
    pub reset: i64,
}

/// v1's verification answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyV1 {
    /// Whether every check passed.
    pub valid: bool,
    /// Why (or why not).
    pub code: VerifyCode,
    /// `req_…`.
    pub request_id: String,
    /// The key, when found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Whether the key is enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The key's permissions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
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
    /// Credits left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<i64>,
    /// The identity's external id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// The first rate limit applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratelimit: Option<VerifyRatelimitV1>,
}

/// The v1 createKey request.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateKeyV1 {
    /// The API the key belongs to.
    api_id: String,
    /// 1-16 of `A-Z a-z 0-9 _`.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_]{1,16}$")]
    prefix: Option<String>,
    /// Display name, at most 255 characters.
    #[serde(default)]
    #[schema(max_length = 255)]
    name: Option<String>,
    /// Random bytes in the key, 16-255 (default 16).
    #[serde(default)]
    #[schema(minimum = 16, maximum = 255)]
    byte_length: Option<i64>,
    /// v1's name for `externalId`, 1-255 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    owner_id: Option<String>,
    /// Your id for the key's owner, 1-255 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    external_id: Option<String>,
    /// A JSON object of at most 10 KB.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    meta: Option<Value>,
    /// Permission patterns, at most 1000.
    #[serde(default)]
    #[schema(value_type = Option<Vec<super::views::PermissionName>>, max_items = 1000)]
    permissions: Option<Vec<String>>,
    /// Expiry in Unix ms, in the future.
    #[serde(default)]
    expires: Option<i64>,
    /// Starting credits, 0 to 10^15.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_000_i64)]
    remaining: Option<i64>,
    /// Refill rule (needs `remaining`).
    #[serde(default)]
    refill: Option<super::views::RefillIn>,
    /// One rate limit, applied on every verification.
    #[serde(default)]
    ratelimit: Option<RatelimitV1>,
    /// Enabled from the start (default true).
    #[serde(default)]
    enabled: Option<bool>,
    /// Store the key encrypted through the vault.
    #[serde(default)]
    recoverable: Option<bool>,
}

/// v1's single rate limit.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RatelimitV1 {
    /// Requests per window, 1 to 10^15.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_i64)]
    limit: i64,
    /// Window in ms, 1 s to 30 days (default 1 s).
    #[serde(default)]
    #[schema(minimum = 1000, maximum = 2_592_000_000_i64)]
    duration: Option<i64>,
    /// v1's older name for `duration`.
    #[serde(default)]
    #[schema(minimum = 1000, maximum = 2_592_000_000_i64)]
    refill_interval: Option<i64>,
}

/// `POST /v1/keys.createKey`: the v2 call underneath, answered as v1 (`{keyId, key}`).
#[utoipa::path(post, path = "/v1/keys.createKey", tag = "v1", request_body = CreateKeyV1,
    responses((status = 200, description = "Unkey v1 createKey: {keyId, key}.", body = super::views::CreatedKeyData),
        (status = "4XX", description = "v1 error", body = V1ErrorResponse),
        (status = "5XX", description = "v1 error", body = V1ErrorResponse)),
    security(("rootKey" = [])),)]
pub async fn create_key(
    State(state): State<AppState>,
    CallerV1(caller): CallerV1,
    body: Result<Body<CreateKeyV1>, ApiError>,
) -> Result<Response, V1Error> {
    let Body(body) = body?;
    // Both names of the owner are checked, though only one is used.
    if let Some(owner) = &body.owner_id {
        crate::domain::keys::check_external_id(owner)?;
    }
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
        let window = 1000..=crate::domain::keys::MAX_WINDOW_MS;
        if [r.duration, r.refill_interval].iter().flatten().any(|d| !window.contains(d)) {
            return Err(Invalid::new(
                "INVALID_RATELIMIT",
                "ratelimit",
                "duration and refillInterval must be 1 s to 30 days in ms",
            )
            .into());
        }
        let duration = r.duration.or(r.refill_interval).unwrap_or(1000);
        v2["ratelimits"] =
            json!([{"name": "default", "limit": r.limit, "duration": duration, "autoApply": true}]);
    }
    let request = serde_json::from_value(v2)
        .map_err(|_| ApiError::bad_request("invalid body", Vec::new()))?;
    let (api_id, recoverable, new) = super::keys::CreateKey::into_parts(request);
    let created = state.service.create_key(&caller, &api_id, recoverable, new).await?;
    Ok(Json(super::keys::created(created)).into_response())
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
    responses((status = 200, description = "Unkey v1 key object.", body = KeyV1),
        (status = "4XX", description = "v1 error", body = V1ErrorResponse),
        (status = "5XX", description = "v1 error", body = V1ErrorResponse)),
    security(("rootKey" = [])),)]
pub async fn get_key(
    State(state): State<AppState>,
    CallerV1(caller): CallerV1,
    QueryV1(q): QueryV1<GetKeyQuery>,
) -> Result<Response, V1Error> {
    let (key, plaintext) =
        state.service.get_key(&caller, &q.key_id, q.decrypt == Some(true)).await?;
    Ok(Json(key_v1(&key, plaintext.as_ref().map(|p| p.as_str()))).into_response())
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
#[utoipa::path(get, path = "/v1/apis.listKeys", tag = "v1", params(("apiId" = String, Query, description = "The API"), ("limit" = Option<i64>, Query, description = "1-100", minimum = 1, maximum = 100), ("cursor" = Option<String>, Query, description = "From the previous page"), ("ownerId" = Option<String>, Query, description = "Filter by owner"), ("decrypt" = Option<bool>, Query, description = "Include plaintexts")),
    responses((status = 200, description = "Unkey v1 {keys, cursor?, total}.", body = KeyListV1),
        (status = "4XX", description = "v1 error", body = V1ErrorResponse),
        (status = "5XX", description = "v1 error", body = V1ErrorResponse)),
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
    let keys = page
        .keys
        .iter()
        .map(|k| key_v1(k, page.plaintexts.get(&k.id).map(|p| p.as_str())))
        .collect();
    let body = KeyListV1 { keys, cursor: page.cursor, total: page.total.unwrap_or(0) };
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
    responses((status = 200, description = "Unkey v1 verifyKey, open (no root key).", body = VerifyV1),
        (status = "4XX", description = "v1 error", body = V1ErrorResponse),
        (status = "5XX", description = "v1 error", body = V1ErrorResponse)),)]
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
    let key = verdict.key.as_deref();
    let v = VerifyV1 {
        valid: verdict.code == Code::Valid,
        code: verdict.code.into(),
        request_id: request_id(),
        key_id: key.map(|k| k.id.clone()),
        enabled: key.map(|k| k.enabled),
        permissions: key.map(|k| k.permissions.clone()),
        name: key.and_then(|k| k.name.clone()),
        meta: key.and_then(|k| k.meta.clone()),
        expires: key.and_then(|k| k.expires_at.map(unix_ms)),
        remaining: key.and(verdict.credits),
        owner_id: key.and_then(|k| k.identity.as_ref().map(|(_, external)| external.clone())),
        ratelimit: key.and(verdict.ratelimits.first()).map(|l| VerifyRatelimitV1 {
            limit: l.limit,
            remaining: l.remaining,
            reset: l.reset,
        }),
    };
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
