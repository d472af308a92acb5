//! The vault's cryptography, small and boxed: AES-256-GCM seals with length-prefixed associated
//! data ([`aad`]), the data ciphertext format handed to the api ([`envelope`]), and the key
//! hierarchy from the server key down to data keys ([`hierarchy`]).
//!
//! AES-GCM, HKDF and randomness come from aws-lc-rs, the same provider rustls uses, so the
//! binary carries one implementation of each primitive. Argon2id comes from RustCrypto's
//! `argon2`, which aws-lc-rs lacks.

pub mod aad;
pub mod envelope;
pub mod hierarchy;
pub mod pkcs11;
#[cfg(test)]
mod properties;
pub mod shares;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

/// Bytes in every symmetric key of the hierarchy (AES-256).
pub const KEY_LEN: usize = 32;
/// Bytes in an AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// Version byte that starts every sealed record (root, KEK, DEK).
const SEALED_FORMAT_V1: u8 = 1;

/// A failure of the vault's cryptography. Messages never include key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Authentication failed: wrong key, wrong associated data, or tampered bytes.
    #[error("authentication failed")]
    Authentication,
    /// The bytes are not a record of a format this vault understands.
    #[error("malformed record: {0}")]
    Malformed(&'static str),
    /// The operating system's random source or the crypto library failed.
    #[error("cryptographic library failure")]
    Library,
}

impl From<aws_lc_rs::error::Unspecified> for CryptoError {
    fn from(_: aws_lc_rs::error::Unspecified) -> Self {
        Self::Library
    }
}

/// Fills `buf` from the operating system's CSPRNG (through aws-lc).
pub fn random_fill(buf: &mut [u8]) -> Result<(), CryptoError> {
    aws_lc_rs::rand::fill(buf).map_err(|_| CryptoError::Library)
}

/// A 256-bit symmetric key. Its bytes are zeroized on drop; aws-lc cleanses its own expanded
/// copy when the [`LessSafeKey`] is dropped.
pub struct SecretKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    aead: LessSafeKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    /// Wraps existing key bytes.
    pub fn from_bytes(bytes: Zeroizing<[u8; KEY_LEN]>) -> Result<Self, CryptoError> {
        let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes.as_slice())?);
        Ok(Self { bytes, aead })
    }

    /// A fresh random key.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        random_fill(bytes.as_mut_slice())?;
        Self::from_bytes(bytes)
    }

    /// A second handle on the same key (for a value that must outlive this one).
    pub fn duplicate(&self) -> Result<Self, CryptoError> {
        Self::from_bytes(self.bytes.clone())
    }

    /// The raw key, for sealing it under another key.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// Seals `plaintext` with a fresh random 96-bit nonce: `nonce || ciphertext || tag`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        random_fill(&mut nonce)?;
        self.seal_with_nonce(nonce, aad, plaintext)
    }

    /// Sealing with a given nonce. The nonce must be fresh from the CSPRNG ([`seal`](Self::seal),
    /// [`envelope::seal_all`]) or, in known-answer tests only, fixed. Private to this module and
    /// its children.
    fn seal_with_nonce(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let mut body = out.split_off(NONCE_LEN);
        self.aead.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens `nonce || ciphertext || tag` sealed with the same associated data.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed("too short"));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)?;
        let mut buf = Zeroizing::new(body.to_vec());
        let len = self
            .aead
            .open_in_place(nonce, Aad::from(aad), buf.as_mut_slice())
            .map_err(|_| CryptoError::Authentication)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }

    /// Seals another key as a versioned record: `0x01 || nonce || ciphertext || tag`.
    pub fn wrap_key(&self, aad: &[u8], key: &SecretKey) -> Result<Vec<u8>, CryptoError> {
        let mut out = vec![SEALED_FORMAT_V1];
        out.extend_from_slice(&self.seal(aad, key.expose())?);
        Ok(out)
    }

    /// Opens a record made by [`SecretKey::wrap_key`].
    pub fn unwrap_key(&self, aad: &[u8], record: &[u8]) -> Result<SecretKey, CryptoError> {
        let Some((&SEALED_FORMAT_V1, sealed)) = record.split_first() else {
            return Err(CryptoError::Malformed("unknown sealed-record version"));
        };
        let opened = self.open(aad, sealed)?;
        let bytes: [u8; KEY_LEN] =
            opened.as_slice().try_into().map_err(|_| CryptoError::Malformed("key length"))?;
        SecretKey::from_bytes(Zeroizing::new(bytes))
    }
}

#[cfg(test)]
mod tests {
    use strongbox_shared::id::hex;

    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_bytes(Zeroizing::new([byte; KEY_LEN])).unwrap()
    }

    #[test]
    fn seal_round_trips_and_uses_fresh_nonces() {
        let k = key(7);
        let a = k.seal(b"aad", b"hello").unwrap();
        let b = k.seal(b"aad", b"hello").unwrap();
        assert_ne!(a, b, "two seals must not share a nonce");
        assert_eq!(k.open(b"aad", &a).unwrap().as_slice(), b"hello");
        assert_eq!(a.len(), NONCE_LEN + 5 + TAG_LEN);
    }

    #[test]
    fn every_tamper_fails_authentication() {
        let k = key(7);
        let sealed = k.seal(b"aad", b"hello world").unwrap();
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut t = sealed.clone();
                t[i] ^= 1 << bit;
                assert_eq!(k.open(b"aad", &t).unwrap_err(), CryptoError::Authentication);
            }
        }
        for len in 0..sealed.len() {
            assert!(k.open(b"aad", &sealed[..len]).is_err(), "truncated to {len}");
        }
        assert_eq!(k.open(b"aaD", &sealed).unwrap_err(), CryptoError::Authentication);
        assert_eq!(key(8).open(b"aad", &sealed).unwrap_err(), CryptoError::Authentication);
    }

    #[test]
    fn known_answer_aes_256_gcm() {
        // Fixed key, nonce and AAD: the output must never change, or stored data stops opening.
        // Every known answer in this module tree was cross-checked against an independent
        // implementation (Python `cryptography` and `argon2-cffi`).
        let sealed =
            key(0x42).seal_with_nonce([9; NONCE_LEN], b"associated", b"plaintext").unwrap();
        assert_eq!(
            hex(&sealed),
            "0909090909090909090909094da5c8033fed22318b35c022e0fc198c3a9550a7e4e7fd9c6d"
        );
    }

    #[test]
    fn wrapped_keys_are_versioned_and_bound_to_their_aad() {
        let kek = key(1);
        let dek = key(2);
        let record = kek.wrap_key(b"dek/a/1", &dek).unwrap();
        assert_eq!(record[0], SEALED_FORMAT_V1);
        assert_eq!(kek.unwrap_key(b"dek/a/1", &record).unwrap().expose(), dek.expose());
        assert!(kek.unwrap_key(b"dek/a/2", &record).is_err());
        let mut other_version = record.clone();
        other_version[0] = 2;
        assert!(matches!(
            kek.unwrap_key(b"dek/a/1", &other_version),
            Err(CryptoError::Malformed(_))
        ));
    }
}
