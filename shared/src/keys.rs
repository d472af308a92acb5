//! Customer keys and root keys: generation, hashing and display prefixes.
//!
//! Only a SHA-256 of each key is stored. Keys carry at least 128 random bits, so a fast hash is
//! right here: there is nothing to brute-force, unlike a password.

use aws_lc_rs::digest::{SHA256, digest};

/// Fewest random bytes a customer key may have.
pub const MIN_BYTE_LENGTH: usize = 16;
/// Most random bytes a customer key may have.
pub const MAX_BYTE_LENGTH: usize = 255;
/// Longest customer-key prefix.
pub const MAX_PREFIX_LEN: usize = 16;
/// The prefix of root keys.
pub const ROOT_KEY_PREFIX: &str = "sb_";

/// Why a key could not be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// `byteLength` outside 16-255.
    #[error("byteLength must be between {MIN_BYTE_LENGTH} and {MAX_BYTE_LENGTH}")]
    ByteLength,
    /// A prefix that is not 1-16 of `[A-Za-z0-9_]`.
    #[error("prefix must be 1-{MAX_PREFIX_LEN} characters of A-Z, a-z, 0-9 and '_'")]
    Prefix,
    /// The operating system's random source failed.
    #[error("random source failed")]
    Random,
}

/// Checks a customer-key prefix.
pub fn check_prefix(prefix: &str) -> Result<(), KeyError> {
    let ok = (1..=MAX_PREFIX_LEN).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok { Ok(()) } else { Err(KeyError::Prefix) }
}

/// A new customer key: `[prefix_]` + base58 of `byte_length` random bytes.
pub fn new_customer_key(prefix: Option<&str>, byte_length: usize) -> Result<String, KeyError> {
    if !(MIN_BYTE_LENGTH..=MAX_BYTE_LENGTH).contains(&byte_length) {
        return Err(KeyError::ByteLength);
    }
    let mut bytes = vec![0u8; byte_length];
    getrandom::fill(&mut bytes).map_err(|_| KeyError::Random)?;
    let body = bs58::encode(&bytes).into_string();
    bytes.fill(0);
    match prefix {
        Some(prefix) => {
            check_prefix(prefix)?;
            Ok(format!("{prefix}_{body}"))
        }
        None => Ok(body),
    }
}

/// A new root key: `sb_` + 64 hex characters (256 random bits).
pub fn new_root_key() -> Result<String, KeyError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| KeyError::Random)?;
    let hex = crate::id::hex(&bytes);
    bytes.fill(0);
    Ok(format!("{ROOT_KEY_PREFIX}{hex}"))
}

/// True when `key` has the root-key shape.
pub fn looks_like_root_key(key: &str) -> bool {
    key.strip_prefix(ROOT_KEY_PREFIX)
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// SHA-256 of a whole key, as stored.
pub fn hash(key: &str) -> [u8; 32] {
    let d = digest(&SHA256, key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The part of a key shown in listings: the prefix (with its `_`) and the first 4 characters
/// of the random part.
pub fn start(key: &str, prefix: Option<&str>) -> String {
    let (head, body) = match prefix {
        Some(p) if key.starts_with(&format!("{p}_")) => key.split_at(p.len() + 1),
        _ => ("", key),
    };
    format!("{head}{}", body.chars().take(4).collect::<String>())
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_keys_have_their_prefix_and_enough_entropy() {
        let key = new_customer_key(Some("sk_live"), 16).unwrap();
        assert!(key.starts_with("sk_live_"));
        let body = &key["sk_live_".len()..];
        assert!(bs58::decode(body).into_vec().unwrap().len() == 16);
        assert_ne!(key, new_customer_key(Some("sk_live"), 16).unwrap());
        assert_eq!(start(&key, Some("sk_live")), format!("sk_live_{}", &body[..4]));
        let bare = new_customer_key(None, 32).unwrap();
        assert_eq!(start(&bare, None), bare[..4]);
    }

    #[test]
    fn byte_length_and_prefix_are_checked() {
        assert_eq!(new_customer_key(None, 15), Err(KeyError::ByteLength));
        assert_eq!(new_customer_key(None, 256), Err(KeyError::ByteLength));
        assert!(new_customer_key(None, 255).is_ok());
        for bad in ["", "has-dash", "has space", "seventeen_chars_x", "ünï"] {
            assert_eq!(new_customer_key(Some(bad), 16), Err(KeyError::Prefix), "{bad}");
        }
    }

    #[test]
    fn root_keys_are_sb_and_64_hex() {
        let key = new_root_key().unwrap();
        assert!(looks_like_root_key(&key), "{key}");
        assert!(!looks_like_root_key("sb_xyz"));
        assert!(!looks_like_root_key(&key.replace("sb_", "sk_")));
    }

    #[test]
    fn hash_is_sha256() {
        assert_eq!(
            hash("abc").iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
