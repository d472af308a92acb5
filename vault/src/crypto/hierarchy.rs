//! The key hierarchy:
//!
//! ```text
//! server key ──argon2id(salt, m, t, p)──▶ unlock key
//! unlock key ──AES-256-GCM──▶ root record        (random root key; the record is the verifier)
//! root key   ──HKDF-SHA256 (one subkey per purpose)──▶ KEK wrapping key ──▶ KEK versions
//! KEK        ──AES-256-GCM──▶ DEK (keyring, version)
//! DEK        ──AES-256-GCM──▶ data ciphertexts (see `envelope`)
//! ```
//!
//! Every key below the server key is random, never derived from it: a fresh vault initialised
//! with the same server key shares nothing with this one, and a leaked vault database plus the
//! server key still lacks the api's ciphertexts.

use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

use super::aad::{self, RootBinding};
use super::{CryptoError, KEY_LEN, SecretKey, random_fill};

/// Bytes of argon2 salt.
pub const SALT_LEN: usize = 16;
/// HKDF extract salt: a fixed domain separator (RFC 5869 allows a non-secret constant).
const HKDF_SALT: &[u8] = b"strongbox/v1/hkdf";
/// HKDF info of the subkey that wraps KEKs.
const KEK_WRAP_INFO: &[u8] = b"strongbox/v1/kek-wrap";
/// HKDF info of the subkey that checks recovery shares.
const RECOVERY_INFO: &[u8] = b"strongbox/v1/recovery-check";

/// Argon2id cost parameters. They are stored beside the root record, so they can be raised later
/// (by a rekey) without losing the ability to open records made under older ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Argon2Params {
    /// Memory cost in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for Argon2Params {
    /// 64 MiB, 3 passes, 1 lane: RFC 9106's second recommended option.
    fn default() -> Self {
        Self { m_kib: 64 * 1024, t: 3, p: 1 }
    }
}

impl Argon2Params {
    /// The least a configuration may ask for: 19 MiB and 2 passes, OWASP's minimum for argon2id.
    /// Below it only with `kdf.allow_weak` (tests).
    pub const FLOOR: Self = Self { m_kib: 19 * 1024, t: 2, p: 1 };

    /// The most a root record may ask for: 1 GiB, 10 passes, 8 lanes. The parameters are stored
    /// beside the record, so anyone who can write the vault database could otherwise set the
    /// memory to terabytes and make every unlock abort the process.
    pub const CEILING: Self = Self { m_kib: 1024 * 1024, t: 10, p: 8 };

    /// Whether the parameters reach [`Self::FLOOR`].
    pub fn meets_floor(&self) -> bool {
        self.m_kib >= Self::FLOOR.m_kib && self.t >= Self::FLOOR.t && self.p >= Self::FLOOR.p
    }

    /// Whether the parameters stay within [`Self::CEILING`].
    pub fn within_ceiling(&self) -> bool {
        self.m_kib <= Self::CEILING.m_kib && self.t <= Self::CEILING.t && self.p <= Self::CEILING.p
    }

    fn argon2(&self) -> Result<argon2::Argon2<'static>, CryptoError> {
        let params = argon2::Params::new(self.m_kib, self.t, self.p, Some(KEY_LEN))
            .map_err(|_| CryptoError::Malformed("argon2 parameters out of range"))?;
        Ok(argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params))
    }

    /// Checks that argon2 accepts the parameters and that they stay within the ceiling.
    pub fn validate(&self) -> Result<(), CryptoError> {
        if !self.within_ceiling() {
            return Err(CryptoError::Malformed("argon2 parameters above m 1 GiB, t 10, p 8"));
        }
        self.argon2().map(drop)
    }
}

/// A fresh random salt.
pub fn new_salt() -> Result<[u8; SALT_LEN], CryptoError> {
    let mut salt = [0u8; SALT_LEN];
    random_fill(&mut salt)?;
    Ok(salt)
}

/// Derives the unlock key from the server key. This is deliberately slow and memory-hard; call it
/// off the async threads, one at a time.
pub fn derive_unlock_key(
    server_key: &SecretString,
    params: Argon2Params,
    salt: &[u8],
) -> Result<SecretKey, CryptoError> {
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    params
        .argon2()?
        .hash_password_into(server_key.expose_secret().as_bytes(), salt, out.as_mut_slice())
        .map_err(|_| CryptoError::Malformed("argon2 input out of range"))?;
    SecretKey::from_bytes(out)
}

/// The parts of the root record that bind it: parameters and salt.
fn binding(params: Argon2Params, salt: &[u8]) -> RootBinding<'_> {
    RootBinding { m_kib: params.m_kib, t: params.t, p: params.p, salt }
}

