//! A JSON body extractor that rejects in Unkey's error shape, naming the field at fault without
//! echoing its value (values may be keys).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::error::{ApiError, FieldError};

/// Largest request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A JSON body of type `T`: a JSON object.
pub struct Body<T>(pub T);

/// A JSON body that is an array of `T` (`ratelimit.multiLimit`).
pub struct ArrayBody<T>(pub Vec<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        read(req, state, Shape::Object).await.map(Self)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ArrayBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        read(req, state, Shape::Array).await.map(Self)
    }
}

/// What a route's body must be at the top level.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Object,
    Array,
}

async fn read<S: Send + Sync, T: DeserializeOwned>(
    req: Request,
    state: &S,
    shape: Shape,
) -> Result<T, ApiError> {
    let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large(format!("the request body exceeds {MAX_BODY_BYTES} bytes"))
        } else {
            ApiError::bad_request("cannot read the request body", Vec::new())
        }
    })?;
    check_text(&bytes, shape)?;
    // serde_json's messages name a position and a reason, never the text itself.
    let json = strongbox_shared::json::parse(&bytes).map_err(|e| {
        ApiError::bad_request(format!("the body is not valid JSON: {e}"), Vec::new())
    })?;
    let value = strongbox_shared::json::from_value(&json).map_err(describe);
    // The body and its parsed copy may hold keys or plaintexts; the typed value is all
    // that is kept.
    strongbox_shared::json::scrub(json);
    strongbox_shared::json::scrub_bytes(bytes);
    value
}

/// What every body must be before it is parsed: UTF-8, the route's shape (serde would also build
/// a struct from an array), and free of NUL characters, which Postgres refuses in text and which
/// no field has a use for. JSON strings cannot hold a raw control character, so a NUL can only
/// be written as the escape `\u0000`; the scan below finds exactly those.
fn check_text(bytes: &[u8], shape: Shape) -> Result<(), ApiError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(ApiError::invalid("INVALID_STRING", "", "the body is not valid UTF-8"));
    }
    let first = bytes.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    let (open, what) = match shape {
        Shape::Object => (b'{', "the body must be a JSON object"),
        Shape::Array => (b'[', "the body must be a JSON array"),
    };
    if first != Some(&open) {
        return Err(ApiError::bad_request(what, Vec::new()));
    }
    if holds_nul(bytes) {
        return Err(ApiError::invalid(
            "INVALID_STRING",
            "",
            "strings must not contain the NUL character (U+0000)",
        ));
    }
    Ok(())
}

/// Whether JSON text holds the escape `\u0000` (an escaped backslash before `u0000` does not
/// count).
pub fn holds_nul(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) == Some(&b'u') && bytes.get(i + 2..i + 6) == Some(&b"0000"[..]) {
                return true;
            }
            // Skip the escaped character, whatever it is.
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

fn describe(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = error.path().to_string();
    let reason = data_reason(&error.inner().to_string());
    let location = if path == "." { "body".to_owned() } else { format!("body.{path}") };
    ApiError::bad_request(
        format!("{location}: {reason}"),
        vec![FieldError { location, message: reason }],
    )
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

#[cfg(test)]
mod tests {
    use super::holds_nul;

    #[test]
    fn a_nul_is_found_only_as_a_real_escape() {
        assert!(holds_nul(br#"{"a":"x\u0000y"}"#));
        assert!(holds_nul(br#"{"a":"\\\u0000"}"#), "an escaped backslash, then the escape");
        assert!(!holds_nul(br#"{"a":"\\u0000"}"#), "a backslash, then the text u0000");
        assert!(!holds_nul(br#"{"a":"\u0001"}"#));
        assert!(!holds_nul(br#"{"a":"plain"}"#));
    }
}
