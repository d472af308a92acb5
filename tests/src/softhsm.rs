//! Throwaway SoftHSM2 tokens. `ops/test` points `SOFTHSM2_CONF` at a configuration of its own
//! (a token directory in its scratch space); each test makes a token with a label of its own
//! there, so tests never share one and nothing reaches the system's token store.

use std::process::Command;

/// Debian's SoftHSM2 module.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A fresh, initialised token.
pub struct SoftToken {
    /// Its label.
    pub label: String,
    /// The user PIN.
    pub pin: String,
}

impl SoftToken {
    /// Makes a token in the first free slot.
    pub fn new() -> Self {
        let conf = std::env::var("SOFTHSM2_CONF").unwrap_or_default();
        assert!(
            !conf.is_empty(),
            "SOFTHSM2_CONF is unset: run the PKCS#11 tests through ops/test, which makes a token \
             directory of its own"
        );
        let id = strongbox_shared::id::new_id("t").unwrap();
        let label: String = id.chars().take(24).collect();
        let pin = format!("pin-{}", &id[id.len() - 8..]);
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", &label, "--pin", &pin, "--so-pin"])
            .arg(format!("so-{pin}"))
            .output()
            .expect("softhsm2-util runs (ops/test installs softhsm2)");
        assert!(
            out.status.success(),
            "softhsm2-util --init-token failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Self { label, pin }
    }
}

impl Default for SoftToken {
    fn default() -> Self {
        Self::new()
    }
}
