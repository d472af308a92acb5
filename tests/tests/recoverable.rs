//! Recoverable keys end to end: api ↔ vault over real mTLS, both on real Postgres.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use strongbox_tests::{TestApi, TestDb, TestVault, spawn_api_with_vault, spawn_vault};

struct Stack {
    api: TestApi,
    vault: TestVault,
    root: String,
    api_id: String,
    _dbs: (TestDb, TestDb),
}

async fn stack() -> Stack {
    let (api_db, vault_db) = (TestDb::new().await, TestDb::new().await);
    let vault = spawn_vault(&vault_db, &[]).await;
    vault.initialize().await;
    let api = spawn_api_with_vault(&api_db, &vault, &[]).await;
    let root = api.workspace("acme").await;
    let api_id = api.create_api(&root, "recovery").await;
    api.ok(&root, "apis.updateApi", json!({"apiId": api_id, "storeEncryptedKeys": true})).await;
    Stack { api, vault, root, api_id, _dbs: (api_db, vault_db) }
}

impl Stack {
    async fn recoverable(&self) -> (String, String) {
        self.api
            .create_key(&self.root, &self.api_id, json!({"recoverable": true, "prefix": "rk"}))
            .await
    }

    async fn get_plaintext(&self, key_id: &str) -> (u16, Value) {
        self.api.call(&self.root, "keys.getKey", json!({"keyId": key_id, "decrypt": true})).await
    }

    async fn api_db(&self) -> tokio_postgres::Client {
        self._dbs.0.client().await
    }
}

#[tokio::test]
async fn a_recoverable_key_comes_back_with_decrypt_and_every_decrypt_is_audited() {
    let s = stack().await;
    let (key_id, key) = s.recoverable().await;
    let (plain_id, _) = s.api.create_key(&s.root, &s.api_id, json!({})).await;
    let (status, body) = s.get_plaintext(&key_id).await;
    assert_eq!((status, body["data"]["plaintext"].as_str()), (200, Some(key.as_str())), "{body}");
    let got = s.api.ok(&s.root, "keys.getKey", json!({"keyId": key_id})).await;
    assert!(got.get("plaintext").is_none(), "no plaintext without decrypt");
    let listed =
        s.api.ok(&s.root, "apis.listKeys", json!({"apiId": s.api_id, "decrypt": true})).await;
    for k in listed.as_array().unwrap() {
        if k["keyId"] == key_id.as_str() {
            assert_eq!(k["plaintext"].as_str(), Some(key.as_str()));
        } else {
            assert_eq!(k["keyId"], plain_id.as_str());
            assert!(k.get("plaintext").is_none(), "plain keys simply have no plaintext");
        }
    }
    let v1: Value = strongbox_tests::http_client()
        .get(format!("{}/v1/keys.getKey?keyId={key_id}&decrypt=true", s.api.url))
        .bearer_auth(&s.root)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v1["plaintext"].as_str(), Some(key.as_str()));
    assert_eq!(s.api.verify(&s.root, &key, json!({})).await["valid"], true);

    let db = s.api_db().await;
    let audit = db
        .query("SELECT root_key_id, request_id, key_ids FROM decrypt_audit ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(audit.len(), 3, "getKey, listKeys and v1 getKey each wrote a row");
    for row in &audit {
        assert!(row.get::<_, String>(0).starts_with("rk_"));
        assert!(row.get::<_, String>(1).starts_with("req_"));
        assert_eq!(row.get::<_, Vec<String>>(2), vec![key_id.clone()]);
    }
    let row = db
        .query_one("SELECT keyring, ciphertext FROM encrypted_keys WHERE key_id = $1", &[&key_id])
        .await
        .unwrap();
    assert!(row.get::<_, String>(0).starts_with("ws_"), "the keyring is the workspace id");
    assert!(!row.get::<_, String>(1).contains(&key["rk_".len()..]));
}

#[tokio::test]
async fn recovery_needs_its_permissions_and_the_opt_in() {
    let s = stack().await;
    let (key_id, _) = s.recoverable().await;
    let limited = s
        .api
        .ok(&s.root, "rootKeys.createKey", json!({"permissions": [format!("api.{}.create_key", s.api_id), format!("api.{}.read_key", s.api_id)]}))
        .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = s
        .api
        .call(&limited, "keys.createKey", json!({"apiId": s.api_id, "recoverable": true}))
        .await;
    assert_eq!(status, 403, "encrypt_key is needed");
    let (status, _) =
        s.api.call(&limited, "keys.getKey", json!({"keyId": key_id, "decrypt": true})).await;
    assert_eq!(status, 403, "decrypt_key is needed");
    let (status, _) =
        s.api.call(&limited, "apis.listKeys", json!({"apiId": s.api_id, "decrypt": true})).await;
    assert_eq!(status, 403);
    // Opting out stops new recoverable keys; old ones still decrypt.
    s.api
        .ok(&s.root, "apis.updateApi", json!({"apiId": s.api_id, "storeEncryptedKeys": false}))
        .await;
    let (status, body) = s
        .api
        .call(&s.root, "keys.createKey", json!({"apiId": s.api_id, "recoverable": true}))
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (412, Some("PRECONDITION_FAILED")));
    assert_eq!(s.get_plaintext(&key_id).await.0, 200);
}

