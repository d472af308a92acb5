//! Crash tests: a rewrap killed with SIGKILL in the middle resumes and finishes, with every row
//! on the newest version and none lost.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use strongbox_tests::process::binary;
use strongbox_tests::{TestDb, eventually, spawn_vault};

const ROWS: usize = 3000;

/// The single number a counting query returns.
async fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

/// Seeds `ROWS` recoverable keys of workspace `keyring` (sealed by the vault at `vault_url` in
/// batches) straight into the api database, and returns their ids.
async fn seed(
    db: &tokio_postgres::Client,
    pki: &strongbox_tests::TestPki,
    vault_url: &str,
    keyring: &str,
) -> Vec<String> {
    use base64::Engine as _;
    db.execute("INSERT INTO apis (id, workspace_id, name, store_encrypted_keys) VALUES ('api_crash', $1, 'crash', true)", &[&keyring])
        .await
        .unwrap();
    let ids: Vec<String> = (0..ROWS).map(|i| format!("key_crash_{i:05}")).collect();
    let plaintexts: Vec<String> = (0..ROWS).map(|i| format!("sk_crash_{i:05}")).collect();
    let mut ciphertexts = Vec::new();
    for chunk in (0..ROWS).collect::<Vec<_>>().chunks(1000) {
        let items: Vec<_> = chunk
            .iter()
            .map(|&i| json!({"plaintext": base64::engine::general_purpose::STANDARD.encode(&plaintexts[i]), "context": ids[i]}))
            .collect();
        let (status, body) = strongbox_tests::send(
            pki.client("api"),
            reqwest::Method::POST,
            &format!("{vault_url}/v1/encrypt"),
            Some(json!({"keyring": keyring, "items": items})),
        )
        .await;
        assert_eq!(status, 200);
        ciphertexts.extend(
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["ciphertext"].as_str().unwrap().to_owned()),
        );
    }
    let hashes: Vec<Vec<u8>> =
        plaintexts.iter().map(|p| strongbox_shared::keys::hash(p).to_vec()).collect();
    db.execute(
        "INSERT INTO keys (id, workspace_id, api_id, hash, start, byte_length) \
         SELECT id, $2, 'api_crash', h, 'sk_c', 16 FROM unnest($1::text[], $3::bytea[]) AS t(id, h)",
        &[&ids, &keyring, &hashes],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO encrypted_keys (key_id, workspace_id, keyring, ciphertext, dek_version) \
         SELECT id, $2, $2, c, 1 FROM unnest($1::text[], $3::text[]) AS t(id, c)",
        &[&ids, &keyring, &ciphertexts],
    )
    .await
    .unwrap();
    ids
}

