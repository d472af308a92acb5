//! The rewrap job across both services: after a keyring rotation in the vault, stored
//! ciphertexts move to the newest version (never as plaintext), single-flight, with progress in
//! the api database; `--retire` then raises the vault's minimum version.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use strongbox_api::vault_client::{VaultClient, VaultClientConfig};
use strongbox_shared::db::DatabaseConfig;
use strongbox_tests::process::binary;
use strongbox_tests::{TestApi, TestDb, TestVault, eventually, spawn_api_with_vault, spawn_vault};

struct Stack {
    api: TestApi,
    vault: TestVault,
    root: String,
    api_id: String,
    api_db: TestDb,
    _vault_db: TestDb,
}

async fn stack(extra: &[(&str, &str)]) -> Stack {
    let (api_db, vault_db) = (TestDb::new().await, TestDb::new().await);
    let vault = spawn_vault(&vault_db, &[]).await;
    vault.initialize().await;
    let api = spawn_api_with_vault(&api_db, &vault, extra).await;
    let root = api.workspace("acme").await;
    let api_id = api.create_api(&root, "rewrap").await;
    api.ok(&root, "apis.updateApi", json!({"apiId": api_id, "storeEncryptedKeys": true})).await;
    Stack { api, vault, root, api_id, api_db, _vault_db: vault_db }
}

fn client(vault: &TestVault, role: &str) -> VaultClient {
    VaultClient::new(&VaultClientConfig {
        url: vault.url.clone(),
        ca: vault.pki.path("ca.pem"),
        cert: vault.pki.path(&format!("{role}.pem")),
        key: vault.pki.path(&format!("{role}-key.pem")),
        connect_timeout_ms: 1000,
        request_timeout_ms: 10_000,
        retries: 1,
        breaker_failures: 5,
        breaker_cooldown_ms: 1000,
        reload_interval_seconds: 60,
    })
    .unwrap()
}

