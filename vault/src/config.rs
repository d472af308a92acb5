//! The vault's configuration: `--config FILE` (TOML) plus `STRONGBOX_VAULT__SECTION__KEY` variables.
//! Every option is documented in `ops/CONFIG.md`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use strongbox_shared::config::{ConfigError, ConfigSources, ServerConfig, VAULT_NAMESPACE};
use strongbox_shared::db::DatabaseConfig;
use strongbox_shared::telemetry::{LogConfig, TelemetryConfig};
use strongbox_shared::tls::MtlsServerFiles;

use crate::crypto::hierarchy::Argon2Params;

/// Defaults that differ from the api's.
const DEFAULTS: &[(&str, &str)] =
    &[("server.listen", "127.0.0.1:7080"), ("server.ops_listen", "127.0.0.1:7081")];

/// Options whose variables are comma-separated lists.
const LISTS: &[&str] = &["tls.crls"];

/// Options whose names end in `_file` (see [`ConfigSources::literal_file_options`]).
const LITERAL_FILES: &[&str] = &["unlock.auto_unlock_key_file", "seal.pin_file"];

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
    /// `[telemetry]`: trace export.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// `[tls]`: the mTLS listener.
    pub tls: TlsConfig,
    /// `[unlock]`: the server-key KDF and unlock throttling.
    #[serde(default)]
    pub unlock: UnlockConfig,
    /// `[limits]`: request size limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `[replication]`: how replicas sharing the database keep in step.
    #[serde(default)]
    pub replication: ReplicationConfig,
    /// `[rotation]`: periodic rotation and key maintenance.
    #[serde(default)]
    pub rotation: RotationConfig,
    /// `[kdf]`: bounds on the server-key KDF.
    #[serde(default)]
    pub kdf: KdfConfig,
    /// `[seal]`: how the server key is held.
    #[serde(default)]
    pub seal: SealConfig,
}

/// How the server key is held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SealKind {
    /// One server key an operator holds (the default).
    #[default]
    Key,
    /// A server key split into k-of-n shares that operators hold.
    Shares,
    /// A random server key sealed by a key inside a PKCS#11 token: replicas unlock themselves.
    Pkcs11,
}

/// `[seal]`: `key` and `shares` are held by people (the root record says which, `initialize`
/// chooses); `pkcs11` makes `initialize` seal a random server key with the token, and each
/// replica unlock itself at start.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealConfig {
    /// `key`, `shares` or `pkcs11`.
    #[serde(default)]
    pub kind: SealKind,
    /// pkcs11: the module (`.so`) the vendor ships.
    #[serde(default)]
    pub module: Option<PathBuf>,
    /// pkcs11: the label of the token that holds the key.
    #[serde(default)]
    pub token_label: Option<String>,
    /// pkcs11: a file holding the token's user PIN (a mounted secret).
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    /// pkcs11: the label of the AES key in the token (made by `initialize` when absent).
    #[serde(default)]
    pub key_label: Option<String>,
}

/// The key label used when `seal.key_label` is unset.
pub const DEFAULT_KEY_LABEL: &str = "strongbox-unlock";

impl SealConfig {
    /// The token key's label.
    pub fn key_label(&self) -> &str {
        self.key_label.as_deref().unwrap_or(DEFAULT_KEY_LABEL)
    }
}

/// `[kdf]`: bounds on the server-key KDF's parameters.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfConfig {
    /// Accept `unlock.argon2` below the floor (19 MiB, 2 passes). For tests only: a weak KDF
    /// makes a stolen vault database plus a guessed server key cheap to try. Logged as a
    /// warning at start.
    #[serde(default)]
    pub allow_weak: bool,
}