/// Seals the root key under the unlock key.
pub fn seal_root(
    unlock: &SecretKey,
    params: Argon2Params,
    salt: &[u8],
    root: &SecretKey,
) -> Result<Vec<u8>, CryptoError> {
    unlock.wrap_key(&aad::root(binding(params, salt)), root)
}

/// Opens the root record. An authentication failure means the server key is wrong (or the
/// record was tampered with, which looks the same by design).
pub fn open_root(
    unlock: &SecretKey,
    params: Argon2Params,
    salt: &[u8],
    sealed_root: &[u8],
) -> Result<SecretKey, CryptoError> {
    unlock.unwrap_key(&aad::root(binding(params, salt)), sealed_root)
}

/// The subkey of `root` that wraps KEKs (HKDF-SHA256).
pub fn kek_wrapping_key(root: &SecretKey) -> Result<SecretKey, CryptoError> {
    subkey(root, KEK_WRAP_INFO)
}

/// The check stored for a split of recovery shares: HMAC-SHA256, under a subkey of `root`, of
/// the split's id and threshold and the secret its shares rebuild. Without the root it can be
/// neither made (to plant a split) nor tested against guesses.
pub fn recovery_check(
    root: &SecretKey,
    set: [u8; 4],
    threshold: u8,
    secret: &[u8],
) -> Result<[u8; 32], CryptoError> {
    use aws_lc_rs::hmac;
    let subkey = subkey(root, RECOVERY_INFO)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, subkey.expose());
    let mut context = hmac::Context::with_key(&key);
    context.update(&set);
    context.update(&[threshold]);
    context.update(secret);
    let tag = context.sign();
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    Ok(out)
}

/// Whether `secret` is the secret of the split `check` was made for (in constant time).
pub fn recovery_matches(
    root: &SecretKey,
    set: [u8; 4],
    threshold: u8,
    secret: &[u8],
    check: &[u8],
) -> Result<bool, CryptoError> {
    let expected = recovery_check(root, set, threshold, secret)?;
    Ok(aws_lc_rs::constant_time::verify_slices_are_equal(&expected, check).is_ok())
}

fn subkey(root: &SecretKey, label: &'static [u8]) -> Result<SecretKey, CryptoError> {
    use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
    let prk = Salt::new(HKDF_SHA256, HKDF_SALT).extract(root.expose());
    let info = [label];
    let okm = prk.expand(&info, HKDF_SHA256)?;
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    okm.fill(out.as_mut_slice())?;
    SecretKey::from_bytes(out)
}

/// Wraps KEK `version` under the KEK wrapping key.
pub fn wrap_kek(
    wrapping: &SecretKey,
    version: u32,
    kek: &SecretKey,
) -> Result<Vec<u8>, CryptoError> {
    wrapping.wrap_key(&aad::kek(version), kek)
}

/// Opens KEK `version`.
pub fn unwrap_kek(
    wrapping: &SecretKey,
    version: u32,
    record: &[u8],
) -> Result<SecretKey, CryptoError> {
    wrapping.unwrap_key(&aad::kek(version), record)
}

/// Wraps the audit key, which keys the chain after entry `keyed_after`, under the KEK wrapping
/// key.
pub fn wrap_audit_key(
    wrapping: &SecretKey,
    keyed_after: u64,
    key: &SecretKey,
) -> Result<Vec<u8>, CryptoError> {
    wrapping.wrap_key(&aad::audit_key(keyed_after), key)
}

/// Opens the audit key; fails when `keyed_after` is not the position it was wrapped with.
pub fn unwrap_audit_key(
    wrapping: &SecretKey,
    keyed_after: u64,
    record: &[u8],
) -> Result<SecretKey, CryptoError> {
    wrapping.unwrap_key(&aad::audit_key(keyed_after), record)
}

/// Wraps DEK `version` of `keyring` under a KEK.
pub fn wrap_dek(
    kek: &SecretKey,
    keyring: &str,
    version: u32,
    dek: &SecretKey,
) -> Result<Vec<u8>, CryptoError> {
    kek.wrap_key(&aad::dek(keyring, version), dek)
}

