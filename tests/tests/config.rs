//! Configuration parsing: defaults, file plus environment, the namespace rule, and errors that
//! name the option at fault.

use strongbox_api::config::ApiConfig;
use strongbox_shared::config::ConfigError;
use strongbox_vault::config::VaultConfig;

const URL: &str = "postgres://strongbox:s3cret-pw@db.internal:5433/strongbox";

fn api(env: &[(&str, &str)]) -> Result<ApiConfig, ConfigError> {
    ApiConfig::from_sources(&ApiConfig::sources().env(env.iter().copied()))
}

/// The TLS options a vault cannot start without (the files need not exist to parse).
const VAULT_TLS: [(&str, &str); 3] = [
    ("STRONGBOX_VAULT__TLS__CERT", "/etc/strongbox/vault.pem"),
    ("STRONGBOX_VAULT__TLS__KEY", "/etc/strongbox/vault-key.pem"),
    ("STRONGBOX_VAULT__TLS__CLIENT_CA", "/etc/strongbox/ca.pem"),
];

fn vault(env: &[(&str, &str)]) -> Result<VaultConfig, ConfigError> {
    VaultConfig::from_sources(&VaultConfig::sources().env(VAULT_TLS).env(env.iter().copied()))
}

#[test]
fn api_defaults_fill_everything_but_the_database_url() {
    let config = api(&[("STRONGBOX_API__DATABASE__URL", URL)]).unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:7070");
    assert_eq!(config.server.ops_listen.to_string(), "127.0.0.1:7071");
    assert_eq!(config.server.shutdown_grace_seconds, 25);
    assert_eq!(config.database.max_connections, 16);
    assert_eq!(config.log.filter, "info");
    assert_eq!(config.database.describe(), "db.internal:5433/strongbox");
}

#[test]
fn vault_defaults_differ_from_the_api_listeners() {
    let config = vault(&[("STRONGBOX_VAULT__DATABASE__URL", URL)]).unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:7080");
    assert_eq!(config.server.ops_listen.to_string(), "127.0.0.1:7081");
    assert_eq!(config.tls.trust_domain, "strongbox.local");
    assert_eq!(config.unlock.argon2.m_kib, 64 * 1024, "RFC 9106 default: 64 MiB");
    assert_eq!(config.limits.max_items, 1000);
}

