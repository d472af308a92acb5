//! Property tests of configuration loading from arbitrary environments, offline: a service-shaped
//! struct (the shared sections, a list option, a nested section) loaded from random variables of
//! the namespace, near misses outside it, and odd names and values. No file is read: every
//! `…_FILE` variable names a path that does not exist.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use secrecy::ExposeSecret as _;

use super::*;
use crate::db::DatabaseConfig;
use crate::telemetry::{LogConfig, TelemetryConfig};

const PREFIX: &str = "STRONGBOX_API__";
const URL: &str = "postgres://strongbox@db.internal:5432/strongbox";
/// Where every generated `…_FILE` variable points, so that loading never reads a file.
const MISSING_FILE: &str = "/nonexistent/strongbox-config-properties";

/// Shaped like the api's and the vault's configurations.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Service {
    server: ServerConfig,
    database: DatabaseConfig,
    #[serde(default)]
    log: LogConfig,
    #[serde(default)]
    telemetry: TelemetryConfig,
    #[serde(default)]
    tls: Tls,
    #[serde(default)]
    unlock: Unlock,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Tls {
    crls: Vec<String>,
    trust_domain: String,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Unlock {
    argon2: Argon2,
    free_failures: u32,
    auto_unlock_key_file: Option<PathBuf>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Argon2 {
    m_kib: u32,
    t: u32,
    p: u8,
}

impl Service {
    /// Every value, so that two loads can be compared.
    fn values(&self) -> String {
        let Self { server, database, log, telemetry, tls, unlock } = self;
        format!(
            "{} {} {} | {} {} {} {} {:?} | {} | {:?} {} | {:?} {} | {} {} {} {} {:?}",
            server.listen,
            server.ops_listen,
            server.shutdown_grace_seconds,
            database.url.expose_secret(),
            database.max_connections,
            database.acquire_timeout_ms,
            database.connect_timeout_ms,
            database.ca,
            log.filter,
            telemetry.otlp_endpoint,
            telemetry.sample_ratio,
            tls.crls,
            tls.trust_domain,
            unlock.argon2.m_kib,
            unlock.argon2.t,
            unlock.argon2.p,
            unlock.free_failures,
            unlock.auto_unlock_key_file,
        )
    }
}

fn load(env: &[(String, String)]) -> Result<Service, ConfigError> {
    ConfigSources::new(API_NAMESPACE)
        .defaults(&[("server.listen", "127.0.0.1:0"), ("server.ops_listen", "127.0.0.1:0")])
        .lists(&["tls.crls"])
        .literal_file_options(&["unlock.auto_unlock_key_file"])
        .env(env.iter().cloned())
        .load()
}

/// Segments of variable names: sections and options that exist (in upper and lower case),
/// names that do not, any characters, and `config`'s path syntax (`[n]`, `.`, `-`).
fn segment() -> impl Strategy<Value = String> {
    let known = vec![
        "SERVER",
        "DATABASE",
        "LOG",
        "TELEMETRY",
        "TLS",
        "UNLOCK",
        "ARGON2",
        "LISTEN",
        "OPS_LISTEN",
        "SHUTDOWN_GRACE_SECONDS",
        "URL",
        "MAX_CONNECTIONS",
        "CA",
        "FILTER",
        "OTLP_ENDPOINT",
        "SAMPLE_RATIO",
        "CRLS",
        "TRUST_DOMAIN",
        "M_KIB",
        "T",
        "P",
        "FREE_FAILURES",
        "AUTO_UNLOCK_KEY_FILE",
        "server",
        "Listen",
    ];
    let path_syntax = vec![
        "[0]",
        "[1]",
        "[-1]",
        "[9223372036854775807]",
        "[-9223372036854775808]",
        "[ 2 ]",
        "[",
        "]",
        ".X",
        "-X",
        ".",
    ];
    prop_oneof![
        6 => select(known).prop_map(str::to_owned),
        2 => "[A-Z0-9_]{0,6}",
        1 => vec(any::<char>(), 0..4).prop_map(|chars| chars.into_iter().collect::<String>()),
        1 => (select(vec!["LISTEN", "CRLS", "M_KIB", "X"]), select(path_syntax))
            .prop_map(|(name, syntax)| format!("{name}{syntax}")),
    ]
}

/// `prefix`, 0-3 segments joined by `__`, and now and then `_FILE`.
fn variable(prefix: impl Strategy<Value = &'static str>) -> impl Strategy<Value = String> {
    (prefix, vec(segment(), 0..=3), prop::bool::weighted(0.1)).prop_map(
        |(prefix, segments, file)| {
            let suffix = if file { FILE_SUFFIX } else { "" };
            format!("{prefix}{}{suffix}", segments.join(SEPARATOR))
        },
    )
}

fn namespaced() -> impl Strategy<Value = String> {
    variable(Just(PREFIX))
}

/// `STRONGBOX_*` names just outside the namespace: a single underscore, the other service, the
/// wrong case, a leading space.
fn unrelated() -> impl Strategy<Value = String> {
    let prefixes = vec![
        "STRONGBOX_API",
        "STRONGBOX_API_",
        "STRONGBOX_APIX__",
        "STRONGBOX_API_X__",
        "STRONGBOX_VAULT__",
        "STRONGBOX_",
        "strongbox_api__",
        "Strongbox_Api__",
        " STRONGBOX_API__",
        "XSTRONGBOX_API__",
    ];
    variable(select(prefixes))
        .prop_filter("outside the namespace", |name| !name.starts_with(PREFIX))
}

fn value() -> impl Strategy<Value = String> {
    let odd = vec![
        "127.0.0.1:0",
        "[::1]:8080",
        "localhost",
        "0",
        "1",
        "-1",
        "65536",
        "18446744073709551616",
        "1e309",
        "NaN",
        "true",
        "",
        " ",
        "a,b,,c",
        URL,
        "host=h user=u",
        "info,[",
        "debug",
        "https://otel:4318",
        "/nonexistent/ca.pem",
    ];
    prop_oneof![
        3 => select(odd).prop_map(str::to_owned),
        1 => vec(any::<char>(), 0..12).prop_map(|chars| chars.into_iter().collect::<String>()),
    ]
}

/// Some valid variables; the database URL, which has no default, most of the time.
fn base() -> impl Strategy<Value = Vec<(String, String)>> {
    let others = vec![
        ("LOG__FILTER", "info"),
        ("SERVER__SHUTDOWN_GRACE_SECONDS", "7"),
        ("TLS__CRLS", "/a.pem, /b.pem"),
        ("UNLOCK__ARGON2__T", "3"),
    ];
    (prop::bool::weighted(0.8), subsequence(others, 0..=4)).prop_map(|(url, others)| {
        url.then_some(("DATABASE__URL", URL))
            .into_iter()
            .chain(others)
            .map(|(key, value)| (format!("{PREFIX}{key}"), value.to_owned()))
            .collect()
    })
}

/// `…_FILE` variables point at [`MISSING_FILE`].
fn without_files(vars: Vec<(String, String)>) -> Vec<(String, String)> {
    vars.into_iter()
        .map(|(name, value)| {
            let value = if name.ends_with(FILE_SUFFIX) { MISSING_FILE.to_owned() } else { value };
            (name, value)
        })
        .collect()
}

/// Whether `message` names the variable `name` or the option it sets: the variable itself,
/// the dotted option (`config` names a mistyped value by its path), or one of its segments
/// (serde names an unknown field by its own segment).
fn names(message: &str, name: &str) -> bool {
    if message.contains(name) || message.contains(&format!("{name:?}")) {
        return true;
    }
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    let rest = rest.strip_suffix(FILE_SUFFIX).unwrap_or(rest).to_lowercase();
    let message = message.to_lowercase();
    message.contains(&rest.replace(SEPARATOR, "."))
        || rest.split(SEPARATOR).any(|segment| !segment.is_empty() && message.contains(segment))
}

/// The key `config` builds from a variable of the namespace.
fn key_of(name: &str) -> String {
    name.strip_prefix(PREFIX).unwrap_or(name).to_lowercase().replace(SEPARATOR, ".")
}

/// `vars` without those whose key equals another's or is a path prefix of it (`unlock.argon2`
/// beside `unlock.argon2.t`): `config` applies such pairs in hash-map order, so whether they
/// load can differ between two loads of the same variables.
fn independent(vars: Vec<(String, String)>) -> Vec<(String, String)> {
    fn related(a: &str, b: &str) -> bool {
        a == b || b.starts_with(&format!("{a}."))
    }
    let mut keys: Vec<String> = Vec::new();
    let mut kept = Vec::new();
    for (name, value) in vars {
        let key = key_of(&name);
        if !keys.iter().any(|k| related(k, &key) || related(&key, k)) {
            keys.push(key);
            kept.push((name, value));
        }
    }
    kept
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any variables at all: loading never panics, and an error names an option or variable
    /// that was set (or the database URL, when it was not).
    #[test]
    fn any_environment_loads_or_names_what_is_wrong(
        base in base(),
        vars in vec((namespaced(), value()), 0..6),
        noise in vec((unrelated(), value()), 0..4),
    ) {
        let vars = without_files(vars);
        let env: Vec<(String, String)> =
            base.iter().chain(&vars).cloned().chain(without_files(noise)).collect();
        match load(&env) {
            Ok(service) => {
                let _ = service.values();
            }
            Err(err) => {
                let message = err.to_string();
                let url = format!("{PREFIX}DATABASE__URL");
                let url_missing = !base.iter().any(|(name, _)| *name == url);
                let named = vars.iter().any(|(name, _)| names(&message, name))
                    || (url_missing && names(&message, &url));
                prop_assert!(named, "{:?} for {:?}", message, env);
            }
        }
    }

    /// Variables outside the namespace change nothing: the same variables of the namespace load
    /// to the same values, or fail, with or without them.
    #[test]
    fn other_strongbox_variables_change_nothing(
        base in base(),
        vars in vec((namespaced(), value()), 0..4),
        noise in vec((unrelated(), value()), 1..6),
    ) {
        let quiet = independent(base.into_iter().chain(without_files(vars)).collect());
        let noisy: Vec<(String, String)> =
            quiet.iter().cloned().chain(without_files(noise)).collect();
        match (load(&quiet), load(&noisy)) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a.values(), b.values()),
            (Err(_), Err(_)) => {}
            (a, b) => prop_assert!(false, "{:?} became {:?} for {:?}", a.err(), b.err(), noisy),
        }
    }

    /// Well-formed values arrive exactly: numbers parse, lists split and trim, and digits meant
    /// as text stay text.
    #[test]
    fn well_formed_values_arrive_unchanged(
        port in any::<u16>(),
        grace in any::<u64>(),
        connections in 1usize..100_000,
        password in "[0-9]{1,12}",
        crls in vec("[a-z0-9/._-]{1,12}", 0..4),
        ratio in 0.0f64..=1.0,
        m_kib in any::<u32>(),
    ) {
        let env: Vec<(String, String)> = [
            ("SERVER__LISTEN", format!("127.0.0.1:{port}")),
            ("SERVER__SHUTDOWN_GRACE_SECONDS", grace.to_string()),
            ("DATABASE__URL", format!("postgres://u:{password}@h/db")),
            ("DATABASE__MAX_CONNECTIONS", connections.to_string()),
            ("TELEMETRY__SAMPLE_RATIO", ratio.to_string()),
            ("TLS__CRLS", crls.join(" , ")),
            ("UNLOCK__ARGON2__M_KIB", m_kib.to_string()),
            ("UNLOCK__AUTO_UNLOCK_KEY_FILE", password.clone()),
        ]
        .into_iter()
        .map(|(key, value)| (format!("{PREFIX}{key}"), value))
        .collect();
        let service = load(&env).unwrap();
        prop_assert_eq!(service.server.listen.port(), port);
        prop_assert_eq!(service.server.shutdown_grace_seconds, grace);
        let url = format!("postgres://u:{password}@h/db");
        prop_assert_eq!(service.database.url.expose_secret(), url.as_str());
        prop_assert_eq!(service.database.max_connections, connections);
        prop_assert_eq!(service.telemetry.sample_ratio, ratio);
        prop_assert_eq!(&service.tls.crls, &crls);
        prop_assert_eq!(service.unlock.argon2.m_kib, m_kib);
        prop_assert_eq!(service.unlock.auto_unlock_key_file, Some(PathBuf::from(password)));
    }
}

/// `config` reads `[n]` in a key as an array index and grows the array to it before any field
/// is checked: these panicked with a capacity overflow (and `[4000000000]` asked for hundreds of
/// gigabytes) until names outside `[A-Za-z0-9_]` were refused.
#[test]
fn an_index_in_a_variable_name_is_refused_by_name() {
    for name in [
        "STRONGBOX_API__SERVER__LISTEN[9223372036854775807]",
        "STRONGBOX_API__TLS__CRLS[-9223372036854775808]",
        "STRONGBOX_API__SERVER[0]",
        "STRONGBOX_API__SERVER.LISTEN",
        "STRONGBOX_API__LOG__FILTER-X",
        "STRONGBOX_API__SERVER__LISTEN[1]_FILE",
    ] {
        let env = [
            (name.to_owned(), "127.0.0.1:0".to_owned()),
            (format!("{PREFIX}DATABASE__URL"), URL.to_owned()),
        ];
        let err = load(&env).unwrap_err();
        assert!(
            matches!(&err, ConfigError::VariableName { variable } if variable == name),
            "{err}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }
}
