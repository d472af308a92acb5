//! The api's configuration: `--config FILE` (TOML) plus `STRONGBOX_API__SECTION__KEY` variables.
//! Every option is documented in `ops/CONFIG.md`.

use std::path::Path;

use serde::Deserialize;
use strongbox_shared::config::{API_NAMESPACE, ConfigError, ConfigSources, ServerConfig};
use strongbox_shared::db::DatabaseConfig;
use strongbox_shared::telemetry::{LogConfig, TelemetryConfig};

/// Defaults that differ from the vault's.
const DEFAULTS: &[(&str, &str)] =
    &[("server.listen", "127.0.0.1:7070"), ("server.ops_listen", "127.0.0.1:7071")];

/// Everything `strongbox-api` reads at start-up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// `[server]`: listeners and shutdown.
    pub server: ServerConfig,
    /// `[database]`: the api database.
    pub database: DatabaseConfig,
    /// `[log]`: log filtering.
    #[serde(default)]
    pub log: LogConfig,
    /// `[telemetry]`: trace export.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// `[cache]`: key and root-key lookups.
    #[serde(default)]
    pub cache: CacheConfig,
    /// `[usage]`: recording when keys were last used.
    #[serde(default)]
    pub usage: UsageConfig,
    /// `[vault]`: the vault for recoverable keys; without it they answer 503.
    #[serde(default)]
    pub vault: Option<crate::vault_client::VaultClientConfig>,
    /// `[rewrap]`: the background rewrap job.
    #[serde(default)]
    pub rewrap: RewrapConfig,
    /// `[audit]`: the decrypt audit table.
    #[serde(default)]
    pub audit: AuditConfig,
    /// `[ratelimit]`: rate limits shared by every replica.
    #[serde(default)]
    pub ratelimit: RatelimitConfig,
}

/// What a replica does when the shared rate-limit state (the api database) does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailable {
    /// Count on this replica alone, against its share of the limit (the limit over the number
    /// of live replicas last seen).
    Local,
    /// Admit.
    Allow,
    /// Refuse (`RATE_LIMITED`).
    Deny,
}

impl OnUnavailable {
    /// As configured and as the fallback metric labels it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// `[ratelimit]`: counts live in the api database; each replica leases units ahead while a
/// limit is far from full, so most checks cost no round trip.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatelimitConfig {
    /// What to do when the database does not answer in time: `local`, `allow` or `deny`.
    #[serde(default = "default_on_unavailable")]
    pub on_unavailable: OnUnavailable,
    /// How long a check waits for the database before falling back, in milliseconds.
    #[serde(default = "default_ratelimit_timeout")]
    pub timeout_ms: u64,
    /// After a failed round trip, how long checks fall back before trying again, in ms.
    #[serde(default = "default_ratelimit_retry")]
    pub retry_after_ms: u64,
    /// How often each replica writes its heartbeat and counts the live ones, in ms.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_ms: u64,
}

fn default_on_unavailable() -> OnUnavailable {
    OnUnavailable::Local
}

fn default_ratelimit_timeout() -> u64 {
    250
}

fn default_ratelimit_retry() -> u64 {
    1_000
}

fn default_heartbeat() -> u64 {
    5_000
}

impl Default for RatelimitConfig {
    fn default() -> Self {
        Self {
            on_unavailable: default_on_unavailable(),
            timeout_ms: default_ratelimit_timeout(),
            retry_after_ms: default_ratelimit_retry(),
            heartbeat_ms: default_heartbeat(),
        }
    }
}

/// `[audit]`: every decrypt writes a row to `decrypt_audit`; rows older than the retention are
/// deleted in the background.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Days a decrypt audit row is kept; 0 keeps rows forever.
    #[serde(default = "default_decrypt_retention")]
    pub decrypt_retention_days: u32,
    /// How often old rows are deleted, in milliseconds (also once at start).
    #[serde(default = "default_purge_interval")]
    pub purge_interval_ms: u64,
}

fn default_decrypt_retention() -> u32 {
    365
}

fn default_purge_interval() -> u64 {
    3_600_000
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            decrypt_retention_days: default_decrypt_retention(),
            purge_interval_ms: default_purge_interval(),
        }
    }
}

/// `[rewrap]`: api servers move stored ciphertexts to the newest DEK version in the background
/// (single-flight across replicas).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewrapConfig {
    /// How often to look for rows below the newest version, in milliseconds; 0 turns it off.
    #[serde(default = "default_rewrap_interval")]
    pub interval_ms: u64,
    /// Rows per vault call.
    #[serde(default = "default_rewrap_batch")]
    pub batch_size: i64,
}

fn default_rewrap_interval() -> u64 {
    60_000
}

fn default_rewrap_batch() -> i64 {
    500
}

impl Default for RewrapConfig {
    fn default() -> Self {
        Self { interval_ms: default_rewrap_interval(), batch_size: default_rewrap_batch() }
    }
}

/// `[usage]`: `last_used_at` is written in batches, off the request path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageConfig {
    /// How often pending usage is written, in milliseconds.
    #[serde(default = "default_flush")]
    pub flush_interval_ms: u64,
}

fn default_flush() -> u64 {
    5_000
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self { flush_interval_ms: default_flush() }
    }
}

/// `[cache]`: changes reach every replica at once through Postgres NOTIFY; the TTL is only the
/// fallback.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Longest a cached lookup is trusted, in seconds.
    #[serde(default = "default_ttl")]
    pub ttl_seconds: u64,
}

fn default_ttl() -> u64 {
    30
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { ttl_seconds: default_ttl() }
    }
}

impl ApiConfig {
    /// Sources for the api namespace with the api's defaults, and nothing else yet.
    pub fn sources() -> ConfigSources {
        ConfigSources::new(API_NAMESPACE).defaults(DEFAULTS)
    }

    /// Sources for a real process: its environment and the optional `--config` file.
    pub fn process_sources(file: Option<&Path>) -> ConfigSources {
        ConfigSources::from_process(API_NAMESPACE, file).defaults(DEFAULTS)
    }

    /// Loads and checks a configuration.
    pub fn from_sources(sources: &ConfigSources) -> Result<Self, ConfigError> {
        let config: Self = sources.load()?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.database.max_connections == 0 {
            return Err(ConfigError::Option {
                option: "database.max_connections",
                reason: "must be at least 1".to_owned(),
            });
        }
        self.database.pg_config().map_err(|e| ConfigError::Option {
            option: "database.url",
            reason: format!("{e:#}"),
        })?;
        self.log.env_filter()?;
        if self.database.migration_url.is_some() {
            return Err(ConfigError::Option {
                option: "database.migration_url",
                reason: "is a vault option; the api's database has one role".to_owned(),
            });
        }
        if !(1..=60_000).contains(&self.ratelimit.timeout_ms) {
            return Err(ConfigError::Option {
                option: "ratelimit.timeout_ms",
                reason: "must be 1 to 60000".to_owned(),
            });
        }
        if self.ratelimit.retry_after_ms > 3_600_000 {
            return Err(ConfigError::Option {
                option: "ratelimit.retry_after_ms",
                reason: "must be at most 3600000 (an hour)".to_owned(),
            });
        }
        if let Some(vault) = &self.vault {
            crate::vault_client::check_url(&vault.url)
                .map_err(|reason| ConfigError::Option { option: "vault.url", reason })?;
        }
        Ok(())
    }
}
