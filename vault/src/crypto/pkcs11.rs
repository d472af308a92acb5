//! A wrapping key held by a PKCS#11 token: a hardware security module, or SoftHSM2 in tests.
//!
//! The key is an AES-256 key made inside the token, marked sensitive and not extractable, so
//! its bytes never leave it. The vault asks the token to seal a small secret (the unlock key)
//! under it with AES-256-GCM, and later to open it; whoever holds the sealed value but not the
//! token (and its PIN) learns nothing.
//!
//! Sealed form: `u8 version (1) ‖ 12-byte nonce ‖ AES-256-GCM ciphertext ‖ 16-byte tag`, the
//! nonce drawn from the vault's CSPRNG, and the caller's associated data bound in.
//!
//! Every call blocks on the token: call it from a blocking task. Errors name what failed and
//! never carry the PIN or any key material.

use std::path::Path;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use super::{KEY_LEN, TAG_LEN, random_fill};

/// Version byte of the sealed form.
const SEALED_V1: u8 = 1;
/// Bytes of the GCM nonce.
const NONCE_LEN: usize = 12;

/// Why the token could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The module (the `.so` file) could not be loaded or initialised.
    #[error("cannot use the PKCS#11 module {module}: {reason}")]
    Module {
        /// The module's path.
        module: String,
        /// What the loader or the module said.
        reason: String,
    },
    /// No slot holds a token with this label.
    #[error("no PKCS#11 token is labelled {0:?}")]
    NoToken(String),
    /// The token refused the PIN.
    #[error("the PKCS#11 token refused the PIN")]
    WrongPin,
    /// The token holds no key with this label.
    #[error("the PKCS#11 token holds no key labelled {0:?}")]
    NoKey(String),
    /// More than one key has this label, so which one seals is ambiguous.
    #[error("the PKCS#11 token holds {count} keys labelled {label:?}; exactly one is needed")]
    AmbiguousKey {
        /// The label.
        label: String,
        /// How many keys carry it.
        count: usize,
    },
    /// The sealed value did not open: another key, other associated data, or altered bytes.
    #[error("the sealed value did not open under the token's key")]
    Authentication,
    /// Anything else the module answered.
    #[error("PKCS#11: {0}")]
    Library(String),
}

impl From<P11Error> for TokenError {
    fn from(error: P11Error) -> Self {
        match error {
            P11Error::Pkcs11(
                RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange,
                _,
            ) => Self::WrongPin,
            other => Self::Library(other.to_string()),
        }
    }
}

/// One token, found by its label in a loaded module.
pub struct Token {
    context: Pkcs11,
    slot: Slot,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("slot", &self.slot).finish_non_exhaustive()
    }
}

impl Token {
    /// Loads `module` and finds the token labelled `token_label`.
    pub fn open(module: &Path, token_label: &str) -> Result<Self, TokenError> {
        let failed =
            |reason: String| TokenError::Module { module: module.display().to_string(), reason };
        let context = Pkcs11::new(module).map_err(|e| failed(e.to_string()))?;
        match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(failed(e.to_string())),
        }
        for slot in context.get_slots_with_token()? {
            if context.get_token_info(slot)?.label().trim_end() == token_label {
                return Ok(Self { context, slot });
            }
        }
        Err(TokenError::NoToken(token_label.to_owned()))
    }

    /// A read-write session, logged in as the token's user.
    fn session(&self, pin: &AuthPin) -> Result<Session, TokenError> {
        let session = self.context.open_rw_session(self.slot)?;
        match session.login(UserType::User, Some(pin)) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e) => Err(e.into()),
        }
    }

    /// The one secret key labelled `label`, if any.
    fn find(session: &Session, label: &str) -> Result<Option<ObjectHandle>, TokenError> {
        let found = session.find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])?;
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            many => Err(TokenError::AmbiguousKey { label: label.to_owned(), count: many.len() }),
        }
    }

    fn key(session: &Session, label: &str) -> Result<ObjectHandle, TokenError> {
        Self::find(session, label)?.ok_or_else(|| TokenError::NoKey(label.to_owned()))
    }

    /// Makes the wrapping key `label` in the token unless it is there; `true` when it was made.
    /// The key is AES-256, kept on the token, private, sensitive and not extractable.
    pub fn ensure_key(&self, pin: &AuthPin, label: &str) -> Result<bool, TokenError> {
        let session = self.session(pin)?;
        if Self::find(&session, label)?.is_some() {
            return Ok(false);
        }
        let length = u64::try_from(KEY_LEN).map_err(|e| TokenError::Library(e.to_string()))?;
        session.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(length.into()),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
            ],
        )?;
        Ok(true)
    }

    /// Whether the key `label` is sensitive and not extractable, as the token reports it.
    pub fn key_is_held(&self, pin: &AuthPin, label: &str) -> Result<bool, TokenError> {
        let session = self.session(pin)?;
        let key = Self::key(&session, label)?;
        let attributes =
            session.get_attributes(key, &[AttributeType::Sensitive, AttributeType::Extractable])?;
        let (mut sensitive, mut extractable) = (false, true);
        for attribute in attributes {
            match attribute {
                Attribute::Sensitive(v) => sensitive = v,
                Attribute::Extractable(v) => extractable = v,
                _ => {}
            }
        }
        Ok(sensitive && !extractable)
    }

    /// Seals `secret` under the key `label`, binding `aad`.
    pub fn seal(
        &self,
        pin: &AuthPin,
        label: &str,
        aad: &[u8],
        secret: &[u8],
    ) -> Result<Vec<u8>, TokenError> {
        let session = self.session(pin)?;
        let key = Self::key(&session, label)?;
        let mut nonce = [0u8; NONCE_LEN];
        random_fill(&mut nonce).map_err(|e| TokenError::Library(e.to_string()))?;
        let mut iv = nonce;
        let params = GcmParams::new(&mut iv, aad, tag_bits()?)?;
        let sealed = session.encrypt(&Mechanism::AesGcm(params), key, secret)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`seal`](Self::seal) made under the key `label` with the same `aad`.
    pub fn unseal(
        &self,
        pin: &AuthPin,
        label: &str,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, TokenError> {
        let Some((&SEALED_V1, rest)) = sealed.split_first() else {
            return Err(TokenError::Authentication);
        };
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(TokenError::Authentication);
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let session = self.session(pin)?;
        let key = Self::key(&session, label)?;
        let mut iv = [0u8; NONCE_LEN];
        iv.copy_from_slice(nonce);
        let params = GcmParams::new(&mut iv, aad, tag_bits()?)?;
        match session.decrypt(&Mechanism::AesGcm(params), key, body) {
            Ok(plain) => Ok(Zeroizing::new(plain)),
            // A failed tag check is CKR_ENCRYPTED_DATA_INVALID in the standard; SoftHSM2
            // answers CKR_GENERAL_ERROR for it.
            Err(P11Error::Pkcs11(
                RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange
                | RvError::GeneralError,
                _,
            )) => Err(TokenError::Authentication),
            Err(e) => Err(e.into()),
        }
    }
}

fn tag_bits() -> Result<cryptoki::types::Ulong, TokenError> {
    let bits = u64::try_from(TAG_LEN * 8).map_err(|e| TokenError::Library(e.to_string()))?;
    Ok(bits.into())
}
