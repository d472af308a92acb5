//! Postgres over TLS with full verification, for both services: against a cluster of the
//! test's own with TLS switched on, every connection the api and the vault open is encrypted,
//! and a server whose certificate does not chain to `database.ca`, or does not name the
//! host connected to, is refused.

use serde_json::json;
use strongbox_shared::db::DatabaseConfig;
use strongbox_tests::cluster::OwnCluster;
use strongbox_tests::{TestDb, TestPki, spawn_api_with_vault, spawn_vault_with};
use strongbox_vault::certs::Validity;

/// `(encrypted, plain)` connections of others to database `name`.
async fn connections(admin: &tokio_postgres::Client, name: &str) -> (i64, i64) {
    let row = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
            &[&name],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn both_services_reach_postgres_over_verified_tls_and_refuse_an_unverified_server() {
    let pki = TestPki::new();
    let server =
        pki.ca.issue_server("postgres", &["localhost", "127.0.0.1"], Validity::days(1)).unwrap();
    let cluster = OwnCluster::start_tls(&server.cert_pem, &server.key_pem);
    let (api_db, vault_db) =
        (TestDb::new_on(&cluster.admin_url()).await, TestDb::new_on(&cluster.admin_url()).await);
    let ca = pki.path("ca.pem").display().to_string();

    let vault =
        spawn_vault_with(&vault_db, pki.clone(), &[("STRONGBOX_VAULT__DATABASE__CA", ca.as_str())])
            .await;
    vault.initialize().await;
    let api =
        spawn_api_with_vault(&api_db, &vault, &[("STRONGBOX_API__DATABASE__CA", ca.as_str())])
            .await;
    let root = api.workspace("tls").await;
    let api_id = api.create_api(&root, "tls").await;
    api.ok(&root, "apis.updateApi", json!({"apiId": api_id, "storeEncryptedKeys": true})).await;
    let (key_id, key) = api.create_key(&root, &api_id, json!({"recoverable": true})).await;
    let got = api.ok(&root, "keys.getKey", json!({"keyId": key_id, "decrypt": true})).await;
    assert_eq!(got["plaintext"], key.as_str());

    let admin = api_db.client().await;
    for db in [&api_db, &vault_db] {
        let name = db.url().rsplit('/').next().unwrap().to_owned();
        let (encrypted, plain) = connections(&admin, &name).await;
        assert!(encrypted >= 1, "{name}: no encrypted connection");
        assert_eq!(plain, 0, "{name}: a service opened a plain connection");
    }

    // A CA that did not sign the server's certificate: refused.
    let other = TestPki::new();
    let url = api_db.url().to_owned();
    let mut config = DatabaseConfig::from_url(url.clone());
    config.ca = Some(other.path("ca.pem"));
    let error = format!("{:#}", strongbox_api::migrate(&config).await.unwrap_err());
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    // The right CA, but a host name the certificate does not carry: refused.
    let port = cluster.port();
    let dbname = url.rsplit('/').next().unwrap();
    let mut config = DatabaseConfig::from_url(format!(
        "host=db.invalid hostaddr=127.0.0.1 port={port} user=postgres dbname={dbname}"
    ));
    config.ca = Some(pki.path("ca.pem"));
    let error = format!("{:#}", strongbox_api::migrate(&config).await.unwrap_err());
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    // The same, named right, connects.
    let mut config = DatabaseConfig::from_url(format!(
        "host=localhost hostaddr=127.0.0.1 port={port} user=postgres dbname={dbname}"
    ));
    config.ca = Some(pki.path("ca.pem"));
    strongbox_api::migrate(&config).await.unwrap();
    // An address alone: the certificate must carry the address, and this one does.
    let mut config = DatabaseConfig::from_url(format!(
        "hostaddr=127.0.0.1 port={port} user=postgres dbname={dbname}"
    ));
    config.ca = Some(pki.path("ca.pem"));
    strongbox_api::migrate(&config).await.unwrap();
    // sslmode=require without a CA to verify against is a configuration error, not a plain or
    // unverified connection.
    let error = DatabaseConfig::from_url(format!("{url}?sslmode=require")).pg_config().unwrap_err();
    assert!(error.to_string().contains("database.ca"), "{error}");
    api.shutdown.cancel();
    vault.shutdown.cancel();
}

/// Over TLS too, a server that stops answering fails requests within `query_timeout_ms`
/// rather than holding them, and the service recovers once it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_behind_tls_fails_requests_in_bounded_time() {
    use std::time::{Duration, Instant};
    use strongbox_tests::fault::{Fault, FaultProxy, through, upstream_of};
    let pki = TestPki::new();
    let server =
        pki.ca.issue_server("postgres", &["localhost", "127.0.0.1"], Validity::days(1)).unwrap();
    let cluster = OwnCluster::start_tls(&server.cert_pem, &server.key_pem);
    let db = TestDb::new_on(&cluster.admin_url()).await;
    let proxy = FaultProxy::start(upstream_of(db.url())).await;
    let (ca, url) = (pki.path("ca.pem").display().to_string(), through(db.url(), &proxy));
    let api = strongbox_tests::spawn_api(
        &db,
        &[
            ("STRONGBOX_API__DATABASE__URL", url.as_str()),
            ("STRONGBOX_API__DATABASE__CA", ca.as_str()),
            ("STRONGBOX_API__DATABASE__QUERY_TIMEOUT_MS", "1000"),
            ("STRONGBOX_API__DATABASE__ACQUIRE_TIMEOUT_MS", "1000"),
            ("STRONGBOX_API__DATABASE__CONNECT_TIMEOUT_MS", "500"),
        ],
    )
    .await;
    let root = api.workspace("silent").await;
    let api_id = api.create_api(&root, "silent").await;
    api.create_key(&root, &api_id, json!({})).await;

    proxy.set(Fault::BlackHole);
    let started = Instant::now();
    let answer = api.call(&root, "keys.createKey", json!({"apiId": api_id})).await;
    let took = started.elapsed();
    strongbox_tests::assert_error(answer, 503, "DATABASE_UNAVAILABLE", "black-holed over TLS");
    assert!(took < Duration::from_secs(5), "held for {took:?} instead of timing out");
    proxy.set(Fault::Pass);
    strongbox_tests::eventually(Duration::from_secs(20), "createKey to work again", || async {
        let (status, _) = api.call(&root, "keys.createKey", json!({"apiId": api_id})).await;
        (status == 200).then_some(())
    })
    .await;
    api.shutdown.cancel();
}
