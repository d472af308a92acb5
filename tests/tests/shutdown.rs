//! Graceful shutdown: in-flight requests finish, listeners close, the pool closes, and the real
//! binaries exit 0 on SIGTERM and SIGINT.

use std::collections::HashMap;
use std::time::Duration;

use strongbox_tests::{
    ServiceProcess, TestDb, TestPki, eventually, http_client, spawn_api, vault_env,
};

#[tokio::test]
async fn an_in_flight_request_finishes_during_graceful_shutdown() {
    let db = TestDb::new().await;
    // One pooled connection, held by the test, keeps `/readyz` waiting inside its handler. The
    // decrypt-audit purge is off so that `/readyz` is the only task waiting for it.
    let api = spawn_api(
        &db,
        &[
            ("STRONGBOX_API__DATABASE__MAX_CONNECTIONS", "1"),
            ("STRONGBOX_API__AUDIT__DECRYPT_RETENTION_DAYS", "0"),
        ],
    )
    .await;
    let held = api.pool.get().await.unwrap();
    let readyz = tokio::spawn(http_client().get(format!("{}/readyz", api.ops_url)).send());
    let pool = api.pool.clone();
    eventually(Duration::from_secs(10), "readyz to wait for the pool", || {
        let waiting = pool.status().waiting;
        async move { (waiting == 1).then_some(()) }
    })
    .await;

    api.shutdown.cancel();
    // New connections are refused once shutdown has begun…
    let addr = api.addr;
    eventually(Duration::from_secs(10), "the public listener to close", || async move {
        tokio::net::TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await;
    assert!(!api.task.is_finished(), "stopped before the in-flight request finished");

    // …while the request already in its handler completes normally.
    drop(held);
    let response = readyz.await.unwrap().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    tokio::time::timeout(Duration::from_secs(10), api.task).await.unwrap().unwrap().unwrap();
    assert!(api.pool.is_closed());
}

fn service_env(prefix: &str, db: &TestDb) -> HashMap<String, String> {
    HashMap::from([
        (format!("{prefix}__SERVER__LISTEN"), "127.0.0.1:0".to_owned()),
        (format!("{prefix}__SERVER__OPS_LISTEN"), "127.0.0.1:0".to_owned()),
        (format!("{prefix}__DATABASE__URL"), db.url().to_owned()),
    ])
}

async fn stops_cleanly_on(binary: &str, prefix: &str, signal: &str) {
    let db = TestDb::new().await;
    let pki = TestPki::new();
    let env = if prefix == "STRONGBOX_VAULT" {
        let mut env: HashMap<String, String> = vault_env(&db, &pki).into_iter().collect();
        env.insert(format!("{prefix}__LOG__FILTER"), "info".to_owned());
        env
    } else {
        service_env(prefix, &db)
    };
    let mut service = ServiceProcess::start(binary, &["serve"], &env);
    let ready = service.wait_for_message(&format!("{binary} ready to serve")).await;
    let ops = ready["ops"].as_str().unwrap().to_owned();
    if binary == "strongbox-vault" {
        // The vault holds keys in memory: it must not be able to dump core.
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", service.pid())).unwrap();
        let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap();
        let fields: Vec<&str> = core.split_whitespace().collect();
        assert_eq!(&fields[4..6], &["0", "0"], "{core}");
    }
    let response = http_client().get(format!("http://{ops}/healthz")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);

    service.signal(signal);
    let status = service.wait().await;
    assert!(status.success(), "{binary} exited with {status:?}; log:\n{}", service.log.join("\n"));
    assert!(service.log.iter().any(|l| l.contains("\"stopped\"")), "{}", service.log.join("\n"));
}

#[tokio::test]
async fn api_binary_exits_zero_on_sigterm() {
    stops_cleanly_on("strongbox-api", "STRONGBOX_API", "TERM").await;
}

#[tokio::test]
async fn vault_binary_exits_zero_on_sigint() {
    stops_cleanly_on("strongbox-vault", "STRONGBOX_VAULT", "INT").await;
}
