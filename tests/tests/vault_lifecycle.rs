//! The vault lifecycle on real replicas over real mTLS: initialize, unlock, lock, restart,
//! rekey, KEK rotation, root rotation, and the throttling of wrong keys.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use strongbox_tests::{SERVER_KEY, TestDb, eventually, spawn_vault, spawn_vault_with};

#[tokio::test]
async fn status_reports_every_step_of_the_lifecycle() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    let s = vault.status().await;
    assert_eq!(
        (s["initialized"].clone(), s["unlocked"].clone(), s["state"].clone()),
        (json!(false), json!(false), json!("uninitialized"))
    );
    assert_eq!(s["root_version"], serde_json::Value::Null);

    vault.initialize().await;
    let s = vault.status().await;
    assert_eq!(
        (s["initialized"].clone(), s["unlocked"].clone(), s["state"].clone()),
        (json!(true), json!(true), json!("unlocked"))
    );
    assert_eq!((s["root_version"].clone(), s["kek_version"].clone()), (json!(1), json!(1)));
    assert_eq!(s["argon2"]["m_kib"], 256);

    let (status, _) = vault.post("operator", "/v1/sys/lock", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(vault.status().await["state"], "locked");

    assert_eq!(vault.unlock(SERVER_KEY).await.0, 200);
    assert_eq!(vault.status().await["state"], "unlocked");
}

#[tokio::test]
async fn initializing_twice_is_a_conflict() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    vault.initialize().await;
    let (status, body) = vault
        .post("operator", "/v1/sys/initialize", json!({"key": "another-key-0123456789"}))
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("ALREADY_INITIALIZED")));
}

#[tokio::test]
async fn unlock_before_initialize_says_so() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    let (status, body) = vault.unlock(SERVER_KEY).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("NOT_INITIALIZED")));
}

#[tokio::test]
async fn a_wrong_key_is_refused_and_the_right_key_unlocks() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    vault.initialize().await;
    vault.post("operator", "/v1/sys/lock", json!({})).await;
    let (status, body) = vault.unlock("not-the-server-key-at-all").await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("WRONG_KEY")));
    assert!(!body.to_string().contains("not-the-server-key"), "the key is never echoed: {body}");
    assert_eq!(vault.status().await["unlocked"], false);
    assert_eq!(vault.unlock(SERVER_KEY).await.0, 200);
}

#[tokio::test]
async fn short_server_keys_are_refused() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    let (status, body) =
        vault.post("operator", "/v1/sys/initialize", json!({"key": "fifteen-chars!!"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("WEAK_KEY")));
    assert_eq!(vault.status().await["initialized"], false, "nothing was written");
    vault.initialize().await;
    let (status, body) = vault
        .post("operator", "/v1/sys/rekey", json!({"current_key": SERVER_KEY, "new_key": "short"}))
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("WEAK_KEY")));
}

#[tokio::test]
async fn repeated_wrong_keys_from_one_client_are_slowed_down() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[("STRONGBOX_VAULT__UNLOCK__FREE_FAILURES", "3")]).await;
    vault.initialize().await;
    vault.post("operator", "/v1/sys/lock", json!({})).await;
    for _ in 0..3 {
        assert_eq!(vault.unlock("wrong-key-wrong-key-wrong").await.0, 403);
    }
    let response = vault
        .pki
        .client("operator")
        .post(format!("{}/v1/sys/unlock", vault.url))
        .json(&json!({"key": SERVER_KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429, "even the right key waits its turn");
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=300).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TOO_MANY_ATTEMPTS");
    // Once the wait is over the right key works (an awaited deadline, not a guess).
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(vault.unlock(SERVER_KEY).await.0, 200);
}

#[tokio::test]
async fn a_restarted_replica_comes_up_locked() {
    let db = TestDb::new().await;
    let first = spawn_vault(&db, &[]).await;
    first.initialize().await;
    let sealed = first.encrypt("ws_restart", &["sk_before_restart"]).await;
    first.shutdown.cancel();
    first.task.await.unwrap().unwrap();

    let second = spawn_vault_with(&db, first.pki.clone(), &[]).await;
    let s = second.status().await;
    assert_eq!((s["initialized"].clone(), s["unlocked"].clone()), (json!(true), json!(false)));
    let (status, body) = second
        .post("api", "/v1/decrypt", json!({"keyring": "ws_restart", "items": [{"ciphertext": sealed[0].0, "context": "ctx-0"}]}))
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("VAULT_LOCKED")));
    assert_eq!(second.unlock(SERVER_KEY).await.0, 200);
    let opened = second.decrypt("ws_restart", &[(sealed[0].0.clone(), "ctx-0".into())]).await;
    assert_eq!(opened, vec![Ok("sk_before_restart".to_owned())]);
}

