//! Identifiers: a short type prefix and 16 random bytes in base58, like `req_4vJ9…`.
//!
//! 128 random bits make collisions negligible without coordination between replicas, and the
//! prefix tells a reader what an id names (the convention Unkey's ids follow).

/// Random bytes in an id: 128 bits.
const ID_BYTES: usize = 16;

/// A new random id `<prefix>_<base58>`.
///
/// The bytes come from AWS-LC's generator, seeded by the operating system and run in user
/// space: a request id costs no system call (`getrandom` per id was 3.5% of a warm verifyKey's
/// CPU under load).
///
/// # Errors
/// Only when the random source fails, which a service cannot recover from.
pub fn new_id(prefix: &str) -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; ID_BYTES];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        getrandom::fill(&mut bytes)?;
    }
    Ok(format!("{prefix}_{}", bs58::encode(bytes).into_string()))
}

/// `bytes` as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _infallible = write!(out, "{b:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_two_lower_case_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn ids_carry_their_prefix_and_differ() {
        let a = new_id("req").unwrap();
        let b = new_id("req").unwrap();
        assert!(a.starts_with("req_"));
        assert!(a.len() > "req_".len() + 16, "{a}");
        assert_ne!(a, b);
    }
}
