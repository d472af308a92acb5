//! Associated data for every AES-GCM seal in the vault.
//!
//! Each seal names what it protects, so a record moved to another row, keyring, version or key id
//! fails to open. The encoding is fixed-order and length-prefixed, so no field can run into the
//! next (`keyring "a/1", context ""` and `keyring "a", context "1"` differ):
//!
//! ```text
//! u8  format version (1)
//! u32 len || "strongbox"
//! u32 len || purpose        "root" | "kek" | "dek" | "data"
//! u32 len || keyring        empty for root and kek
//! u32      version          KEK or DEK version; 0 for root
//! u32 len || context        root: argon2 parameters and salt; data: the caller's context
//! ```
//! All integers are big-endian.

/// Version byte of the encoding above.
const AAD_FORMAT_V1: u8 = 1;
const DOMAIN: &[u8] = b"strongbox";

/// The argon2id parameters and salt that produced the unlock key, bound into the root record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootBinding<'a> {
    /// Memory cost in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
    /// The salt.
    pub salt: &'a [u8],
}

/// Associated data of the root record.
pub fn root(binding: RootBinding<'_>) -> Vec<u8> {
    let mut context = Vec::with_capacity(12 + binding.salt.len());
    context.extend_from_slice(&binding.m_kib.to_be_bytes());
    context.extend_from_slice(&binding.t.to_be_bytes());
    context.extend_from_slice(&binding.p.to_be_bytes());
    context.extend_from_slice(binding.salt);
    encode(b"root", b"", 0, &context)
}

/// Associated data of KEK version `version`, wrapped under the root-derived wrapping key.
pub fn kek(version: u32) -> Vec<u8> {
    encode(b"kek", b"", version, b"")
}

/// Associated data of the audit key, wrapped under the root-derived wrapping key: binds the
/// position after which the chain is keyed (`keyed_after`), so it cannot be moved without the
/// root. A key keyed from the chain's start (0) has an empty context.
pub fn audit_key(keyed_after: u64) -> Vec<u8> {
    let context = if keyed_after == 0 { Vec::new() } else { keyed_after.to_be_bytes().to_vec() };
    encode(b"audit", b"", 0, &context)
}

/// Associated data of DEK `version` of `keyring`, wrapped under a KEK.
pub fn dek(keyring: &str, version: u32) -> Vec<u8> {
    encode(b"dek", keyring.as_bytes(), version, b"")
}

/// Associated data of a customer secret sealed under DEK `version` of `keyring`, for `context`
/// (the api passes the key id).
pub fn data(keyring: &str, version: u32, context: &str) -> Vec<u8> {
    encode(b"data", keyring.as_bytes(), version, context.as_bytes())
}

fn encode(purpose: &[u8], keyring: &[u8], version: u32, context: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        1 + 4 * 5 + DOMAIN.len() + purpose.len() + keyring.len() + context.len(),
    );
    out.push(AAD_FORMAT_V1);
    for field in [DOMAIN, purpose, keyring] {
        push_field(&mut out, field);
    }
    out.extend_from_slice(&version.to_be_bytes());
    push_field(&mut out, context);
    out
}

fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    // Fields are bounded far below 4 GiB (keyrings 64 bytes, contexts 256); saturating keeps this
    // total without a panic path, and such a field could never be sealed anyway.
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
}

#[cfg(test)]
mod tests {
    use super::*;
    use strongbox_shared::id::hex;

    #[test]
    fn fields_cannot_run_into_each_other() {
        assert_ne!(data("a/1", 1, ""), data("a", 1, "/1"));
        assert_ne!(data("ab", 1, "c"), data("a", 1, "bc"));
        assert_ne!(data("a", 1, "k"), data("a", 2, "k"));
        assert_ne!(dek("a", 1), data("a", 1, ""));
        assert_ne!(kek(1), dek("", 1));
    }

    #[test]
    fn root_binds_every_parameter_and_the_salt() {
        let base = RootBinding { m_kib: 65536, t: 3, p: 1, salt: b"salt-salt-salt-s" };
        let variants = [
            RootBinding { m_kib: 65537, ..base },
            RootBinding { t: 4, ..base },
            RootBinding { p: 2, ..base },
            RootBinding { salt: b"salt-salt-salt-t", ..base },
        ];
        for variant in variants {
            assert_ne!(root(base), root(variant), "{variant:?}");
        }
    }

    #[test]
    fn known_answer_encoding() {
        assert_eq!(
            hex(&data("ws_1", 7, "key_9")),
            concat!(
                "01",
                "00000009",
                "7374726f6e67626f78", // "strongbox"
                "00000004",
                "64617461", // "data"
                "00000004",
                "77735f31", // "ws_1"
                "00000007", // version 7
                "00000005",
                "6b65795f39", // "key_9"
            )
        );
        assert_eq!(
            hex(&kek(2)),
            "01000000097374726f6e67626f78000000036b656b000000000000000200000000"
        );
    }
}