#[tokio::test]
async fn after_a_rekey_the_old_key_fails_and_the_new_key_works() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    vault.initialize().await;
    let sealed = vault.encrypt("ws_rekey", &["sk_survives_rekey"]).await;
    let new_key = "the-new-server-key-after-rekey";
    let (status, body) = vault
        .post("operator", "/v1/sys/rekey", json!({"current_key": SERVER_KEY, "new_key": new_key}))
        .await;
    assert_eq!(status, 200, "{body}");
    // Still unlocked, and still serving.
    assert_eq!(vault.status().await["unlocked"], true);
    vault.post("operator", "/v1/sys/lock", json!({})).await;
    assert_eq!(vault.unlock(SERVER_KEY).await.1["error"]["code"], "WRONG_KEY");
    assert_eq!(vault.unlock(new_key).await.0, 200);
    let opened = vault.decrypt("ws_rekey", &[(sealed[0].0.clone(), "ctx-0".into())]).await;
    assert_eq!(opened, vec![Ok("sk_survives_rekey".to_owned())]);
}

#[tokio::test]
async fn a_rekey_with_the_wrong_current_key_changes_nothing() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    vault.initialize().await;
    let (status, body) = vault
        .post(
            "operator",
            "/v1/sys/rekey",
            json!({"current_key": "wrong-current-key-xx", "new_key": "a-new-key-0123456789"}),
        )
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("WRONG_KEY")));
    vault.post("operator", "/v1/sys/lock", json!({})).await;
    assert_eq!(vault.unlock(SERVER_KEY).await.0, 200);
}

#[tokio::test]
async fn concurrent_rekeys_cannot_both_win() {
    let db = TestDb::new().await;
    let a = spawn_vault(&db, &[]).await;
    a.initialize().await;
    let b = spawn_vault_with(&db, a.pki.clone(), &[]).await;
    assert_eq!(b.unlock(SERVER_KEY).await.0, 200);
    let key_a = "new-key-chosen-by-operator-a";
    let key_b = "new-key-chosen-by-operator-b";
    let (ra, rb) = tokio::join!(
        a.post("operator", "/v1/sys/rekey", json!({"current_key": SERVER_KEY, "new_key": key_a})),
        b.post("operator", "/v1/sys/rekey", json!({"current_key": SERVER_KEY, "new_key": key_b})),
    );
    let wins: Vec<&str> =
        [(ra.0, key_a), (rb.0, key_b)].iter().filter(|(s, _)| *s == 200).map(|(_, k)| *k).collect();
    assert_eq!(wins.len(), 1, "exactly one rekey wins: {ra:?} {rb:?}");
    let loser = if ra.0 == 200 { &rb } else { &ra };
    // The loser lost the compare-and-swap (CONFLICT), found the key already changed
    // (WRONG_KEY), or, being the same operator, was told to wait while the other attempt was
    // evaluated (TOO_MANY_ATTEMPTS: one key check per client at a time).
    assert!(
        matches!(
            loser.1["error"]["code"].as_str(),
            Some("CONFLICT" | "WRONG_KEY" | "TOO_MANY_ATTEMPTS")
        ),
        "the loser learns it lost: {loser:?}"
    );
    let (winner_key, loser_key) = if ra.0 == 200 { (key_a, key_b) } else { (key_b, key_a) };
    a.post("operator", "/v1/sys/lock", json!({})).await;
    assert_eq!(a.unlock(loser_key).await.0, 403);
    assert_eq!(a.unlock(SERVER_KEY).await.0, 403);
    assert_eq!(a.unlock(winner_key).await.0, 200);
}

#[tokio::test]
async fn kek_rotation_wraps_new_deks_under_the_new_kek() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    vault.initialize().await;
    let old = vault.encrypt("ws_kek_old", &["sk_under_kek1"]).await;
    let (status, body) = vault.post("operator", "/v1/sys/rotate", json!({})).await;
    assert_eq!((status, body["kek_version"].as_i64()), (200, Some(2)));
    assert_eq!(vault.status().await["kek_version"], 2);
    vault.encrypt("ws_kek_new", &["sk_under_kek2"]).await;
    let (_, described) = vault.call("operator", Method::GET, "/v1/keyrings/ws_kek_new", None).await;
    assert_eq!(described["versions"][0]["kek_version"], 2);
    let (_, described) = vault.call("operator", Method::GET, "/v1/keyrings/ws_kek_old", None).await;
    assert_eq!(described["versions"][0]["kek_version"], 1);
    let opened = vault.decrypt("ws_kek_old", &[(old[0].0.clone(), "ctx-0".into())]).await;
    assert_eq!(opened, vec![Ok("sk_under_kek1".to_owned())]);
}

