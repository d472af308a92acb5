//! Building and running the api: the one place that wires configuration, database and listeners,
//! used by `main` and by the tests alike.

use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use deadpool_postgres::Pool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::config::ApiConfig;
use crate::http::{self, AppState};
use crate::service::Service;

/// A built api: migrated database, bound listeners, not yet serving.
pub struct Application {
    database: strongbox_shared::db::DatabaseConfig,
    rewrap: crate::config::RewrapConfig,
    audit: crate::config::AuditConfig,
    flush_every: Duration,
    public: TcpListener,
    ops: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
    grace: Duration,
}

impl Application {
    /// Migrates the database and binds both listeners. Port 0 binds a free port; read it back
    /// with [`Application::public_addr`] and [`Application::ops_addr`].
    pub async fn build(config: ApiConfig) -> anyhow::Result<Self> {
        strongbox_shared::metrics::install();
        strongbox_shared::metrics::describe(crate::http::METRICS);
        let report = crate::migrate(&config.database).await?;
        if !report.applied.is_empty() {
            tracing::info!(applied = ?report.applied, "applied migrations");
        }
        let pool = strongbox_shared::db::pool(&config.database)?;
        let public = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("binding server.listen {}", config.server.listen))?;
        let ops = TcpListener::bind(config.server.ops_listen)
            .await
            .with_context(|| format!("binding server.ops_listen {}", config.server.ops_listen))?;
        tracing::info!(
            public = %public.local_addr()?,
            ops = %ops.local_addr()?,
            database = %config.database.describe(),
            "strongbox-api ready to serve"
        );
        Ok(Self {
            database: config.database.clone(),
            rewrap: config.rewrap.clone(),
            audit: config.audit,
            flush_every: Duration::from_millis(config.usage.flush_interval_ms.max(10)),
            public,
            ops,
            state: AppState {
                service: Service::new(
                    pool,
                    Cache::new(Duration::from_secs(config.cache.ttl_seconds)),
                    Arc::new(crate::ratelimit::Limiter::new(config.ratelimit.clone())),
                    match &config.vault {
                        Some(v) => Some(Arc::new(
                            crate::vault_client::VaultClient::new(v)
                                .context("configuring the vault client")?,
                        )),
                        None => None,
                    },
                ),
                spec: Arc::new(http::documented_routes().1),
            },
            shutdown: CancellationToken::new(),
            grace: Duration::from_secs(config.server.shutdown_grace_seconds),
        })
    }

    /// Address of the public listener.
    pub fn public_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.public.local_addr()?)
    }

    /// Address of the ops listener.
    pub fn ops_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.ops.local_addr()?)
    }

    /// The database pool the handlers use.
    pub fn pool(&self) -> &Pool {
        self.state.service.pool()
    }

    /// Cancelling this token stops the service gracefully: both listeners stop accepting,
    /// in-flight requests finish (up to `server.shutdown_grace_seconds`), the pool closes.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled and in-flight requests have finished, or
    /// until `server.shutdown_grace_seconds` after the cancel, whichever comes first: a stuck
    /// request (a database that stopped answering, say) is cut off, never waited for.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let token = self.shutdown;
        let service = self.state.service.clone();
        crate::cache::spawn_listener(service.cache().clone(), self.database.clone(), token.clone());
        service.limiter().clone().spawn_heartbeat(service.pool().clone(), token.clone());
        if let Some(vault) = service.vault() {
            vault.spawn_reloader(token.clone());
            if self.rewrap.interval_ms > 0 {
                crate::service::rewrap::spawn_background(
                    self.database.clone(),
                    vault.clone(),
                    Duration::from_millis(self.rewrap.interval_ms),
                    self.rewrap.batch_size,
                    token.clone(),
                );
            }
        }
        if self.audit.decrypt_retention_days > 0 {
            service.spawn_audit_purge(self.audit, token.clone());
        }
        // Usage is flushed until the servers have stopped, then once more within what is left
        // of the grace period.
        let flush_stop = CancellationToken::new();
        let flusher = service.touches().clone().spawn_flusher(
            service.pool().clone(),
            self.flush_every,
            flush_stop.clone(),
        );
        let public = axum::serve(self.public, http::public_router(self.state.clone()))
            .with_graceful_shutdown(token.clone().cancelled_owned())
            .into_future();
        let ops = axum::serve(self.ops, http::ops_router(self.state.clone()))
            .with_graceful_shutdown(token.clone().cancelled_owned())
            .into_future();
        let servers = async { tokio::try_join!(public, ops) };
        tokio::pin!(servers);
        let mut deadline = None;
        let served = tokio::select! {
            result = &mut servers => result.map(drop),
            () = token.cancelled() => {
                tracing::info!("shutting down; waiting for in-flight requests");
                deadline = Some(tokio::time::Instant::now() + self.grace);
                match tokio::time::timeout(self.grace, &mut servers).await {
                    Ok(result) => result.map(drop),
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
        flush_stop.cancel();
        let left = deadline.map_or(self.grace, |d| d - tokio::time::Instant::now().min(d));
        let (touches, pool) = (service.touches().clone(), service.pool().clone());
        let last_flush = async move {
            let _ = flusher.await;
            touches.flush(&pool).await
        };
        match tokio::time::timeout(left, last_flush).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(
                error = format!("{:#}", anyhow::Error::new(error)),
                "could not record key usage at shutdown"
            ),
            Err(_) => tracing::warn!(
                "recording key usage at shutdown outlived the grace period; last-used times since the previous write are lost"
            ),
        }
        service.pool().close();
        served.context("serving HTTP")?;
        tracing::info!("stopped");
        Ok(())
    }
}
