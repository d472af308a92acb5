//! Extractors that reject in the vault's error format: the caller's identity and JSON bodies.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::domain::{Peer, Role};
use crate::error::VaultError;
use crate::http::AppState;

/// The verified client of this connection.
#[derive(Debug, Clone)]
pub struct Caller(pub Peer);

impl Caller {
    /// Refuses callers whose identity has none of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), VaultError> {
        match self.0.role {
            Some(role) if roles.contains(&role) => Ok(()),
            _ => {
                tracing::warn!(identity = %self.0.identity, addr = %self.0.addr, "refused: role");
                Err(VaultError::Forbidden { identity: self.0.identity.clone() })
            }
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = VaultError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, VaultError> {
        parts
            .extensions
            .get::<Peer>()
            .cloned()
            .map(Caller)
            .ok_or(VaultError::Forbidden { identity: "<no client certificate>".to_owned() })
    }
}

/// A JSON body. Errors name the field at fault but never echo a value, since values may be
/// server keys or plaintexts.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = VaultError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, VaultError> {
        let limit = state.vault.limits().max_body_bytes;
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                VaultError::BodyTooLarge { limit }
            } else {
                VaultError::InvalidRequest("cannot read the request body".to_owned())
            }
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(describe)?;
        de.end()
            .map_err(|_| VaultError::InvalidRequest("trailing data after the JSON body".into()))?;
        Ok(Self(value))
    }
}

fn describe(error: serde_path_to_error::Error<serde_json::Error>) -> VaultError {
    use serde_json::error::Category;
    let path = error.path().to_string();
    let inner = error.inner();
    let message = match inner.classify() {
        Category::Syntax => {
            format!("body is not valid JSON (line {}, column {})", inner.line(), inner.column())
        }
        Category::Eof => "body is empty or incomplete JSON".to_owned(),
        Category::Io => "cannot read the request body".to_owned(),
        Category::Data if path == "." => {
            "body has the wrong shape, is missing a field, or has an unknown field".to_owned()
        }
        Category::Data => format!("field `{path}` is missing, unknown or has the wrong type"),
    };
    VaultError::InvalidRequest(message)
}
