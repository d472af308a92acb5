//! Logging: JSON lines on stderr, filtered by the service's `log.filter` option.
//!
//! Stderr keeps stdout free for the CLIs' own output (tables, `--output json`), so one rule serves
//! both the servers and the operator commands.

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// The `[log]` section of either service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter directive, such as `info` or `info,strongbox_api=debug`.
    #[serde(default = "default_filter")]
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { filter: default_filter() }
    }
}

fn default_filter() -> String {
    "info".to_owned()
}

impl LogConfig {
    /// Parses the filter, naming the option when it is malformed.
    pub fn env_filter(&self) -> Result<EnvFilter, crate::config::ConfigError> {
        EnvFilter::try_new(&self.filter).map_err(|e| crate::config::ConfigError::Option {
            option: "log.filter",
            reason: e.to_string(),
        })
    }
}

/// Installs the global JSON subscriber. Later calls (several services in one test process) keep
/// the first subscriber and return `Ok`.
pub fn init(config: &LogConfig) -> Result<(), crate::config::ConfigError> {
    let filter = config.env_filter()?;
    let _already_installed = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
    Ok(())
}
