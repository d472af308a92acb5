//! The real binaries wired together as in production: a vault (initialized, unlocked) and an api
//! that reaches it over mTLS, each on its own database, plus a workspace root key.

use std::collections::HashMap;

use serde_json::json;

use crate::{SERVER_KEY, ServiceProcess, TestDb, TestPki, send, vault_env};

/// A running api + vault pair.
pub struct Stack {
    /// The vault process.
    pub vault: ServiceProcess,
    /// The api process.
    pub api: ServiceProcess,
    /// `https://localhost:<port>` of the vault's mTLS listener.
    pub vault_url: String,
    /// `http://<addr>` of the vault's ops listener.
    pub vault_ops: String,
    /// `http://<addr>` of the api's public listener.
    pub api_url: String,
    /// `http://<addr>` of the api's ops listener.
    pub api_ops: String,
    /// A root key of the workspace `bootstrap` made, with every permission.
    pub root_key: String,
    /// The certificates.
    pub pki: std::sync::Arc<TestPki>,
    /// The api database.
    pub api_db: TestDb,
    /// The vault database.
    pub vault_db: TestDb,
}

impl Stack {
    /// Starts the vault with `vault_extra` and the api with `api_extra` added to their
    /// environments, initializes the vault and bootstraps a workspace.
    pub async fn start(vault_extra: &[(&str, &str)], api_extra: &[(&str, &str)]) -> Self {
        let (api_db, vault_db) = (TestDb::new().await, TestDb::new().await);
        let pki = TestPki::new();
        let mut env: HashMap<String, String> = vault_env(&vault_db, &pki).into_iter().collect();
        env.insert("STRONGBOX_VAULT__LOG__FILTER".to_owned(), "info".to_owned());
        env.extend(vault_extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let mut vault = ServiceProcess::start("strongbox-vault", &["serve"], &env);
        let ready = vault.wait_for_message("strongbox-vault ready to serve").await;
        let port = |addr: &serde_json::Value| {
            addr.as_str().unwrap().rsplit(':').next().unwrap().to_owned()
        };
        let vault_url = format!("https://localhost:{}", port(&ready["main"]));
        let vault_ops = format!("http://{}", ready["ops"].as_str().unwrap());
        let (status, body) = send(
            pki.client("operator"),
            reqwest::Method::POST,
            &format!("{vault_url}/v1/sys/initialize"),
            Some(json!({"key": SERVER_KEY})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let mut env = api_env(api_db.url(), &vault_url, &pki);
        env.extend(api_extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let mut api = ServiceProcess::start("strongbox-api", &["serve"], &env);
        let ready = api.wait_for_message("strongbox-api ready to serve").await;
        let api_url = format!("http://{}", ready["public"].as_str().unwrap());
        let api_ops = format!("http://{}", ready["ops"].as_str().unwrap());
        let made = strongbox_api::bootstrap(
            &strongbox_shared::db::DatabaseConfig::from_url(api_db.url()),
            "stack",
        )
        .await
        .unwrap();
        Self {
            vault,
            api,
            vault_url,
            vault_ops,
            api_url,
            api_ops,
            root_key: made.root_key,
            pki,
            api_db,
            vault_db,
        }
    }

    /// Calls `/v2/<name>` with the root key; returns the whole answer.
    pub async fn call(&self, name: &str, body: serde_json::Value) -> serde_json::Value {
        crate::http_client()
            .post(format!("{}/v2/{name}", self.api_url))
            .bearer_auth(&self.root_key)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Creates an API that stores recoverable keys; returns its id.
    pub async fn recoverable_api(&self) -> String {
        let api_id = self.call("apis.createApi", json!({"name": "stack"})).await["data"]["apiId"]
            .as_str()
            .unwrap()
            .to_owned();
        self.call("apis.updateApi", json!({"apiId": api_id, "storeEncryptedKeys": true})).await;
        api_id
    }

    /// Stops both processes with SIGTERM and checks they exit cleanly.
    pub async fn stop(&mut self) {
        self.api.signal("TERM");
        self.vault.signal("TERM");
        assert!(self.api.wait().await.success(), "api exit");
        assert!(self.vault.wait().await.success(), "vault exit");
    }
}

/// The environment of an api process on random loopback ports, on `database_url`, reaching the
/// vault at `vault_url` with `pki`'s api identity.
pub fn api_env(database_url: &str, vault_url: &str, pki: &TestPki) -> HashMap<String, String> {
    let file = |n: &str| pki.path(n).display().to_string();
    HashMap::from([
        ("STRONGBOX_API__SERVER__LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("STRONGBOX_API__SERVER__OPS_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("STRONGBOX_API__DATABASE__URL".to_owned(), database_url.to_owned()),
        ("STRONGBOX_API__VAULT__URL".to_owned(), vault_url.to_owned()),
        ("STRONGBOX_API__VAULT__CA".to_owned(), file("ca.pem")),
        ("STRONGBOX_API__VAULT__CERT".to_owned(), file("api.pem")),
        ("STRONGBOX_API__VAULT__KEY".to_owned(), file("api-key.pem")),
    ])
}

/// Fetches `<ops>/metrics` and parses the Prometheus text: `(series, value)` with the series as
/// written (`name{labels}`). Panics on a line that is not valid exposition format.
pub async fn scrape(ops: &str) -> HashMap<String, f64> {
    let response = crate::http_client().get(format!("{ops}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    parse_prometheus(&response.text().await.unwrap())
}

/// Parses Prometheus text exposition: every sample line is `name[{labels}] value`, and every
/// sample's family was declared by a `# HELP` and a `# TYPE` line before it.
pub fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut typed: Vec<String> = Vec::new();
    let mut helped: Vec<String> = Vec::new();
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(!help.trim().is_empty(), "empty HELP for {name}");
            helped.push(name.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(helped.iter().any(|h| h == name), "{name} has no HELP text");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad TYPE line {line:?}"
            );
            typed.push(name.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if series.contains('{') {
            assert!(series.ends_with('}'), "bad labels in {line:?}");
        }
        let family_known = typed.iter().any(|t| {
            name == t
                || ["_bucket", "_sum", "_count"].iter().any(|s| name.strip_suffix(s) == Some(t))
        });
        assert!(family_known, "sample {name} has no TYPE line before it");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        samples.insert(series.to_owned(), value);
    }
    samples
}
