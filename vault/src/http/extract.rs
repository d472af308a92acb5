//! Extractors that reject in the vault's error format: who may call a route (checked before
//! the body is read), the keyring in the path, JSON bodies, and the absence of one.

use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::domain::{KeyringName, Peer, Role};
use crate::error::VaultError;
use crate::http::AppState;

/// A set of roles allowed to call a route, as a type.
pub trait Allowed {
    /// The roles.
    const ROLES: &'static [Role];
}

/// The operator's identity.
pub struct Operator;
impl Allowed for Operator {
    const ROLES: &'static [Role] = &[Role::Operator];
}

/// The api's identity.
pub struct Api;
impl Allowed for Api {
    const ROLES: &'static [Role] = &[Role::Api];
}

/// The api's, or the rewrap job's.
pub struct ApiOrRewrap;
impl Allowed for ApiOrRewrap {
    const ROLES: &'static [Role] = &[Role::Api, Role::Rewrap];
}

/// Any role the vault knows.
pub struct AnyRole;
impl Allowed for AnyRole {
    const ROLES: &'static [Role] = &[Role::Api, Role::Rewrap, Role::Operator];
}

/// The verified client of this connection, holding one of `R`'s roles. Checked from the
/// connection before the request's body or path are looked at, so a caller without the role
/// learns nothing about what the route accepts.
pub struct Caller<R>(pub Peer, PhantomData<R>);

impl<R: Allowed, S: Send + Sync> FromRequestParts<S> for Caller<R> {
    type Rejection = VaultError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, VaultError> {
        let Some(peer) = parts.extensions.get::<Peer>().cloned() else {
            return Err(VaultError::Forbidden { identity: "<no client certificate>".to_owned() });
        };
        match peer.role {
            Some(role) if R::ROLES.contains(&role) => Ok(Self(peer, PhantomData)),
            _ => {
                tracing::warn!(identity = %peer.identity, addr = %peer.addr, "refused: role");
                Err(VaultError::Forbidden { identity: peer.identity })
            }
        }
    }
}

/// The `{keyring}` of the path, parsed. A segment that is not UTF-8 is an invalid name, in the
/// vault's error format like any other.
pub struct KeyringPath(pub KeyringName);

impl<S: Send + Sync> FromRequestParts<S> for KeyringPath {
    type Rejection = VaultError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, VaultError> {
        let Path(name) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| VaultError::InvalidKeyring)?;
        Ok(Self(KeyringName::parse(&name)?))
    }
}

async fn read_body(req: Request, state: &AppState) -> Result<Bytes, VaultError> {
    let limit = state.vault.limits().max_body_bytes;
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            VaultError::BodyTooLarge { limit }
        } else {
            VaultError::InvalidRequest("cannot read the request body".to_owned())
        }
    })
}

/// A JSON body. Errors name the field at fault but never echo a value, since values may be
/// server keys or plaintexts. Structs are built from JSON objects only: serde would also take
/// an array of the fields in order, and `[2]` is not a configuration.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = VaultError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, VaultError> {
        Ok(Self(parse_body(read_body(req, state).await?)?))
    }
}

/// A JSON body that may be left out: an empty body stands for `T::default()`.
pub struct OptionalJsonBody<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJsonBody<T> {
    type Rejection = VaultError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, VaultError> {
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        Ok(Self(parse_body(bytes)?))
    }
}

fn parse_body<T: DeserializeOwned>(bytes: Bytes) -> Result<T, VaultError> {
    {
        let json = strongbox_shared::json::parse(&bytes).map_err(|e| {
            use serde_json::error::Category;
            VaultError::InvalidRequest(match e.classify() {
                Category::Eof => "body is empty or incomplete JSON".to_owned(),
                Category::Data => format!("body is not acceptable JSON: {e}"),
                _ => format!("body is not valid JSON (line {}, column {})", e.line(), e.column()),
            })
        })?;
        let value = strongbox_shared::json::from_value(&json).map_err(describe);
        // The body and its parsed copy may hold keys or plaintexts; the typed value is all
        // that is kept.
        strongbox_shared::json::scrub(json);
        strongbox_shared::json::scrub_bytes(bytes);
        value
    }
}

/// No input: an empty body, or `{}`. Anything else is refused rather than ignored, so that a
/// caller who thinks it is sending a parameter (a keyring to `POST /v1/keyrings/rotate`, which
/// rotates them all) is told it is not.
pub struct NoBody;

impl FromRequest<AppState> for NoBody {
    type Rejection = VaultError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, VaultError> {
        let bytes = read_body(req, state).await?;
        let text = std::str::from_utf8(&bytes).map(str::trim).unwrap_or("-");
        let empty_object = text.strip_prefix('{').and_then(|t| t.strip_suffix('}'));
        if text.is_empty() || empty_object.is_some_and(|inner| inner.trim().is_empty()) {
            Ok(Self)
        } else {
            Err(VaultError::InvalidRequest("this call takes no body (or `{}`)".to_owned()))
        }
    }
}

fn describe(error: serde_path_to_error::Error<serde_json::Error>) -> VaultError {
    let path = error.path().to_string();
    VaultError::InvalidRequest(if path == "." {
        "body has the wrong shape, is missing a field, or has an unknown field".to_owned()
    } else {
        format!("field `{path}` is missing, unknown or has the wrong type")
    })
}
