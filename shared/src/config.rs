//! Loading a service's typed configuration from a TOML file plus its own environment namespace.
//!
//! Each service owns one namespace, `STRONGBOX_VAULT__` or `STRONGBOX_API__`, and reads nothing
//! else: the dev env file (`.dev/strongbox.env`) exports single-underscore keys such as
//! `STRONGBOX_API_URL`, and sourcing it must never change how a service starts.
//!
//! `STRONGBOX_API__DATABASE__URL` sets `database.url`. Any key can instead be given as
//! `…_FILE=/path`, whose file content (without the trailing newline) becomes the value; that is how
//! secrets come from a mounted secret store without appearing in the process environment.
//!
//! Tests build configuration from an explicit variable list ([`ConfigSources::env`]) rather than
//! by mutating the process environment.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Environment namespace of the vault service.
pub const VAULT_NAMESPACE: &str = "STRONGBOX_VAULT";
/// Environment namespace of the api service.
pub const API_NAMESPACE: &str = "STRONGBOX_API";

/// Separator between the namespace, the section and the key in variable names.
const SEPARATOR: &str = "__";
/// Suffix of a variable whose value is the path of a file holding the real value.
const FILE_SUFFIX: &str = "_FILE";

/// A configuration problem, worded for the operator who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `--config` file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        /// The file named by `--config`.
        path: PathBuf,
        /// Why reading it failed.
        source: std::io::Error,
    },
    /// A `…_FILE` variable names a file that could not be read.
    #[error("cannot read {variable}={path}: {source}")]
    ReadSecretFile {
        /// The `…_FILE` variable.
        variable: String,
        /// The file it names.
        path: PathBuf,
        /// Why reading it failed.
        source: std::io::Error,
    },
    /// A variable of the namespace whose name has more than ASCII letters, digits and `_`, so it
    /// cannot name an option.
    #[error("{variable:?} cannot name an option (use ASCII letters, digits and '_')")]
    VariableName {
        /// The variable.
        variable: String,
    },
    /// A value and its `…_FILE` form were both set, so it is unclear which one is meant.
    #[error("both {variable} and {variable}_FILE are set; set only one")]
    Ambiguous {
        /// The plain variable name.
        variable: String,
    },
    /// A required option (or a whole section) is set nowhere.
    #[error("missing option `{option}`: set it in the config file or as {variable}")]
    Missing {
        /// The dotted option name, or a section name when the whole section is absent.
        option: String,
        /// The environment variable (or variable prefix, for a section) that would set it.
        variable: String,
    },
    /// The sources parsed but do not form a valid configuration (mistyped or unknown option).
    #[error("invalid configuration: {0}")]
    Invalid(#[from] config::ConfigError),
    /// A value parsed but breaks a rule of its own (a range, a format).
    #[error("invalid configuration option `{option}`: {reason}")]
    Option {
        /// The dotted option name, such as `database.max_connections`.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Where a configuration comes from: an optional TOML file and a list of environment variables.
#[derive(Debug, Clone)]
pub struct ConfigSources {
    namespace: &'static str,
    defaults: Vec<(&'static str, &'static str)>,
    lists: Vec<&'static str>,
    literal_files: Vec<&'static str>,
    toml: Option<TomlSource>,
    env: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
enum TomlSource {
    File(PathBuf),
    Text(String),
}

impl ConfigSources {
    /// Sources for `namespace` with no file and no variables.
    pub fn new(namespace: &'static str) -> Self {
        Self {
            namespace,
            defaults: Vec::new(),
            lists: Vec::new(),
            literal_files: Vec::new(),
            toml: None,
            env: Vec::new(),
        }
    }

    /// Default values for dotted option names, used where neither the file nor a variable sets
    /// one. Services use this for defaults that differ between them, such as listen addresses.
    pub fn defaults(mut self, defaults: &[(&'static str, &'static str)]) -> Self {
        self.defaults.extend_from_slice(defaults);
        self
    }

    /// Sources for `namespace`: the optional `--config` file and the process environment.
    pub fn from_process(namespace: &'static str, file: Option<&Path>) -> Self {
        let sources = Self::new(namespace).env(std::env::vars());
        match file {
            Some(path) => sources.toml_file(path),
            None => sources,
        }
    }

    /// Dotted options that are lists: their variables hold comma-separated values.
    pub fn lists(mut self, keys: &[&'static str]) -> Self {
        self.lists.extend_from_slice(keys);
        self
    }

    /// Dotted options whose own names end in `_file`, such as `unlock.auto_unlock_key_file`:
    /// their variables (`…__AUTO_UNLOCK_KEY_FILE`) set them, rather than being the `…_FILE` form
    /// of an option without the suffix (which would read the file they name).
    pub fn literal_file_options(mut self, keys: &[&'static str]) -> Self {
        self.literal_files.extend_from_slice(keys);
        self
    }

    /// The variable that sets the dotted option `key`.
    fn variable(&self, key: &str) -> String {
        format!("{}{SEPARATOR}{}", self.namespace, key.to_ascii_uppercase().replace('.', SEPARATOR))
    }

    /// Reads TOML from `path` when loading.
    pub fn toml_file(mut self, path: &Path) -> Self {
        self.toml = Some(TomlSource::File(path.to_path_buf()));
        self
    }

    /// Uses `text` as the TOML document.
    pub fn toml_text(mut self, text: impl Into<String>) -> Self {
        self.toml = Some(TomlSource::Text(text.into()));
        self
    }

    /// Adds environment variables; variables outside the namespace are ignored at load time.
    pub fn env<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.env.extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Parses the sources into `T`. Environment variables override the file.
    ///
    /// Unknown options are errors (the structs use `deny_unknown_fields`), so a typo in a file or a
    /// variable name is reported rather than silently ignored.
    pub fn load<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let mut builder = config::Config::builder();
        for (key, value) in &self.defaults {
            builder = builder.set_default(*key, *value)?;
        }
        if let Some(toml) = &self.toml {
            let text = match toml {
                TomlSource::File(path) => std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::ReadFile { path: path.clone(), source })?,
                TomlSource::Text(text) => text.clone(),
            };
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        let mut vars = self.namespace_vars()?;
        // Lists are split here rather than by `config`'s own list parsing, which would also turn
        // every numeric-looking value (a password, say) into a number.
        let mut lists = Vec::new();
        for key in &self.lists {
            if let Some(value) = vars.remove(&self.variable(key)) {
                let items: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                lists.push((*key, items));
            }
        }
        let env = config::Environment::with_prefix(self.namespace)
            .prefix_separator(SEPARATOR)
            .separator(SEPARATOR)
            .source(Some(vars));
        let mut builder = builder.add_source(env);
        for (key, items) in lists {
            builder = builder.set_override(key, items)?;
        }
        match builder.build()?.try_deserialize() {
            Ok(config) => Ok(config),
            Err(config::ConfigError::NotFound(option)) => Err(self.missing(option)),
            Err(other) => Err(other.into()),
        }
    }

    fn missing(&self, option: String) -> ConfigError {
        let upper = option.to_ascii_uppercase().replace('.', SEPARATOR);
        let variable = if option.contains('.') {
            format!("{}{SEPARATOR}{upper}", self.namespace)
        } else {
            format!("{}{SEPARATOR}{upper}{SEPARATOR}<OPTION> variables", self.namespace)
        };
        ConfigError::Missing { option, variable }
    }

    /// The variables of this namespace, with every `…_FILE` variable replaced by its file content.
    fn namespace_vars(&self) -> Result<HashMap<String, String>, ConfigError> {
        let prefix = format!("{}{SEPARATOR}", self.namespace);
        let literal: Vec<String> =
            self.literal_files.iter().map(|key| self.variable(key)).collect();
        let mut vars = HashMap::new();
        for (name, value) in &self.env {
            if !name.starts_with(&prefix) {
                continue;
            }
            // `config` reads `.`, `-` and `[n]` in a key as path syntax, and `[n]` builds an array
            // of n + 1 entries before any field is checked: `…__LISTEN[9223372036854775807]`
            // panicked (capacity overflow) and `…__LISTEN[4000000000]` asked for hundreds of
            // gigabytes. POSIX names are `[A-Za-z0-9_]` anyway, so anything else is a typo.
            if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(ConfigError::VariableName { variable: name.clone() });
            }
            let plain = match name.strip_suffix(FILE_SUFFIX) {
                Some(plain) if !literal.contains(name) => plain,
                _ => {
                    vars.insert(name.clone(), value.clone());
                    continue;
                }
            };
            if self.env.iter().any(|(other, _)| other == plain) {
                return Err(ConfigError::Ambiguous { variable: plain.to_owned() });
            }
            let path = PathBuf::from(value);
            let content = std::fs::read_to_string(&path).map_err(|source| {
                ConfigError::ReadSecretFile { variable: name.clone(), path, source }
            })?;
            let content = content.strip_suffix('\n').unwrap_or(&content);
            let content = content.strip_suffix('\r').unwrap_or(content);
            vars.insert(plain.to_owned(), content.to_owned());
        }
        Ok(vars)
    }
}

/// The `[server]` section of either service: where it listens and how it stops.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the main listener (the api's public HTTP, the vault's mTLS). Port 0 picks a
    /// free port, which tests use.
    pub listen: std::net::SocketAddr,
    /// Address of the plain-HTTP ops listener: `/healthz`, `/readyz`, later `/metrics`.
    pub ops_listen: std::net::SocketAddr,
    /// After SIGTERM, how long in-flight requests may take to finish before they are cut off.
    #[serde(default = "default_shutdown_grace_seconds")]
    pub shutdown_grace_seconds: u64,
}

fn default_shutdown_grace_seconds() -> u64 {
    // Below Kubernetes' default 30 s termination grace, so we finish before the SIGKILL.
    25
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        server: Server,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Server {
        port: u16,
        #[serde(default)]
        name: Option<String>,
    }

    #[test]
    fn file_suffix_reads_the_file_and_strips_one_newline() {
        let dir = std::env::temp_dir().join(format!("sb-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("name");
        std::fs::write(&path, "12345\n").unwrap();
        let sample: Sample = ConfigSources::new(API_NAMESPACE)
            .env([
                ("STRONGBOX_API__SERVER__PORT", "80".to_owned()),
                ("STRONGBOX_API__SERVER__NAME_FILE", path.display().to_string()),
            ])
            .load()
            .unwrap();
        // A digits-only secret stays a string, while numeric options still parse.
        assert_eq!(sample.server.name.as_deref(), Some("12345"));
        assert_eq!(sample.server.port, 80);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn value_and_file_form_together_are_ambiguous() {
        let err = ConfigSources::new(API_NAMESPACE)
            .env([
                ("STRONGBOX_API__SERVER__PORT", "80"),
                ("STRONGBOX_API__SERVER__NAME", "a"),
                ("STRONGBOX_API__SERVER__NAME_FILE", "/nonexistent"),
            ])
            .load::<Sample>()
            .unwrap_err();
        assert!(
            matches!(err, ConfigError::Ambiguous { ref variable } if variable == "STRONGBOX_API__SERVER__NAME")
        );
    }
}