fn rewrap_command(
    api_db: &TestDb,
    vault_url: &str,
    pki: &strongbox_tests::TestPki,
) -> tokio::process::Child {
    tokio::process::Command::new(binary("strongbox-api"))
        .args(["rewrap", "--batch", "20"])
        .env_clear()
        .env("STRONGBOX_API_DATABASE_URL", api_db.url())
        .env("STRONGBOX_VAULT_URL", vault_url)
        .env("STRONGBOX_TLS_CA", pki.path("ca.pem"))
        .env("STRONGBOX_API_CLIENT_CERT", pki.path("api.pem"))
        .env("STRONGBOX_API_CLIENT_KEY", pki.path("api-key.pem"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_killed_during_a_rewrap_comes_back_and_the_rewrap_resumes() {
    use std::collections::HashMap;
    use strongbox_tests::{SERVER_KEY, ServiceProcess, TestPki, send, vault_env};
    let (api_db, vault_db) = (TestDb::new().await, TestDb::new().await);
    let pki = TestPki::new();
    let mut env: HashMap<String, String> = vault_env(&vault_db, &pki).into_iter().collect();
    env.insert("STRONGBOX_VAULT__LOG__FILTER".into(), "info".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    env.insert("STRONGBOX_VAULT__SERVER__LISTEN".into(), format!("127.0.0.1:{port}"));
    let url = format!("https://localhost:{port}");
    let start = |env: &HashMap<String, String>| {
        let env = env.clone();
        async move {
            let mut p = ServiceProcess::start("strongbox-vault", &["serve"], &env);
            p.wait_for_message("strongbox-vault ready to serve").await;
            p
        }
    };
    let mut vault = start(&env).await;
    let op = |path: &str, body: serde_json::Value| {
        let (client, target) = (pki.client("operator"), format!("{url}{path}"));
        async move { send(client, reqwest::Method::POST, &target, Some(body)).await }
    };
    assert_eq!(op("/v1/sys/initialize", json!({"key": SERVER_KEY})).await.0, 200);
    let made = strongbox_api::bootstrap(
        &strongbox_shared::db::DatabaseConfig::from_url(api_db.url()),
        "crash",
    )
    .await
    .unwrap();
    let keyring = made.workspace_id.clone();
    let db = api_db.client().await;
    seed(&db, &pki, &url, &keyring).await;
    assert_eq!(op(&format!("/v1/keyrings/{keyring}/rotate"), json!({})).await.0, 200);

    let first = rewrap_command(&api_db, &url, &pki);
    eventually(Duration::from_secs(60), "the rewrap to make progress", || async {
        let done: i64 = count(&db, "SELECT coalesce(max(rows_done), 0) FROM rewrap_progress").await;
        (done >= 200).then_some(())
    })
    .await;
    vault.signal("KILL");
    vault.wait().await;
    let out = first.wait_with_output().await.unwrap();
    assert!(!out.status.success(), "the rewrap cannot finish without the vault");
    let below: i64 = count(&db, "SELECT count(*) FROM encrypted_keys WHERE dek_version < 2").await;
    assert!(below > 0, "killed mid-run");

    let _vault = start(&env).await;
    assert_eq!(op("/v1/sys/unlock", json!({"key": SERVER_KEY})).await.0, 200);
    let second = rewrap_command(&api_db, &url, &pki).wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success() && stdout.contains("0 below the newest version"), "{stdout}");
    let rows = db
        .query("SELECT key_id, ciphertext, dek_version FROM encrypted_keys ORDER BY key_id", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), ROWS);
    assert!(rows.iter().all(|r| r.get::<_, i32>(2) == 2));
    let sample: Vec<serde_json::Value> = rows
        .iter()
        .step_by(97)
        .map(|r| json!({"ciphertext": r.get::<_, String>(1), "context": r.get::<_, String>(0)}))
        .collect();
    let (status, body) = send(
        pki.client("api"),
        reqwest::Method::POST,
        &format!("{url}/v1/decrypt"),
        Some(json!({"keyring": keyring, "items": sample})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body["items"].as_array().unwrap().iter().all(|i| i["plaintext"].is_string()), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrap_killed_mid_run_resumes_and_loses_nothing() {
    let (api_db, vault_db) = (TestDb::new().await, TestDb::new().await);
    let vault = spawn_vault(&vault_db, &[]).await;
    vault.initialize().await;
    let made = strongbox_api::bootstrap(
        &strongbox_shared::db::DatabaseConfig::from_url(api_db.url()),
        "crash",
    )
    .await
    .unwrap();
    let keyring = made.workspace_id.clone();
    let db = api_db.client().await;
    seed(&db, &vault.pki, &vault.url, &keyring).await;
    assert_eq!(
        vault.post("operator", &format!("/v1/keyrings/{keyring}/rotate"), json!({})).await.0,
        200
    );

    let rewrap = || rewrap_command(&api_db, &vault.url, &vault.pki);
    let mut first = rewrap();
    eventually(Duration::from_secs(60), "the first run to make progress", || async {
        let done: i64 = count(&db, "SELECT coalesce(max(rows_done), 0) FROM rewrap_progress").await;
        (done >= 200).then_some(())
    })
    .await;
    first.start_kill().unwrap(); // SIGKILL
    first.wait().await.unwrap();
    let below: i64 = count(&db, "SELECT count(*) FROM encrypted_keys WHERE dek_version < 2").await;
    assert!(
        below > 0 && (below as usize) < ROWS,
        "killed mid-run: {below} of {ROWS} rows still below"
    );

    let second = rewrap().wait_with_output().await.unwrap();
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{out}\n{}", String::from_utf8_lossy(&second.stderr));
    assert!(out.contains("0 below the newest version"), "{out}");
    let rows = db
        .query("SELECT key_id, ciphertext, dek_version FROM encrypted_keys ORDER BY key_id", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), ROWS, "no row lost");
    assert!(rows.iter().all(|r| r.get::<_, i32>(2) == 2), "every row on the newest version");
    let done: i64 = count(&db, "SELECT rows_done FROM rewrap_progress").await;
    assert_eq!(done as usize, ROWS, "the resumed run continued the count: {done}");
    // Every row still opens to its own key.
    for chunk in rows.chunks(1000) {
        let items: Vec<(String, String)> = chunk.iter().map(|r| (r.get(1), r.get(0))).collect();
        let opened = vault.decrypt(&keyring, &items).await;
        for (row, plain) in chunk.iter().zip(opened) {
            let id: String = row.get(0);
            assert_eq!(plain, Ok(id.replace("key_", "sk_")));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_killed_during_a_kek_rewrap_finishes_it_after_a_restart() {
    use std::collections::HashMap;
    use strongbox_tests::{SERVER_KEY, ServiceProcess, TestPki, send, vault_env};
    const KEYRINGS: usize = 600;
    let db = TestDb::new().await;
    let pki = TestPki::new();
    let mut env: HashMap<String, String> = vault_env(&db, &pki).into_iter().collect();
    env.insert("STRONGBOX_VAULT__LOG__FILTER".into(), "info".into());
    env.insert("STRONGBOX_VAULT__ROTATION__CHECK_INTERVAL_MS".into(), "20".into());
    env.insert("STRONGBOX_VAULT__ROTATION__REWRAP_BATCH".into(), "3".into());
    let start = |env: &HashMap<String, String>| {
        let env = env.clone();
        async move {
            let mut p = ServiceProcess::start("strongbox-vault", &["serve"], &env);
            let ready = p.wait_for_message("strongbox-vault ready to serve").await;
            let url = format!(
                "https://localhost:{}",
                ready["main"].as_str().unwrap().rsplit(':').next().unwrap()
            );
            (p, url)
        }
    };
    let (mut vault, url) = start(&env).await;
    let post = |url: String, role: &str, path: &str, body: serde_json::Value| {
        let client = pki.client(role);
        let path = path.to_owned();
        async move { send(client, reqwest::Method::POST, &format!("{url}{path}"), Some(body)).await }
    };
    assert_eq!(
        post(url.clone(), "operator", "/v1/sys/initialize", json!({"key": SERVER_KEY})).await.0,
        200
    );
    // Many keyrings, each with a DEK under KEK 1.
    let mut sealed = Vec::new();
    for i in 0..KEYRINGS {
        let keyring = format!("ws_{i:04}");
        let body = json!({"keyring": keyring, "items": [{"plaintext": "c2Vj", "context": "ctx"}]});
        let (status, body) = post(url.clone(), "api", "/v1/encrypt", body).await;
        assert_eq!(status, 200);
        sealed.push((keyring, body["items"][0]["ciphertext"].as_str().unwrap().to_owned()));
    }
    assert_eq!(
        post(url.clone(), "operator", "/v1/sys/rotate", json!({})).await.1["kek_version"],
        2
    );
    let client = db.client().await;
    eventually(Duration::from_secs(30), "the re-wrap to be under way", || async {
        let moved: i64 = count(&client, "SELECT count(*) FROM deks WHERE kek_version = 2").await;
        (moved >= 30).then_some(())
    })
    .await;
    vault.signal("KILL");
    vault.wait().await;
    let left: i64 = count(&client, "SELECT count(*) FROM deks WHERE kek_version = 1").await;
    assert!(left > 0, "killed mid-way: {left} DEKs still under KEK 1");

    let (_vault, url) = start(&env).await;
    assert_eq!(
        post(url.clone(), "operator", "/v1/sys/unlock", json!({"key": SERVER_KEY})).await.0,
        200
    );
    eventually(Duration::from_secs(60), "every DEK under KEK 2 and KEK 1 deleted", || async {
        let old: i64 = count(&client, "SELECT count(*) FROM deks WHERE kek_version <> 2").await;
        let keks: i64 = count(&client, "SELECT count(*) FROM keks").await;
        (old == 0 && keks == 1).then_some(())
    })
    .await;
    let deks: i64 = count(&client, "SELECT count(*) FROM deks").await;
    assert_eq!(deks as usize, KEYRINGS, "no DEK lost");
    for (keyring, ct) in sealed.iter().step_by(7) {
        let (status, body) = post(
            url.clone(),
            "api",
            "/v1/decrypt",
            json!({"keyring": keyring, "items": [{"ciphertext": ct, "context": "ctx"}]}),
        )
        .await;
        assert_eq!(
            (status, body["items"][0]["plaintext"].as_str()),
            (200, Some("c2Vj")),
            "{keyring}"
        );
    }
}
