//! Hardening between the api and the vault: what the api refuses to send keys over, and how
//! the vault holds up against guessing, revoked clients and its own database.

use std::collections::HashMap;

use std::time::Duration;

use serde_json::json;
use strongbox_tests::{
    SERVER_KEY, ServiceProcess, TestDb, TestPki, eventually, spawn_vault, spawn_vault_with,
};
use strongbox_vault::certs::Validity;

#[tokio::test]
async fn an_http_vault_url_stops_the_api_at_start() {
    let db = TestDb::new().await;
    let env = HashMap::from([
        ("STRONGBOX_API__DATABASE__URL".to_owned(), db.url().to_owned()),
        ("STRONGBOX_API__SERVER__LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("STRONGBOX_API__SERVER__OPS_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("STRONGBOX_API__VAULT__URL".to_owned(), "http://localhost:7080".to_owned()),
        ("STRONGBOX_API__VAULT__CA".to_owned(), "/nonexistent/ca.pem".to_owned()),
        ("STRONGBOX_API__VAULT__CERT".to_owned(), "/nonexistent/api.pem".to_owned()),
        ("STRONGBOX_API__VAULT__KEY".to_owned(), "/nonexistent/api-key.pem".to_owned()),
    ]);
    let mut api = ServiceProcess::start("strongbox-api", &["serve"], &env);
    let status = api.wait().await;
    assert!(!status.success(), "the api must not start: {status:?}");
    let log = api.log.join("\n");
    assert!(log.contains("vault.url") && log.contains("https://"), "{log}");
    assert!(!log.contains("ready to serve"), "{log}");
}

#[tokio::test]
async fn stored_argon2_parameters_above_the_ceiling_are_refused_not_derived() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    vault.initialize().await;
    vault.post("operator", "/v1/sys/lock", json!({})).await;
    // A writer of the vault database asks for 64 GiB per unlock.
    db.client().await.execute("UPDATE root_record SET argon2_m_kib = 67108864", &[]).await.unwrap();
    let (status, body) = vault.unlock(SERVER_KEY).await;
    assert_eq!((status, body["error"]["code"].as_str()), (500, Some("INTEGRITY_ERROR")), "{body}");
    // The replica is still up, still locked, and says so.
    assert_eq!(vault.status().await["unlocked"], false);
    // Restored, the same key unlocks again.
    db.client().await.execute("UPDATE root_record SET argon2_m_kib = 256", &[]).await.unwrap();
    assert_eq!(vault.unlock(SERVER_KEY).await.0, 200);
}

#[tokio::test]
async fn a_connection_opened_before_its_certificate_is_revoked_is_closed_at_the_reload() {
    let db = TestDb::new().await;
    let pki = TestPki::new();
    let victim = pki.ca.issue_client("api", Validity::days(1)).unwrap();
    let cert = pki.write("victim.pem", &victim.cert_pem);
    let key = pki.write("victim-key.pem", &victim.key_pem);
    let crl = pki.write("crl.pem", &pki.ca.crl(&[]).unwrap()).display().to_string();
    let vault = spawn_vault_with(
        &db,
        pki.clone(),
        &[
            ("STRONGBOX_VAULT__TLS__CRLS", crl.as_str()),
            ("STRONGBOX_VAULT__TLS__RELOAD_INTERVAL_SECONDS", "1"),
        ],
    )
    .await;
    // One client, one kept-alive connection, opened while the certificate was good.
    let open = pki.client_with(&cert, &key);
    let status = format!("{}/v1/sys/status", vault.url);
    assert_eq!(open.get(&status).send().await.unwrap().status(), 200);

    pki.write("crl.pem", &pki.ca.crl(&[victim.serial]).unwrap());
    eventually(Duration::from_secs(15), "the new CRL to refuse new connections", || async {
        pki.client_with(&cert, &key).get(&status).send().await.is_err().then_some(())
    })
    .await;
    // The connection opened before is closed too: its next request cannot be answered.
    eventually(Duration::from_secs(10), "the open connection to be closed", || async {
        open.get(&status).send().await.is_err().then_some(())
    })
    .await;
    assert_eq!(vault.call("operator", reqwest::Method::GET, "/v1/sys/status", None).await.0, 200);
}

