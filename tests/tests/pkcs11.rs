//! The HSM seal's wrapping key, against a real PKCS#11 token (SoftHSM2): made once inside the
//! token and never readable from it; what it seals opens only under it, for the same
//! associated data, and unaltered; a fault of the token is not taken for tampering; and each
//! failure says which part is wrong without the PIN. Tests in one process share its token and
//! use key labels of their own.

use std::path::Path;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use strongbox_tests::softhsm::{MODULE, SoftToken};
use strongbox_vault::crypto::pkcs11::{Token, TokenError};

/// One test at a time within a process: SoftHSM2 crashes when threads initialise it at once
/// (`cargo test` runs tests as threads; nextest, as processes).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn pin(token: &SoftToken) -> AuthPin {
    AuthPin::from(token.pin.clone())
}

/// A session of our own on the test token, straight through cryptoki.
fn raw_session(soft: &SoftToken) -> Session {
    let context = Pkcs11::new(MODULE).unwrap();
    let _already = context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = context
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| context.get_token_info(*s).unwrap().label().trim_end() == soft.label)
        .unwrap();
    let session = context.open_rw_session(slot).unwrap();
    let _maybe_already = session.login(UserType::User, Some(&pin(soft)));
    session
}

#[test]
fn the_wrapping_key_is_made_once_and_never_leaves_the_token() {
    let _one_at_a_time = serial();
    let soft = SoftToken::shared();
    let token = Token::open(Path::new(MODULE), &soft.label).unwrap();
    assert!(token.ensure_key(&pin(soft), "held").unwrap(), "made");
    assert!(!token.ensure_key(&pin(soft), "held").unwrap(), "found, not made again");
    assert!(token.key_is_held(&pin(soft), "held").unwrap(), "local, sensitive, not extractable");

    // Straight through PKCS#11: its value cannot be read, and it cannot be wrapped out.
    let session = raw_session(soft);
    let key = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(b"held".to_vec()),
        ])
        .unwrap();
    assert_eq!(key.len(), 1);
    let value = session.get_attributes(key[0], &[AttributeType::Value]).unwrap_or_default();
    assert!(!value.iter().any(|a| matches!(a, Attribute::Value(_))), "value readable: {value:?}");
    let wrapper = session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32u64.into()),
                Attribute::Wrap(true),
                Attribute::Label(b"wrapper".to_vec()),
            ],
        )
        .unwrap();
    assert!(session.wrap_key(&Mechanism::AesKeyWrap, wrapper, key[0]).is_err(), "wrapped out");
}

#[test]
fn a_sealed_secret_opens_only_under_its_key_for_its_context_and_unaltered() {
    let _one_at_a_time = serial();
    let soft = SoftToken::shared();
    let token = Token::open(Path::new(MODULE), &soft.label).unwrap();
    let pin = pin(soft);
    token.ensure_key(&pin, "unlock").unwrap();
    token.ensure_key(&pin, "other").unwrap();
    let secret = [7u8; 32];
    let sealed = token.seal(&pin, "unlock", b"root:1", &secret).unwrap();
    assert_eq!(sealed.len(), 1 + 12 + 32 + 16);
    assert!(!sealed.windows(8).any(|w| w == [7u8; 8]), "the secret is not in the clear");
    assert_eq!(token.unseal(&pin, "unlock", b"root:1", &sealed).unwrap().as_slice(), secret);
    // Two seals of one secret differ (a fresh nonce each).
    assert_ne!(sealed, token.seal(&pin, "unlock", b"root:1", &secret).unwrap());

    let refused = |result: Result<_, TokenError>| matches!(result, Err(TokenError::Authentication));
    // These reach the token, which refuses the tag.
    assert!(refused(token.unseal(&pin, "unlock", b"root:2", &sealed)), "other associated data");
    assert!(refused(token.unseal(&pin, "other", b"root:1", &sealed)), "another key");
    for at in [1, 13, sealed.len() - 1] {
        let mut altered = sealed.clone();
        altered[at] ^= 1;
        assert!(refused(token.unseal(&pin, "unlock", b"root:1", &altered)), "byte {at} altered");
    }
    // These are refused before the token is asked.
    let mut wrong_version = sealed.clone();
    wrong_version[0] ^= 1;
    assert!(refused(token.unseal(&pin, "unlock", b"root:1", &wrong_version)), "version");
    assert!(refused(token.unseal(&pin, "unlock", b"root:1", &sealed[..20])), "cut short");
    assert!(refused(token.unseal(&pin, "unlock", b"root:1", &[])), "empty");
}

#[test]
fn a_fault_of_the_token_is_not_taken_for_tampering() {
    let _one_at_a_time = serial();
    let soft = SoftToken::shared();
    let token = Token::open(Path::new(MODULE), &soft.label).unwrap();
    // A key that may encrypt but not decrypt: the token refuses the operation itself.
    raw_session(soft)
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(true),
                Attribute::ValueLen(32u64.into()),
                Attribute::Encrypt(true),
                Attribute::Decrypt(false),
                Attribute::Label(b"encrypt-only".to_vec()),
            ],
        )
        .unwrap();
    let sealed = token.seal(&pin(soft), "encrypt-only", b"", b"secret").unwrap();
    match token.unseal(&pin(soft), "encrypt-only", b"", &sealed) {
        Err(TokenError::Library(why)) => assert!(why.contains("Decrypt"), "{why}"),
        other => panic!("{:?}", other.map(|p| p.len())),
    }
}

#[test]
fn a_wrong_pin_a_missing_token_or_a_missing_key_each_says_so() {
    let _one_at_a_time = serial();
    let soft = SoftToken::shared();
    match Token::open(Path::new(MODULE), "no-such-token") {
        Err(TokenError::NoToken(label)) => assert_eq!(label, "no-such-token"),
        other => panic!("{other:?}"),
    }
    match Token::open(Path::new("/nonexistent/libpkcs11.so"), &soft.label) {
        Err(TokenError::Module { module, .. }) => assert_eq!(module, "/nonexistent/libpkcs11.so"),
        other => panic!("{other:?}"),
    }
    let token = Token::open(Path::new(MODULE), &soft.label).unwrap();
    match token.seal(&pin(soft), "missing", b"", b"x") {
        Err(TokenError::NoKey(label)) => assert_eq!(label, "missing"),
        other => panic!("{other:?}"),
    }
}

/// A wrong PIN is refused, and the error does not carry it. In a process of its own (nextest),
/// no other session is logged in, so the token checks the PIN rather than answering "already
/// logged in".
#[test]
fn a_wrong_pin_is_refused_without_being_echoed() {
    let _one_at_a_time = serial();
    let soft = SoftToken::shared();
    let token = Token::open(Path::new(MODULE), &soft.label).unwrap();
    let wrong = "not-the-pin-4242";
    match token.ensure_key(&AuthPin::from(wrong.to_owned()), "pin-check") {
        Err(error) => {
            assert!(matches!(error, TokenError::WrongPin), "{error:?}");
            assert!(!error.to_string().contains(wrong) && !format!("{error:?}").contains(wrong));
        }
        // Only when another test of this process holds a login (cargo test, one process).
        Ok(_) => assert!(std::env::var("NEXTEST").is_err(), "a wrong PIN was accepted"),
    }
}