#[test]
fn vault_requires_its_tls_files() {
    let err = VaultConfig::from_sources(
        &VaultConfig::sources().env([("STRONGBOX_VAULT__DATABASE__URL", URL)]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("`tls`"), "{err}");
}

#[test]
fn argon2_parameters_can_be_set_one_at_a_time_and_are_checked() {
    let config = vault(&[
        ("STRONGBOX_VAULT__DATABASE__URL", URL),
        ("STRONGBOX_VAULT__UNLOCK__ARGON2__T", "4"),
    ])
    .unwrap();
    assert_eq!((config.unlock.argon2.m_kib, config.unlock.argon2.t), (64 * 1024, 4));
    let err = vault(&[
        ("STRONGBOX_VAULT__DATABASE__URL", URL),
        ("STRONGBOX_VAULT__UNLOCK__ARGON2__M_KIB", "1"),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("unlock.argon2"), "{err}");
}

#[test]
fn argon2_below_the_floor_needs_allow_weak_and_above_the_ceiling_is_refused() {
    let weak = [
        ("STRONGBOX_VAULT__DATABASE__URL", URL),
        ("STRONGBOX_VAULT__UNLOCK__ARGON2__M_KIB", "8192"),
        ("STRONGBOX_VAULT__UNLOCK__ARGON2__T", "1"),
    ];
    let err = vault(&weak).unwrap_err().to_string();
    assert!(err.contains("unlock.argon2") && err.contains("floor"), "{err}");
    let mut allowed = weak.to_vec();
    allowed.push(("STRONGBOX_VAULT__KDF__ALLOW_WEAK", "true"));
    assert_eq!(vault(&allowed).unwrap().unlock.argon2.m_kib, 8192);
    // The floor itself is accepted.
    let floor = [
        ("STRONGBOX_VAULT__DATABASE__URL", URL),
        ("STRONGBOX_VAULT__UNLOCK__ARGON2__M_KIB", "19456"),
        ("STRONGBOX_VAULT__UNLOCK__ARGON2__T", "2"),
    ];
    vault(&floor).unwrap();
    for (option, value) in [("M_KIB", "1048577"), ("T", "11"), ("P", "9")] {
        let variable = format!("STRONGBOX_VAULT__UNLOCK__ARGON2__{option}");
        let err = vault(&[
            ("STRONGBOX_VAULT__DATABASE__URL", URL),
            (&variable, value),
            ("STRONGBOX_VAULT__KDF__ALLOW_WEAK", "true"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("unlock.argon2"), "{option}={value}: {err}");
    }
}

#[test]
fn environment_overrides_the_toml_file() {
    let sources = ApiConfig::sources()
        .toml_text(
            "[server]\nlisten = \"0.0.0.0:9000\"\nops_listen = \"0.0.0.0:9001\"\n\
             [database]\nurl = \"postgres://file@h/db\"\nmax_connections = 4\n",
        )
        .env([("STRONGBOX_API__SERVER__LISTEN", "127.0.0.1:9100")]);
    let config = ApiConfig::from_sources(&sources).unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:9100");
    assert_eq!(config.server.ops_listen.to_string(), "0.0.0.0:9001");
    assert_eq!(config.database.max_connections, 4);
}

#[test]
fn each_service_ignores_other_strongbox_variables() {
    // Everything `source .dev/strongbox.env` exports, plus the other service's namespace, even
    // with values that would be invalid or unknown options for this service.
    let noise = [
        ("STRONGBOX_API_URL", "http://127.0.0.1:7070"),
        ("STRONGBOX_API_DATABASE_URL", "not a url"),
        ("STRONGBOX_VAULT_URL", "https://localhost:7080"),
        ("STRONGBOX_ROOT_KEY", "sb_0000"),
        ("STRONGBOX_APIX__SERVER__LISTEN", "garbage"),
    ];
    let mut api_env = noise.to_vec();
    api_env.extend([
        ("STRONGBOX_VAULT__SERVER__LISTEN", "garbage"),
        ("STRONGBOX_VAULT__NO_SUCH__OPTION", "1"),
        ("STRONGBOX_API__DATABASE__URL", URL),
    ]);
    api(&api_env).unwrap();

    let mut vault_env = noise.to_vec();
    vault_env.extend([
        ("STRONGBOX_API__SERVER__LISTEN", "garbage"),
        ("STRONGBOX_API__NO_SUCH__OPTION", "1"),
        ("STRONGBOX_VAULT__DATABASE__URL", URL),
    ]);
    vault(&vault_env).unwrap();
}

#[test]
fn numbers_from_the_environment_are_parsed() {
    let config = api(&[
        ("STRONGBOX_API__DATABASE__URL", URL),
        ("STRONGBOX_API__DATABASE__MAX_CONNECTIONS", "3"),
        ("STRONGBOX_API__SERVER__SHUTDOWN_GRACE_SECONDS", "7"),
    ])
    .unwrap();
    assert_eq!(config.database.max_connections, 3);
    assert_eq!(config.server.shutdown_grace_seconds, 7);
}

#[test]
fn a_secret_can_come_from_a_file() {
    let dir = std::env::temp_dir().join(format!("sb-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("database-url");
    std::fs::write(&file, format!("{URL}\n")).unwrap();
    let config = api(&[("STRONGBOX_API__DATABASE__URL_FILE", file.to_str().unwrap())]).unwrap();
    assert_eq!(config.database.describe(), "db.internal:5433/strongbox");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_secret_file_names_the_variable() {
    let err = api(&[("STRONGBOX_API__DATABASE__URL_FILE", "/nonexistent/strongbox-url")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("STRONGBOX_API__DATABASE__URL_FILE"), "{err}");
    assert!(err.contains("/nonexistent/strongbox-url"), "{err}");
}

#[test]
fn debug_output_never_shows_the_database_password() {
    let config = api(&[("STRONGBOX_API__DATABASE__URL", URL)]).unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cret-pw"), "{shown}");
}

fn error_of(env: &[(&str, &str)]) -> String {
    let mut all = vec![("STRONGBOX_API__DATABASE__URL", URL)];
    all.extend_from_slice(env);
    format!("{:#}", api(&all).unwrap_err())
}

#[test]
fn a_missing_database_section_is_named_with_its_variables() {
    let err = api(&[]).unwrap_err().to_string();
    assert!(err.contains("`database`"), "{err}");
    assert!(err.contains("STRONGBOX_API__DATABASE__"), "{err}");
}

#[test]
fn a_missing_database_url_is_named_with_its_variable() {
    let err = api(&[("STRONGBOX_API__DATABASE__MAX_CONNECTIONS", "2")]).unwrap_err().to_string();
    assert!(err.contains("`database.url`"), "{err}");
    assert!(err.contains("STRONGBOX_API__DATABASE__URL"), "{err}");
}

#[test]
fn a_malformed_listen_address_is_named() {
    let err = error_of(&[("STRONGBOX_API__SERVER__LISTEN", "localhost")]);
    assert!(err.contains("server.listen"), "{err}");
}

#[test]
fn an_unknown_option_is_refused_by_name() {
    let err = error_of(&[("STRONGBOX_API__SERVER__LISTNE", "127.0.0.1:1")]);
    assert!(err.contains("listne"), "{err}");
}

#[test]
fn a_non_numeric_pool_size_is_named() {
    let err = error_of(&[("STRONGBOX_API__DATABASE__MAX_CONNECTIONS", "many")]);
    assert!(err.contains("database.max_connections"), "{err}");
}

#[test]
fn a_zero_pool_size_is_refused() {
    let err = error_of(&[("STRONGBOX_API__DATABASE__MAX_CONNECTIONS", "0")]);
    assert!(err.contains("database.max_connections"), "{err}");
}

#[test]
fn rate_limit_options_default_to_local_and_are_checked() {
    let config = api(&[("STRONGBOX_API__DATABASE__URL", URL)]).unwrap();
    assert_eq!(config.ratelimit.on_unavailable.as_str(), "local");
    assert_eq!(config.ratelimit.timeout_ms, 250);
    let config = api(&[
        ("STRONGBOX_API__DATABASE__URL", URL),
        ("STRONGBOX_API__RATELIMIT__ON_UNAVAILABLE", "deny"),
    ])
    .unwrap();
    assert_eq!(config.ratelimit.on_unavailable.as_str(), "deny");
    let err = error_of(&[("STRONGBOX_API__RATELIMIT__ON_UNAVAILABLE", "maybe")]);
    assert!(err.contains("on_unavailable"), "{err}");
    let err = error_of(&[("STRONGBOX_API__RATELIMIT__TIMEOUT_MS", "0")]);
    assert!(err.contains("ratelimit.timeout_ms"), "{err}");
    let err = error_of(&[("STRONGBOX_API__RATELIMIT__RETRY_AFTER_MS", "18446744073709551615")]);
    assert!(err.contains("ratelimit.retry_after_ms"), "{err}");
}

#[test]
fn the_pkcs11_seal_needs_its_module_token_and_pin_file() {
    let seal = [
        ("STRONGBOX_VAULT__DATABASE__URL", URL),
        ("STRONGBOX_VAULT__SEAL__KIND", "pkcs11"),
        ("STRONGBOX_VAULT__SEAL__MODULE", "/usr/lib/softhsm/libsofthsm2.so"),
        ("STRONGBOX_VAULT__SEAL__TOKEN_LABEL", "strongbox"),
        ("STRONGBOX_VAULT__SEAL__PIN_FILE", "/run/pin"),
    ];
    let config = vault(&seal).unwrap();
    assert_eq!(config.seal.key_label(), "strongbox-unlock");
    assert_eq!(config.seal.pin_file.unwrap().to_str(), Some("/run/pin"), "a path, not its content");
    let err = format!("{:#}", vault(&seal[..4]).unwrap_err());
    assert!(err.contains("seal.pin_file"), "{err}");
    let mut with_file = seal.to_vec();
    with_file.push(("STRONGBOX_VAULT__UNLOCK__AUTO_UNLOCK_KEY_FILE", "/run/key"));
    let err = format!("{:#}", vault(&with_file).unwrap_err());
    assert!(err.contains("unlock.auto_unlock_key_file"), "{err}");
    assert!(vault(&[("STRONGBOX_VAULT__DATABASE__URL", URL)]).unwrap().seal.module.is_none());
}

#[test]
fn a_bad_log_filter_is_named() {
    let err = error_of(&[("STRONGBOX_API__LOG__FILTER", "info,[")]);
    assert!(err.contains("log.filter"), "{err}");
}

#[test]
fn an_unparsable_database_url_is_named_without_echoing_it() {
    let err = format!(
        "{:#}",
        api(&[("STRONGBOX_API__DATABASE__URL", "postgres://u:hunter2@h:notaport/db")]).unwrap_err()
    );
    assert!(err.contains("database.url"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

/// `…__AUTO_UNLOCK_KEY_FILE` once counted as the `_FILE` form of a nonexistent
/// `unlock.auto_unlock_key`: the vault read the server key from the file it names, then refused
/// the unknown option. The option's own variable must set the path, and its `_FILE` form must
/// still read the path from a file.
#[test]
fn the_auto_unlock_key_file_is_set_by_its_own_variable() {
    let path = "/nonexistent/strongbox/server-key";
    let config = vault(&[
        ("STRONGBOX_VAULT__DATABASE__URL", URL),
        ("STRONGBOX_VAULT__UNLOCK__AUTO_UNLOCK_KEY_FILE", path),
    ])
    .unwrap();
    assert_eq!(config.unlock.auto_unlock_key_file.as_deref(), Some(std::path::Path::new(path)));

    let dir = std::env::temp_dir().join(format!("sb-config-auto-unlock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let holder = dir.join("path");
    std::fs::write(&holder, format!("{path}\n")).unwrap();
    let config = vault(&[
        ("STRONGBOX_VAULT__DATABASE__URL", URL),
        ("STRONGBOX_VAULT__UNLOCK__AUTO_UNLOCK_KEY_FILE_FILE", holder.to_str().unwrap()),
    ])
    .unwrap();
    assert_eq!(config.unlock.auto_unlock_key_file.as_deref(), Some(std::path::Path::new(path)));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `config` reads `[n]` in a key as an array index and grows the array to it before checking
/// any field: a variable with a huge index panicked the loader. Such names are refused by name.
#[test]
fn a_variable_name_with_path_syntax_is_refused_by_name() {
    for name in ["STRONGBOX_API__SERVER__LISTEN[9223372036854775807]", "STRONGBOX_API__SERVER.X"] {
        let err = api(&[("STRONGBOX_API__DATABASE__URL", URL), (name, "127.0.0.1:1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains(name), "{err}");
    }
}
