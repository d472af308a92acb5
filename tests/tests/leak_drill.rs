//! The leak drill (DESIGN §8): with a recoverable key created through the real binaries, show
//! that no single part — api database, vault database, server key — nor any two expose it, and
//! that all three together recover it through `export-encrypted` and `recover`.

use std::collections::HashMap;
use std::process::Stdio;

use serde_json::{Value, json};
use strongbox_tests::otlp::OtlpReceiver;
use strongbox_tests::process::binary;
use strongbox_tests::{
    SERVER_KEY, ServiceProcess, TempDir, TestDb, TestPki, http_client, send, spawn_vault, vault_env,
};
use tokio::io::AsyncWriteExt as _;

fn pg_dump() -> String {
    let dir = std::env::var("STRONGBOX_PG_BIN").unwrap_or_default();
    let candidate = std::path::Path::new(&dir).join("pg_dump");
    if candidate.exists() { candidate.display().to_string() } else { "pg_dump".to_owned() }
}

async fn dump(db: &TestDb) -> String {
    let output = tokio::process::Command::new(pg_dump())
        .arg("--no-owner")
        .arg(db.url())
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

async fn run(program: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = tokio::process::Command::new(binary(program))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `strongbox-api export-encrypted` of workspace `drill` into `to`.
async fn export_workspace(api_db: &TestDb, to: &std::path::Path) {
    let args = [
        "export-encrypted",
        "--workspace",
        "drill",
        "--database-url",
        api_db.url(),
        "--output",
        to.to_str().unwrap(),
    ];
    let (code, _, err) = run("strongbox-api", &args, "").await;
    assert_eq!(code, 0, "{err}");
}

#[tokio::test]
async fn no_part_or_pair_of_parts_exposes_a_recoverable_key_and_all_three_recover_it() {
    let (api_db, vault_db) = (TestDb::new().await, TestDb::new().await);
    let stats = api_db.client().await;
    let preload: String =
        stats.query_one("SHOW shared_preload_libraries", &[]).await.unwrap().get(0);
    assert!(
        preload.contains("pg_stat_statements"),
        "the leak drill needs pg_stat_statements preloaded (ops/test does it)"
    );
    stats
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset();",
        )
        .await
        .unwrap();

    // The real binaries, logging at debug and exporting traces.
    let receiver = OtlpReceiver::start().await;
    let pki = TestPki::new();
    let mut vault_env: HashMap<String, String> = vault_env(&vault_db, &pki).into_iter().collect();
    vault_env.insert("STRONGBOX_VAULT__LOG__FILTER".into(), "debug".into());
    vault_env.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.endpoint.clone());
    let mut vault = ServiceProcess::start("strongbox-vault", &["serve"], &vault_env);
    let ready = vault.wait_for_message("strongbox-vault ready to serve").await;
    let vault_url = format!(
        "https://localhost:{}",
        ready["main"].as_str().unwrap().rsplit(':').next().unwrap()
    );
    let (status, _) = send(
        pki.client("operator"),
        reqwest::Method::POST,
        &format!("{vault_url}/v1/sys/initialize"),
        Some(json!({"key": SERVER_KEY})),
    )
    .await;
    assert_eq!(status, 200);
    let file = |n: &str| pki.path(n).display().to_string();
    let api_env = HashMap::from([
        ("STRONGBOX_API__SERVER__LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("STRONGBOX_API__SERVER__OPS_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("STRONGBOX_API__DATABASE__URL".to_owned(), api_db.url().to_owned()),
        ("STRONGBOX_API__LOG__FILTER".to_owned(), "debug".to_owned()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), receiver.endpoint.clone()),
        ("STRONGBOX_API__VAULT__URL".to_owned(), vault_url.clone()),
        ("STRONGBOX_API__VAULT__CA".to_owned(), file("ca.pem")),
        ("STRONGBOX_API__VAULT__CERT".to_owned(), file("api.pem")),
        ("STRONGBOX_API__VAULT__KEY".to_owned(), file("api-key.pem")),
    ]);
    let mut api = ServiceProcess::start("strongbox-api", &["serve"], &api_env);
    let ready = api.wait_for_message("strongbox-api ready to serve").await;
    let api_url = format!("http://{}", ready["public"].as_str().unwrap());
    let made = strongbox_api::bootstrap(
        &strongbox_shared::db::DatabaseConfig::from_url(api_db.url()),
        "drill",
    )
    .await
    .unwrap();
    let call_full = |name: &str, body: Value| {
        let request = http_client()
            .post(format!("{api_url}/v2/{name}"))
            .bearer_auth(&made.root_key)
            .json(&body);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let call = |name: &str, body: Value| {
        let full = call_full(name, body);
        async move { full.await["data"].clone() }
    };
    let api_id = call("apis.createApi", json!({"name": "drill"})).await["apiId"]
        .as_str()
        .unwrap()
        .to_owned();
    call("apis.updateApi", json!({"apiId": api_id, "storeEncryptedKeys": true})).await;
    let created_full =
        call_full("keys.createKey", json!({"apiId": api_id, "recoverable": true})).await;
    let created_request_id = created_full["meta"]["requestId"].as_str().unwrap().to_owned();
    let created = created_full["data"].clone();
    let (key_id, key) = (
        created["keyId"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    );
    assert_eq!(
        call("keys.getKey", json!({"keyId": key_id, "decrypt": true})).await["plaintext"],
        key.as_str()
    );

    // Neither database dump, nor the logs, nor pg_stat_statements holds the key or server key.
    let (api_dump, vault_dump) = (dump(&api_db).await, dump(&vault_db).await);
    for secret in [key.as_str(), SERVER_KEY] {
        assert!(!api_dump.contains(secret), "api DB dump");
        assert!(
            !vault_dump.contains(secret),
            "vault DB dump: the vault DB holds no customer key material"
        );
    }
    let statements: Vec<String> = stats
        .query("SELECT query FROM pg_stat_statements", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!statements.is_empty());
    assert!(
        statements.iter().all(|q| !q.contains(&key) && !q.contains(SERVER_KEY)),
        "pg_stat_statements"
    );
    api.signal("TERM");
    vault.signal("TERM");
    assert!(api.wait().await.success() && vault.wait().await.success());
    let logs = format!("{}\n{}", api.log.join("\n"), vault.log.join("\n"));
    assert!(logs.contains(&key_id), "the logs are real: they name the key id");
    assert!(!logs.contains(&key) && !logs.contains(SERVER_KEY), "logs");
    // Nor the traces both services exported (flushed at shutdown).
    let traces = receiver.bodies().concat();
    let holds = |needle: &str| traces.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(holds(&key_id) && holds("POST /v1/encrypt"), "the traces are real");
    assert!(!holds(&key) && !holds(SERVER_KEY), "exported traces");
    // The api request and the vault call it made share a W3C trace id.
    let request_id = created_request_id.as_str();
    let api_line: Value = api
        .log
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["span"]["request_id"] == request_id && l["message"] == "request")
        .expect("the api logged the createKey request");
    let trace_id = api_line["span"]["trace_id"].as_str().unwrap().to_owned();
    assert_eq!(trace_id.len(), 32);
    assert!(
        vault.log.iter().any(|l| l.contains(&trace_id) && l.contains("/v1/encrypt")),
        "the vault's encrypt carries the api's trace id {trace_id}"
    );

    // Export from the api DB (the ciphertexts).
    let scratch = TempDir::new("drill");
    let export = scratch.path().join("export.jsonl");
    export_workspace(&api_db, &export).await;
    let exported = std::fs::read_to_string(&export).unwrap();
    assert!(exported.contains(&key_id) && !exported.contains(&key));

    // api DB + vault DB with a wrong server key: nothing.
    let (code, out, err) = run(
        "strongbox-vault",
        &[
            "recover",
            "--vault-db",
            vault_db.url(),
            "--input",
            export.to_str().unwrap(),
            "--key-stdin",
        ],
        "a-wrong-server-key-0123\n",
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("does not open") && !out.contains(&key), "{err}");

    // A fresh vault initialised with the SAME server key cannot decrypt: DEKs are random.
    let other_db = TestDb::new().await;
    let twin = spawn_vault(&other_db, &[]).await;
    twin.initialize().await;
    let line: Value = serde_json::from_str(exported.lines().next().unwrap()).unwrap();
    let keyring = line["keyring"].as_str().unwrap();
    twin.encrypt(keyring, &["same keyring name on the twin"]).await;
    let opened = twin
        .decrypt(keyring, &[(line["ciphertext"].as_str().unwrap().to_owned(), key_id.clone())])
        .await;
    assert_eq!(opened, vec![Err("DECRYPTION_FAILED".to_owned())]);
    let (code, out, _) = run(
        "strongbox-vault",
        &[
            "recover",
            "--vault-db",
            other_db.url(),
            "--input",
            export.to_str().unwrap(),
            "--key-stdin",
        ],
        &format!("{SERVER_KEY}\n"),
    )
    .await;
    assert_ne!(code, 0);
    assert!(!out.contains(&key), "the twin's database recovers nothing: {out}");

    // All three together: the disaster-recovery path gives the key back.
    let (code, out, err) = run(
        "strongbox-vault",
        &[
            "recover",
            "--vault-db",
            vault_db.url(),
            "--input",
            export.to_str().unwrap(),
            "--key-stdin",
        ],
        &format!("{SERVER_KEY}\n"),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let recovered: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(
        (recovered["key_id"].as_str(), recovered["plaintext"].as_str()),
        (Some(key_id.as_str()), Some(key.as_str()))
    );
}

/// An api on `api_db` reaching `vault`, with workspace `drill` and three recoverable keys of it:
/// the api and the `(keyId, key)` pairs.
async fn three_recoverable_keys(
    api_db: &TestDb,
    vault: &strongbox_tests::TestVault,
) -> (strongbox_tests::TestApi, Vec<(String, String)>) {
    let api = strongbox_tests::spawn_api_with_vault(api_db, vault, &[]).await;
    let root = api.workspace("drill").await;
    let api_id = api.create_api(&root, "drill").await;
    api.ok(&root, "apis.updateApi", json!({"apiId": api_id, "storeEncryptedKeys": true})).await;
    let mut keys = Vec::new();
    for _ in 0..3 {
        keys.push(api.create_key(&root, &api_id, json!({"recoverable": true})).await);
    }
    (api, keys)
}

/// `recover`'s output holds each key's plaintext on the line of its id.
fn every_key_recovered(out: &str, keys: &[(String, String)]) {
    for (id, key) in keys {
        let line =
            out.lines().find(|l| l.contains(id.as_str())).unwrap_or_else(|| panic!("{id}: {out}"));
        let recovered: Value = serde_json::from_str(line).unwrap();
        assert_eq!(recovered["plaintext"].as_str(), Some(key.as_str()));
    }
}

/// Under shares, the server key's place is taken by K shares: K−1 of them with both databases
/// recover nothing, even with a forged K-th; K of them with both databases recover every key.
#[tokio::test]
async fn fewer_shares_than_the_threshold_recover_nothing_and_a_full_set_recovers_every_key() {
    let (api_db, vault_db) = (TestDb::new().await, TestDb::new().await);
    let vault = spawn_vault(&vault_db, &[]).await;
    let (status, body) =
        vault.post("operator", "/v1/sys/initialize", json!({"shares": 4, "threshold": 3})).await;
    assert_eq!(status, 200, "{body}");
    let shares: Vec<String> =
        body["shares"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect();
    let (_api, keys) = three_recoverable_keys(&api_db, &vault).await;
    let scratch = TempDir::new("drill-shares");
    let export = scratch.path().join("export.jsonl");
    export_workspace(&api_db, &export).await;
    let export = export.to_str().unwrap();
    let vault_url = vault_db.url().to_owned();
    let recover = |stdin: String| {
        let (url, export) = (vault_url.clone(), export.to_owned());
        async move {
            let args = ["recover", "--vault-db", &url, "--input", &export, "--shares-stdin"];
            run("strongbox-vault", &args, &stdin).await
        }
    };
    // Any K−1: refused before anything is tried.
    for pair in [[0, 1], [1, 3], [2, 0]] {
        let (code, out, err) = recover(format!("{}\n{}\n", shares[pair[0]], shares[pair[1]])).await;
        assert_ne!(code, 0, "{pair:?}");
        assert!(keys.iter().all(|(_, key)| !out.contains(key)), "{pair:?}: {out}");
        assert!(err.contains("fewer shares than the threshold"), "{err}");
    }
    // K−1 and a share of another split in the K-th place: refused as mixed.
    let (status, body) = spawn_vault(&TestDb::new().await, &[])
        .await
        .post("operator", "/v1/sys/initialize", json!({"shares": 4, "threshold": 3}))
        .await;
    assert_eq!(status, 200);
    let foreign = body["shares"][0].as_str().unwrap().to_owned();
    let (code, out, _) = recover(format!("{}\n{}\n{foreign}\n", shares[0], shares[1])).await;
    assert_ne!(code, 0);
    assert!(keys.iter().all(|(_, key)| !out.contains(key)), "{out}");
    // K: every key.
    let (code, out, err) = recover(format!("{}\n{}\n{}\n", shares[3], shares[0], shares[2])).await;
    assert_eq!(code, 0, "{err}");
    every_key_recovered(&out, &keys);
}

/// Under the PKCS#11 seal the token (with its PIN) takes the server key's place. The token with
/// the api database and any vault database but its own recovers nothing; the token with both
/// databases recovers every key. The recovery shares with both databases recover nothing.
#[tokio::test]
async fn the_token_without_its_vault_database_recovers_nothing_and_with_both_every_key() {
    use strongbox_tests::softhsm::{MODULE, SoftToken};
    let token = SoftToken::shared();
    let scratch = TempDir::new("drill-token");
    let pin = scratch.path().join("pin");
    std::fs::write(&pin, &token.pin).unwrap();
    let pin = pin.to_str().unwrap().to_owned();
    let seal = [
        ("STRONGBOX_VAULT__SEAL__KIND", "pkcs11"),
        ("STRONGBOX_VAULT__SEAL__MODULE", MODULE),
        ("STRONGBOX_VAULT__SEAL__TOKEN_LABEL", token.label.as_str()),
        ("STRONGBOX_VAULT__SEAL__PIN_FILE", pin.as_str()),
    ];
    let (api_db, vault_db) = (TestDb::new().await, TestDb::new().await);
    let vault = spawn_vault(&vault_db, &seal).await;
    let (status, body) = vault.post("operator", "/v1/sys/initialize", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (_api, keys) = three_recoverable_keys(&api_db, &vault).await;
    let export = scratch.path().join("export.jsonl");
    export_workspace(&api_db, &export).await;
    let export = export.to_str().unwrap().to_owned();
    let recover = |vault_db: String| {
        let (export, pin) = (export.clone(), pin.clone());
        let label = token.label.clone();
        async move {
            let args = [
                "recover",
                "--vault-db",
                &vault_db,
                "--input",
                &export,
                "--token",
                "--module",
                MODULE,
                "--token-label",
                &label,
                "--pin-file",
                &pin,
            ];
            run("strongbox-vault", &args, "").await
        }
    };
    // Another vault database, sealed by the same token and key: its server key opens nothing of
    // this vault's.
    let other_db = TestDb::new().await;
    let other = spawn_vault(&other_db, &seal).await;
    assert_eq!(other.post("operator", "/v1/sys/initialize", json!({})).await.0, 200);
    let (code, out, err) = recover(other_db.url().to_owned()).await;
    assert_ne!(code, 0, "{err}");
    assert!(keys.iter().all(|(_, key)| !out.contains(key) && !err.contains(key)), "{out}");
    // An empty vault database: nothing to unseal.
    let empty = TestDb::new().await;
    strongbox_vault::migrate(&strongbox_shared::db::DatabaseConfig::from_url(empty.url()))
        .await
        .unwrap();
    let (code, out, err) = recover(empty.url().to_owned()).await;
    assert_ne!(code, 0);
    assert!(err.contains("no root record"), "{err}");
    assert!(keys.iter().all(|(_, key)| !out.contains(key)));
    // The recovery shares, all of them, with both databases: nothing. They split a secret
    // unrelated to the server key.
    let recovery: Vec<&str> =
        body["recovery_shares"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert_eq!(recovery.len(), 5);
    let args = ["recover", "--vault-db", vault_db.url(), "--input", &export, "--shares-stdin"];
    let (code, out, err) =
        run("strongbox-vault", &args, &format!("{}\n", recovery.join("\n"))).await;
    assert_ne!(code, 0, "{out}");
    assert!(keys.iter().all(|(_, key)| !out.contains(key) && !err.contains(key)), "{out}");
    // The token with both databases: every key.
    let (code, out, err) = recover(vault_db.url().to_owned()).await;
    assert_eq!(code, 0, "{err}");
    every_key_recovered(&out, &keys);
    // Neither database holds the server key or anything the token did not seal.
    let vault_dump = dump(&vault_db).await;
    assert!(!vault_dump.contains(&token.pin), "the PIN is not stored");
}
