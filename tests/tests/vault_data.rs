//! The vault's data plane and keyring administration: batches with per-item errors, rotation,
//! retirement, trim and crypto-shredding, and replicas racing on a keyring's first use.

use reqwest::Method;
use serde_json::json;
use strongbox_tests::{SERVER_KEY, TestDb, TestVault, spawn_vault, spawn_vault_with};

async fn unlocked_vault(db: &TestDb) -> TestVault {
    let vault = spawn_vault(db, &[]).await;
    vault.initialize().await;
    vault
}

fn ctx(i: usize) -> String {
    format!("ctx-{i}")
}

#[tokio::test]
async fn a_batch_round_trips_and_each_item_is_bound_to_its_context() {
    let db = TestDb::new().await;
    let vault = unlocked_vault(&db).await;
    let plaintexts: Vec<String> = (0..200).map(|i| format!("sk_live_{i:04}")).collect();
    let refs: Vec<&str> = plaintexts.iter().map(String::as_str).collect();
    let sealed = vault.encrypt("ws_batch", &refs).await;
    assert_eq!(sealed.len(), 200);
    assert!(sealed.iter().all(|(_, v)| *v == 1));
    let items: Vec<(String, String)> =
        sealed.iter().enumerate().map(|(i, (c, _))| (c.clone(), ctx(i))).collect();
    let opened = vault.decrypt("ws_batch", &items).await;
    assert_eq!(opened, plaintexts.iter().cloned().map(Ok).collect::<Vec<_>>());
    // No ciphertext contains its plaintext, and all differ.
    let mut unique: Vec<&String> = sealed.iter().map(|(c, _)| c).collect();
    unique.dedup();
    assert_eq!(unique.len(), 200);
}

#[tokio::test]
async fn one_bad_item_never_fails_the_others() {
    let db = TestDb::new().await;
    let vault = unlocked_vault(&db).await;
    let sealed = vault.encrypt("ws_items", &["alpha", "beta"]).await;
    let good = sealed[0].0.clone();
    let mut tampered: Vec<u8> = sealed[1].0.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let opened = vault
        .decrypt(
            "ws_items",
            &[
                (good.clone(), ctx(0)),
                (tampered, ctx(1)),
                (sealed[1].0.clone(), ctx(0)), // moved to another key's context
                ("not-a-ciphertext".into(), ctx(0)),
                (good.clone(), ctx(0)),
            ],
        )
        .await;
    assert_eq!(
        opened,
        vec![
            Ok("alpha".to_owned()),
            Err("DECRYPTION_FAILED".to_owned()),
            Err("DECRYPTION_FAILED".to_owned()),
            Err("MALFORMED_CIPHERTEXT".to_owned()),
            Ok("alpha".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_ciphertext_does_not_open_under_another_keyring() {
    let db = TestDb::new().await;
    let vault = unlocked_vault(&db).await;
    let sealed = vault.encrypt("ws_tenant_a", &["secret-of-a"]).await;
    vault.encrypt("ws_tenant_b", &["secret-of-b"]).await;
    let opened = vault.decrypt("ws_tenant_b", &[(sealed[0].0.clone(), ctx(0))]).await;
    assert_eq!(opened, vec![Err("DECRYPTION_FAILED".to_owned())]);
    let (status, body) = vault
        .post("api", "/v1/decrypt", json!({"keyring": "ws_never_used", "items": [{"ciphertext": sealed[0].0, "context": "ctx-0"}]}))
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("KEYRING_NOT_FOUND")));
}

#[tokio::test]
async fn rotation_retirement_and_trim_move_versions_forward() {
    let db = TestDb::new().await;
    let vault = unlocked_vault(&db).await;
    let v1 = vault.encrypt("ws_rot", &["sk_v1"]).await;
    let (status, body) = vault.post("operator", "/v1/keyrings/ws_rot/rotate", json!({})).await;
    assert_eq!((status, body["version"].as_i64()), (200, Some(2)), "{body}");
    let v2 = vault.encrypt("ws_rot", &["sk_v2"]).await;
    assert_eq!(v2[0].1, 2, "new encryptions use the newest version");
    let both = [(v1[0].0.clone(), ctx(0)), (v2[0].0.clone(), ctx(0))];
    assert_eq!(vault.decrypt("ws_rot", &both).await, vec![Ok("sk_v1".into()), Ok("sk_v2".into())]);

    // Rewrap moves v1 forward without the api seeing plaintext; v2 comes back unchanged.
    let items: Vec<serde_json::Value> =
        both.iter().map(|(c, x)| json!({"ciphertext": c, "context": x})).collect();
    let (status, body) =
        vault.post("rewrap", "/v1/rewrap", json!({"keyring": "ws_rot", "items": items})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"][0]["dek_version"], 2);
    assert_eq!(body["items"][1]["ciphertext"].as_str(), Some(v2[0].0.as_str()));
    assert!(!body.to_string().contains("plaintext"));
    let rewrapped = body["items"][0]["ciphertext"].as_str().unwrap().to_owned();

    // Retire v1: it stops decrypting, reversibly.
    let (status, body) = vault
        .post("operator", "/v1/keyrings/ws_rot/config", json!({"min_decryption_version": 2}))
        .await;
    assert_eq!((status, body["min_decryption_version"].as_i64()), (200, Some(2)));
    let retired =
        vault.decrypt("ws_rot", &[(v1[0].0.clone(), ctx(0)), (rewrapped.clone(), ctx(0))]).await;
    assert_eq!(retired, vec![Err("VERSION_RETIRED".into()), Ok("sk_v1".into())]);
    vault
        .post("operator", "/v1/keyrings/ws_rot/config", json!({"min_decryption_version": 1}))
        .await;
    assert_eq!(
        vault.decrypt("ws_rot", &[(v1[0].0.clone(), ctx(0))]).await,
        vec![Ok("sk_v1".into())]
    );

    // Trim makes it permanent.
    vault
        .post("operator", "/v1/keyrings/ws_rot/config", json!({"min_decryption_version": 2}))
        .await;
    let (status, body) = vault.post("operator", "/v1/keyrings/ws_rot/trim", json!({})).await;
    assert_eq!((status, body["trimmed_versions"].clone()), (200, json!([1])));
    assert_eq!(
        vault.decrypt("ws_rot", &[(v1[0].0.clone(), ctx(0))]).await,
        vec![Err("VERSION_DESTROYED".into())]
    );
    let (status, body) = vault
        .post("operator", "/v1/keyrings/ws_rot/config", json!({"min_decryption_version": 1}))
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("INVALID_VERSION")));
    let (_, described) = vault.call("operator", Method::GET, "/v1/keyrings/ws_rot", None).await;
    assert_eq!(described["versions"].as_array().unwrap().len(), 1);
    assert_eq!(described["trimmed_below"], 2);
}

#[tokio::test]
async fn a_version_above_latest_is_not_found_and_min_cannot_pass_latest() {
    let db = TestDb::new().await;
    let vault = unlocked_vault(&db).await;
    vault.encrypt("ws_bounds", &["x"]).await;
    let (status, body) = vault
        .post("operator", "/v1/keyrings/ws_bounds/config", json!({"min_decryption_version": 2}))
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("INVALID_VERSION")));
    let (status, body) = vault.post("operator", "/v1/keyrings/ws_nowhere/rotate", json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("KEYRING_NOT_FOUND")));
}