#[tokio::test]
async fn root_rotation_locks_the_other_replica_and_keeps_every_key() {
    let db = TestDb::new().await;
    let a = spawn_vault(&db, &[]).await;
    a.initialize().await;
    let b = spawn_vault_with(&db, a.pki.clone(), &[]).await;
    assert_eq!(b.unlock(SERVER_KEY).await.0, 200);
    let sealed = a.encrypt("ws_root", &["sk_survives_root_rotation"]).await;

    let (status, body) = a.post("operator", "/v1/sys/rotate-root", json!({})).await;
    assert_eq!((status, body["root_version"].as_i64()), (200, Some(2)), "{body}");
    assert_eq!(a.status().await["unlocked"], true, "the rotating replica stays unlocked");
    eventually(Duration::from_secs(10), "replica b to lock itself", || async {
        (b.status().await["unlocked"] == false).then_some(())
    })
    .await;
    // The same server key unlocks the new root.
    assert_eq!(b.unlock(SERVER_KEY).await.0, 200);
    for replica in [&a, &b] {
        let opened = replica.decrypt("ws_root", &[(sealed[0].0.clone(), "ctx-0".into())]).await;
        assert_eq!(opened, vec![Ok("sk_survives_root_rotation".to_owned())]);
    }
}

/// `seal migrate` between an operator's key and shares: refused without the current authority,
/// with a new seal it cannot make, or with a bad body, and then nothing changes; concurrent
/// migrations cannot both win; a migration keeps every ciphertext.
#[tokio::test]
async fn seal_migrate_moves_between_key_and_shares_in_one_swap() {
    let db = TestDb::new().await;
    let a = spawn_vault(&db, &[]).await;
    a.initialize().await;
    let sealed = a.encrypt("ws_m", &["alpha"]).await;
    let items: Vec<(String, String)> = vec![(sealed[0].0.clone(), "ctx-0".to_owned())];
    let client = db.client().await;
    let generation = || async {
        client.query_one("SELECT generation FROM root_record", &[]).await.unwrap().get::<_, i64>(0)
    };
    let before = generation().await;
    let refused = [
        (
            json!({"to": "shares", "current_key": "wrong-server-key-0000", "new_shares": 3, "new_threshold": 2}),
            403,
            "WRONG_KEY",
        ),
        (json!({"to": "pkcs11", "current_key": SERVER_KEY}), 400, "INVALID_REQUEST"),
        (
            json!({"to": "shares", "current_key": SERVER_KEY, "new_shares": 1, "new_threshold": 1}),
            400,
            "INVALID_REQUEST",
        ),
        (
            json!({"to": "shares", "current_key": SERVER_KEY, "new_shares": 2, "new_threshold": 3}),
            400,
            "INVALID_REQUEST",
        ),
        (json!({"to": "key", "current_key": SERVER_KEY, "new_key": "short"}), 400, "WEAK_KEY"),
        (
            json!({"to": "key", "current_key": SERVER_KEY, "new_key": "x".repeat(20), "key_label": "l"}),
            400,
            "INVALID_REQUEST",
        ),
        (
            json!({"to": "hsm", "current_key": SERVER_KEY, "new_key": "x".repeat(20)}),
            400,
            "INVALID_REQUEST",
        ),
        (
            json!({"to": "key", "recovery_shares": ["sb1-x"], "new_key": "x".repeat(20)}),
            400,
            "INVALID_REQUEST",
        ),
        (
            json!({"to": "key", "current_key": SERVER_KEY, "shares": [], "new_key": "x".repeat(20)}),
            400,
            "INVALID_REQUEST",
        ),
        (json!({"to": "key", "new_key": "x".repeat(20)}), 400, "INVALID_REQUEST"),
        (json!([]), 400, "INVALID_REQUEST"),
    ];
    for (body, status, code) in refused {
        let (got, answer) = a.post("operator", "/v1/sys/seal/migrate", body.clone()).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
    assert_eq!(generation().await, before, "nothing changed");
    assert_eq!(a.status().await["seal"], "key");

    // To shares: the key's holder splits it; the shares are shown once.
    let body =
        json!({"to": "shares", "current_key": SERVER_KEY, "new_shares": 3, "new_threshold": 2});
    let (status, answer) = a.post("operator", "/v1/sys/seal/migrate", body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["seal"], "shares");
    let shares: Vec<String> = answer["shares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(shares.len(), 3);
    assert_eq!(a.status().await["unlocked"], true, "this replica stayed unlocked");
    let (status, body) = a.unlock(SERVER_KEY).await;
    assert_eq!(status, 400, "the vault now wants shares: {body}");

    // Two migrations back to a key at once, from two replicas: exactly one wins.
    let b = spawn_vault_with(&db, a.pki.clone(), &[]).await;
    for share in &shares[..2] {
        let (status, body) = b.post("operator", "/v1/sys/unlock", json!({"share": share})).await;
        assert_eq!(status, 200, "{body}");
    }
    let (key_a, key_b) = ("migrated-key-of-operator-a", "migrated-key-of-operator-b");
    let to_key =
        |key: &str, given: &[String]| json!({"to": "key", "shares": given, "new_key": key});
    let (ra, rb) = tokio::join!(
        a.post("operator", "/v1/sys/seal/migrate", to_key(key_a, &shares[..2])),
        b.post("operator", "/v1/sys/seal/migrate", to_key(key_b, &shares[1..])),
    );
    let wins = [ra.0, rb.0].iter().filter(|s| **s == 200).count();
    assert_eq!(wins, 1, "exactly one migration wins: {ra:?} {rb:?}");
    let loser = if ra.0 == 200 { &rb } else { &ra };
    // The loser lost the compare-and-swap, or read the record after the winner committed: then
    // its shares are of an old split (INVALID_SHARE), or shares for a vault now held by a key
    // (INVALID_REQUEST), or, read between its two reads of the record, they no longer open it
    // (WRONG_KEY); or it was told to wait while the other attempt was evaluated.
    assert!(
        matches!(
            loser.1["error"]["code"].as_str(),
            Some(
                "CONFLICT"
                    | "WRONG_KEY"
                    | "INVALID_SHARE"
                    | "INVALID_REQUEST"
                    | "TOO_MANY_ATTEMPTS"
            )
        ),
        "the loser learns it lost: {loser:?}"
    );
    let winner = if ra.0 == 200 { key_a } else { key_b };
    a.post("operator", "/v1/sys/lock", json!({})).await;
    assert_eq!(a.unlock(SERVER_KEY).await.0, 403);
    assert_eq!(a.unlock(winner).await.0, 200);
    assert_eq!(a.decrypt("ws_m", &items).await, vec![Ok("alpha".to_owned())]);
}

/// Someone who can write the vault database (and holds an operator certificate) replaces the
/// root record with one sealing a root of their own under a key they chose. A migration or
/// rekey with that key must not install their root on a running replica: it is refused, and
/// nothing changes.
#[tokio::test]
async fn a_root_record_rewritten_in_the_database_is_refused_by_migrate_and_rekey() {
    let db = TestDb::new().await;
    let a = spawn_vault(&db, &[]).await;
    a.initialize().await;
    let sealed = a.encrypt("ws_m", &["alpha"]).await;
    let items: Vec<(String, String)> = vec![(sealed[0].0.clone(), "ctx-0".to_owned())];
    // The attacker's root record: a vault of their own, under their key.
    let theirs = TestDb::new().await;
    let planted = spawn_vault(&theirs, &[]).await;
    let chosen = "the-attackers-chosen-key-0001";
    let (status, body) =
        planted.post("operator", "/v1/sys/initialize", json!({"key": chosen})).await;
    assert_eq!(status, 200, "{body}");
    let row = theirs
        .client()
        .await
        .query_one(
            "SELECT salt, sealed_root, argon2_m_kib, argon2_t, argon2_p FROM root_record",
            &[],
        )
        .await
        .unwrap();
    let (salt, sealed_root): (Vec<u8>, Vec<u8>) = (row.get(0), row.get(1));
    let (m, t, p): (i32, i32, i32) = (row.get(2), row.get(3), row.get(4));
    let client = db.client().await;
    client
        .execute(
            "UPDATE root_record SET salt = $1, sealed_root = $2, argon2_m_kib = $3, argon2_t = $4, \
             argon2_p = $5",
            &[&salt, &sealed_root, &m, &t, &p],
        )
        .await
        .unwrap();
    let stored = || async {
        client
            .query_one("SELECT generation, sealed_root FROM root_record", &[])
            .await
            .map(|r| (r.get::<_, i64>(0), r.get::<_, Vec<u8>>(1)))
    };
    let before = stored().await.unwrap();
    let attempts = [
        (
            "/v1/sys/seal/migrate",
            json!({"to": "key", "current_key": chosen, "new_key": "y".repeat(20)}),
        ),
        ("/v1/sys/rekey", json!({"current_key": chosen, "new_key": "y".repeat(20)})),
    ];
    for (path, body) in attempts {
        let (status, answer) = a.post("operator", path, body).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (500, Some("INTEGRITY_ERROR")),
            "{path}: {answer}"
        );
    }
    assert_eq!(stored().await.unwrap(), before, "nothing was written");
    // The replica still serves under its own root.
    assert_eq!(a.decrypt("ws_m", &items).await, vec![Ok("alpha".to_owned())]);
}
