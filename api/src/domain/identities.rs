//! Identities: one of the customer's own users (`externalId`), with `meta` and rate limits
//! shared by every key linked to it.

use serde_json::Value;

use super::keys::Ratelimit;

/// An identity as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// `id_…`.
    pub id: String,
    /// The customer's own id for it, unique in the workspace.
    pub external_id: String,
    /// Free-form JSON object.
    pub meta: Option<Value>,
    /// Limits shared by all its keys.
    pub ratelimits: Vec<Ratelimit>,
}