/// `[rotation]`: every unlocked replica checks periodically; compare-and-swap on versions makes
/// one rotation happen per period however many replicas run.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    /// Rotate the KEK when the newest is older than this many seconds; 0 turns it off.
    #[serde(default)]
    pub kek_period_seconds: u64,
    /// Rotate each keyring's DEK when its newest is older than this many seconds; 0 turns it off.
    #[serde(default)]
    pub dek_period_seconds: u64,
    /// How often to check, and to re-wrap DEKs under the newest KEK, in milliseconds.
    #[serde(default = "default_check_interval")]
    pub check_interval_ms: u64,
    /// DEKs re-wrapped per transaction.
    #[serde(default = "default_rewrap_batch")]
    pub rewrap_batch: i64,
}

fn default_rewrap_batch() -> i64 {
    100
}

fn default_check_interval() -> u64 {
    60_000
}

impl Default for RotationConfig {
    fn default() -> Self {
        Self {
            kek_period_seconds: 0,
            dek_period_seconds: 0,
            check_interval_ms: default_check_interval(),
            rewrap_batch: default_rewrap_batch(),
        }
    }
}

/// `[tls]`: certificates of the mTLS listener and the trust domain of client identities.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The vault's certificate chain (PEM).
    pub cert: PathBuf,
    /// The vault's private key (PEM).
    pub key: PathBuf,
    /// CA bundle (PEM) that client certificates must chain to.
    pub client_ca: PathBuf,
    /// CRL files (PEM); empty disables revocation checks.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    /// SPIFFE trust domain of client identities: `spiffe://<trust_domain>/<role>`.
    #[serde(default = "default_trust_domain")]
    pub trust_domain: String,
    /// How often certificate, key, CA and CRL files are checked for changes (SIGHUP reloads at
    /// once).
    #[serde(default = "default_reload_interval")]
    pub reload_interval_seconds: u64,
    /// How long a client may take to finish the TLS handshake.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_ms: u64,
    /// The longest a connection stays open: then it is closed gracefully (its request in flight
    /// finishes) and the client reconnects, verified afresh. The backstop behind re-checking
    /// open connections at every reload.
    #[serde(default = "default_max_connection_age")]
    pub max_connection_age_seconds: u64,
}

fn default_max_connection_age() -> u64 {
    600
}

fn default_trust_domain() -> String {
    "strongbox.local".to_owned()
}
fn default_reload_interval() -> u64 {
    10
}
fn default_handshake_timeout() -> u64 {
    10_000
}

impl TlsConfig {
    /// The files, in the form the TLS helpers take.
    pub fn files(&self) -> MtlsServerFiles {
        MtlsServerFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            client_ca: self.client_ca.clone(),
            crls: self.crls.clone(),
        }
    }
}

/// `[unlock]`: how the server key becomes the unlock key, and how guessing is slowed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnlockConfig {
    /// Argon2id parameters for `initialize` and `rekey`. Unlock uses the parameters stored with
    /// the root record, so raising these takes effect at the next rekey.
    #[serde(default)]
    pub argon2: Argon2Params,
    /// Wrong keys one client (identity and address) may try before it must wait.
    #[serde(default = "default_free_failures")]
    pub free_failures: u32,
    /// Longest wait imposed after repeated failures, in seconds.
    #[serde(default = "default_max_delay")]
    pub max_delay_seconds: u64,
    /// Development or secret-store deployments only: unlock at start with the key in this file.
    /// Logs a warning when used.
    #[serde(default)]
    pub auto_unlock_key_file: Option<PathBuf>,
    /// Shares mode: how long shares given towards an unlock are kept, in seconds, before the
    /// progress is discarded.
    #[serde(default = "default_share_progress_ttl")]
    pub share_progress_ttl_seconds: u64,
}

fn default_share_progress_ttl() -> u64 {
    600
}

fn default_free_failures() -> u32 {
    5
}
fn default_max_delay() -> u64 {
    300
}