/// Opens DEK `version` of `keyring`.
pub fn unwrap_dek(
    kek: &SecretKey,
    keyring: &str,
    version: u32,
    record: &[u8],
) -> Result<SecretKey, CryptoError> {
    kek.unwrap_key(&aad::dek(keyring, version), record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strongbox_shared::id::hex;

    /// Cheap parameters: the hierarchy logic does not depend on the cost.
    const FAST: Argon2Params = Argon2Params { m_kib: 64, t: 1, p: 1 };

    #[test]
    fn the_right_server_key_opens_the_root_and_a_wrong_one_does_not() {
        let salt = new_salt().unwrap();
        let root = SecretKey::generate().unwrap();
        let key = SecretString::from("correct horse battery staple");
        let unlock = derive_unlock_key(&key, FAST, &salt).unwrap();
        let record = seal_root(&unlock, FAST, &salt, &root).unwrap();

        let again = derive_unlock_key(&key, FAST, &salt).unwrap();
        assert_eq!(open_root(&again, FAST, &salt, &record).unwrap().expose(), root.expose());

        let wrong =
            derive_unlock_key(&SecretString::from("correct horse battery stapler"), FAST, &salt)
                .unwrap();
        assert_eq!(
            open_root(&wrong, FAST, &salt, &record).unwrap_err(),
            CryptoError::Authentication
        );
    }

    #[test]
    fn the_root_record_is_bound_to_its_parameters_and_salt() {
        let salt = [1u8; SALT_LEN];
        let root = SecretKey::generate().unwrap();
        let unlock =
            derive_unlock_key(&SecretString::from("0123456789abcdef"), FAST, &salt).unwrap();
        let record = seal_root(&unlock, FAST, &salt, &root).unwrap();
        // Same unlock key, but the stored parameters or salt were altered: the record refuses.
        let raised = Argon2Params { t: 2, ..FAST };
        assert!(open_root(&unlock, raised, &salt, &record).is_err());
        assert!(open_root(&unlock, FAST, &[2u8; SALT_LEN], &record).is_err());
    }

    #[test]
    fn keks_and_deks_are_bound_to_their_version_and_keyring() {
        let wrapping = kek_wrapping_key(&SecretKey::generate().unwrap()).unwrap();
        let kek = SecretKey::generate().unwrap();
        let record = wrap_kek(&wrapping, 1, &kek).unwrap();
        assert_eq!(unwrap_kek(&wrapping, 1, &record).unwrap().expose(), kek.expose());
        assert!(unwrap_kek(&wrapping, 2, &record).is_err());

        let dek = SecretKey::generate().unwrap();
        let wrapped = wrap_dek(&kek, "ws_a", 3, &dek).unwrap();
        assert_eq!(unwrap_dek(&kek, "ws_a", 3, &wrapped).unwrap().expose(), dek.expose());
        assert!(unwrap_dek(&kek, "ws_b", 3, &wrapped).is_err());
        assert!(unwrap_dek(&kek, "ws_a", 4, &wrapped).is_err());
    }

    #[test]
    fn known_answer_argon2id() {
        let unlock = derive_unlock_key(
            &SecretString::from("strongbox-kat-server-key"),
            Argon2Params { m_kib: 256, t: 2, p: 1 },
            b"strongbox-salt16",
        )
        .unwrap();
        assert_eq!(
            hex(unlock.expose()),
            "590750a9dc2b130bffa5133e0af16cbda6afd3c9b3ad55857eaed46bc7f40bdb"
        );
    }

    #[test]
    fn known_answer_hkdf_kek_wrapping_key() {
        let root = SecretKey::from_bytes(Zeroizing::new([0x5a; KEY_LEN])).unwrap();
        assert_eq!(
            hex(kek_wrapping_key(&root).unwrap().expose()),
            "1420ee961beb391d4d56a28e1c842c4122d94de1de24a77c9d4ac1dd0d32106f"
        );
    }

    #[test]
    fn default_parameters_are_accepted() {
        Argon2Params::default().validate().unwrap();
        assert!(Argon2Params { m_kib: 1, t: 1, p: 1 }.validate().is_err());
    }

    #[test]
    fn a_recovery_check_matches_only_its_root_split_and_secret() {
        let root = SecretKey::generate().unwrap();
        let (set, secret) = ([1, 2, 3, 4], [9u8; 32]);
        let check = recovery_check(&root, set, 2, &secret).unwrap();
        assert!(recovery_matches(&root, set, 2, &secret, &check).unwrap());
        let other_root = SecretKey::generate().unwrap();
        assert!(!recovery_matches(&other_root, set, 2, &secret, &check).unwrap());
        assert!(!recovery_matches(&root, [1, 2, 3, 5], 2, &secret, &check).unwrap());
        assert!(!recovery_matches(&root, set, 3, &secret, &check).unwrap());
        assert!(!recovery_matches(&root, set, 2, &[8u8; 32], &check).unwrap());
        assert!(!recovery_matches(&root, set, 2, &secret, &check[..31]).unwrap());
    }
}
