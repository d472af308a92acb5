//! The HSM seal's wrapping key, against a real PKCS#11 token (SoftHSM2): made once inside the
//! token and never readable from it; what it seals opens only under it, for the same
//! associated data, and unaltered; and each failure says which part is wrong without the PIN.

use std::path::Path;

use cryptoki::types::AuthPin;
use strongbox_tests::softhsm::{MODULE, SoftToken};
use strongbox_vault::crypto::pkcs11::{Token, TokenError};

fn pin(token: &SoftToken) -> AuthPin {
    AuthPin::from(token.pin.clone())
}

#[test]
fn the_wrapping_key_is_made_once_and_never_leaves_the_token() {
    let soft = SoftToken::new();
    let token = Token::open(Path::new(MODULE), &soft.label).unwrap();
    assert!(token.ensure_key(&pin(&soft), "unlock").unwrap(), "made");
    assert!(!token.ensure_key(&pin(&soft), "unlock").unwrap(), "found, not made again");
    assert!(token.key_is_held(&pin(&soft), "unlock").unwrap(), "sensitive and not extractable");
}

#[test]
fn a_sealed_secret_opens_only_under_its_key_for_its_context_and_unaltered() {
    let soft = SoftToken::new();
    let token = Token::open(Path::new(MODULE), &soft.label).unwrap();
    let pin = pin(&soft);
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
    assert!(refused(token.unseal(&pin, "unlock", b"root:2", &sealed)), "other associated data");
    assert!(refused(token.unseal(&pin, "other", b"root:1", &sealed)), "another key");
    for at in [0, 1, 13, sealed.len() - 1] {
        let mut altered = sealed.clone();
        altered[at] ^= 1;
        assert!(refused(token.unseal(&pin, "unlock", b"root:1", &altered)), "byte {at} altered");
    }
    assert!(refused(token.unseal(&pin, "unlock", b"root:1", &sealed[..20])), "cut short");
    assert!(refused(token.unseal(&pin, "unlock", b"root:1", &[])), "empty");
}

#[test]
fn a_wrong_pin_a_missing_token_or_a_missing_key_each_says_so() {
    let soft = SoftToken::new();
    match Token::open(Path::new(MODULE), "no-such-token") {
        Err(TokenError::NoToken(label)) => assert_eq!(label, "no-such-token"),
        other => panic!("{other:?}"),
    }
    match Token::open(Path::new("/nonexistent/libpkcs11.so"), &soft.label) {
        Err(TokenError::Module { module, .. }) => assert_eq!(module, "/nonexistent/libpkcs11.so"),
        other => panic!("{other:?}"),
    }
    let token = Token::open(Path::new(MODULE), &soft.label).unwrap();
    let wrong = "not-the-pin-4242";
    let error = token.ensure_key(&AuthPin::from(wrong.to_owned()), "unlock").unwrap_err();
    assert!(matches!(error, TokenError::WrongPin), "{error:?}");
    assert!(!error.to_string().contains(wrong) && !format!("{error:?}").contains(wrong));
    match token.seal(&pin(&soft), "missing", b"", b"x") {
        Err(TokenError::NoKey(label)) => assert_eq!(label, "missing"),
        other => panic!("{other:?}"),
    }
}