#[tokio::test]
async fn a_crl_past_its_next_update_refuses_every_client() {
    let db = TestDb::new().await;
    let pki = TestPki::new();
    let stale = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let crl = pki.write("crl.pem", &pki.ca.crl_until(&[], stale).unwrap()).display().to_string();
    let vault =
        spawn_vault_with(&db, pki.clone(), &[("STRONGBOX_VAULT__TLS__CRLS", crl.as_str())]).await;
    let refused = pki.client("operator").get(format!("{}/v1/sys/status", vault.url)).send().await;
    assert!(refused.is_err(), "a stale CRL must not be trusted: {refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_parallel_wrong_unlocks_is_evaluated_at_most_free_failures_times() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[("STRONGBOX_VAULT__UNLOCK__FREE_FAILURES", "3")]).await;
    vault.initialize().await;
    vault.post("operator", "/v1/sys/lock", json!({})).await;
    let url = format!("{}/v1/sys/unlock", vault.url);
    let burst: Vec<_> = (0..20)
        .map(|_| {
            let (client, url) = (vault.pki.client("operator"), url.clone());
            tokio::spawn(async move {
                let response =
                    client.post(&url).json(&json!({"key": "a-wrong-key-of-20-chars"})).send();
                let response = response.await.unwrap();
                let retry_after = response.headers().get("retry-after").cloned();
                let body: serde_json::Value = response.json().await.unwrap();
                (body["error"]["code"].as_str().unwrap_or_default().to_owned(), retry_after)
            })
        })
        .collect();
    let mut evaluated = 0;
    for answer in burst {
        let (code, retry_after) = answer.await.unwrap();
        match code.as_str() {
            "WRONG_KEY" => evaluated += 1,
            "TOO_MANY_ATTEMPTS" => assert!(retry_after.is_some(), "a 429 says when to retry"),
            other => panic!("unexpected answer {other}"),
        }
    }
    assert!((1..=3).contains(&evaluated), "{evaluated} wrong keys were evaluated");
    // Each evaluated attempt was counted before its key was tried, in the vault database.
    let counted: i32 = db.one("SELECT max(failures) FROM unlock_attempts", &[]).await;
    assert_eq!(counted, evaluated);
}

#[tokio::test]
async fn the_unlock_throttle_holds_across_replicas_and_restarts() {
    let db = TestDb::new().await;
    let extra = [("STRONGBOX_VAULT__UNLOCK__FREE_FAILURES", "2")];
    let first = spawn_vault(&db, &extra).await;
    first.initialize().await;
    first.post("operator", "/v1/sys/lock", json!({})).await;
    for _ in 0..2 {
        assert_eq!(first.unlock("a-wrong-key-of-20-chars").await.0, 403);
    }
    // Another replica on the same database (as after a restart) already makes the client wait,
    // even with the right key; the same client certificate and address make the same client.
    let second = spawn_vault_with(&db, first.pki.clone(), &extra).await;
    let (status, body) = second.unlock(SERVER_KEY).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("TOO_MANY_ATTEMPTS")),
        "{body}"
    );
}

/// `url` with its user and password replaced.
fn as_role(url: &str, role: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{role}:{password}@{host}")
}

/// Makes an owner role (owning `db`) and a serving role for `db`, runs `then` (SQL in which
/// `{serving}` names the serving role) as the admin, and returns (owner URL, serving URL).
async fn owner_and_serving(db: &TestDb, then: &str) -> (String, String) {
    let suffix = db.name().trim_start_matches("sb_test_").to_owned();
    let (owner, serving) = (format!("sb_owner_{suffix}"), format!("sb_serving_{suffix}"));
    db.client()
        .await
        .batch_execute(&format!(
            "CREATE ROLE {owner} LOGIN PASSWORD 'owner-pw'; \
             CREATE ROLE {serving} LOGIN PASSWORD 'serving-pw'; \
             ALTER DATABASE {db} OWNER TO {owner}; {then}",
            db = db.name(),
            then = then.replace("{serving}", &serving),
        ))
        .await
        .unwrap();
    (as_role(db.url(), &owner, "owner-pw"), as_role(db.url(), &serving, "serving-pw"))
}