#[tokio::test]
async fn reroll_keeps_a_key_recoverable_and_delete_removes_the_ciphertext() {
    let s = stack().await;
    let (key_id, _) = s.recoverable().await;
    let rolled =
        s.api.ok(&s.root, "keys.rerollKey", json!({"keyId": key_id, "expiration": 0})).await;
    let (new_id, new_key) = (rolled["keyId"].as_str().unwrap(), rolled["key"].as_str().unwrap());
    let (status, body) = s.get_plaintext(new_id).await;
    assert_eq!((status, body["data"]["plaintext"].as_str()), (200, Some(new_key)));
    s.api.ok(&s.root, "keys.deleteKey", json!({"keyId": new_id})).await;
    let rows: i64 = s
        .api_db()
        .await
        .query_one("SELECT count(*) FROM encrypted_keys", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "no ciphertext outlives its key");
}

#[tokio::test]
async fn a_locked_or_stopped_vault_fails_recovery_fast_while_verification_and_plain_keys_go_on() {
    let s = stack().await;
    let (key_id, key) = s.recoverable().await;
    s.vault.post("operator", "/v1/sys/lock", json!({})).await;

    let started = Instant::now();
    let (status, body) = s
        .api
        .call(&s.root, "keys.createKey", json!({"apiId": s.api_id, "recoverable": true}))
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("VAULT_LOCKED")));
    let (status, body) = s.get_plaintext(&key_id).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("VAULT_LOCKED")));
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(s.api.verify(&s.root, &key, json!({})).await["valid"], true);
    s.api.create_key(&s.root, &s.api_id, json!({})).await;
    let keys: i64 =
        s.api_db().await.query_one("SELECT count(*) FROM keys", &[]).await.unwrap().get(0);
    assert_eq!(keys, 2, "the refused recoverable key left nothing behind");

    s.vault.shutdown.cancel();
    let started = Instant::now();
    for _ in 0..3 {
        let (status, body) = s.get_plaintext(&key_id).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (503, Some("VAULT_UNAVAILABLE")),
            "{body}"
        );
    }
    let (status, _) = s
        .api
        .call(&s.root, "keys.createKey", json!({"apiId": s.api_id, "recoverable": true}))
        .await;
    assert_eq!(status, 503);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(s.api.verify(&s.root, &key, json!({})).await["valid"], true);
    s.api.create_key(&s.root, &s.api_id, json!({})).await;
}

#[tokio::test]
async fn a_shredded_workspace_keyring_makes_its_keys_unrecoverable_but_still_verifiable() {
    let s = stack().await;
    let (key_id, key) = s.recoverable().await;
    let keyring: String =
        s.api_db().await.query_one("SELECT keyring FROM encrypted_keys", &[]).await.unwrap().get(0);
    let (status, _) =
        s.vault.call("operator", Method::DELETE, &format!("/v1/keyrings/{keyring}"), None).await;
    assert_eq!(status, 200);
    let (status, body) = s.get_plaintext(&key_id).await;
    assert_eq!((status, body["error"]["code"].as_str()), (410, Some("KEY_NOT_RECOVERABLE")));
    let listed =
        s.api.ok(&s.root, "apis.listKeys", json!({"apiId": s.api_id, "decrypt": true})).await;
    assert!(listed[0].get("plaintext").is_none());
    assert_eq!(
        s.api.verify(&s.root, &key, json!({})).await["valid"],
        true,
        "verification is unaffected"
    );
}

#[tokio::test]
async fn a_trimmed_version_is_not_recoverable() {
    let s = stack().await;
    let (key_id, _) = s.recoverable().await;
    let keyring: String =
        s.api_db().await.query_one("SELECT keyring FROM encrypted_keys", &[]).await.unwrap().get(0);
    s.vault.post("operator", &format!("/v1/keyrings/{keyring}/rotate"), json!({})).await;
    s.vault
        .post(
            "operator",
            &format!("/v1/keyrings/{keyring}/config"),
            json!({"min_decryption_version": 2}),
        )
        .await;
    s.vault.post("operator", &format!("/v1/keyrings/{keyring}/trim"), json!({})).await;
    let (status, body) = s.get_plaintext(&key_id).await;
    assert_eq!((status, body["error"]["code"].as_str()), (410, Some("KEY_NOT_RECOVERABLE")));
}

