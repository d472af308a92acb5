//! The vault's configuration: `--config FILE` (TOML) plus `STRONGBOX_VAULT__SECTION__KEY` variables.
//! Every option is documented in `ops/CONFIG.md`.

use std::path::Path;

use serde::Deserialize;
use strongbox_shared::config::{ConfigError, ConfigSources, ServerConfig, VAULT_NAMESPACE};
use strongbox_shared::db::DatabaseConfig;
use strongbox_shared::telemetry::LogConfig;

/// Defaults that differ from the api's.
const DEFAULTS: &[(&str, &str)] =
    &[("server.listen", "127.0.0.1:7080"), ("server.ops_listen", "127.0.0.1:7081")];

/// Everything `strongbox-vault` reads at start-up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// `[server]`: listeners and shutdown.
    pub server: ServerConfig,
    /// `[database]`: the vault database.
    pub database: DatabaseConfig,
    /// `[log]`: log filtering.
    #[serde(default)]
    pub log: LogConfig,
}

impl VaultConfig {
    /// Sources for the vault namespace with the vault's defaults, and nothing else yet.
    pub fn sources() -> ConfigSources {
        ConfigSources::new(VAULT_NAMESPACE).defaults(DEFAULTS)
    }

    /// Sources for a real process: its environment and the optional `--config` file.
    pub fn process_sources(file: Option<&Path>) -> ConfigSources {
        ConfigSources::from_process(VAULT_NAMESPACE, file).defaults(DEFAULTS)
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
        Ok(())
    }
}
