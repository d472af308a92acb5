//! A wrapping key held by a PKCS#11 token: a hardware security module, or SoftHSM2 in tests.
//!
//! The key is an AES-256 key made inside the token, marked sensitive and not extractable, so
//! its bytes never leave it. The vault asks the token to seal a small secret (the unlock key)
//! under it with AES-256-GCM, and later to open it; whoever holds the sealed value but not the
//! token (and its PIN) learns nothing.
//!
//! Sealed form: `u8 version (1) ‖ 12-byte nonce ‖ AES-256-GCM ciphertext ‖ 16-byte tag`, the
//! nonce drawn from the vault's CSPRNG (or the token's own, for one that replaces it), and the
//! caller's associated data bound in.
//!
//! Every call blocks on the token: call it from a blocking task. Errors name what failed and
//! never carry the PIN or any key material.
//!
//! Login state belongs to the token, for the whole process: while one session is logged in, a
//! token answers a second login "already logged in" before it looks at the PIN. The PIN is
//! checked by the first login, not by every call. Open the token once per process: SoftHSM2
//! crashes when several threads initialise the module at the same time.

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
    /// The token locked the PIN after too many wrong ones: an operator must unlock it on the
    /// token. Never retried.
    #[error("the PKCS#11 token has locked the PIN")]
    PinLocked,
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
            P11Error::Pkcs11(RvError::PinLocked, _) => Self::PinLocked,
            other => Self::Library(other.to_string()),
        }
    }
}

/// One token, found by its label in a loaded module.
pub struct Token {
    context: Pkcs11,
    slot: Slot,
    /// SoftHSM2 up to 2.6 reports a failed GCM tag as CKR_GENERAL_ERROR; elsewhere that code
    /// is a device fault and is reported as one.
    general_error_is_bad_tag: bool,
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
        let info = context.get_library_info()?;
        let version = info.library_version();
        let general_error_is_bad_tag = info.manufacturer_id().contains("SoftHSM")
            && (version.major(), version.minor()) <= (2, 6);
        for slot in context.get_slots_with_token()? {
            if context.get_token_info(slot)?.label().trim_end() == token_label {
                return Ok(Self { context, slot, general_error_is_bad_tag });
            }
        }
        Err(TokenError::NoToken(token_label.to_owned()))
    }

    /// Whether a wrong user PIN would leave the token's PIN usable: `PinLocked` when it is
    /// locked already, `false` when the token says the next wrong one is the last (a PIN not
    /// known to work should then not be presented).
    pub fn pin_tries_left(&self) -> Result<bool, TokenError> {
        let info = self.context.get_token_info(self.slot)?;
        if info.user_pin_locked() {
            return Err(TokenError::PinLocked);
        }
        Ok(!info.user_pin_final_try())
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
        let found = session.find_objects(&Self::template(label))?;
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            many => Err(TokenError::AmbiguousKey { label: label.to_owned(), count: many.len() }),
        }
    }
    /// What identifies a wrapping key: a secret AES key on the token, with this label.
    fn template(label: &str) -> [Attribute; 4] {
        [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ]
    }

    fn key(session: &Session, label: &str) -> Result<ObjectHandle, TokenError> {
        Self::find(session, label)?.ok_or_else(|| TokenError::NoKey(label.to_owned()))
    }

    /// Makes the wrapping key `label` in the token unless it is there; `true` when it was made.
    /// The key is AES-256, kept on the token, private, sensitive, not extractable, and good for
    /// encrypting and decrypting only.
    ///
    /// Two callers racing (two replicas initialising at once) may each make one. Each key
    /// carries a random `CKA_ID`; afterwards every caller keeps the key with the lowest id and
    /// destroys its own if that is not it, so exactly one remains.
    pub fn ensure_key(&self, pin: &AuthPin, label: &str) -> Result<bool, TokenError> {
        let session = self.session(pin)?;
        if Self::find(&session, label)?.is_some() {
            return Ok(false);
        }
        let length = u64::try_from(KEY_LEN).map_err(|e| TokenError::Library(e.to_string()))?;
        let mut id = vec![0u8; 16];
        random_fill(&mut id).map_err(|e| TokenError::Library(e.to_string()))?;
        let mut template = Self::template(label).to_vec();
        template.extend([
            Attribute::Id(id.clone()),
            Attribute::ValueLen(length.into()),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
        ]);
        let made = session.generate_key(&Mechanism::AesKeyGen, &template)?;
        let all = session.find_objects(&Self::template(label))?;
        if all.len() > 1 {
            let mut lowest = id.clone();
            for handle in all {
                for attribute in session.get_attributes(handle, &[AttributeType::Id])? {
                    if let Attribute::Id(other) = attribute
                        && other < lowest
                    {
                        lowest = other;
                    }
                }
            }
            if lowest != id {
                session.destroy_object(made)?;
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether the key `label` was made in the token and has never been readable, as the token
    /// reports it: local, always sensitive, never extractable, and 32 bytes long.
    pub fn key_is_held(&self, pin: &AuthPin, label: &str) -> Result<bool, TokenError> {
        let session = self.session(pin)?;
        let key = Self::key(&session, label)?;
        let attributes = session.get_attributes(
            key,
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::AlwaysSensitive,
                AttributeType::NeverExtractable,
                AttributeType::Local,
                AttributeType::ValueLen,
            ],
        )?;
        let mut held = [false; 6];
        for attribute in attributes {
            match attribute {
                Attribute::Sensitive(v) => held[0] = v,
                Attribute::Extractable(v) => held[1] = !v,
                Attribute::AlwaysSensitive(v) => held[2] = v,
                Attribute::NeverExtractable(v) => held[3] = v,
                Attribute::Local(v) => held[4] = v,
                Attribute::ValueLen(n) => held[5] = usize::try_from(*n).ok() == Some(KEY_LEN),
                _ => {}
            }
        }
        Ok(held.iter().all(|h| *h))
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
        let mut iv = [0u8; NONCE_LEN];
        random_fill(&mut iv).map_err(|e| TokenError::Library(e.to_string()))?;
        let params = GcmParams::new(&mut iv, aad, tag_bits()?)?;
        let sealed = session.encrypt(&Mechanism::AesGcm(params), key, secret)?;
        // Some HSMs ignore the caller's IV and write their own back: store the one used.
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&iv);
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
            Ok(plain) => Ok(Zeroizing::new(plain)), // A failed tag check: CKR_ENCRYPTED_DATA_INVALID in PKCS#11 2.40,
            // CKR_AEAD_DECRYPT_FAILED (0x35) in 3.0, CKR_GENERAL_ERROR from SoftHSM2 up to 2.6.
            Err(P11Error::Pkcs11(
                RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange
                | RvError::UnknownErrorCode(0x35),
                _,
            )) => Err(TokenError::Authentication),
            Err(P11Error::Pkcs11(RvError::GeneralError, _)) if self.general_error_is_bad_tag => {
                Err(TokenError::Authentication)
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn tag_bits() -> Result<cryptoki::types::Ulong, TokenError> {
    let bits = u64::try_from(TAG_LEN * 8).map_err(|e| TokenError::Library(e.to_string()))?;
    Ok(bits.into())
}
