//! The caller of an admin route: a root key, accepted only as `Authorization: Bearer`, and
//! authenticated by the service into a [`Principal`].

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::service::Principal;

/// An authenticated root key.
pub struct Caller(pub Principal);

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
        Ok(Self(state.service.authenticate(token).await?))
    }
}
