//! k-of-n unlock shares: the server key, split with Shamir's scheme over GF(2^8) (the `vsss-rs`
//! crate's constant-time field), so that any K of N shares rebuild it and fewer reveal nothing.
//!
//! In shares mode the server key is 32 random bytes, never typed by anyone. Its text form (hex)
//! goes through the same argon2 derivation as a chosen key, so everything after the combination
//! (the root record, the throttle, rekey) is the single-key path unchanged.
//!
//! A share is printed as `sb1-<index>-<base58>`: ASCII letters, digits and `-`, safe in any shell,
//! and case-sensitive (base58). The base58 part carries the format, a set id (random per split,
//! so shares of different splits are not mixed), the threshold, the index, the share's bytes and
//! a 4-byte SHA-256 checksum, so a mistyped share is refused before it counts.

use aws_lc_rs::{digest, hmac};
use zeroize::Zeroizing;

/// Fewest shares a split may need.
pub const MIN_THRESHOLD: u8 = 2;
/// Most shares a split may make.
pub const MAX_SHARES: u8 = 16;
/// Bytes of the secret split.
pub const SECRET_LEN: usize = 32;

const PREFIX: &str = "sb1";
const FORMAT: u8 = 1;
const CHECKSUM_LEN: usize = 4;
/// format, set id (4), threshold, index.
const HEADER_LEN: usize = 1 + 4 + 1 + 1;
/// A printed share is about 70 characters.
const MAX_TEXT_LEN: usize = 128;

/// Why a share or a set of shares was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// Not a share at all, or mistyped: the checksum does not match.
    #[error("{0}")]
    Invalid(&'static str),
    /// Shares of different splits.
    #[error("the shares come from different splits")]
    Mixed,
    /// N and K out of range.
    #[error("shares must satisfy 2 <= threshold <= shares <= 16")]
    Range,
    /// Randomness was not available.
    #[error("the system's random number generator failed")]
    Random,
}

/// One decoded share.
#[derive(Clone)]
pub struct Share {
    /// Random id of the split it belongs to.
    pub set: [u8; 4],
    /// Shares needed.
    pub threshold: u8,
    /// Its x coordinate, 1..=N.
    pub index: u8,
    y: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Share {{ index: {}, threshold: {}, .. }}", self.index, self.threshold)
    }
}

impl Share {
    /// A share from its parts (tests forge shares with it; a forged share is still refused by
    /// the root record's authentication).
    pub fn new(set: [u8; 4], threshold: u8, index: u8, y: [u8; SECRET_LEN]) -> Self {
        Self { set, threshold, index, y: Zeroizing::new(y.to_vec()) }
    }

    /// Whether `other` is the very same share (its bytes compared in constant time).
    pub fn same_as(&self, other: &Self) -> bool {
        self.set == other.set
            && self.index == other.index
            && aws_lc_rs::constant_time::verify_slices_are_equal(&self.y, &other.y).is_ok()
    }

    /// The printed form.
    pub fn encode(&self) -> Zeroizing<String> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(HEADER_LEN + self.y.len() + 4));
        bytes.push(FORMAT);
        bytes.extend_from_slice(&self.set);
        bytes.push(self.threshold);
        bytes.push(self.index);
        bytes.extend_from_slice(&self.y);
        let sum = digest::digest(&digest::SHA256, &bytes);
        bytes.extend_from_slice(&sum.as_ref()[..CHECKSUM_LEN]);
        let mut text = Zeroizing::new(format!("{PREFIX}-{}-", self.index));
        // Onto the zeroized string itself: no other copy of the encoding is made.
        let _ = bs58::encode(&*bytes).onto(&mut *text);
        text
    }

    /// Reads a printed share; surrounding whitespace is ignored.
    pub fn decode(text: &str) -> Result<Self, ShareError> {
        // Far longer than any share: refused before base58's quadratic decoding.
        if text.trim().len() > MAX_TEXT_LEN {
            return Err(ShareError::Invalid("the share is too long: mistyped?"));
        }
        let mut parts = text.trim().splitn(3, '-');
        let (prefix, index, body) = (parts.next(), parts.next(), parts.next());
        let (Some(PREFIX), Some(index), Some(body)) = (prefix, index, body) else {
            return Err(ShareError::Invalid("not a share: it should look like sb1-<n>-<letters>"));
        };
        let bytes =
            Zeroizing::new(bs58::decode(body).into_vec().map_err(|_| {
                ShareError::Invalid("the share has a character base58 does not use")
            })?);
        if bytes.len() != HEADER_LEN + SECRET_LEN + CHECKSUM_LEN {
            return Err(ShareError::Invalid("the share is too short or too long: mistyped?"));
        }
        let (payload, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        let expected = digest::digest(&digest::SHA256, payload);
        if expected.as_ref()[..CHECKSUM_LEN] != *sum {
            return Err(ShareError::Invalid("the share's checksum does not match: mistyped?"));
        }
        if payload[0] != FORMAT {
            return Err(ShareError::Invalid("the share is of an unknown format"));
        }
        let share = Self {
            set: [payload[1], payload[2], payload[3], payload[4]],
            threshold: payload[5],
            index: payload[6],
            y: Zeroizing::new(payload[HEADER_LEN..].to_vec()),
        };
        if index != share.index.to_string() {
            return Err(ShareError::Invalid("the share's number does not match its contents"));
        }
        if !(MIN_THRESHOLD..=MAX_SHARES).contains(&share.threshold)
            || !(1..=MAX_SHARES).contains(&share.index)
        {
            return Err(ShareError::Invalid("the share's threshold or number is out of range"));
        }
        Ok(share)
    }
}

