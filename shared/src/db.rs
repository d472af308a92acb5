//! Postgres: the connection pool and migrations, shared by both services.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

mod socket;

pub use socket::{PgConnection, PgStream, Watched};

/// Statements prepared once per connection and then reused: each call is one round trip
/// (bind and execute), where an unprepared statement costs two (parse, then bind and execute).
pub mod prepared {
    use deadpool_postgres::GenericClient;
    use tokio_postgres::types::ToSql;
    use tokio_postgres::{Error, Row};

    /// Every row.
    pub async fn query<C: GenericClient>(
        c: &C,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        c.query(&c.prepare_cached(sql).await?, params).await
    }

    /// At most one row.
    pub async fn query_opt<C: GenericClient>(
        c: &C,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error> {
        c.query_opt(&c.prepare_cached(sql).await?, params).await
    }

    /// Exactly one row.
    pub async fn query_one<C: GenericClient>(
        c: &C,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, Error> {
        c.query_one(&c.prepare_cached(sql).await?, params).await
    }

    /// The number of rows changed.
    pub async fn execute<C: GenericClient>(
        c: &C,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, Error> {
        c.execute(&c.prepare_cached(sql).await?, params).await
    }
}

/// The `[database]` section of either service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// A libpq-style URL or key/value string. It may carry a password, so it is a secret and is
    /// never logged; [`DatabaseConfig::describe`] gives a loggable form.
    pub url: SecretString,
    /// Most connections the pool opens.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long a request waits for a free connection before failing, in milliseconds.
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// How long opening one connection may take, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long a connection may owe an answer (a statement sent, nothing back) before it is
    /// judged dead and closed, in milliseconds. Its requests then fail with 503
    /// `DATABASE_UNAVAILABLE` instead of hanging on a server that stopped answering (a
    /// partition, a paused node). Set it above the longest statement you expect.
    #[serde(default = "default_query_timeout_ms")]
    pub query_timeout_ms: u64,
    /// CA bundle (PEM) that signed the Postgres server's certificate. When set, every connection
    /// uses TLS with full verification: the chain up to this CA and the URL's host name (or IP)
    /// in the certificate. Unset, connections are plain.
    #[serde(default)]
    pub ca: Option<std::path::PathBuf>,
    /// Vault only: the URL of the role that owns the schema. Migrations run as it, and the
    /// serving role of `url` is then granted only what it needs (on the audit log: reading and
    /// appending). Unset, `url`'s role migrates, and must own the schema.
    #[serde(default)]
    pub migration_url: Option<SecretString>,
}

fn default_max_connections() -> usize {
    16
}

fn default_acquire_timeout_ms() -> u64 {
    5_000
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

fn default_query_timeout_ms() -> u64 {
    10_000
}

impl DatabaseConfig {
    /// A config for `url` with every other option at its default.
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            url: SecretString::from(url.into()),
            max_connections: default_max_connections(),
            acquire_timeout_ms: default_acquire_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            query_timeout_ms: default_query_timeout_ms(),
            ca: None,
            migration_url: None,
        }
    }

    /// The owner's connection settings, when `migration_url` is set: the same options with its
    /// URL.
    pub fn owner(&self) -> Option<Self> {
        self.migration_url.as_ref().map(|url| Self {
            url: url.clone(),
            migration_url: None,
            ..self.clone()
        })
    }

    /// The role `url` logs in as, when it names one.
    pub fn user(&self) -> Option<String> {
        self.pg_config().ok()?.get_user().map(str::to_owned)
    }

    /// Parses the URL. The error never repeats the URL, which may hold a password.
    pub fn pg_config(&self) -> anyhow::Result<tokio_postgres::Config> {
        let mut config =
            tokio_postgres::Config::from_str(self.url.expose_secret()).map_err(|e| {
                anyhow::anyhow!("invalid configuration option `database.url`: {}", redact(&e))
            })?;
        config.connect_timeout(Duration::from_millis(self.connect_timeout_ms));
        // TLS is on exactly when there is a CA to verify the server against: never unverified.
        match (&self.ca, config.get_ssl_mode()) {
            (Some(_), SslMode::Disable) => anyhow::bail!(
                "invalid configuration option `database.url`: sslmode=disable contradicts `database.ca`"
            ),
            (Some(_), _) => config.ssl_mode(SslMode::Require),
            (None, SslMode::Require) => anyhow::bail!(
                "invalid configuration option `database.ca`: database.url asks for sslmode=require; set `database.ca` to the CA that signed the server's certificate so that it can be verified"
            ),
            (None, _) => config.ssl_mode(SslMode::Disable),
        };
        Ok(config)
    }

    /// The TLS connector: verifies the server against `database.ca`. Without one it is
    /// never used, since [`DatabaseConfig::pg_config`] then turns TLS off.
    pub fn tls(&self) -> anyhow::Result<MakeRustlsConnect> {
        let roots = match &self.ca {
            Some(path) => crate::tls::load_roots(path).context("loading `database.ca`")?,
            None => rustls::RootCertStore::empty(),
        };
        let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .context("selecting TLS versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    /// The longest a connection may owe an answer; see `query_timeout_ms`.
    pub fn query_timeout(&self) -> Duration {
        Duration::from_millis(self.query_timeout_ms.max(1))
    }

    /// Opens one connection whose socket closes when it has owed an answer for longer than
    /// `query_timeout_ms`. The caller drives the connection (for notifications, say).
    pub async fn open(&self) -> anyhow::Result<(tokio_postgres::Client, PgConnection)> {
        self.open_config(self.pg_config()?).await
    }

    /// [`DatabaseConfig::open`] under `application_name`, so that `pg_stat_activity` tells a
    /// long-lived session (a listener) apart from the pool's.
    pub async fn open_as(
        &self,
        application_name: &str,
    ) -> anyhow::Result<(tokio_postgres::Client, PgConnection)> {
        let mut pg = self.pg_config()?;
        pg.application_name(application_name);
        self.open_config(pg).await
    }

    async fn open_config(
        &self,
        pg: tokio_postgres::Config,
    ) -> anyhow::Result<(tokio_postgres::Client, PgConnection)> {
        socket::open(&pg, self.tls()?, Some(self.query_timeout()))
            .await
            .with_context(|| format!("connecting to Postgres at {}", describe(&pg)))
    }

    /// Host, port and database name, for logs and error messages.
    pub fn describe(&self) -> String {
        match self.pg_config() {
            Ok(config) => describe(&config),
            Err(_) => "<unparsable database url>".to_owned(),
        }
    }
}

/// tokio-postgres' parse errors name the offending parameter, not its value, but keep it short.
fn redact(error: &tokio_postgres::Error) -> String {
    let text = error.to_string();
    text.chars().take(120).collect()
}

fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("<default>");
    format!("{host}:{port}/{db}")
}

/// Builds a pool. Connections open lazily, so this does not touch the network.
pub fn pool(config: &DatabaseConfig) -> anyhow::Result<Pool> {
    let manager = Manager::from_connect(
        config.pg_config()?,
        Connector { tls: config.tls()?, limit: config.query_timeout() },
        // `Fast` still drops connections whose socket has closed (as a watched socket does when
        // its server stops answering); `Verified` would add a round trip to every checkout on
        // the verification hot path.
        ManagerConfig { recycling_method: RecyclingMethod::Fast },
    );
    let wait = Duration::from_millis(config.acquire_timeout_ms);
    Pool::builder(manager)
        .max_size(config.max_connections)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(wait))
        .create_timeout(Some(Duration::from_millis(config.connect_timeout_ms)))
        .recycle_timeout(Some(wait))
        .build()
        .context("building the database pool")
}

/// Opens the pool's connections on watched sockets.
struct Connector {
    tls: MakeRustlsConnect,
    limit: Duration,
}

impl deadpool_postgres::Connect for Connector {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> futures_util::future::BoxFuture<
        '_,
        Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        let (pg_config, tls, limit) = (pg_config.clone(), self.tls.clone(), self.limit);
        Box::pin(async move {
            let (client, connection) = socket::open(&pg_config, tls, Some(limit)).await?;
            Ok((client, drive(connection)))
        })
    }
}