impl Default for UnlockConfig {
    fn default() -> Self {
        Self {
            argon2: Argon2Params::default(),
            free_failures: default_free_failures(),
            max_delay_seconds: default_max_delay(),
            auto_unlock_key_file: None,
            share_progress_ttl_seconds: default_share_progress_ttl(),
        }
    }
}

/// `[limits]`: bounds on what one request may ask for.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most items in one encrypt, decrypt or rewrap call.
    #[serde(default = "default_max_items")]
    pub max_items: usize,
    /// Largest plaintext of one item, in bytes (after base64 decoding).
    #[serde(default = "default_max_plaintext")]
    pub max_plaintext_bytes: usize,
    /// Largest request body, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

fn default_max_items() -> usize {
    1000
}
fn default_max_plaintext() -> usize {
    4096
}
fn default_max_body() -> usize {
    8 * 1024 * 1024
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_items: default_max_items(),
            max_plaintext_bytes: default_max_plaintext(),
            max_body_bytes: default_max_body(),
        }
    }
}

/// `[replication]`: replicas learn of changes through Postgres NOTIFY at once; this is the
/// fallback re-check for a notification lost to a reconnect.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationConfig {
    /// How often the root record is re-read, in milliseconds.
    #[serde(default = "default_recheck")]
    pub recheck_interval_ms: u64,
}

fn default_recheck() -> u64 {
    5_000
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self { recheck_interval_ms: default_recheck() }
    }
}

impl VaultConfig {
    /// Sources for the vault namespace with the vault's defaults, and nothing else yet.
    pub fn sources() -> ConfigSources {
        ConfigSources::new(VAULT_NAMESPACE)
            .defaults(DEFAULTS)
            .lists(LISTS)
            .literal_file_options(LITERAL_FILES)
    }

    /// Sources for a real process: its environment and the optional `--config` file.
    pub fn process_sources(file: Option<&Path>) -> ConfigSources {
        ConfigSources::from_process(VAULT_NAMESPACE, file)
            .defaults(DEFAULTS)
            .lists(LISTS)
            .literal_file_options(LITERAL_FILES)
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
        self.unlock
            .argon2
            .validate()
            .map_err(|e| ConfigError::Option { option: "unlock.argon2", reason: e.to_string() })?;
        if !self.kdf.allow_weak && !self.unlock.argon2.meets_floor() {
            return Err(ConfigError::Option {
                option: "unlock.argon2",
                reason: "below the floor of m_kib 19456 and t 2 (set kdf.allow_weak = true only \
                         in tests)"
                    .to_owned(),
            });
        }
        if self.limits.max_items == 0 || self.limits.max_plaintext_bytes == 0 {
            return Err(ConfigError::Option {
                option: "limits",
                reason: "max_items and max_plaintext_bytes must be at least 1".to_owned(),
            });
        }
        if self.seal.kind == SealKind::Pkcs11 {
            for (option, missing) in [
                ("seal.module", self.seal.module.is_none()),
                ("seal.token_label", self.seal.token_label.is_none()),
                ("seal.pin_file", self.seal.pin_file.is_none()),
            ] {
                if missing {
                    return Err(ConfigError::Option {
                        option,
                        reason: "is required with seal.kind = \"pkcs11\"".to_owned(),
                    });
                }
            }
            if self.unlock.auto_unlock_key_file.is_some() {
                return Err(ConfigError::Option {
                    option: "unlock.auto_unlock_key_file",
                    reason: "cannot be used with seal.kind = \"pkcs11\" (the token unlocks)"
                        .to_owned(),
                });
            }
            if self.seal.key_label().is_empty() {
                return Err(ConfigError::Option {
                    option: "seal.key_label",
                    reason: "must not be empty".to_owned(),
                });
            }
        }
        if self.tls.trust_domain.is_empty() || self.tls.trust_domain.contains('/') {
            return Err(ConfigError::Option {
                option: "tls.trust_domain",
                reason: "must be a non-empty name without '/'".to_owned(),
            });
        }
        Ok(())
    }
}
