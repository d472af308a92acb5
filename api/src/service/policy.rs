//! The one authorization policy. A call states what it needs as a typed [`Perm`]
//! (`Perm::api(&api_id, Action::ReadKey)`), never as a formatted string, and a root key acts on
//! another root key only if it covers every permission the other holds.
//!
//! [`Principal`] has no public constructor: only [`Service::authenticate`] makes one, so no admin
//! call can run without an authenticated, enabled, unexpired root key.

use std::sync::Arc;

use strongbox_shared::permissions::{Budget, Perm, Permission, allows, covers_within};
use time::OffsetDateTime;

use super::{Service, ServiceError};
use crate::domain::root_keys::{RootKey, earliest};
use crate::domain::{Invalid, MAX_ROOT_KEY_PERMISSIONS};
use crate::store;

/// The work one request may spend deciding containment, across every permission it checks.
/// Real requests spend a few thousand units; a pattern built to explode (`**.a.*.*.…`) runs out
/// of it within milliseconds. See [`strongbox_shared::permissions::COVERS_BUDGET`].
pub const CONTAINMENT_BUDGET: usize = 200_000;

/// A root key as the cache keeps it: the row, and its permissions parsed once rather than on
/// every request.
#[derive(Debug)]
pub struct Authority {
    key: RootKey,
    permissions: Arc<[Permission]>,
}

impl Authority {
    /// Parses `key`'s permissions; one that no longer parses grants nothing.
    pub fn new(key: RootKey) -> Self {
        let permissions =
            key.permissions.iter().filter_map(|p| Permission::parse(p).ok()).collect();
        Self { key, permissions }
    }

    /// The root key's id.
    pub fn id(&self) -> &str {
        &self.key.id
    }
}

/// An authenticated root key.
#[derive(Debug, Clone)]
pub struct Principal {
    authority: Arc<Authority>,
}

impl Principal {
    /// The root key's id (logged as `auth.root_key`).
    pub fn key_id(&self) -> &str {
        &self.authority.key.id
    }

    /// The workspace it administers; nothing outside it is visible.
    pub fn workspace_id(&self) -> &str {
        &self.authority.key.workspace_id
    }