#[tokio::test]
async fn rotating_all_keyrings_rotates_each_once() {
    let db = TestDb::new().await;
    let vault = unlocked_vault(&db).await;
    for ws in ["ws_all_a", "ws_all_b", "ws_all_c"] {
        vault.encrypt(ws, &["x"]).await;
    }
    let (status, body) = vault.post("operator", "/v1/keyrings/rotate", json!({})).await;
    assert_eq!(status, 200);
    let mut rotated: Vec<(String, i64)> = body["keyrings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["keyring"].as_str().unwrap().to_owned(), r["version"].as_i64().unwrap()))
        .collect();
    rotated.sort();
    assert_eq!(
        rotated,
        vec![("ws_all_a".into(), 2), ("ws_all_b".into(), 2), ("ws_all_c".into(), 2)]
    );
}

#[tokio::test]
async fn crypto_shredding_a_keyring_makes_its_data_unrecoverable_for_good() {
    let db = TestDb::new().await;
    let vault = unlocked_vault(&db).await;
    let sealed = vault.encrypt("ws_shred", &["sk_doomed"]).await;
    let keep = vault.encrypt("ws_keep", &["sk_kept"]).await;
    let (status, body) =
        vault.call("operator", Method::DELETE, "/v1/keyrings/ws_shred", None).await;
    assert_eq!((status, body["deleted"].clone()), (200, json!(true)), "{body}");

    let (status, body) = vault
        .post("api", "/v1/decrypt", json!({"keyring": "ws_shred", "items": [{"ciphertext": sealed[0].0, "context": "ctx-0"}]}))
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (410, Some("KEYRING_DELETED")));
    // The tombstone stops the name from being silently reused.
    let (status, body) = vault
        .post(
            "api",
            "/v1/encrypt",
            json!({"keyring": "ws_shred", "items": [{"plaintext": "eA==", "context": "c"}]}),
        )
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (410, Some("KEYRING_DELETED")));
    // No DEK row remains, and other keyrings are untouched.
    let client = db.client().await;
    let rows: i64 = client
        .query_one("SELECT count(*) FROM deks WHERE keyring = 'ws_shred'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
    assert_eq!(
        vault.decrypt("ws_keep", &[(keep[0].0.clone(), ctx(0))]).await,
        vec![Ok("sk_kept".into())]
    );
}

