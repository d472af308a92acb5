//! Helpers for Strongbox's integration and end-to-end tests.
//!
//! Every test gets its own database ([`TestDb`]) on the Postgres server named by `DATABASE_URL`
//! (`ops/test` starts a throwaway one) and its own random ports, so tests run in parallel.
//! Services run either in-process through the same `Application::build` that `main` uses
//! ([`spawn_api`], [`spawn_vault`]) or as the real binaries from `STRONGBOX_BIN_DIR`
//! ([`ServiceProcess`]).

#![warn(missing_docs)]

pub mod cluster;
pub mod db;
pub mod fault;
pub mod otlp;
pub mod pki;
pub mod process;
pub mod services;
pub mod soak;
pub mod softhsm;
pub mod stack;
pub mod tempdir;

pub use db::TestDb;
pub use pki::TestPki;
pub use process::ServiceProcess;
pub use services::{
    SERVER_KEY, TestApi, TestVault, send, spawn_api, spawn_api_with_vault, spawn_vault,
    spawn_vault_with, vault_env,
};
pub use tempdir::TempDir;

use std::future::Future;
use std::time::Duration;

/// Polls `check` until it returns `Some`, for at most `timeout`. For conditions that have no
/// event to await (a port closing, a row appearing); never a fixed sleep.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Asserts that a v2 answer `(status, body)` is an error with `status` and `code`.
pub fn assert_error(answer: (u16, serde_json::Value), status: u16, code: &str, what: &str) {
    let (got, body) = answer;
    assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{what}: {body}");
}

/// Now, in Unix milliseconds, as Unkey's wire format counts time.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// An HTTP client for tests: no proxies, short timeouts.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap()
}
