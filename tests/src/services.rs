//! Services started in-process through their real `Application::build`.

use std::net::SocketAddr;

use strongbox_shared::config::ConfigSources;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::TestDb;

/// Namespace variables that put a service on random loopback ports and a test database.
fn base_env(prefix: &str, db: &TestDb) -> Vec<(String, String)> {
    vec![
        (format!("{prefix}__SERVER__LISTEN"), "127.0.0.1:0".to_owned()),
        (format!("{prefix}__SERVER__OPS_LISTEN"), "127.0.0.1:0".to_owned()),
        (format!("{prefix}__DATABASE__URL"), db.url().to_owned()),
        (format!("{prefix}__LOG__FILTER"), "warn".to_owned()),
    ]
}

/// A running in-process api.
pub struct TestApi {
    /// Base URL of the public listener, no trailing slash.
    pub url: String,
    /// Base URL of the ops listener.
    pub ops_url: String,
    /// The public listener's address.
    pub addr: SocketAddr,
    /// The api's own pool, to observe it from tests.
    pub pool: deadpool_postgres::Pool,
    /// Cancel to stop the api gracefully.
    pub shutdown: CancellationToken,
    /// Resolves when `run_until_stopped` returns.
    pub task: JoinHandle<anyhow::Result<()>>,
}

/// Builds and runs an api on `db`; `extra` adds or overrides namespace variables.
pub async fn spawn_api(db: &TestDb, extra: &[(&str, &str)]) -> TestApi {
    let sources = strongbox_api::config::ApiConfig::sources()
        .env(base_env("STRONGBOX_API", db))
        .env(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = strongbox_api::config::ApiConfig::from_sources(&sources).unwrap();
    let app = strongbox_api::startup::Application::build(config).await.unwrap();
    let addr = app.public_addr().unwrap();
    let ops = app.ops_addr().unwrap();
    let pool = app.pool().clone();
    let shutdown = app.shutdown_token();
    let task = tokio::spawn(app.run_until_stopped());
    TestApi {
        url: format!("http://{addr}"),
        ops_url: format!("http://{ops}"),
        addr,
        pool,
        shutdown,
        task,
    }
}

/// A running in-process vault.
pub struct TestVault {
    /// Base URL of the main listener.
    pub url: String,
    /// Base URL of the ops listener.
    pub ops_url: String,
    /// Cancel to stop the vault gracefully.
    pub shutdown: CancellationToken,
    /// Resolves when `run_until_stopped` returns.
    pub task: JoinHandle<anyhow::Result<()>>,
}

/// Builds and runs a vault on `db`; `extra` adds or overrides namespace variables.
pub async fn spawn_vault(db: &TestDb, extra: &[(&str, &str)]) -> TestVault {
    let sources: ConfigSources = strongbox_vault::config::VaultConfig::sources()
        .env(base_env("STRONGBOX_VAULT", db))
        .env(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = strongbox_vault::config::VaultConfig::from_sources(&sources).unwrap();
    let app = strongbox_vault::startup::Application::build(config).await.unwrap();
    let addr = app.main_addr().unwrap();
    let ops = app.ops_addr().unwrap();
    let shutdown = app.shutdown_token();
    let task = tokio::spawn(app.run_until_stopped());
    TestVault { url: format!("http://{addr}"), ops_url: format!("http://{ops}"), shutdown, task }
}
