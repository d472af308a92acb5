//! Services started in-process through their real `Application::build`.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};

use strongbox_shared::config::ConfigSources;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{TestDb, TestPki};

/// Namespace variables that put a service on random loopback ports and a test database.
fn base_env(prefix: &str, db: &TestDb) -> Vec<(String, String)> {
    vec![
        (format!("{prefix}__SERVER__LISTEN"), "127.0.0.1:0".to_owned()),
        (format!("{prefix}__SERVER__OPS_LISTEN"), "127.0.0.1:0".to_owned()),
        (format!("{prefix}__DATABASE__URL"), db.url().to_owned()),
        (format!("{prefix}__LOG__FILTER"), "warn".to_owned()),
    ]
    .into_iter()
    .chain(
        (prefix == "STRONGBOX_API")
            .then(|| ("STRONGBOX_API__USAGE__FLUSH_INTERVAL_MS".to_owned(), "50".to_owned())),
    )
    .collect()
}

/// A running in-process api.
pub struct TestApi {
    /// Its database config, for bootstrapping workspaces.
    pub database: strongbox_shared::db::DatabaseConfig,
    /// Base URL of the public listener, no trailing slash.
    pub url: String,
    /// Base URL of the ops listener.
    pub ops_url: String,
    /// The public listener's address.
    pub addr: SocketAddr,
    /// The api's own pool, to observe it from tests.
    pub pool: deadpool_postgres::Pool,
    /// Cancel to stop the api gracefully.
    pub shutdown: CancellationToken,
    /// Resolves when `run_until_stopped` returns.
    pub task: JoinHandle<anyhow::Result<()>>,
}