#[tokio::test]
async fn a_shred_on_one_replica_is_honoured_by_the_other_at_once() {
    let db = TestDb::new().await;
    let a = unlocked_vault(&db).await;
    let b = spawn_vault_with(&db, a.pki.clone(), &[]).await;
    assert_eq!(b.unlock(SERVER_KEY).await.0, 200);
    let sealed = a.encrypt("ws_two_replicas", &["sk_x"]).await;
    // b has the DEK cached after this.
    assert_eq!(
        b.decrypt("ws_two_replicas", &[(sealed[0].0.clone(), ctx(0))]).await,
        vec![Ok("sk_x".into())]
    );
    a.call("operator", Method::DELETE, "/v1/keyrings/ws_two_replicas", None).await;
    let (status, _) = b
        .post("api", "/v1/decrypt", json!({"keyring": "ws_two_replicas", "items": [{"ciphertext": sealed[0].0, "context": "ctx-0"}]}))
        .await;
    assert_eq!(status, 410, "the very next call on the other replica refuses");
}

#[tokio::test]
async fn a_retirement_on_one_replica_binds_encryption_on_the_other_at_once() {
    let db = TestDb::new().await;
    let a = unlocked_vault(&db).await;
    let b = spawn_vault_with(&db, a.pki.clone(), &[]).await;
    assert_eq!(b.unlock(SERVER_KEY).await.0, 200);
    b.encrypt("ws_retire", &["x"]).await; // b caches v1
    a.post("operator", "/v1/keyrings/ws_retire/rotate", json!({})).await;
    a.post("operator", "/v1/keyrings/ws_retire/config", json!({"min_decryption_version": 2})).await;
    let sealed = b.encrypt("ws_retire", &["y"]).await;
    assert_eq!(sealed[0].1, 2, "b never encrypts under the retired version");
}

#[tokio::test]
async fn replicas_racing_on_a_first_use_create_one_keyring() {
    let db = TestDb::new().await;
    let a = unlocked_vault(&db).await;
    let b = spawn_vault_with(&db, a.pki.clone(), &[]).await;
    assert_eq!(b.unlock(SERVER_KEY).await.0, 200);
    for round in 0..5 {
        let keyring = format!("ws_race_{round}");
        let (sa, sb) =
            tokio::join!(a.encrypt(&keyring, &["from-a"]), b.encrypt(&keyring, &["from-b"]));
        assert_eq!((sa[0].1, sb[0].1), (1, 1));
        let (_, described) =
            a.call("operator", Method::GET, &format!("/v1/keyrings/{keyring}"), None).await;
        assert_eq!(described["versions"].as_array().unwrap().len(), 1, "{described}");
        let opened =
            a.decrypt(&keyring, &[(sa[0].0.clone(), ctx(0)), (sb[0].0.clone(), ctx(0))]).await;
        assert_eq!(opened, vec![Ok("from-a".into()), Ok("from-b".into())]);
    }
}

#[tokio::test]
async fn concurrent_rotations_never_share_a_version() {
    let db = TestDb::new().await;
    let a = unlocked_vault(&db).await;
    let b = spawn_vault_with(&db, a.pki.clone(), &[]).await;
    assert_eq!(b.unlock(SERVER_KEY).await.0, 200);
    a.encrypt("ws_rotate_race", &["x"]).await;
    let (ra, rb) = tokio::join!(
        a.post("operator", "/v1/keyrings/ws_rotate_race/rotate", json!({})),
        b.post("operator", "/v1/keyrings/ws_rotate_race/rotate", json!({})),
    );
    assert_eq!((ra.0, rb.0), (200, 200));
    let (_, described) = a.call("operator", Method::GET, "/v1/keyrings/ws_rotate_race", None).await;
    let versions: Vec<i64> = described["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    let latest = described["latest_version"].as_i64().unwrap();
    assert_eq!(versions, (1..=latest).collect::<Vec<_>>(), "versions are dense and unique");
    assert!(
        ra.1["version"].as_i64().unwrap() <= latest && rb.1["version"].as_i64().unwrap() <= latest
    );
}

#[tokio::test]
async fn a_dek_whose_encryption_budget_is_spent_is_rotated_by_the_vault() {
    let db = TestDb::new().await;
    let vault = unlocked_vault(&db).await;
    vault.encrypt("ws_budget", &["first"]).await;
    // Pretend v1 has sealed almost 2^31 messages (as other replicas' leases would record).
    let client = db.client().await;
    client
        .execute("UPDATE deks SET encryptions_leased = 2147483640 WHERE keyring = 'ws_budget'", &[])
        .await
        .unwrap();
    // A replica without a lease of its own must lease more, cannot, and rotates.
    let other = spawn_vault_with(&db, vault.pki.clone(), &[]).await;
    assert_eq!(other.unlock(SERVER_KEY).await.0, 200);
    let sealed = other.encrypt("ws_budget", &["second"]).await;
    assert_eq!(sealed[0].1, 2, "the exhausted DEK was replaced");
    let leased: i64 = client
        .query_one(
            "SELECT encryptions_leased FROM deks WHERE keyring = 'ws_budget' AND version = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(leased <= 1 << 31, "the budget is never exceeded: {leased}");
}
