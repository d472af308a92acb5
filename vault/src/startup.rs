//! Building and running the vault: the one place that wires configuration, database, TLS and
//! listeners, used by `main` and by the tests alike.

use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use secrecy::SecretString;
use strongbox_shared::db::DatabaseConfig;
use strongbox_shared::tls::{MtlsServer, Reloading};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::VaultConfig;
use crate::http::{self, AppState};
use crate::service::{Settings, Vault};
use crate::tls_listener::{self, ListenerSettings};

/// A built vault: migrated database, loaded TLS material, bound listeners, not yet serving.
pub struct Application {
    main: TcpListener,
    ops: TcpListener,
    state: AppState,
    tls: Reloading<MtlsServer>,
    listener: ListenerSettings,
    reload_interval: Duration,
    database: DatabaseConfig,
    recheck: Duration,
    rotation: crate::config::RotationConfig,
    shutdown: CancellationToken,
    grace: Duration,
}

impl Application {
    /// Migrates the database, loads the TLS material and binds both listeners. Port 0 binds a
    /// free port; read it back with [`Application::main_addr`] and [`Application::ops_addr`].
    pub async fn build(config: VaultConfig) -> anyhow::Result<Self> {
        crate::hardening::disable_core_dumps();
        if config.kdf.allow_weak && !config.unlock.argon2.meets_floor() {
            tracing::warn!(
                m_kib = config.unlock.argon2.m_kib,
                t = config.unlock.argon2.t,
                "kdf.allow_weak: argon2 parameters below the floor; acceptable in tests only"
            );
        }
        let report = crate::migrate(&config.database).await?;
        if !report.applied.is_empty() {
            tracing::info!(applied = ?report.applied, "applied migrations");
        }
        let files = config.tls.files();
        let tls = Reloading::new("vault TLS", files.paths(), move || files.server())?;
        strongbox_shared::metrics::install();
        strongbox_shared::metrics::describe(crate::http::METRICS);
        let pool = strongbox_shared::db::pool(&config.database)?;
        let token = match config.seal.kind {
            crate::config::SealKind::Pkcs11 => Some(std::sync::Arc::new(
                crate::service::token::TokenSeal::from_config(&config.seal)?,
            )),
            _ => None,
        };
        let settings = Settings { unlock: config.unlock.clone(), limits: config.limits, token };
        let vault = Vault::start(pool, settings).await.context("reading the vault state")?;
        if let Some(path) = &config.unlock.auto_unlock_key_file {
            auto_unlock(&vault, path).await?;
        }
        let main = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("binding server.listen {}", config.server.listen))?;
        let ops = TcpListener::bind(config.server.ops_listen)
            .await
            .with_context(|| format!("binding server.ops_listen {}", config.server.ops_listen))?;
        tracing::info!(
            main = %main.local_addr()?,
            ops = %ops.local_addr()?,
            database = %config.database.describe(),
            unlocked = vault.is_unlocked(),
            "strongbox-vault ready to serve"
        );
        Ok(Self {
            main,
            ops,
            state: AppState { audit: vault.audit(), vault },
            tls,
            listener: ListenerSettings {
                trust_domain: Arc::from(config.tls.trust_domain.as_str()),
                handshake_timeout: Duration::from_millis(config.tls.handshake_timeout_ms),
                max_connection_age: Duration::from_secs(
                    config.tls.max_connection_age_seconds.max(1),
                ),
            },
            reload_interval: Duration::from_secs(config.tls.reload_interval_seconds.max(1)),
            database: config.database,
            recheck: Duration::from_millis(config.replication.recheck_interval_ms.max(100)),
            rotation: config.rotation,
            shutdown: CancellationToken::new(),
            grace: Duration::from_secs(config.server.shutdown_grace_seconds),
        })
    }

    /// Address of the mTLS listener.
    pub fn main_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.main.local_addr()?)
    }

    /// Address of the ops listener.
    pub fn ops_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.ops.local_addr()?)
    }

    /// This replica's service object.
    pub fn vault(&self) -> Arc<Vault> {
        self.state.vault.clone()
    }

    /// Cancelling this token stops the service gracefully: both listeners stop accepting,
    /// in-flight requests finish (up to `server.shutdown_grace_seconds`), the pool closes.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled and in-flight requests have finished.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let token = self.shutdown;
        self.tls.spawn_watcher(self.reload_interval, token.clone());
        crate::replication::spawn(
            self.state.vault.clone(),
            self.database.clone(),
            self.recheck,
            token.clone(),
        );
        self.state.vault.clone().spawn_maintenance(self.rotation, token.clone());
        self.state.vault.clone().spawn_token_unlock(token.clone());
        let main = tls_listener::serve(
            self.main,
            self.tls,
            http::main_router(self.state.clone()),
            self.listener,
            token.clone(),
        );
        let ops = axum::serve(self.ops, http::ops_router(self.state.clone()))
            .with_graceful_shutdown(token.clone().cancelled_owned())
            .into_future();
        let servers = async { tokio::join!(main, ops).1 };
        tokio::pin!(servers);
        let served = tokio::select! {
            result = &mut servers => result,
            () = token.cancelled() => {
                tracing::info!("shutting down; waiting for in-flight requests");
                match tokio::time::timeout(self.grace, &mut servers).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::warn!(
                            grace_seconds = self.grace.as_secs(),
                            "in-flight requests outlived the shutdown grace period; cut off"
                        );
                        Ok(())
                    }
                }
            }
        };
        self.state.vault.pool().close();
        served.context("serving HTTP")?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Unlocks at start from a key file: for development, or a key mounted from a secret store.
async fn auto_unlock(vault: &Vault, path: &std::path::Path) -> anyhow::Result<()> {
    tracing::warn!(
        path = %path.display(),
        "auto-unlock is configured: anyone who can read this file and the vault database can \
         unlock the vault; use it only in development or with a secret-store mount"
    );
    let content = tokio::fs::read_to_string(path)
        .await
        .with_context(|| format!("reading unlock.auto_unlock_key_file {}", path.display()))?;
    let key = SecretString::from(content.trim_end_matches(['\n', '\r']).to_owned());
    let localhost = std::net::IpAddr::from([127, 0, 0, 1]);
    match vault.unlock(key, "auto-unlock", localhost).await {
        Ok(()) => Ok(()),
        Err(crate::error::VaultError::NotInitialized) => {
            tracing::warn!("auto-unlock skipped: the vault is not initialized yet");
            Ok(())
        }
        Err(error) => Err(anyhow::anyhow!("auto-unlock failed: {error}")),
    }
}
