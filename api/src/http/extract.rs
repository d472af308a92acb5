//! A JSON body extractor that rejects in Unkey's error shape, naming the field at fault without
//! echoing its value (values may be keys).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::error::{ApiError, FieldError};

/// Largest request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A JSON body of type `T`.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large(format!(
                    "the request body exceeds {MAX_BODY_BYTES} bytes"
                ))
            } else {
                ApiError::bad_request("cannot read the request body", Vec::new())
            }
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(describe)?;
        de.end()
            .map_err(|_| ApiError::bad_request("trailing data after the JSON body", Vec::new()))?;
        Ok(Self(value))
    }
}

fn describe(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    use serde_json::error::Category;
    let path = error.path().to_string();
    let inner = error.inner();
    match inner.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::bad_request(
            format!(
                "the body is not valid JSON (line {}, column {})",
                inner.line(),
                inner.column()
            ),
            Vec::new(),
        ),
        Category::Data => {
            let reason = data_reason(&inner.to_string());
            let location = if path == "." { "body".to_owned() } else { format!("body.{path}") };
            ApiError::bad_request(
                format!("{location}: {reason}"),
                vec![FieldError { location, message: reason }],
            )
        }
    }
}

/// serde's message without any quoted value: "missing field `apiId`" is kept, an echoed value
/// ("invalid type: string \"sk_…\"") is reduced to its kind.
fn data_reason(message: &str) -> String {
    let message = message.split(" at line ").next().unwrap_or(message);
    if message.starts_with("missing field") || message.starts_with("unknown field") {
        return message.to_owned();
    }
    if let Some(expected) = message.split(", expected ").nth(1) {
        return format!("wrong type, expected {expected}");
    }
    "invalid value".to_owned()
}
