//! Postgres restarts under load (on a cluster of this test's own): both services recover without
//! a restart of their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use strongbox_tests::cluster::OwnCluster;
use strongbox_tests::{TestDb, eventually, spawn_api_with_vault, spawn_vault};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_recover_from_a_postgres_restart_under_load() {
    let cluster = OwnCluster::start();
    let (api_db, vault_db) =
        (TestDb::new_on(&cluster.admin_url()).await, TestDb::new_on(&cluster.admin_url()).await);
    let vault = spawn_vault(&vault_db, &[]).await;
    vault.initialize().await;
    let api = Arc::new(spawn_api_with_vault(&api_db, &vault, &[]).await);
    let root = api.workspace("restart").await;
    let api_id = api.create_api(&root, "r").await;
    api.ok(&root, "apis.updateApi", json!({"apiId": api_id, "storeEncryptedKeys": true})).await;
    let (key_id, key) = api
        .create_key(&root, &api_id, json!({"recoverable": true, "credits": {"remaining": 1000000}}))
        .await;

    // Load: verifications with credits (a Postgres write each) while the server restarts.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (api, root, key, stop, ok, failed) =
            (api.clone(), root.clone(), key.clone(), stop.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = api.call(&root, "keys.verifyKey", json!({"key": key})).await;
                let counter = if status == 200 { &ok } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
                // A failure while the server restarts is a retryable 503, never a 500.
                if status != 200 {
                    assert_eq!(
                        (status, body["error"]["code"].as_str()),
                        (503, Some("DATABASE_UNAVAILABLE")),
                        "{body}"
                    );
                }
            }
        })
    };
    eventually(Duration::from_secs(10), "load to run", || async {
        (ok.load(Ordering::Relaxed) > 20).then_some(())
    })
    .await;
    cluster.restart();
    let before = ok.load(Ordering::Relaxed);
    eventually(Duration::from_secs(30), "verifications to succeed again", || async {
        (ok.load(Ordering::Relaxed) > before + 20).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    // Everything that needs either database works again, with no service restarted.
    eventually(Duration::from_secs(30), "recovery through the vault", || async {
        let (status, body) =
            api.call(&root, "keys.getKey", json!({"keyId": key_id, "decrypt": true})).await;
        (status == 200 && body["data"]["plaintext"] == key.as_str()).then_some(())
    })
    .await;
    api.create_key(&root, &api_id, json!({"recoverable": true})).await;
    assert_eq!(
        vault.status().await["unlocked"],
        true,
        "the vault kept its keys through the restart"
    );
    let (status, _) = strongbox_tests::send(
        strongbox_tests::http_client(),
        reqwest::Method::GET,
        &format!("{}/readyz", api.ops_url),
        None,
    )
    .await;
    assert_eq!(status, 200);
}