    /// When it stops working.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.authority.key.expires_at
    }

    /// Whether the root key holds `needed`.
    pub fn holds(&self, needed: &Perm) -> bool {
        allows(&self.authority.permissions, needed)
    }

    /// Refuses with 403 unless the root key holds `needed`.
    pub fn require(&self, needed: Perm) -> Result<(), ServiceError> {
        if self.holds(&needed) {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(format!("this root key lacks the permission {needed}")))
        }
    }

    /// An expiry for a root key this one makes: never later than its own.
    pub fn clamp_expiry(&self, wanted: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
        earliest(wanted, self.authority.key.expires_at)
    }

    /// Refuses unless every permission in `wanted` is one this root key could hold itself;
    /// `location` names the field (`permissions`). Returns them parsed.
    pub async fn may_grant(
        &self,
        wanted: &[String],
        location: &str,
    ) -> Result<Vec<Permission>, ServiceError> {
        if wanted.is_empty() || wanted.len() > MAX_ROOT_KEY_PERMISSIONS {
            return Err(Invalid::new(
                "INVALID_PERMISSION",
                location,
                format!("a root key holds 1-{MAX_ROOT_KEY_PERMISSIONS} permissions"),
            )
            .into());
        }
        let parsed = wanted
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Permission::parse(p).map_err(|e| {
                    Invalid::new("INVALID_PERMISSION", format!("{location}[{i}]"), e.to_string())
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        match self.first_uncovered(parsed.clone()).await? {
            None => Ok(parsed),
            Some((i, Uncovered::No)) => Err(ServiceError::Forbidden(format!(
                "this root key cannot grant {}: its own permissions do not cover it",
                wanted[i]
            ))),
            Some((i, Uncovered::TooComplex)) => Err(too_complex(&format!("{location}[{i}]"))),
        }
    }

    /// Refuses with 403 unless this root key covers every permission of `target`, the root key
    /// it is about to create, change, reroll or delete: a narrower key must never act on a wider
    /// one (that would let it mint itself the wider key's rights).
    pub async fn may_act_on(&self, target_id: &str, target: &[String]) -> Result<(), ServiceError> {
        // A stored permission that no longer parses is covered by nothing.
        let Ok(parsed) = target.iter().map(|p| Permission::parse(p)).collect::<Result<Vec<_>, _>>()
        else {
            return Err(self.wider(target_id));
        };
        match self.first_uncovered(parsed).await? {
            None => Ok(()),
            Some((_, Uncovered::No)) => Err(self.wider(target_id)),
            Some((_, Uncovered::TooComplex)) => Err(too_complex("keyId")),
        }
    }

    fn wider(&self, target_id: &str) -> ServiceError {
        ServiceError::Forbidden(format!(
            "root key {target_id} holds permissions this root key does not cover; only a root key \
             covering all of them may change, reroll or delete it"
        ))
    }

    /// The first of `wanted` this key does not cover, and why. Containment is CPU work bounded
    /// by one budget for all of `wanted`; it runs on the blocking pool, never on an async worker.
    async fn first_uncovered(
        &self,
        wanted: Vec<Permission>,
    ) -> Result<Option<(usize, Uncovered)>, ServiceError> {
        let held = self.authority.permissions.clone();
        tokio::task::spawn_blocking(move || {
            let mut budget = Budget::new(CONTAINMENT_BUDGET);
            wanted.iter().enumerate().find_map(|(i, w)| {
                match covers_within(&held, w, &mut budget) {
                    Ok(true) => None,
                    Ok(false) => Some((i, Uncovered::No)),
                    Err(_) => Some((i, Uncovered::TooComplex)),
                }
            })
        })
        .await
        .map_err(|e| ServiceError::internal("checking permission containment", e))
    }
}

impl Principal {
    /// Confirms, from the caller's own row read under a lock in the acting transaction, that
    /// the caller is still as it was authenticated: a narrowing, disable or delete of the caller
    /// that commits meanwhile cannot be outrun.
    pub(crate) fn confirm(&self, row: Option<&RootKey>) -> Result<(), ServiceError> {
        match row {
            Some(k)
                if k.enabled
                    && k.expires_at == self.authority.key.expires_at
                    && k.expires_at.is_none_or(|t| t > OffsetDateTime::now_utc())
                    && k.permissions == self.authority.key.permissions =>
            {
                Ok(())
            }
            _ => Err(ServiceError::Unauthenticated(
                "this root key was changed, disabled or deleted while the request ran".to_owned(),
            )),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Uncovered {
    No,
    TooComplex,
}

fn too_complex(location: &str) -> ServiceError {
    Invalid::new(
        "PERMISSION_TOO_COMPLEX",
        location,
        "this permission is too complex to check against the root key's own; use fewer wildcards",
    )
    .into()
}

impl Service {
    /// The root key `token` (`sb_…`), if valid, enabled and unexpired.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, ServiceError> {
        let invalid = || ServiceError::Unauthenticated("the root key is invalid".to_owned());
        if !strongbox_shared::keys::looks_like_root_key(token) {
            return Err(invalid());
        }
        let hashed = strongbox_shared::keys::hash(token);
        let authority = match self.cache.root_key(&hashed) {
            Some(authority) => authority,
            None => {
                let epoch = self.cache.epoch();
                let key = store::root_keys::by_hash(&self.db().await?, &hashed)
                    .await?
                    .ok_or_else(invalid)?;
                let authority = Arc::new(Authority::new(key));
                self.cache.put_root_key_if_current(hashed, authority.clone(), epoch);
                authority
            }
        };
        let key = &authority.key;
        if !key.enabled {
            return Err(ServiceError::Unauthenticated("the root key is disabled".to_owned()));
        }
        if key.expires_at.is_some_and(|t| t <= OffsetDateTime::now_utc()) {
            return Err(ServiceError::Unauthenticated("the root key has expired".to_owned()));
        }
        let span = tracing::Span::current();
        span.record("auth.root_key", key.id.as_str());
        span.record("workspace_id", key.workspace_id.as_str());
        Ok(Principal { authority })
    }
}
