//! The caller of an admin route: a root key, accepted only as `Authorization: Bearer`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use strongbox_shared::keys::{hash, looks_like_root_key};
use strongbox_shared::permissions::Permission;

use super::error::ApiError;
use crate::startup::AppState;
use crate::store::root_keys;

/// An authenticated root key.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The root key's id (logged as `auth.root_key`).
    pub key_id: String,
    /// The workspace it administers; nothing outside it is visible.
    pub workspace_id: String,
    /// What it may do.
    pub permissions: Vec<Permission>,
}

impl Caller {
    /// Refuses with 403 unless one of the root key's permissions matches `permission`.
    pub fn require(&self, permission: &str) -> Result<(), ApiError> {
        if self.permissions.iter().any(|p| p.matches(permission)) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("this root key lacks the permission {permission}")))
        }
    }

    /// Whether the root key holds `permission`.
    pub fn has(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p.matches(permission))
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts.headers.get(axum::http::header::AUTHORIZATION);
    let Some(value) = header.and_then(|v| v.to_str().ok()) else {
        let elsewhere = parts.headers.contains_key("x-api-key")
            || parts.uri.query().is_some_and(|q| !q.is_empty());
        return Err(ApiError::unauthorized(if elsewhere {
            "root keys are accepted only as an Authorization: Bearer header, never in X-API-Key or the query string"
        } else {
            "missing Authorization: Bearer <root key>"
        }));
    };
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthorized("the Authorization header must be: Bearer <root key>"));
    }
    Ok(token.trim())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        if !looks_like_root_key(token) {
            return Err(ApiError::unauthorized("the root key is invalid"));
        }
        let hashed = hash(token);
        let key = match state.cache.root_key(&hashed) {
            Some(key) => key,
            None => {
                let epoch = state.cache.epoch();
                let client = state.pool.get().await?;
                let Some(key) = root_keys::by_hash(&client, &hashed).await? else {
                    return Err(ApiError::unauthorized("the root key is invalid"));
                };
                let key = std::sync::Arc::new(key);
                state.cache.put_root_key_if_current(hashed, key.clone(), epoch);
                key
            }
        };
        if !key.enabled {
            return Err(ApiError::unauthorized("the root key is disabled"));
        }
        if key.expires_at.is_some_and(|t| t <= time::OffsetDateTime::now_utc()) {
            return Err(ApiError::unauthorized("the root key has expired"));
        }
        let span = tracing::Span::current();
        span.record("auth.root_key", key.id.as_str());
        span.record("workspace_id", key.workspace_id.as_str());
        Ok(Self {
            permissions: key.permissions.iter().filter_map(|p| Permission::parse(p).ok()).collect(),
            key_id: key.id.clone(),
            workspace_id: key.workspace_id.clone(),
        })
    }
}