#[tokio::test]
async fn the_serving_role_can_only_read_and_append_the_audit_log() {
    let db = TestDb::new().await;
    let (owner_url, serving_url) = owner_and_serving(&db, "").await;
    let vault = spawn_vault(
        &db,
        &[
            ("STRONGBOX_VAULT__DATABASE__URL", serving_url.as_str()),
            ("STRONGBOX_VAULT__DATABASE__MIGRATION_URL", owner_url.as_str()),
        ],
    )
    .await;
    vault.initialize().await;
    vault.encrypt("ws_roles", &["a key"]).await;

    // As the role the vault serves with, the audit trail can be read and appended to, nothing
    // more: no rewriting, no deleting, no switching its guard off.
    let (client, connection) =
        tokio_postgres::connect(&serving_url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let entries: i64 =
        client.query_one("SELECT count(*) FROM audit_log", &[]).await.unwrap().get(0);
    assert!(entries >= 2, "{entries}");
    for attack in [
        "UPDATE audit_log SET status = 200",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "ALTER TABLE audit_log DISABLE TRIGGER USER",
        "DROP TRIGGER audit_log_no_update_or_delete ON audit_log",
        "DROP TABLE audit_log",
        "DELETE FROM refinery_schema_history",
        "DELETE FROM audit_key",
        "DELETE FROM root_record",
    ] {
        let refused = client.batch_execute(attack).await;
        assert!(refused.is_err(), "the serving role could: {attack}");
    }
    // The owner can (and `audit verify` with the server key catches it: see audit.rs).
    let owner_client = tokio_postgres::connect(&owner_url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(owner_client.1);
    owner_client.0.batch_execute("ALTER TABLE audit_log DISABLE TRIGGER USER").await.unwrap();
    owner_client.0.batch_execute("ALTER TABLE audit_log ENABLE TRIGGER USER").await.unwrap();

    // With the schema current, a replica starts with the serving URL alone.
    vault.shutdown.cancel();
    vault.task.await.unwrap().unwrap();
    let again = spawn_vault_with(
        &db,
        vault.pki.clone(),
        &[("STRONGBOX_VAULT__DATABASE__URL", &serving_url)],
    )
    .await;
    assert_eq!(again.unlock(SERVER_KEY).await.0, 200);
    again.encrypt("ws_roles", &["another key"]).await;
}

#[tokio::test]
async fn a_serving_role_that_owns_the_schema_is_refused_not_silently_trusted() {
    let db = TestDb::new().await;
    // As after `pg_restore --no-owner` into the serving URL: the serving role owns every table.
    let (owner_url, serving_url) =
        owner_and_serving(&db, "GRANT CREATE ON SCHEMA public TO {serving};").await;
    let migrate = |extra: &[&str]| {
        std::process::Command::new(strongbox_tests::process::binary("strongbox-vault"))
            .args(["migrate", "--database-url", &serving_url])
            .args(extra)
            .env_clear()
            .output()
            .unwrap()
    };
    assert!(migrate(&[]).status.success(), "the serving role may migrate on its own");
    let refused = migrate(&["--owner-url", &owner_url]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("not confined") && stderr.contains("owns tables"), "{stderr}");
}

#[tokio::test]
async fn an_unlock_cancelled_mid_evaluation_still_ends_its_attempt() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    vault.initialize().await;
    vault.post("operator", "/v1/sys/lock", json!({})).await;
    // Hold the root record so the attempt, once counted, waits in its evaluation.
    let mut blocker = db.client().await;
    let hold = blocker.transaction().await.unwrap();
    hold.batch_execute("LOCK TABLE root_record IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let mut unlock = Box::pin(vault.vault.unlock(
        secrecy::SecretString::from("a-wrong-key-of-20-chars"),
        "spiffe://test/operator",
        std::net::Ipv4Addr::LOCALHOST.into(),
    ));
    let in_flight = eventually(Duration::from_secs(20), "the attempt is in flight", || async {
        let n: i64 =
            db.one("SELECT count(*) FROM unlock_attempts WHERE in_flight_until > now()", &[]).await;
        (n == 1).then_some(())
    });
    tokio::select! {
        answer = &mut unlock => panic!("the unlock finished while the root was held: {answer:?}"),
        () = in_flight => {}
    }
    // The caller hangs up: its request future is dropped mid-evaluation.
    drop(unlock);
    hold.rollback().await.unwrap();
    // The attempt ends (counted as a failure) instead of blocking its client for the lease.
    eventually(Duration::from_secs(20), "the cancelled attempt ends", || async {
        let n: i64 = db
            .one("SELECT count(*) FROM unlock_attempts WHERE in_flight_until IS NULL AND failures = 1", &[])
            .await;
        (n == 1).then_some(())
    })
    .await;
}