/// Builds and runs an api on `db`; `extra` adds or overrides namespace variables.
pub async fn spawn_api(db: &TestDb, extra: &[(&str, &str)]) -> TestApi {
    let sources = strongbox_api::config::ApiConfig::sources()
        .env(base_env("STRONGBOX_API", db))
        .env(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = strongbox_api::config::ApiConfig::from_sources(&sources).unwrap();
    let app = strongbox_api::startup::Application::build(config).await.unwrap();
    let addr = app.public_addr().unwrap();
    let ops = app.ops_addr().unwrap();
    let pool = app.pool().clone();
    let shutdown = app.shutdown_token();
    let task = tokio::spawn(app.run_until_stopped());
    TestApi {
        database: strongbox_shared::db::DatabaseConfig::from_url(db.url()),
        url: format!("http://{addr}"),
        ops_url: format!("http://{ops}"),
        addr,
        pool,
        shutdown,
        task,
    }
}

/// Builds and runs an api that reaches `vault` with the api identity.
pub async fn spawn_api_with_vault(
    db: &TestDb,
    vault: &TestVault,
    extra: &[(&str, &str)],
) -> TestApi {
    let file = |name: &str| vault.pki.path(name).display().to_string();
    let (url, ca, cert, key) =
        (vault.url.clone(), file("ca.pem"), file("api.pem"), file("api-key.pem"));
    let mut env: Vec<(&str, &str)> = vec![
        ("STRONGBOX_API__VAULT__URL", url.as_str()),
        ("STRONGBOX_API__VAULT__CA", ca.as_str()),
        ("STRONGBOX_API__VAULT__CERT", cert.as_str()),
        ("STRONGBOX_API__VAULT__KEY", key.as_str()),
    ];
    env.extend_from_slice(extra);
    spawn_api(db, &env).await
}

impl TestApi {
    /// Creates a workspace and returns its all-powerful root key.
    pub async fn workspace(&self, name: &str) -> String {
        strongbox_api::bootstrap(&self.database, name).await.unwrap().root_key
    }

    /// `POST /v2/<call>` with `root_key` as Bearer; returns status and JSON body.
    pub async fn call(&self, root_key: &str, call: &str, body: Value) -> (u16, Value) {
        let response = crate::http_client()
            .post(format!("{}/v2/{call}", self.url))
            .bearer_auth(root_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A call that must succeed; returns `data`.
    pub async fn ok(&self, root_key: &str, call: &str, body: Value) -> Value {
        let (status, response) = self.call(root_key, call, body).await;
        assert_eq!(status, 200, "{call}: {response}");
        assert!(response["meta"]["requestId"].as_str().unwrap().starts_with("req_"), "{response}");
        response["data"].clone()
    }

    /// Creates an API and returns its id.
    pub async fn create_api(&self, root_key: &str, name: &str) -> String {
        self.ok(root_key, "apis.createApi", json!({"name": name})).await["apiId"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Creates a key with `extra` fields and returns (keyId, key).
    pub async fn create_key(&self, root_key: &str, api_id: &str, extra: Value) -> (String, String) {
        let mut body = json!({"apiId": api_id});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let data = self.ok(root_key, "keys.createKey", body).await;
        (data["keyId"].as_str().unwrap().to_owned(), data["key"].as_str().unwrap().to_owned())
    }

    /// Verifies `key` and returns `data`.
    pub async fn verify(&self, root_key: &str, key: &str, extra: Value) -> Value {
        let mut body = json!({"key": key});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        self.ok(root_key, "keys.verifyKey", body).await
    }
}

/// A running in-process vault replica.
pub struct TestVault {
    /// Base URL of the mTLS listener (`https://localhost:<port>`).
    pub url: String,
    /// Base URL of the ops listener.
    pub ops_url: String,
    /// The certificates it trusts and presents.
    pub pki: Arc<TestPki>,
    /// The replica's service object.
    pub vault: Arc<strongbox_vault::service::Vault>,
    /// Cancel to stop it gracefully.
    pub shutdown: CancellationToken,
    /// Resolves when `run_until_stopped` returns.
    pub task: JoinHandle<anyhow::Result<()>>,
}

/// The server key tests initialize vaults with.
pub const SERVER_KEY: &str = "test-server-key-0123456789";

/// Namespace variables for a vault on `db` with `pki`'s certificates and cheap argon2.
pub fn vault_env(db: &TestDb, pki: &TestPki) -> Vec<(String, String)> {
    let mut env = base_env("STRONGBOX_VAULT", db);
    let file = |name: &str| pki.path(name).display().to_string();
    env.extend([
        ("STRONGBOX_VAULT__TLS__CERT".to_owned(), file("vault.pem")),
        ("STRONGBOX_VAULT__TLS__KEY".to_owned(), file("vault-key.pem")),
        ("STRONGBOX_VAULT__TLS__CLIENT_CA".to_owned(), file("ca.pem")),
        ("STRONGBOX_VAULT__TLS__TRUST_DOMAIN".to_owned(), crate::pki::TRUST_DOMAIN.to_owned()),
        // The hierarchy does not depend on the cost; tests keep argon2 cheap.
        ("STRONGBOX_VAULT__UNLOCK__ARGON2__M_KIB".to_owned(), "256".to_owned()),
        ("STRONGBOX_VAULT__UNLOCK__ARGON2__T".to_owned(), "1".to_owned()),
        ("STRONGBOX_VAULT__UNLOCK__ARGON2__P".to_owned(), "1".to_owned()),
        // Cheap argon2 keeps the suite fast; the floor is waived for tests only.
        ("STRONGBOX_VAULT__KDF__ALLOW_WEAK".to_owned(), "true".to_owned()),
    ]);
    env
}

/// Builds and runs a vault with a fresh PKI on `db`.
pub async fn spawn_vault(db: &TestDb, extra: &[(&str, &str)]) -> TestVault {
    spawn_vault_with(db, TestPki::new(), extra).await
}

/// Builds and runs a vault replica with `pki` on `db`; `extra` adds or overrides variables.
pub async fn spawn_vault_with(db: &TestDb, pki: Arc<TestPki>, extra: &[(&str, &str)]) -> TestVault {
    let sources: ConfigSources = strongbox_vault::config::VaultConfig::sources()
        .env(vault_env(db, &pki))
        .env(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = strongbox_vault::config::VaultConfig::from_sources(&sources).unwrap();
    let app = strongbox_vault::startup::Application::build(config).await.unwrap();
    let addr = app.main_addr().unwrap();
    let ops = app.ops_addr().unwrap();
    let shutdown = app.shutdown_token();
    let vault = app.vault();
    let task = tokio::spawn(app.run_until_stopped());
    TestVault {
        url: format!("https://localhost:{}", addr.port()),
        ops_url: format!("http://{ops}"),
        pki,
        vault,
        shutdown,
        task,
    }
}

impl TestVault {
    /// Sends a request as `role` and returns the status and JSON body (`Null` if none).
    pub async fn call(
        &self,
        role: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        send(self.pki.client(role), method, &format!("{}{path}", self.url), body).await
    }

    /// `POST path` as `role`.
    pub async fn post(&self, role: &str, path: &str, body: Value) -> (u16, Value) {
        self.call(role, reqwest::Method::POST, path, Some(body)).await
    }

    /// `GET /v1/sys/status` as the operator.
    pub async fn status(&self) -> Value {
        let (status, body) =
            self.call("operator", reqwest::Method::GET, "/v1/sys/status", None).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Initializes with [`SERVER_KEY`], asserting success.
    pub async fn initialize(&self) {
        let (status, body) =
            self.post("operator", "/v1/sys/initialize", json!({"key": SERVER_KEY})).await;
        assert_eq!(status, 200, "{body}");
    }

    /// Unlocks with `key`, returning the status and body.
    pub async fn unlock(&self, key: &str) -> (u16, Value) {
        self.post("operator", "/v1/sys/unlock", json!({"key": key})).await
    }

    /// Encrypts `plaintexts` (as UTF-8) for `keyring` with context `ctx-<i>`, asserting success.
    pub async fn encrypt(&self, keyring: &str, plaintexts: &[&str]) -> Vec<(String, i64)> {
        use base64::Engine as _;
        let items: Vec<Value> = plaintexts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                json!({"plaintext": base64::engine::general_purpose::STANDARD.encode(p), "context": format!("ctx-{i}")})
            })
            .collect();
        let (status, body) =
            self.post("api", "/v1/encrypt", json!({"keyring": keyring, "items": items})).await;
        assert_eq!(status, 200, "{body}");
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (i["ciphertext"].as_str().unwrap().to_owned(), i["dek_version"].as_i64().unwrap())
            })
            .collect()
    }

    /// Decrypts `(ciphertext, context)` pairs; each item is `Ok(plaintext)` or `Err(code)`.
    pub async fn decrypt(
        &self,
        keyring: &str,
        items: &[(String, String)],
    ) -> Vec<Result<String, String>> {
        use base64::Engine as _;
        let items: Vec<Value> =
            items.iter().map(|(c, ctx)| json!({"ciphertext": c, "context": ctx})).collect();
        let (status, body) =
            self.post("api", "/v1/decrypt", json!({"keyring": keyring, "items": items})).await;
        assert_eq!(status, 200, "{body}");
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| match i["plaintext"].as_str() {
                Some(p) => Ok(String::from_utf8(
                    base64::engine::general_purpose::STANDARD.decode(p).unwrap(),
                )
                .unwrap()),
                None => Err(i["error"]["code"].as_str().unwrap().to_owned()),
            })
            .collect()
    }
}

/// Sends a request and returns the status and JSON body (`Null` when the body is not JSON).
pub async fn send(
    client: reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
