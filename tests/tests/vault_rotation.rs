//! Key maintenance in the vault: DEKs move under the newest KEK in the background, unused KEKs
//! are deleted, and periodic rotation happens once per period however many replicas run.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use strongbox_tests::{SERVER_KEY, TestDb, TestVault, eventually, spawn_vault, spawn_vault_with};

const FAST: &[(&str, &str)] = &[("STRONGBOX_VAULT__ROTATION__CHECK_INTERVAL_MS", "100")];

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.client().await.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn after_a_kek_rotation_deks_are_rewrapped_and_the_old_kek_deleted() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, FAST).await;
    vault.initialize().await;
    let mut sealed = Vec::new();
    for ws in ["ws_m1", "ws_m2", "ws_m3"] {
        sealed.push((ws, vault.encrypt(ws, &["sk_kept"]).await));
    }
    assert_eq!(vault.post("operator", "/v1/sys/rotate", json!({})).await.1["kek_version"], 2);
    eventually(Duration::from_secs(10), "every DEK under KEK 2 and KEK 1 gone", || async {
        let old = count(&db, "SELECT count(*) FROM deks WHERE kek_version < 2").await;
        let keks = count(&db, "SELECT count(*) FROM keks").await;
        (old == 0 && keks == 1).then_some(())
    })
    .await;
    // A replica unlocked from scratch still opens everything.
    let fresh = spawn_vault_with(&db, vault.pki.clone(), &[]).await;
    assert_eq!(fresh.unlock(SERVER_KEY).await.0, 200);
    for (ws, items) in sealed {
        assert_eq!(
            fresh.decrypt(ws, &[(items[0].0.clone(), "ctx-0".into())]).await,
            vec![Ok("sk_kept".to_owned())]
        );
    }
}

async fn two_replicas(db: &TestDb, extra: &[(&str, &str)]) -> (TestVault, TestVault) {
    let mut env = FAST.to_vec();
    env.extend_from_slice(extra);
    let a = spawn_vault(db, &env).await;
    a.initialize().await;
    let b = spawn_vault_with(db, a.pki.clone(), &env).await;
    assert_eq!(b.unlock(SERVER_KEY).await.0, 200);
    (a, b)
}

#[tokio::test]
async fn a_due_keyring_rotation_happens_once_across_replicas() {
    let db = TestDb::new().await;
    let (a, b) =
        two_replicas(&db, &[("STRONGBOX_VAULT__ROTATION__DEK_PERIOD_SECONDS", "3600")]).await;
    a.encrypt("ws_periodic", &["x"]).await;
    // Two hours pass for the keyring's DEK.
    db.client()
        .await
        .execute("UPDATE deks SET created_at = now() - interval '2 hours'", &[])
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the periodic rotation", || async {
        let (_, d) = a.call("operator", Method::GET, "/v1/keyrings/ws_periodic", None).await;
        (d["latest_version"] == 2).then_some(())
    })
    .await;
    // Absence of a second rotation cannot be awaited; give both replicas many check cycles.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, d) = b.call("operator", Method::GET, "/v1/keyrings/ws_periodic", None).await;
    assert_eq!(d["latest_version"], 2, "one rotation for the period, not one per replica");
    assert_eq!(b.encrypt("ws_periodic", &["y"]).await[0].1, 2);
}

#[tokio::test]
async fn a_due_kek_rotation_happens_once_across_replicas() {
    let db = TestDb::new().await;
    let (a, _b) =
        two_replicas(&db, &[("STRONGBOX_VAULT__ROTATION__KEK_PERIOD_SECONDS", "3600")]).await;
    a.encrypt("ws_k", &["x"]).await;
    db.client()
        .await
        .execute("UPDATE keks SET created_at = now() - interval '2 hours'", &[])
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the periodic KEK rotation", || async {
        (a.status().await["kek_version"] == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(a.status().await["kek_version"], 2);
    assert_eq!(count(&db, "SELECT max(version)::bigint FROM keks").await, 2);
}
