//! compose.yaml and the Kubernetes manifests under ops/k8s hold only options the services know,
//! with values of the right type: every `STRONGBOX_API__…`/`STRONGBOX_VAULT__…` variable they
//! set is loaded through the services' own configuration loader, which refuses unknown options.
//! (ops/test also parses them as YAML and runs `docker-compose config` and `kubectl kustomize`
//! when those tools are present.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use strongbox_tests::{TempDir, TestDb, TestPki, vault_env};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn manifests() -> Vec<PathBuf> {
    let mut files = vec![repo().join("compose.yaml")];
    let mut k8s: Vec<PathBuf> = std::fs::read_dir(repo().join("ops/k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    k8s.sort();
    assert!(k8s.len() >= 5, "ops/k8s holds the manifests");
    files.extend(k8s);
    files
}

/// Every `<prefix>…` variable set in `text`, with its value: compose's `NAME: value` and the
/// manifests' `{ name: NAME, value: "…" }`.
fn variables(text: &str, prefix: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for line in text.lines() {
        let Some(start) = line.find(prefix) else { continue };
        let rest = &line[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        let (name, after) = rest.split_at(end);
        let value = if let Some(v) = after.strip_prefix(", value:") {
            v.trim().trim_end_matches('}').trim().trim_matches('"')
        } else if let Some(v) = after.strip_prefix(':') {
            v.trim().trim_matches('"')
        } else {
            panic!("cannot read the value of {name} in {line:?}");
        };
        found.push((name.to_owned(), value.to_owned()));
    }
    found
}

/// Applies `vars` over a working base configuration; `…_FILE` variables point at a file holding
/// the base value of the option they name.
fn overlay(
    base: &[(String, String)],
    vars: &[(String, String)],
    dir: &TempDir,
) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = base.iter().cloned().collect();
    for (name, value) in vars {
        if let Some(option) = name.strip_suffix("_FILE") {
            let content = env
                .remove(option)
                .unwrap_or_else(|| panic!("{name}: the test's base configuration has no {option}"));
            let file = dir.path().join(option);
            std::fs::write(&file, content).unwrap();
            env.insert(name.clone(), file.display().to_string());
        } else {
            env.insert(name.clone(), value.clone());
        }
    }
    env.into_iter().collect()
}

#[tokio::test]
async fn every_option_the_manifests_set_is_one_the_service_knows() {
    let db = TestDb::new().await;
    let pki = TestPki::new();
    let dir = TempDir::new("manifests");
    let api_base = vec![("STRONGBOX_API__DATABASE__URL".to_owned(), db.url().to_owned())];
    let mut vault_base = vault_env(&db, &pki);
    // The manifests give the vault its owner's URL from a secret file; the base sets the option.
    vault_base.push(("STRONGBOX_VAULT__DATABASE__MIGRATION_URL".to_owned(), db.url().to_owned()));
    let (mut api_seen, mut vault_seen) = (0, 0);
    for file in manifests() {
        let text = std::fs::read_to_string(&file).unwrap();
        let api = variables(&text, "STRONGBOX_API__");
        if !api.is_empty() {
            let sources =
                strongbox_api::config::ApiConfig::sources().env(overlay(&api_base, &api, &dir));
            if let Err(error) = strongbox_api::config::ApiConfig::from_sources(&sources) {
                panic!("{}: the api refuses its settings: {error}", file.display());
            }
            api_seen += api.len();
        }
        let vault = variables(&text, "STRONGBOX_VAULT__");
        if !vault.is_empty() {
            let sources = strongbox_vault::config::VaultConfig::sources().env(overlay(
                &vault_base,
                &vault,
                &dir,
            ));
            if let Err(error) = strongbox_vault::config::VaultConfig::from_sources(&sources) {
                panic!("{}: the vault refuses its settings: {error}", file.display());
            }
            vault_seen += vault.len();
        }
    }
    assert!(
        api_seen >= 10 && vault_seen >= 10,
        "the scan found the settings: {api_seen} api, {vault_seen} vault"
    );

    // The scan itself: a misspelt option would be caught.
    let bad = variables("      STRONGBOX_API__DATABASE__MAX_CONECTIONS: \"8\"", "STRONGBOX_API__");
    let sources = strongbox_api::config::ApiConfig::sources().env(overlay(&api_base, &bad, &dir));
    let error = strongbox_api::config::ApiConfig::from_sources(&sources).unwrap_err().to_string();
    assert!(error.contains("max_conections"), "{error}");
}

#[test]
fn the_operator_variables_in_compose_are_the_cli_env_file_keys() {
    let text = std::fs::read_to_string(repo().join("compose.yaml")).unwrap();
    let cli = std::fs::read_to_string(repo().join("vault/src/cli/mod.rs")).unwrap();
    for key in [
        "STRONGBOX_VAULT_URL",
        "STRONGBOX_TLS_CA",
        "STRONGBOX_OPERATOR_CERT",
        "STRONGBOX_OPERATOR_KEY",
    ] {
        assert!(text.contains(&format!("{key}:")), "compose sets {key}");
        assert!(cli.contains(&format!("env = \"{key}\"")), "the vault CLI reads {key}");
    }
}
