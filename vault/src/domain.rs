//! Validated values: once inside the vault, a keyring name or context is known to be well formed.

use crate::error::VaultError;

/// A keyring name: `[A-Za-z0-9_-]{1,64}`. The api uses the workspace id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyringName(String);

impl KeyringName {
    /// Parses a keyring name.
    pub fn parse(name: &str) -> Result<Self, VaultError> {
        let ok = (1..=64).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok { Ok(Self(name.to_owned())) } else { Err(VaultError::InvalidKeyring) }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a context: 1-256 bytes of UTF-8 (a `&str` is UTF-8 already).
pub fn check_context(index: usize, context: &str) -> Result<(), VaultError> {
    if (1..=256).contains(&context.len()) {
        Ok(())
    } else {
        Err(VaultError::InvalidContext { index })
    }
}

/// Roles a client certificate can carry, from its SPIFFE id `spiffe://<td>/<role>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The api's data plane: encrypt, decrypt, rewrap, describe.
    Api,
    /// The api's rewrap job: rewrap and describe.
    Rewrap,
    /// Operators: lifecycle and keyring administration.
    Operator,
}

/// The verified client of one TLS connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The certificate's SPIFFE id, or a note on why it has no single URI SAN.
    pub identity: String,
    /// The role, when the id is `spiffe://<trust domain>/<api|rewrap|operator>`.
    pub role: Option<Role>,
    /// The client's address.
    pub addr: std::net::SocketAddr,
}

impl Peer {
    /// Derives the identity from the URI SANs of a verified certificate.
    pub fn from_uris(uris: &[String], trust_domain: &str, addr: std::net::SocketAddr) -> Self {
        let [uri] = uris else {
            return Self { identity: format!("<{} URI SANs>", uris.len()), role: None, addr };
        };
        let role = uri
            .strip_prefix("spiffe://")
            .and_then(|rest| rest.strip_prefix(trust_domain))
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|role| match role {
                "api" => Some(Role::Api),
                "rewrap" => Some(Role::Rewrap),
                "operator" => Some(Role::Operator),
                _ => None,
            });
        Self { identity: uri.clone(), role, addr }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyring_names() {
        for good in ["a", "ws_1", "WS-2", &"x".repeat(64)] {
            assert!(KeyringName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a/b", "ä", &"x".repeat(65), "a.b"] {
            assert!(KeyringName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_need_one_uri_in_the_trust_domain() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let peer = |uris: &[&str]| {
            let uris: Vec<String> = uris.iter().map(|s| s.to_string()).collect();
            Peer::from_uris(&uris, "td.test", addr).role
        };
        assert_eq!(peer(&["spiffe://td.test/api"]), Some(Role::Api));
        assert_eq!(peer(&["spiffe://td.test/operator"]), Some(Role::Operator));
        assert_eq!(peer(&["spiffe://td.test/rewrap"]), Some(Role::Rewrap));
        assert_eq!(peer(&["spiffe://other.test/operator"]), None);
        assert_eq!(peer(&["spiffe://td.test.evil/operator"]), None);
        assert_eq!(peer(&["spiffe://td.test/operator/x"]), None);
        assert_eq!(peer(&["spiffe://td.test/api", "spiffe://td.test/operator"]), None);
        assert_eq!(peer(&[]), None);
    }
}
