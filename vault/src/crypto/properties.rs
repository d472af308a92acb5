//! Property tests of the crypto module tree, against small independent references: a base64url
//! decoder written from RFC 4648 for the ciphertext's string form, and a parser of the AAD layout
//! documented in [`super::aad`]. The example tests beside each module pin known answers; these
//! try many shapes: any plaintext, keyring and context within the vault's limits, any text where
//! a ciphertext is expected, and a valid ciphertext after truncation, bit flips and insertions.

use aws_lc_rs::aead::NONCE_LEN;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use zeroize::Zeroizing;

use super::aad::{self, RootBinding};
use super::envelope::{self, Ciphertext};
use super::hierarchy::{self, Argon2Params};
use super::{CryptoError, KEY_LEN, SecretKey, TAG_LEN};
use crate::domain::{KeyringName, check_context};

/// Format version and DEK version in front of every data ciphertext.
const HEADER_LEN: usize = 1 + 4;
/// The shortest data ciphertext: header, nonce and tag around an empty plaintext.
const MIN_CIPHERTEXT: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;
/// RFC 4648 §5, the alphabet of the ciphertext's string form.
const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn key(bytes: [u8; KEY_LEN]) -> SecretKey {
    SecretKey::from_bytes(Zeroizing::new(bytes)).unwrap()
}

fn key_bytes() -> impl Strategy<Value = [u8; KEY_LEN]> {
    prop::array::uniform32(any::<u8>())
}

/// A keyring name the vault accepts (`domain::KeyringName`).
fn keyring() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,64}"
}

/// A context the vault accepts: 1-256 bytes of UTF-8. 64 chars are at most 256 bytes.
fn context() -> impl Strategy<Value = String> {
    vec(any::<char>(), 1..=64).prop_map(|chars| chars.into_iter().collect::<String>())
}

/// The canonical unpadded base64url decoding of `text`, or `None` where RFC 4648 has none: a
/// character outside the alphabet, a length of 4n+1, or set bits after the last whole byte
/// (which would give one byte string two spellings).
fn reference_decode(text: &str) -> Option<Vec<u8>> {
    let sextets: Vec<u32> = text
        .chars()
        .map(|c| BASE64URL.iter().position(|&a| char::from(a) == c).map(|i| i as u32))
        .collect::<Option<_>>()?;
    if sextets.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(sextets.len() * 3 / 4);
    for chunk in sextets.chunks(4) {
        let group = chunk.iter().enumerate().fold(0u32, |acc, (k, &s)| acc | (s << (18 - 6 * k)));
        let whole_bytes = chunk.len() - 1;
        let [_, b0, b1, b2] = group.to_be_bytes();
        out.extend_from_slice(&[b0, b1, b2][..whole_bytes]);
        let leftover = (1u32 << (24 - 8 * whole_bytes)) - 1;
        if group & leftover != 0 {
            return None;
        }
    }
    Some(out)
}

/// Whether `Ciphertext::parse` should accept `text`: canonical base64url of at least a header,
/// nonce and tag, starting with format version 1.
fn reference_parses(text: &str) -> bool {
    reference_decode(text).is_some_and(|bytes| bytes.len() >= MIN_CIPHERTEXT && bytes[0] == 1)
}

/// One edit of a ciphertext's string form. Indices are resolved against the text as it is when
/// the edit applies, so any sequence of edits is valid.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(Index),
    FlipBit(Index, u8),
    Insert(Index, char),
    Delete(Index),
    Replace(Index, char),
}

/// Mostly characters of the alphabet, so that edited text still decodes and reaches the checks
/// behind the decoder; sometimes padding, standard base64's `+` and `/`, or anything at all.
fn mutation_char() -> impl Strategy<Value = char> {
    let alphabet: Vec<char> = BASE64URL.iter().map(|&b| char::from(b)).collect();
    prop_oneof![
        6 => select(alphabet),
        2 => select(vec!['=', '+', '/', ' ', '\n', '\0']),
        1 => any::<char>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), 0u8..7).prop_map(|(i, bit)| Mutation::FlipBit(i, bit)),
        (any::<Index>(), mutation_char()).prop_map(|(i, c)| Mutation::Insert(i, c)),
        any::<Index>().prop_map(Mutation::Delete),
        (any::<Index>(), mutation_char()).prop_map(|(i, c)| Mutation::Replace(i, c)),
    ]
}