/// Whether a split of `shares` shares, `threshold` of which rebuild it, can be made.
pub fn check_range(shares: u8, threshold: u8) -> Result<(), ShareError> {
    if !(MIN_THRESHOLD..=MAX_SHARES).contains(&threshold)
        || !(threshold..=MAX_SHARES).contains(&shares)
    {
        return Err(ShareError::Range);
    }
    Ok(())
}

/// A fresh secret and its `shares` shares, any `threshold` of which rebuild it.
pub fn split(shares: u8, threshold: u8) -> Result<(Zeroizing<Vec<u8>>, Vec<Share>), ShareError> {
    check_range(shares, threshold)?;
    let mut secret = Zeroizing::new(vec![0_u8; SECRET_LEN]);
    aws_lc_rs::rand::fill(&mut secret).map_err(|_| ShareError::Random)?;
    let mut set = [0_u8; 4];
    aws_lc_rs::rand::fill(&mut set).map_err(|_| ShareError::Random)?;
    let rng = Drbg::new()?;
    let raw =
        vsss_rs::Gf256::split_bytes(usize::from(threshold), usize::from(shares), &*secret, rng)
            .map_err(|_| ShareError::Range)?;
    let made = raw
        .into_iter()
        .map(|raw| {
            let raw = Zeroizing::new(raw);
            Share { set, threshold, index: raw[0], y: Zeroizing::new(raw[1..].to_vec()) }
        })
        .collect();
    Ok((secret, made))
}

/// Rebuilds the secret from shares of one split. Fewer than the threshold is an error; wrong
/// shares of the right form rebuild a wrong secret, which the root record's authentication
/// then refuses.
pub fn combine(shares: &[Share]) -> Result<Zeroizing<Vec<u8>>, ShareError> {
    let Some(first) = shares.first() else {
        return Err(ShareError::Invalid("no shares"));
    };
    if shares.iter().any(|s| s.set != first.set || s.threshold != first.threshold) {
        return Err(ShareError::Mixed);
    }
    if shares.len() < usize::from(first.threshold) {
        return Err(ShareError::Invalid("fewer shares than the threshold"));
    }
    let raw: Vec<Vec<u8>> = shares
        .iter()
        .map(|s| {
            let mut v = Vec::with_capacity(1 + s.y.len());
            v.push(s.index);
            v.extend_from_slice(&s.y);
            v
        })
        .collect();
    let raw = Zeroizing::new(raw);
    let secret = vsss_rs::Gf256::combine_bytes(&*raw)
        .map_err(|_| ShareError::Invalid("the shares cannot be combined"))?;
    Ok(Zeroizing::new(secret))
}

/// The server key a secret stands for: its hex, fed to the same derivation as a chosen key.
pub fn server_key(secret: &[u8]) -> secrecy::SecretString {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(secret.len() * 2);
    for byte in secret {
        // Into the buffer sized above: no temporary copies of the key.
        let _ = write!(text, "{byte:02x}");
    }
    secrecy::SecretString::from(text)
}

/// The polynomial coefficients' randomness: HMAC-SHA256 in counter mode, keyed with 32 bytes
/// from the system generator. `vsss-rs` wants a generator that cannot fail; the only fallible
/// step, the seed, happens before the split starts.
struct Drbg {
    key: hmac::Key,
    counter: u64,
    block: Zeroizing<[u8; 32]>,
    used: usize,
}

impl Drbg {
    fn new() -> Result<Self, ShareError> {
        let mut seed = Zeroizing::new([0_u8; 32]);
        aws_lc_rs::rand::fill(&mut *seed).map_err(|_| ShareError::Random)?;
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &*seed),
            counter: 0,
            block: Zeroizing::new([0; 32]),
            used: 32,
        })
    }
}