async fn metrics(api: &TestApi) -> String {
    strongbox_tests::http_client()
        .get(format!("{}/metrics", api.ops_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

impl Stack {
    async fn keys(&self, n: usize) -> Vec<(String, String)> {
        let mut keys = Vec::new();
        for _ in 0..n {
            keys.push(
                self.api.create_key(&self.root, &self.api_id, json!({"recoverable": true})).await,
            );
        }
        keys
    }

    async fn keyring(&self) -> String {
        self.api_db
            .client()
            .await
            .query_one("SELECT DISTINCT keyring FROM encrypted_keys", &[])
            .await
            .unwrap()
            .get(0)
    }

    async fn versions(&self) -> Vec<i32> {
        let rows = self
            .api_db
            .client()
            .await
            .query("SELECT dek_version FROM encrypted_keys ORDER BY key_id", &[])
            .await
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }

    async fn all_recover(&self, keys: &[(String, String)]) {
        for (id, key) in keys {
            let data =
                self.api.ok(&self.root, "keys.getKey", json!({"keyId": id, "decrypt": true})).await;
            assert_eq!(data["plaintext"].as_str(), Some(key.as_str()));
        }
    }
}

#[tokio::test]
async fn rewrap_moves_every_stored_key_forward_and_retire_closes_the_old_version() {
    let s = stack(&[("STRONGBOX_API__REWRAP__INTERVAL_MS", "0")]).await;
    let keys = s.keys(23).await;
    let keyring = s.keyring().await;
    let old_copy: String = s
        .api_db
        .client()
        .await
        .query_one("SELECT ciphertext FROM encrypted_keys LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        s.vault.post("operator", &format!("/v1/keyrings/{keyring}/rotate"), json!({})).await.0,
        200
    );

    let database = DatabaseConfig::from_url(s.api_db.url());
    let mut seen = Vec::new();
    let mut progress = |k: &str, done: u64, total: i64| seen.push((k.to_owned(), done, total));
    let outcomes = strongbox_api::rewrap::run(
        &database,
        &client(&s.vault, "rewrap"),
        None,
        5,
        true,
        &mut progress,
    )
    .await
    .unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!((outcomes[0].moved, outcomes[0].remaining, outcomes[0].target_version), (23, 0, 2));
    assert_eq!(s.versions().await, vec![2; 23]);
    assert_eq!(seen.len(), 5, "five batches of at most 5 rows");
    assert_eq!(seen.last().unwrap().1, 23);
    let progress_row = s
        .api_db
        .client()
        .await
        .query_one("SELECT rows_done, finished_at IS NOT NULL FROM rewrap_progress", &[])
        .await
        .unwrap();
    assert_eq!((progress_row.get::<_, i64>(0), progress_row.get::<_, bool>(1)), (23, true));
    // A rewrap of another api database on the same server is not this one's.
    let elsewhere = TestDb::new().await;
    let other = elsewhere.client().await;
    other.execute("SELECT pg_advisory_lock($1)", &[&strongbox_api::rewrap::LOCK]).await.unwrap();
    let metrics = metrics(&s.api).await;
    assert!(metrics.contains("strongbox_rewrap_rows_done 23\n"), "{metrics}");
    assert!(metrics.contains("strongbox_rewrap_rows_remaining 0\n"), "{metrics}");
    assert!(metrics.contains("strongbox_rewrap_running 0\n"), "{metrics}");
    assert!(!metrics.contains(&keyring), "no workspace label");
    s.all_recover(&keys).await;

    let retired = strongbox_api::rewrap::retire(
        &database,
        &client(&s.vault, "rewrap"),
        &client(&s.vault, "operator"),
        &outcomes,
    )
    .await
    .unwrap();
    assert_eq!(retired, vec![(keyring.clone(), 2)]);
    let opened = s.vault.decrypt(&keyring, &[(old_copy, "x".to_owned())]).await;
    assert_eq!(opened, vec![Err("VERSION_RETIRED".to_owned())]);
    s.all_recover(&keys).await;
}

#[tokio::test]
async fn retire_refuses_while_rows_still_depend_on_an_old_version() {
    let s = stack(&[("STRONGBOX_API__REWRAP__INTERVAL_MS", "0")]).await;
    s.keys(3).await;
    let keyring = s.keyring().await;
    s.vault.post("operator", &format!("/v1/keyrings/{keyring}/rotate"), json!({})).await;
    let outcome = strongbox_api::rewrap::Outcome {
        keyring: keyring.clone(),
        target_version: 2,
        moved: 0,
        failed: 0,
        remaining: 3,
    };
    let database = DatabaseConfig::from_url(s.api_db.url());
    let err = strongbox_api::rewrap::retire(
        &database,
        &client(&s.vault, "rewrap"),
        &client(&s.vault, "operator"),
        &[outcome],
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("still below"), "{err}");
    let (_, described) =
        s.vault.call("operator", Method::GET, &format!("/v1/keyrings/{keyring}"), None).await;
    assert_eq!(described["min_decryption_version"], 1, "nothing was retired");
}

#[tokio::test]
async fn a_second_rewrap_waits_or_says_so() {
    let s = stack(&[("STRONGBOX_API__REWRAP__INTERVAL_MS", "0")]).await;
    s.keys(2).await;
    let holder = s.api_db.client().await;
    holder.execute("SELECT pg_advisory_lock($1)", &[&0x5342_5257_5250_0001i64]).await.unwrap();
    let database = DatabaseConfig::from_url(s.api_db.url());
    let mut quiet = |_: &str, _: u64, _: i64| {};
    assert!(
        metrics(&s.api).await.contains("strongbox_rewrap_running 1\n"),
        "progress shows a running rewrap"
    );
    let busy = strongbox_api::rewrap::run(
        &database,
        &client(&s.vault, "rewrap"),
        None,
        10,
        false,
        &mut quiet,
    )
    .await;
    assert!(matches!(busy, Err(strongbox_api::rewrap::RewrapError::Busy)), "{busy:?}");
    drop(holder);
    let mut quiet = |_: &str, _: u64, _: i64| {};
    strongbox_api::rewrap::run(&database, &client(&s.vault, "rewrap"), None, 10, true, &mut quiet)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_api_servers_rewrap_in_the_background_while_serving() {
    let s = stack(&[("STRONGBOX_API__REWRAP__INTERVAL_MS", "100")]).await;
    let keys = s.keys(12).await;
    let keyring = s.keyring().await;
    s.vault.post("operator", &format!("/v1/keyrings/{keyring}/rotate"), json!({})).await;
    eventually(Duration::from_secs(20), "every row on version 2", || async {
        (s.versions().await == vec![2; 12]).then_some(())
    })
    .await;
    s.all_recover(&keys).await;
}

#[tokio::test]
async fn the_rewrap_command_reads_the_env_file_keys_and_retires() {
    let s = stack(&[("STRONGBOX_API__REWRAP__INTERVAL_MS", "0")]).await;
    let keys = s.keys(4).await;
    let keyring = s.keyring().await;
    s.vault.post("operator", &format!("/v1/keyrings/{keyring}/rotate"), json!({})).await;
    let output = tokio::process::Command::new(binary("strongbox-api"))
        .args(["rewrap", "--retire", "--workspace", "acme"])
        .env_clear()
        .env("STRONGBOX_API_DATABASE_URL", s.api_db.url())
        .env("STRONGBOX_VAULT_URL", &s.vault.url)
        .env("STRONGBOX_TLS_CA", s.vault.pki.path("ca.pem"))
        .env("STRONGBOX_API_CLIENT_CERT", s.vault.pki.path("api.pem"))
        .env("STRONGBOX_API_CLIENT_KEY", s.vault.pki.path("api-key.pem"))
        .env("STRONGBOX_OPERATOR_CERT", s.vault.pki.path("operator.pem"))
        .env("STRONGBOX_OPERATOR_KEY", s.vault.pki.path("operator-key.pem"))
        .output()
        .await
        .unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("moved 4 row(s) to version 2")
            && stdout.contains("retired every version below 2"),
        "{stdout}"
    );
    assert!(stderr.contains("4/4 rows (100%)"), "progress: {stderr}");
    let (_, described) =
        s.vault.call("operator", Method::GET, &format!("/v1/keyrings/{keyring}"), None).await;
    assert_eq!(described["min_decryption_version"], 2);
    s.all_recover(&keys).await;
}

#[tokio::test]
async fn with_two_vault_and_two_api_replicas_a_rotation_is_honoured_everywhere_and_rewrapped_once()
{
    use strongbox_tests::{SERVER_KEY, spawn_vault_with};
    let s = stack(&[("STRONGBOX_API__REWRAP__INTERVAL_MS", "100")]).await;
    let vault_b = spawn_vault_with(&s._vault_db, s.vault.pki.clone(), &[]).await;
    assert_eq!(vault_b.unlock(SERVER_KEY).await.0, 200);
    let api_b =
        spawn_api_with_vault(&s.api_db, &vault_b, &[("STRONGBOX_API__REWRAP__INTERVAL_MS", "100")])
            .await;
    let keys = s.keys(15).await;
    let keyring = s.keyring().await;
    // Rotated through replica b; both api replicas notice, the lock lets one of them do it.
    vault_b.post("operator", &format!("/v1/keyrings/{keyring}/rotate"), json!({})).await;
    eventually(Duration::from_secs(20), "every row on version 2", || async {
        (s.versions().await == vec![2; 15]).then_some(())
    })
    .await;
    let done: i64 = s
        .api_db
        .client()
        .await
        .query_one("SELECT rows_done FROM rewrap_progress", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(done, 15, "each row was rewrapped once");
    // New keys made through either api replica use the new version at once.
    let (id, _) = api_b.create_key(&s.root, &s.api_id, json!({"recoverable": true})).await;
    let v: i32 = s
        .api_db
        .client()
        .await
        .query_one("SELECT dek_version FROM encrypted_keys WHERE key_id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 2);
    s.all_recover(&keys).await;
    for (id, key) in &keys {
        let data = api_b.ok(&s.root, "keys.getKey", json!({"keyId": id, "decrypt": true})).await;
        assert_eq!(data["plaintext"].as_str(), Some(key.as_str()));
    }
}

#[tokio::test]
async fn a_rewrap_whose_vault_dies_resumes_once_the_vault_is_back() {
    use strongbox_tests::{SERVER_KEY, spawn_vault_with};
    let s = stack(&[("STRONGBOX_API__REWRAP__INTERVAL_MS", "0")]).await;
    let keys = s.keys(10).await;
    let keyring = s.keyring().await;
    s.vault.post("operator", &format!("/v1/keyrings/{keyring}/rotate"), json!({})).await;
    let pki = s.vault.pki.clone();
    s.vault.shutdown.cancel();
    let database = DatabaseConfig::from_url(s.api_db.url());
    let mut quiet = |_: &str, _: u64, _: i64| {};
    let failed = strongbox_api::rewrap::run(
        &database,
        &client(&s.vault, "rewrap"),
        None,
        4,
        true,
        &mut quiet,
    )
    .await;
    assert!(matches!(failed, Err(strongbox_api::rewrap::RewrapError::Vault(_))), "{failed:?}");
    assert_eq!(s.versions().await, vec![1; 10], "nothing half-done");
    // The vault comes back (a new process on the same database) and is unlocked.
    let back = spawn_vault_with(&s._vault_db, pki, &[]).await;
    assert_eq!(back.unlock(SERVER_KEY).await.0, 200);
    let mut quiet = |_: &str, _: u64, _: i64| {};
    let outcomes =
        strongbox_api::rewrap::run(&database, &client(&back, "rewrap"), None, 4, true, &mut quiet)
            .await
            .unwrap();
    assert_eq!((outcomes[0].moved, outcomes[0].remaining), (10, 0));
    let api = spawn_api_with_vault(&s.api_db, &back, &[]).await;
    for (id, key) in &keys {
        let data = api.ok(&s.root, "keys.getKey", json!({"keyId": id, "decrypt": true})).await;
        assert_eq!(data["plaintext"].as_str(), Some(key.as_str()));
    }
}
