//! The one error type at the HTTP edge, in Unkey's v2 shape:
//! `{"meta":{"requestId"},"error":{"title","detail","status","type","code","errors"?}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::context::request_id;
use crate::domain::Invalid;
use crate::service::ServiceError;

/// A field-level problem of a 400.
#[derive(Debug, Clone, Serialize)]
pub struct FieldError {
    /// Where: `body.<path>`.
    pub location: String,
    /// What is wrong, without echoing the value.
    pub message: String,
}

/// An error answer. 5xx are logged once, here, and never echo internal detail.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    errors: Vec<FieldError>,
    source: Option<anyhow::Error>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self { status, code, detail: detail.into(), errors: Vec::new(), source: None }
    }

    /// 400 with a stable code and the field at fault.
    pub fn invalid(code: &'static str, location: &str, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        let mut e = Self::new(StatusCode::BAD_REQUEST, code, detail.clone());
        let location =
            if location.is_empty() { "body".to_owned() } else { format!("body.{location}") };
        e.errors.push(FieldError { location, message: detail });
        e
    }

    /// 400 `BAD_REQUEST`: the body is not the JSON this route takes.
    pub fn bad_request(detail: impl Into<String>, errors: Vec<FieldError>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", detail);
        e.errors = errors;
        e
    }

    /// 401 `UNAUTHORIZED`.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", detail)
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", detail)
    }

    /// 413 `PAYLOAD_TOO_LARGE`.
    pub fn payload_too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", detail)
    }

    /// 501 `NOT_SUPPORTED`.
    pub fn not_supported(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, "NOT_SUPPORTED", detail)
    }

    /// 405 `METHOD_NOT_ALLOWED`.
    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "use POST for /v2 calls")
    }

    /// 500: logged with its cause, answered without it.
    pub fn internal(source: anyhow::Error) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_SERVER_ERROR",
            "something went wrong on our side; the request id identifies it in the logs",
        );
        e.source = Some(source);
        e
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The explanation for people.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        let code = error.code();
        let detail = error.to_string();
        match error {
            ServiceError::Invalid(invalid) => Self::from(invalid),
            ServiceError::Unauthenticated(_) => Self::new(StatusCode::UNAUTHORIZED, code, detail),
            ServiceError::Forbidden(_) => Self::new(StatusCode::FORBIDDEN, code, detail),
            ServiceError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, code, detail),
            ServiceError::PreconditionFailed(_) => {
                Self::new(StatusCode::PRECONDITION_FAILED, code, detail)
            }
            ServiceError::Conflict(_) => Self::new(StatusCode::CONFLICT, code, detail),
            ServiceError::NotSupported(_) => Self::new(StatusCode::NOT_IMPLEMENTED, code, detail),
            ServiceError::VaultLocked | ServiceError::VaultUnavailable(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, code, detail)
            }
            ServiceError::NotRecoverable(_) => Self::new(StatusCode::GONE, code, detail),
            ServiceError::Integrity(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, code, detail)
            }
            ServiceError::DatabaseUnavailable(source) => {
                let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, code, detail);
                e.source = Some(source);
                e
            }
            ServiceError::Internal(source) => Self::internal(source),
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> Self {
        Self::invalid(invalid.code, &invalid.location, invalid.detail)
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(error: tokio_postgres::Error) -> Self {
        let unavailable = strongbox_shared::db::is_unavailable(&error);
        let source = anyhow::Error::new(error);
        if unavailable {
            Self::from(ServiceError::DatabaseUnavailable(source))
        } else {
            Self::internal(source)
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Self::from(ServiceError::from(error))
    }
}

fn title(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = request_id();
        if let Some(source) = &self.source {
            tracing::error!(
                request_id,
                code = self.code,
                error = format!("{source:#}"),
                "request failed"
            );
        }
        let mut error = json!({
            "title": title(self.status),
            "detail": self.detail,
            "status": self.status.as_u16(),
            "type": format!("tag:strongbox,2026:errors/{}", self.code),
            "code": self.code,
        });
        if !self.errors.is_empty() {
            error["errors"] = json!(self.errors);
        }
        (self.status, axum::Json(json!({"meta": {"requestId": request_id}, "error": error})))
            .into_response()
    }
}
