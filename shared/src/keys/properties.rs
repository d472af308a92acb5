//! Property tests of key generation and the key-shape checks, each against a plain restatement of
//! the documented rule, over arbitrary text and over near misses (one character off the
//! alphabet, one too many or too few).

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::*;

/// Bitcoin's base58 alphabet, which `bs58` uses: no `0`, `O`, `I` or `l`.
const BASE58: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// The prefix rule as documented: 1-16 characters, each an ASCII letter, digit or `_`.
fn reference_prefix_ok(prefix: &str) -> bool {
    let chars: Vec<char> = prefix.chars().collect();
    (1..=16).contains(&chars.len())
        && chars.iter().all(|c| matches!(c, 'a'..='z' | 'A'..='Z' | '0'..='9' | '_'))
}

/// The root-key shape as documented: `sb_` then 64 hexadecimal digits. `is_ascii_hexdigit`
/// admits `A-F` too; generated keys are lower case, and the shape only screens what is looked up
/// by hash, so an upper-case spelling simply finds nothing.
// Spelled out on purpose: a reference written apart from the code it checks.
#[allow(clippy::manual_is_ascii_check)]
fn reference_root_key(key: &str) -> bool {
    let chars: Vec<char> = key.chars().collect();
    chars.len() == 3 + 64
        && chars[..3] == ['s', 'b', '_']
        && chars[3..].iter().all(|c| matches!(c, '0'..='9' | 'a'..='f' | 'A'..='F'))
}

fn text(chars: Vec<char>) -> String {
    chars.into_iter().collect()
}

/// Arbitrary text, and text that is nearly a valid prefix.
fn prefix_like() -> impl Strategy<Value = String> {
    let valid: Vec<char> = ('a'..='z').chain('A'..='Z').chain('0'..='9').chain(['_']).collect();
    let off = vec!['-', ' ', '.', 'é', 'ß', '\0', 'İ', '\u{301}', '０', '\u{200b}'];
    prop_oneof![
        3 => vec(prop_oneof![12 => select(valid), 1 => select(off)], 0..=20).prop_map(text),
        1 => vec(any::<char>(), 0..=20).prop_map(text),
    ]
}

/// Mostly lower-case hex digits, sometimes upper-case ones, rarely anything else.
fn hexish() -> impl Strategy<Value = char> {
    prop_oneof![
        200 => select("0123456789abcdef".chars().collect::<Vec<_>>()),
        4 => select("ABCDEF".chars().collect::<Vec<_>>()),
        1 => select(vec!['g', 'G', 'x', ' ', '_', '\0', 'é', '０', '٣']),
    ]
}

/// Arbitrary text, and text that is nearly a root key: a wrong or missing `sb_`, 62-66 digits
/// (64 a third of the time), upper-case or non-hex characters now and then.
fn root_key_like() -> impl Strategy<Value = String> {
    let head = select(vec!["sb_", "sb_", "sb_", "sb_", "sb", "SB_", "sk_", "", "sb_sb_", "ｓb_"]);
    let near = (head, vec(hexish(), 64), 0usize..3, vec(hexish(), 0..3)).prop_map(
        |(head, digits, dropped, added)| {
            let kept = &digits[..digits.len() - dropped];
            format!("{head}{}{}", text(kept.to_vec()), text(added))
        },
    );
    prop_oneof![4 => near, 1 => vec(any::<char>(), 0..=70).prop_map(text)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `check_prefix` is exactly the documented rule, on any text.
    #[test]
    fn check_prefix_agrees_with_the_rule(prefix in prefix_like()) {
        let ok = check_prefix(&prefix).is_ok();
        prop_assert_eq!(ok, reference_prefix_ok(&prefix), "{:?}", prefix);
    }

    /// A generated key is `prefix_` and base58 of exactly `byte_length` bytes, and `start` shows
    /// the prefix and the first four characters of the random part.
    #[test]
    fn customer_keys_have_their_prefix_and_base58_body(
        prefix in prop::option::of("[A-Za-z0-9_]{1,16}"),
        byte_length in MIN_BYTE_LENGTH..=MAX_BYTE_LENGTH,
    ) {
        let key = new_customer_key(prefix.as_deref(), byte_length).unwrap();
        let head = prefix.as_ref().map(|p| format!("{p}_")).unwrap_or_default();
        prop_assert!(key.starts_with(&head), "{} lacks {}", key, head);
        let body = &key[head.len()..];
        prop_assert!(body.chars().all(|c| BASE58.contains(c)), "{}", body);
        prop_assert_eq!(bs58::decode(body).into_vec().unwrap().len(), byte_length);

        let shown = start(&key, prefix.as_deref());
        prop_assert!(key.starts_with(&shown), "{} does not start {}", shown, key);
        prop_assert_eq!(shown, format!("{head}{}", &body[..4]));
    }

    /// Byte length is checked first, then the prefix, and nothing else fails.
    #[test]
    fn customer_key_errors_follow_the_rules(
        prefix in prop::option::of(prefix_like()),
        byte_length in 0usize..300,
    ) {
        let expected = if !(MIN_BYTE_LENGTH..=MAX_BYTE_LENGTH).contains(&byte_length) {
            Err(KeyError::ByteLength)
        } else if prefix.as_deref().is_some_and(|p| !reference_prefix_ok(p)) {
            Err(KeyError::Prefix)
        } else {
            Ok(())
        };
        let got = new_customer_key(prefix.as_deref(), byte_length).map(drop);
        prop_assert_eq!(got, expected, "{:?} {}", prefix, byte_length);
    }

    /// `start` never panics, whatever the key and prefix, and always shows a beginning of the
    /// key: at most the prefix, its `_` and four more characters.
    #[test]
    fn start_is_a_short_beginning_of_any_key(
        key in prop_oneof![
            vec(any::<char>(), 0..12).prop_map(text),
            ("[a-z_]{1,4}", vec(any::<char>(), 0..8))
                .prop_map(|(p, rest)| format!("{p}_{}", text(rest))),
        ],
        prefix in prop::option::of(prop_oneof![
            "[a-z_]{1,4}",
            vec(any::<char>(), 0..4).prop_map(text),
        ]),
    ) {
        let shown = start(&key, prefix.as_deref());
        prop_assert!(key.starts_with(&shown), "{:?} does not start {:?}", shown, key);
        let allowed = prefix.as_ref().map_or(0, |p| p.chars().count() + 1) + 4;
        prop_assert!(shown.chars().count() <= allowed, "{:?}", shown);
    }

    /// `looks_like_root_key` is exactly `sb_` and 64 hex digits, on any text.
    #[test]
    fn looks_like_root_key_agrees_with_the_rule(key in root_key_like()) {
        prop_assert_eq!(looks_like_root_key(&key), reference_root_key(&key), "{:?}", key);
    }
}

#[test]
fn every_new_root_key_looks_like_one_and_is_lower_case_hex() {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..256 {
        let key = new_root_key().unwrap();
        assert!(looks_like_root_key(&key), "{key}");
        assert!(reference_root_key(&key), "{key}");
        assert!(key[3..].bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), "{key}");
        assert!(seen.insert(key), "a repeated root key");
    }
}