fn apply(text: &str, mutations: &[Mutation]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for mutation in mutations {
        let len = chars.len();
        match mutation {
            Mutation::Truncate(i) => chars.truncate(i.index(len + 1)),
            Mutation::Insert(i, c) => chars.insert(i.index(len + 1), *c),
            Mutation::FlipBit(i, bit) if len > 0 => {
                let k = i.index(len);
                if let Some(flipped) = char::from_u32(u32::from(chars[k]) ^ (1u32 << *bit)) {
                    chars[k] = flipped;
                }
            }
            Mutation::Delete(i) if len > 0 => {
                chars.remove(i.index(len));
            }
            Mutation::Replace(i, c) if len > 0 => chars[i.index(len)] = *c,
            Mutation::FlipBit(..) | Mutation::Delete(_) | Mutation::Replace(..) => {}
        }
    }
    chars.into_iter().collect()
}

/// What [`aad`] encodes, one variant per function.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AadInput {
    Root { m_kib: u32, t: u32, p: u32, salt: Vec<u8> },
    Kek(u32),
    Dek(String, u32),
    Data(String, u32, String),
}

impl AadInput {
    fn encode(&self) -> Vec<u8> {
        match self {
            Self::Root { m_kib, t, p, salt } => {
                aad::root(RootBinding { m_kib: *m_kib, t: *t, p: *p, salt })
            }
            Self::Kek(version) => aad::kek(*version),
            Self::Dek(keyring, version) => aad::dek(keyring, *version),
            Self::Data(keyring, version, context) => aad::data(keyring, *version, context),
        }
    }

    /// The fields the documented layout should carry: purpose, keyring, version, context.
    fn fields(&self) -> (Vec<u8>, Vec<u8>, u32, Vec<u8>) {
        match self {
            Self::Root { m_kib, t, p, salt } => {
                let mut context = [m_kib.to_be_bytes(), t.to_be_bytes(), p.to_be_bytes()].concat();
                context.extend_from_slice(salt);
                (b"root".to_vec(), Vec::new(), 0, context)
            }
            Self::Kek(version) => (b"kek".to_vec(), Vec::new(), *version, Vec::new()),
            Self::Dek(keyring, version) => {
                (b"dek".to_vec(), keyring.as_bytes().to_vec(), *version, Vec::new())
            }
            Self::Data(keyring, version, context) => (
                b"data".to_vec(),
                keyring.as_bytes().to_vec(),
                *version,
                context.as_bytes().to_vec(),
            ),
        }
    }
}

/// Reads the layout documented in `aad.rs` back into its fields; `None` unless the bytes are
/// exactly one such record. Decoding is a function, so if it recovers every input's fields, no
/// two inputs with different fields share an encoding.
/// The fields an AAD encodes, as the reference decoder reads them back.
type AadFields = (Vec<u8>, Vec<u8>, u32, Vec<u8>);

fn reference_aad_fields(bytes: &[u8]) -> Option<AadFields> {
    fn u32_at(rest: &mut &[u8]) -> Option<u32> {
        let (head, tail) = rest.split_first_chunk::<4>()?;
        *rest = tail;
        Some(u32::from_be_bytes(*head))
    }
    fn field(rest: &mut &[u8]) -> Option<Vec<u8>> {
        let len = usize::try_from(u32_at(rest)?).ok()?;
        let (head, tail) = rest.split_at_checked(len)?;
        *rest = tail;
        Some(head.to_vec())
    }
    let (&1, mut rest) = bytes.split_first()? else {
        return None;
    };
    if field(&mut rest)? != b"strongbox" {
        return None;
    }
    let purpose = field(&mut rest)?;
    let keyring = field(&mut rest)?;
    let version = u32_at(&mut rest)?;
    let context = field(&mut rest)?;
    rest.is_empty().then_some((purpose, keyring, version, context))
}

