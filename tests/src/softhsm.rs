//! Throwaway SoftHSM2 tokens. `ops/test` points `SOFTHSM2_CONF` at a configuration of its own
//! (a token directory in its scratch space), so nothing reaches the system's token store.
//!
//! SoftHSM2 reads its token directory once, when a process first initialises the module, so a
//! token made later is invisible to that process. [`SoftToken::shared`] makes one token per test
//! process before anything opens the module; tests in one process tell their keys apart by
//! label. Under nextest each test is a process of its own, and so has a token of its own.

use std::process::Command;
use std::sync::OnceLock;

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
    /// This process's token, made on first use.
    pub fn shared() -> &'static Self {
        static TOKEN: OnceLock<SoftToken> = OnceLock::new();
        TOKEN.get_or_init(Self::new)
    }

    /// Makes a token in the first free slot.
    fn new() -> Self {
        let conf = std::env::var("SOFTHSM2_CONF").unwrap_or_default();
        assert!(
            conf.contains("strongbox-test-softhsm"),
            "SOFTHSM2_CONF is {conf:?}: run the PKCS#11 tests through ops/test, which makes a \
             token directory of its own"
        );
        let id = strongbox_shared::id::new_id("t").unwrap();
        let label: String = id.chars().take(24).collect();
        let pin = format!("pin-{}", &id[id.len() - 8..]);
        // Two processes initialising tokens at once can pick the same free slot: one at a time.
        let lock_path = std::path::Path::new(&conf).with_file_name("init.lock");
        let lock = std::fs::File::create(&lock_path).unwrap();
        lock.lock().unwrap();
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
        drop(lock);
        Self { label, pin }
    }
}