impl rand_core::TryRng for Drbg {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0_u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0_u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for byte in dst {
            if self.used == self.block.len() {
                self.counter += 1;
                let tag = hmac::sign(&self.key, &self.counter.to_be_bytes());
                self.block.copy_from_slice(tag.as_ref());
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for Drbg {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every (K, N) in range: any K shares, in any order, rebuild the secret, and the
        /// printed form reads back to the same share.
        #[test]
        fn any_threshold_of_shares_rebuilds_the_secret(
            n in MIN_THRESHOLD..=MAX_SHARES,
            k_offset in 0_u8..=14,
            pick in proptest::collection::vec(any::<prop::sample::Index>(), 16),
        ) {
            let k = MIN_THRESHOLD + k_offset % (n - MIN_THRESHOLD + 1);
            let (secret, shares) = split(n, k).unwrap();
            prop_assert_eq!(shares.len(), usize::from(n));
            let mut pool: Vec<Share> = shares.iter()
                .map(|s| Share::decode(&s.encode()).unwrap())
                .collect();
            let mut chosen = Vec::new();
            for i in pick.iter().take(usize::from(k)) {
                chosen.push(pool.remove(i.index(pool.len())));
            }
            prop_assert_eq!(&*combine(&chosen).unwrap(), &*secret);
        }

        /// Any K−1 shares with a forged K-th rebuild something other than the secret, which the
        /// root record's authentication refuses.
        #[test]
        fn fewer_than_the_threshold_plus_a_forgery_rebuild_nothing(
            n in 3_u8..=MAX_SHARES,
            k_offset in 0_u8..=13,
            forged in proptest::collection::vec(any::<u8>(), SECRET_LEN),
        ) {
            let k = MIN_THRESHOLD + k_offset % (n - MIN_THRESHOLD);
            let (secret, shares) = split(n, k).unwrap();
            let mut chosen: Vec<Share> = shares[..usize::from(k) - 1].to_vec();
            let mut fake = shares[usize::from(k) - 1].clone();
            prop_assume!(*fake.y != forged);
            fake.y = Zeroizing::new(forged);
            chosen.push(fake);
            prop_assert_ne!(&*combine(&chosen).unwrap(), &*secret);
            // Short of the threshold, nothing is combined at all.
            prop_assert!(combine(&chosen[..usize::from(k) - 1]).is_err());
        }

        /// A share with any one character changed is refused by its checksum (or its form).
        #[test]
        fn a_mistyped_share_is_refused(at in any::<prop::sample::Index>(), with in "[1-9A-HJ-NP-Za-km-z]") {
            let (_, shares) = split(3, 2).unwrap();
            let text = shares[0].encode().to_string();
            let body_start = text.rfind('-').unwrap() + 1;
            let i = body_start + at.index(text.len() - body_start);
            prop_assume!(text[i..i + 1] != with);
            let typo = format!("{}{}{}", &text[..i], with, &text[i + 1..]);
            prop_assert!(Share::decode(&typo).is_err());
        }
    }

    /// Every (K, N) in range, exhaustively: the first K and the last K shares rebuild the
    /// secret; K−1 of them with a forged K-th do not, and K−1 alone are refused.
    #[test]
    fn every_threshold_and_count_in_range_round_trips() {
        for n in MIN_THRESHOLD..=MAX_SHARES {
            for k in MIN_THRESHOLD..=n {
                let (secret, shares) = split(n, k).unwrap();
                let k = usize::from(k);
                let first = &shares[..k];
                let last = &shares[shares.len() - k..];
                assert_eq!(&*combine(first).unwrap(), &*secret, "{k} of {n}, first");
                assert_eq!(&*combine(last).unwrap(), &*secret, "{k} of {n}, last");
                let mut forged = first.to_vec();
                let f = &mut forged[k - 1];
                *f = Share::new(f.set, f.threshold, f.index, [0x5a; SECRET_LEN]);
                assert_ne!(&*combine(&forged).unwrap(), &*secret, "{k} of {n}, forged");
                assert!(combine(&first[..k - 1]).is_err(), "{k} of {n}, one short");
            }
        }
    }

    #[test]
    fn ranges_and_mixing_are_refused() {
        assert_eq!(split(1, 1).unwrap_err(), ShareError::Range);
        assert_eq!(split(17, 3).unwrap_err(), ShareError::Range);
        assert_eq!(split(3, 4).unwrap_err(), ShareError::Range);
        let (_, a) = split(3, 2).unwrap();
        let (_, b) = split(3, 2).unwrap();
        assert_eq!(combine(&[a[0].clone(), b[1].clone()]).unwrap_err(), ShareError::Mixed);
        assert!(Share::decode("sb1-1-").is_err());
        assert!(Share::decode("hello").is_err());
        let text = a[1].encode().to_string();
        assert!(Share::decode(&text.replacen("sb1-2-", "sb1-3-", 1)).is_err(), "index mismatch");
        assert!(Share::decode(&format!("  {text}\n")).is_ok(), "whitespace around is fine");
        assert!(text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "shell-safe: {text}");
    }
}