/// Numbers whose big-endian bytes look like the length prefixes and version bytes around them.
fn version() -> impl Strategy<Value = u32> {
    prop_oneof![select(vec![0u32, 1, 4, 9, 0x100, 0x0100_0000, u32::MAX]), any::<u32>()]
}

/// Short strings over characters that also appear in the framing (NUL, small lengths, `/`), so
/// that a field running into its neighbour would show.
fn tiny_text() -> impl Strategy<Value = String> {
    vec(select(vec!['a', 'b', '/', '\0', '\u{1}', '\u{4}', 'é']), 0..6)
        .prop_map(|chars| chars.into_iter().collect::<String>())
}

fn aad_input() -> impl Strategy<Value = AadInput> {
    prop_oneof![
        (version(), version(), version(), vec(select(vec![0u8, 1, 4, b'a']), 0..8))
            .prop_map(|(m_kib, t, p, salt)| AadInput::Root { m_kib, t, p, salt }),
        version().prop_map(AadInput::Kek),
        (tiny_text(), version()).prop_map(|(k, v)| AadInput::Dek(k, v)),
        (tiny_text(), version(), tiny_text()).prop_map(|(k, v, c)| AadInput::Data(k, v, c)),
    ]
}

/// `input` with a field boundary moved: the tail of the keyring becomes the head of the context
/// (`"a/1", ""` against `"a", "/1"`), a DEK becomes a data record with an empty context, or a
/// root's salt is cut in half. Often a different input with the same concatenation.
fn shifted(input: &AadInput, at: &Index) -> AadInput {
    match input {
        AadInput::Data(keyring, version, context) => {
            let cuts: Vec<usize> =
                keyring.char_indices().map(|(i, _)| i).chain([keyring.len()]).collect();
            let (head, tail) = keyring.split_at(cuts[at.index(cuts.len())]);
            AadInput::Data(head.to_owned(), *version, format!("{tail}{context}"))
        }
        AadInput::Dek(keyring, version) => AadInput::Data(keyring.clone(), *version, String::new()),
        AadInput::Kek(version) => AadInput::Dek(String::new(), *version),
        AadInput::Root { m_kib, t, p, salt } => {
            AadInput::Root { m_kib: *m_kib, t: *t, p: *p, salt: salt[..salt.len() / 2].to_vec() }
        }
    }
}