fn drive(connection: PgConnection) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "database connection closed with an error");
        }
    })
}

/// Opens one connection outside any pool, driving it on a background task. Like the pool's, it
/// closes when it owes an answer for longer than `query_timeout_ms`.
pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = config.open().await?;
    drive(connection);
    Ok(client)
}

/// [`connect`] without the answer deadline, for a session that waits on purpose: an advisory
/// lock held by another replica's migration.
pub async fn connect_patient(config: &DatabaseConfig) -> anyhow::Result<tokio_postgres::Client> {
    let pg = config.pg_config()?;
    let (client, connection) = socket::open(&pg, config.tls()?, None)
        .await
        .with_context(|| format!("connecting to Postgres at {}", describe(&pg)))?;
    drive(connection);
    Ok(client)
}

/// Applies `runner`'s migrations while holding the session advisory lock `lock_key`, so replicas
/// starting together apply each migration once: the second waits, then finds nothing to do.
///
/// The lock lives on a dedicated connection, so it is released even if this process dies.
pub async fn migrate(
    config: &DatabaseConfig,
    mut runner: refinery::Runner,
    lock_key: i64,
) -> anyhow::Result<MigrationReport> {
    let mut client = connect_patient(config).await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&lock_key])
        .await
        .context("taking the migration advisory lock")?;
    let result = runner
        .set_migration_table_name("refinery_schema_history")
        .run_async(&mut client)
        .await
        .context("applying migrations");
    // Unlock even when migrating failed; closing the connection would release it too.
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&lock_key]).await;
    let report = result?;
    unlocked.context("releasing the migration advisory lock")?;
    let applied = report.applied_migrations().iter().map(ToString::to_string).collect();
    Ok(MigrationReport { applied })
}

/// What one migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Migrations this run applied, as `V<version>__<name>`; empty when the schema was current.
    pub applied: Vec<String>,
}

/// Whether `error`, or anything in its chain of causes, means the database is unreachable,
/// restarting or out of connections for now (worth a 503 and a retry), rather than a fault in
/// the request or the code: a pool timeout, a connection that could not open or was closed,
/// and SQLSTATE classes 08 (connection exception) and 57 (operator intervention, such as a
/// server shutting down).
pub fn is_unavailable(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if matches!(
            e.downcast_ref::<deadpool_postgres::PoolError>(),
            Some(
                deadpool_postgres::PoolError::Timeout(_)
                    | deadpool_postgres::PoolError::Backend(_)
                    | deadpool_postgres::PoolError::Closed
            )
        ) {
            return true;
        }
        if let Some(pg) = e.downcast_ref::<tokio_postgres::Error>() {
            let class = pg.code().map(|c| &c.code()[..2]);
            if pg.is_closed() || matches!(class, Some("08" | "57")) {
                return true;
            }
        }
        cause = e.source();
    }
    false
}