#[tokio::test]
async fn another_workspace_cannot_decrypt_list_or_detect_and_moved_ciphertexts_do_not_open() {
    let s = stack().await;
    let (key_a, _) = s.recoverable().await;
    let (key_b, _) = s.recoverable().await;
    let root_b = s.api.workspace("other").await;
    let api_b = s.api.create_api(&root_b, "b").await;
    s.api.ok(&root_b, "apis.updateApi", json!({"apiId": api_b, "storeEncryptedKeys": true})).await;
    let (key_other, _) = s.api.create_key(&root_b, &api_b, json!({"recoverable": true})).await;

    let (status, _) =
        s.api.call(&root_b, "keys.getKey", json!({"keyId": key_a, "decrypt": true})).await;
    assert_eq!(status, 404, "not even detectable");
    let (status, _) =
        s.api.call(&root_b, "apis.listKeys", json!({"apiId": s.api_id, "decrypt": true})).await;
    assert_eq!(status, 404);

    // Copy key A's ciphertext into key B's row (same workspace) and into the other workspace's.
    let db = s.api_db().await;
    db.execute("UPDATE encrypted_keys SET ciphertext = (SELECT ciphertext FROM encrypted_keys WHERE key_id = $1) WHERE key_id = $2", &[&key_a, &key_b]).await.unwrap();
    let (status, body) = s.get_plaintext(&key_b).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (500, Some("KEY_INTEGRITY_ERROR")),
        "bound to its key id"
    );
    db.execute("UPDATE encrypted_keys SET ciphertext = (SELECT ciphertext FROM encrypted_keys WHERE key_id = $1) WHERE key_id = $2", &[&key_a, &key_other]).await.unwrap();
    let (status, body) =
        s.api.call(&root_b, "keys.getKey", json!({"keyId": key_other, "decrypt": true})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (500, Some("KEY_INTEGRITY_ERROR")),
        "bound to its workspace"
    );
    assert_eq!(s.get_plaintext(&key_a).await.0, 200, "the original is untouched");
}

/// A request holds at most one pooled connection at a time: with a pool of one, every decrypting
/// call still answers (holding one connection while waiting for a second would time out).
#[tokio::test]
async fn decrypting_calls_need_only_one_pooled_connection() {
    let (api_db, vault_db) = (TestDb::new().await, TestDb::new().await);
    let vault = spawn_vault(&vault_db, &[]).await;
    vault.initialize().await;
    let api = spawn_api_with_vault(
        &api_db,
        &vault,
        &[
            ("STRONGBOX_API__DATABASE__MAX_CONNECTIONS", "1"),
            ("STRONGBOX_API__DATABASE__ACQUIRE_TIMEOUT_MS", "1000"),
            ("STRONGBOX_API__AUDIT__DECRYPT_RETENTION_DAYS", "0"),
        ],
    )
    .await;
    let root = api.workspace("one-connection").await;
    let api_id = api.create_api(&root, "one").await;
    api.ok(&root, "apis.updateApi", json!({"apiId": api_id, "storeEncryptedKeys": true})).await;
    let (key_id, key) = api.create_key(&root, &api_id, json!({"recoverable": true})).await;
    let listed = api.ok(&root, "apis.listKeys", json!({"apiId": api_id, "decrypt": true})).await;
    assert_eq!(listed[0]["plaintext"], key.as_str());
    let got = api.ok(&root, "keys.getKey", json!({"keyId": key_id, "decrypt": true})).await;
    assert_eq!(got["plaintext"], key.as_str());
    for path in [
        format!("/v1/keys.getKey?keyId={key_id}&decrypt=true"),
        format!("/v1/apis.listKeys?apiId={api_id}&decrypt=true"),
    ] {
        let response = strongbox_tests::http_client()
            .get(format!("{}{path}", api.url))
            .bearer_auth(&root)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.contains(&key), "{path}: {body}");
    }
    // With that one connection taken, a call that needs the database waits out the acquire
    // timeout and answers a retryable 503, not a 500.
    let held = api.pool.get().await.unwrap();
    let (status, body) = api.call(&root, "keys.getKey", json!({"keyId": key_id})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("DATABASE_UNAVAILABLE")),
        "{body}"
    );
    drop(held);
    api.ok(&root, "keys.getKey", json!({"keyId": key_id})).await;
}
