//! Root keys: workspace admin tokens, minted here and shown once.

use strongbox_shared::keys as keygen;
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// A stored root key, everything but its hash.
#[derive(Debug, Clone)]
pub struct RootKey {
    /// `rk_…`.
    pub id: String,
    /// The workspace it administers.
    pub workspace_id: String,
    /// First characters, for display.
    pub start: String,
    /// Last characters, for display.
    pub end: String,
    /// Display name.
    pub name: Option<String>,
    /// Permission patterns.
    pub permissions: Vec<String>,
    /// Disabled keys authenticate nothing.
    pub enabled: bool,
    /// Expiry.
    pub expires_at: Option<OffsetDateTime>,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last used.
    pub last_used_at: Option<OffsetDateTime>,
}

/// A validated `rootKeys.createKey`.
#[derive(Debug, Clone)]
pub struct NewRootKey {
    /// Display name.
    pub name: Option<String>,
    /// At least one permission, each parsed.
    pub permissions: Vec<String>,
    /// Expiry asked for, Unix milliseconds (checked after authorization, then clamped to the
    /// creator's own).
    pub expires: Option<i64>,
}

/// What `rootKeys.updateKey` changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct RootKeyPatch {
    /// `Some(None)` clears the name.
    pub name: Option<Option<String>>,
    /// New permissions, replacing the old.
    pub permissions: Option<Vec<String>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

/// A freshly minted root key: the plaintext, shown once, and the record to store.
pub struct Minted {
    /// `sb_…`, wiped from memory when dropped.
    pub plaintext: Zeroizing<String>,
    /// What is stored (with the plaintext's hash).
    pub key: RootKey,
}

/// Mints a root key for `workspace_id`.
pub fn mint(
    id: String,
    workspace_id: &str,
    name: Option<String>,
    permissions: Vec<String>,
    enabled: bool,
    expires_at: Option<OffsetDateTime>,
) -> Result<Minted, keygen::KeyError> {
    let plaintext = Zeroizing::new(keygen::new_root_key()?);
    let key = RootKey {
        id,
        workspace_id: workspace_id.to_owned(),
        start: plaintext.chars().take(7).collect(),
        end: plaintext.chars().skip(plaintext.chars().count().saturating_sub(4)).collect(),
        name,
        permissions,
        enabled,
        expires_at,
        created_at: OffsetDateTime::now_utc(),
        last_used_at: None,
    };
    Ok(Minted { plaintext, key })
}

/// The earlier of two optional expiries (`None` is never).
pub fn earliest(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_root_key_shows_its_first_seven_and_last_four_characters() {
        let m = mint("rk_1".into(), "ws_1", None, vec!["**".into()], true, None).unwrap();
        assert!(m.plaintext.starts_with(&m.key.start) && m.key.start.len() == 7);
        assert!(m.plaintext.ends_with(&m.key.end) && m.key.end.len() == 4);
    }

    #[test]
    fn the_earliest_expiry_wins_and_none_is_never() {
        let t = OffsetDateTime::now_utc();
        let later = t + time::Duration::hours(1);
        assert_eq!(earliest(None, None), None);
        assert_eq!(earliest(Some(t), None), Some(t));
        assert_eq!(earliest(None, Some(t)), Some(t));
        assert_eq!(earliest(Some(later), Some(t)), Some(t));
    }
}