fn aad_pair() -> impl Strategy<Value = (AadInput, AadInput)> {
    prop_oneof![
        (aad_input(), aad_input()),
        aad_input().prop_map(|a| (a.clone(), a)),
        (aad_input(), any::<Index>()).prop_map(|(a, at)| {
            let b = shifted(&a, &at);
            (a, b)
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever is sealed within the vault's limits opens again, through the string form, with
    /// the same DEK, keyring and context, and with nothing else.
    #[test]
    fn sealed_data_round_trips_through_the_string_form(
        dek in key_bytes(),
        keyring in keyring(),
        version in any::<u32>(),
        context in context(),
        plaintext in vec(any::<u8>(), 0..600),
        other_keyring in keyring(),
        other_context in context(),
        other_dek in key_bytes(),
    ) {
        prop_assert!(KeyringName::parse(&keyring).is_ok());
        prop_assert!(check_context(0, &context).is_ok());
        let sealed = envelope::seal(&key(dek), &keyring, version, &context, &plaintext).unwrap();
        prop_assert_eq!(sealed.dek_version(), version);

        let text = sealed.encode();
        prop_assert!(text.bytes().all(|b| BASE64URL.contains(&b)), "{}", text);
        let bytes = reference_decode(&text).unwrap();
        prop_assert_eq!(bytes.len(), MIN_CIPHERTEXT + plaintext.len());
        prop_assert_eq!(bytes[0], 1);
        prop_assert_eq!(&bytes[1..HEADER_LEN], &version.to_be_bytes()[..]);

        let parsed = Ciphertext::parse(&text).unwrap();
        prop_assert_eq!(&parsed, &sealed);
        prop_assert_eq!(parsed.encode(), text);
        let opened = parsed.open(&key(dek), &keyring, &context).unwrap();
        prop_assert_eq!(opened.as_slice(), plaintext.as_slice());

        if other_keyring != keyring {
            prop_assert_eq!(
                parsed.open(&key(dek), &other_keyring, &context).unwrap_err(),
                CryptoError::Authentication
            );
        }
        if other_context != context {
            prop_assert_eq!(
                parsed.open(&key(dek), &keyring, &other_context).unwrap_err(),
                CryptoError::Authentication
            );
        }
        if other_dek != dek {
            prop_assert_eq!(
                parsed.open(&key(other_dek), &keyring, &context).unwrap_err(),
                CryptoError::Authentication
            );
        }
    }

    /// Any text at all: parsing never panics, accepts exactly what the reference accepts, and
    /// what it accepts it spells back the same way (one spelling per ciphertext).
    #[test]
    fn parsing_any_text_agrees_with_the_reference(
        text in prop_oneof![
            vec(any::<char>(), 0..120).prop_map(|c| c.into_iter().collect::<String>()),
            vec(mutation_char(), 0..120).prop_map(|c| c.into_iter().collect::<String>()),
            // Starts like a version-1 ciphertext (`A` then a sextet 16..=31), so the checks past
            // the decoder are reached often.
            ("A[Q-Za-f]", vec(mutation_char(), 0..80)).prop_map(|(head, c)| {
                format!("{head}{}", c.into_iter().collect::<String>())
            }),
        ],
    ) {
        match Ciphertext::parse(&text) {
            Ok(parsed) => {
                prop_assert!(reference_parses(&text), "accepted {:?}", text);
                prop_assert_eq!(parsed.encode(), text);
            }
            Err(err) => {
                prop_assert!(!reference_parses(&text), "refused {:?}: {}", text, err);
                prop_assert!(matches!(err, CryptoError::Malformed(_)), "{:?}", err);
            }
        }
    }

    /// A valid ciphertext after truncation, bit flips, insertions, deletions and replacements:
    /// parsing never panics and agrees with the reference, and an edited ciphertext that still
    /// parses never opens. An edit sequence that restores the original text opens as before.
    #[test]
    fn an_edited_ciphertext_is_refused_or_fails_to_open(
        dek in key_bytes(),
        keyring in keyring(),
        version in any::<u32>(),
        context in context(),
        plaintext in vec(any::<u8>(), 0..64),
        mutations in vec(mutation(), 1..4),
    ) {
        let dek = key(dek);
        let original =
            envelope::seal(&dek, &keyring, version, &context, &plaintext).unwrap().encode();
        let text = apply(&original, &mutations);
        match Ciphertext::parse(&text) {
            Ok(parsed) => {
                prop_assert!(reference_parses(&text), "accepted {:?}", text);
                prop_assert_eq!(parsed.encode(), text.clone());
                let opened = parsed.open(&dek, &keyring, &context);
                if text == original {
                    let opened = opened.unwrap();
                    prop_assert_eq!(opened.as_slice(), plaintext.as_slice());
                } else {
                    prop_assert_eq!(opened.unwrap_err(), CryptoError::Authentication);
                }
            }
            Err(err) => {
                prop_assert!(!reference_parses(&text), "refused {:?}: {}", text, err);
                prop_assert!(matches!(err, CryptoError::Malformed(_)), "{:?}", err);
                prop_assert_ne!(text, original);
            }
        }
    }

    /// Every AAD parses back, by the documented layout, into exactly the fields it was built
    /// from: so no two different inputs share an encoding.
    #[test]
    fn aad_decodes_back_to_its_fields(input in aad_input()) {
        prop_assert_eq!(reference_aad_fields(&input.encode()), Some(input.fields()));
    }

    /// Equal encodings only for equal inputs, including pairs built to collide if a length
    /// prefix were missing (a boundary moved between keyring and context).
    #[test]
    fn aad_encodings_are_injective((a, b) in aad_pair()) {
        prop_assert_eq!(a.encode() == b.encode(), a == b, "{:?} and {:?}", a, b);
    }

    /// A wrapped DEK opens under its own KEK, keyring and version, and under no other.
    #[test]
    fn wrapped_deks_round_trip_and_bind_keyring_and_version(
        kek in key_bytes(),
        dek in key_bytes(),
        keyring in keyring(),
        version in any::<u32>(),
        other_keyring in keyring(),
        other_version in any::<u32>(),
        other_kek in key_bytes(),
    ) {
        let record = hierarchy::wrap_dek(&key(kek), &keyring, version, &key(dek)).unwrap();
        prop_assert_eq!(record.len(), 1 + NONCE_LEN + KEY_LEN + TAG_LEN);
        prop_assert_eq!(record[0], 1);
        let opened = hierarchy::unwrap_dek(&key(kek), &keyring, version, &record).unwrap();
        prop_assert_eq!(opened.expose(), &dek);
        if other_keyring != keyring {
            prop_assert_eq!(
                hierarchy::unwrap_dek(&key(kek), &other_keyring, version, &record).unwrap_err(),
                CryptoError::Authentication
            );
        }
        if other_version != version {
            prop_assert_eq!(
                hierarchy::unwrap_dek(&key(kek), &keyring, other_version, &record).unwrap_err(),
                CryptoError::Authentication
            );
        }
        if other_kek != kek {
            prop_assert_eq!(
                hierarchy::unwrap_dek(&key(other_kek), &keyring, version, &record).unwrap_err(),
                CryptoError::Authentication
            );
        }
    }

    /// The root record binds the argon2 parameters and salt stored beside it, whatever they
    /// are (no key derivation here: the unlock key is random, so this stays fast).
    #[test]
    fn the_root_record_binds_any_parameters_and_salt(
        unlock in key_bytes(),
        root in key_bytes(),
        params in (any::<u32>(), any::<u32>(), any::<u32>()),
        salt in vec(any::<u8>(), 0..32),
        other_params in (any::<u32>(), any::<u32>(), any::<u32>()),
        other_salt in vec(any::<u8>(), 0..32),
    ) {
        let params = Argon2Params { m_kib: params.0, t: params.1, p: params.2 };
        let other_params =
            Argon2Params { m_kib: other_params.0, t: other_params.1, p: other_params.2 };
        let record = hierarchy::seal_root(&key(unlock), params, &salt, &key(root)).unwrap();
        let opened = hierarchy::open_root(&key(unlock), params, &salt, &record).unwrap();
        prop_assert_eq!(opened.expose(), &root);
        if other_params != params {
            prop_assert_eq!(
                hierarchy::open_root(&key(unlock), other_params, &salt, &record).unwrap_err(),
                CryptoError::Authentication
            );
        }
        if other_salt != salt {
            prop_assert_eq!(
                hierarchy::open_root(&key(unlock), params, &other_salt, &record).unwrap_err(),
                CryptoError::Authentication
            );
        }
    }

    /// Arbitrary bytes where a wrapped key is expected: never a panic, and the error says why.
    #[test]
    fn unwrapping_any_bytes_fails_cleanly(
        wrapping in key_bytes(),
        record in prop_oneof![
            vec(any::<u8>(), 0..80),
            vec(any::<u8>(), 0..80).prop_map(|mut r| {
                r.insert(0, 1);
                r
            }),
        ],
        aad in vec(any::<u8>(), 0..40),
    ) {
        let err = key(wrapping).unwrap_key(&aad, &record).unwrap_err();
        match record.split_first() {
            Some((1, sealed)) if sealed.len() >= NONCE_LEN + TAG_LEN => {
                prop_assert_eq!(err, CryptoError::Authentication);
            }
            _ => prop_assert!(matches!(err, CryptoError::Malformed(_)), "{:?}", err),
        }
    }

    /// The KEK wrapping key is a function of the root key, and a different root gives a
    /// different one.
    #[test]
    fn the_kek_wrapping_key_follows_the_root(a in key_bytes(), b in key_bytes()) {
        let from_a = hierarchy::kek_wrapping_key(&key(a)).unwrap();
        let again = hierarchy::kek_wrapping_key(&key(a)).unwrap();
        prop_assert_eq!(from_a.expose(), again.expose());
        prop_assert_ne!(from_a.expose(), &a, "derived, not the root itself");
        if a != b {
            let from_b = hierarchy::kek_wrapping_key(&key(b)).unwrap();
            prop_assert_ne!(from_a.expose(), from_b.expose());
        }
    }
}
