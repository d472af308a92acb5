//! Runbook procedures performed on real processes with the commands `ops/RUNBOOK.md` gives;
//! afterwards every recoverable key must still decrypt to its original plaintext.

use std::process::Stdio;

use reqwest::Method;
use serde_json::json;
use strongbox_tests::process::binary;
use strongbox_tests::{
    SERVER_KEY, TestApi, TestDb, TestVault, spawn_api_with_vault, spawn_vault, spawn_vault_with,
};
use tokio::io::AsyncWriteExt as _;

struct Stack {
    api: TestApi,
    vault: TestVault,
    root: String,
    api_db: TestDb,
    vault_db: TestDb,
    keys: Vec<(String, String)>,
}

async fn stack() -> Stack {
    let (api_db, vault_db) = (TestDb::new().await, TestDb::new().await);
    let vault = spawn_vault(&vault_db, &[]).await;
    vault.initialize().await;
    let api =
        spawn_api_with_vault(&api_db, &vault, &[("STRONGBOX_API__REWRAP__INTERVAL_MS", "0")]).await;
    let root = api.workspace("acme").await;
    let api_id = api.create_api(&root, "runbook").await;
    api.ok(&root, "apis.updateApi", json!({"apiId": api_id, "storeEncryptedKeys": true})).await;
    let mut keys = Vec::new();
    for _ in 0..6 {
        keys.push(api.create_key(&root, &api_id, json!({"recoverable": true})).await);
    }
    Stack { api, vault, root, api_db, vault_db, keys }
}

impl Stack {
    /// Runs a CLI the way the runbook does: connection settings from the env-file keys.
    async fn cli(&self, program: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
        self.cli_at(&self.vault.url, program, args, stdin).await
    }

    /// The same against one replica.
    async fn cli_at(
        &self,
        vault_url: &str,
        program: &str,
        args: &[&str],
        stdin: &str,
    ) -> (i32, String, String) {
        let pki = &self.vault.pki;
        let mut child = tokio::process::Command::new(binary(program))
            .args(args)
            .env_clear()
            .env("STRONGBOX_VAULT_URL", vault_url)
            .env("STRONGBOX_TLS_CA", pki.path("ca.pem"))
            .env("STRONGBOX_OPERATOR_CERT", pki.path("operator.pem"))
            .env("STRONGBOX_OPERATOR_KEY", pki.path("operator-key.pem"))
            .env("STRONGBOX_API_CLIENT_CERT", pki.path("api.pem"))
            .env("STRONGBOX_API_CLIENT_KEY", pki.path("api-key.pem"))
            .env("STRONGBOX_API_DATABASE_URL", self.api_db.url())
            .env("STRONGBOX_VAULT_DATABASE_URL", self.vault_db.url())
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

    async fn all_recover_through(&self, api: &TestApi) {
        for (id, key) in &self.keys {
            let (status, body) =
                api.call(&self.root, "keys.getKey", json!({"keyId": id, "decrypt": true})).await;
            assert_eq!(
                (status, body["data"]["plaintext"].as_str()),
                (200, Some(key.as_str())),
                "{body}"
            );
        }
    }

    async fn keyring(&self) -> String {
        self.api_db
            .client()
            .await
            .query_one("SELECT DISTINCT keyring FROM encrypted_keys", &[])
            .await
            .unwrap()
            .get(0)
    }
}

fn pg_tool(name: &str) -> String {
    let dir = std::env::var("STRONGBOX_PG_BIN").unwrap_or_default();
    let path = std::path::Path::new(&dir).join(name);
    if path.exists() { path.display().to_string() } else { name.to_owned() }
}

#[tokio::test]
async fn procedure_7_rotate_deks_then_rewrap_retire_and_trim() {
    let s = stack().await;
    let (code, out, err) = s.cli("strongbox-vault", &["keyring", "rotate", "--all"], "").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Rotated 1 keyring(s)"), "{out}");
    let (code, out, err) = s.cli("strongbox-api", &["rewrap", "--retire"], "").await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("moved 6 row(s) to version 2") && out.contains("0 below the newest version"),
        "{out}"
    );
    assert!(out.contains("retired every version below 2"), "{out}");
    let keyring = s.keyring().await;
    let (code, out, _) = s.cli("strongbox-vault", &["keyring", "show", &keyring], "").await;
    assert_eq!(code, 0);
    assert!(out.contains("min decryption version: 2"), "{out}");
    let (code, out, err) =
        s.cli("strongbox-vault", &["keyring", "trim", &keyring, "--yes"], "").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Deleted versions [1]"), "{out}");
    s.all_recover_through(&s.api).await;
}

#[tokio::test]
async fn procedure_14_backup_and_restore_recovers_every_key_and_brings_back_a_shredded_keyring() {
    let s = stack().await;
    let dir = strongbox_tests::TempDir::new("backup");
    let (api_dump, vault_dump) = (dir.path().join("api.dump"), dir.path().join("vault.dump"));
    // The api database first, then the vault's.
    for (dump, db) in [(&api_dump, &s.api_db), (&vault_dump, &s.vault_db)] {
        let status = tokio::process::Command::new(pg_tool("pg_dump"))
            .args(["--format=custom", "--file", dump.to_str().unwrap(), db.url()])
            .status()
            .await
            .unwrap();
        assert!(status.success());
    }
    // After the backup, the workspace is crypto-shredded.
    let keyring = s.keyring().await;
    let (code, _, err) =
        s.cli("strongbox-vault", &["keyring", "delete", &keyring, "--yes"], "").await;
    assert_eq!(code, 0, "{err}");
    let (status, _) =
        s.api.call(&s.root, "keys.getKey", json!({"keyId": s.keys[0].0, "decrypt": true})).await;
    assert_eq!(status, 410);

    // Restore both into fresh databases and start new services on them.
    let (new_api_db, new_vault_db) = (TestDb::new().await, TestDb::new().await);
    for (dump, db) in [(&api_dump, &new_api_db), (&vault_dump, &new_vault_db)] {
        let output = tokio::process::Command::new(pg_tool("pg_restore"))
            .args(["--no-owner", "--dbname", db.url(), dump.to_str().unwrap()])
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let vault = spawn_vault_with(&new_vault_db, s.vault.pki.clone(), &[]).await;
    assert_eq!(vault.status().await["unlocked"], false, "a restored vault starts locked");
    assert_eq!(vault.unlock(strongbox_tests::SERVER_KEY).await.0, 200);
    let api = spawn_api_with_vault(&new_api_db, &vault, &[]).await;
    // The older vault backup brought the shredded keyring back, as the runbook warns.
    let (status, described) =
        vault.call("operator", Method::GET, &format!("/v1/keyrings/{keyring}"), None).await;
    assert_eq!((status, described["latest_version"].clone()), (200, json!(1)));
    s.all_recover_through(&api).await;
}

#[tokio::test]
async fn procedure_2_and_9_lock_and_unlock_each_replica() {
    let s = stack().await;
    let b = spawn_vault_with(&s.vault_db, s.vault.pki.clone(), &[]).await;
    let (code, out, _) = s.cli_at(&b.url, "strongbox-vault", &["status"], "").await;
    assert_eq!(code, 2, "a started replica is locked: {out}");
    let (code, _, err) = s
        .cli_at(&b.url, "strongbox-vault", &["unlock", "--key-stdin"], &format!("{SERVER_KEY}\n"))
        .await;
    assert_eq!(code, 0, "{err}");
    // Locking one replica leaves the other serving.
    let (code, out, _) = s.cli("strongbox-vault", &["lock"], "").await;
    assert!(code == 0 && out.contains("Locked."), "{out}");
    assert_eq!(s.cli("strongbox-vault", &["status"], "").await.0, 2);
    assert_eq!(s.cli_at(&b.url, "strongbox-vault", &["status"], "").await.0, 0);
    let (code, _, _) =
        s.cli("strongbox-vault", &["unlock", "--key-stdin"], &format!("{SERVER_KEY}\n")).await;
    assert_eq!(code, 0);
    s.all_recover_through(&s.api).await;
}

#[tokio::test]
async fn procedure_4_and_11_rekey_and_operator_handover() {
    let s = stack().await;
    let new_key = "the-incoming-operators-key-42";
    let (code, out, err) = s
        .cli("strongbox-vault", &["rekey", "--key-stdin"], &format!("{SERVER_KEY}\n{new_key}\n"))
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Server key changed."), "{out}");
    s.all_recover_through(&s.api).await;
    // The incoming operator checks the new key on a restart cycle.
    s.cli("strongbox-vault", &["lock"], "").await;
    assert_eq!(
        s.cli("strongbox-vault", &["unlock", "--key-stdin"], &format!("{SERVER_KEY}\n")).await.0,
        1,
        "the old key is dead"
    );
    assert_eq!(
        s.cli("strongbox-vault", &["unlock", "--key-stdin"], &format!("{new_key}\n")).await.0,
        0
    );
    s.all_recover_through(&s.api).await;
}

#[tokio::test]
async fn procedure_5_rotate_the_root_and_unlock_the_other_replicas() {
    let s = stack().await;
    let b = spawn_vault_with(&s.vault_db, s.vault.pki.clone(), &[]).await;
    assert_eq!(b.unlock(SERVER_KEY).await.0, 200);
    let (code, out, err) = s.cli("strongbox-vault", &["rotate-root"], "").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("New root key version 2"), "{out}");
    strongbox_tests::eventually(
        std::time::Duration::from_secs(10),
        "replica b to lock itself",
        || async {
            (s.cli_at(&b.url, "strongbox-vault", &["status"], "").await.0 == 2).then_some(())
        },
    )
    .await;
    assert_eq!(
        s.cli_at(&b.url, "strongbox-vault", &["unlock", "--key-stdin"], &format!("{SERVER_KEY}\n"))
            .await
            .0,
        0
    );
    s.all_recover_through(&s.api).await;
    let api_b = spawn_api_with_vault(&s.api_db, &b, &[]).await;
    s.all_recover_through(&api_b).await;
}

#[tokio::test]
async fn procedure_6_rotate_the_kek() {
    let s = stack().await;
    let (code, out, _) = s.cli("strongbox-vault", &["rotate"], "").await;
    assert!(code == 0 && out.contains("New KEK version 2"), "{out}");
    let (_, out, _) = s.cli("strongbox-vault", &["status"], "").await;
    assert!(out.contains("kek version:  2"), "{out}");
    s.all_recover_through(&s.api).await;
}

#[tokio::test]
async fn procedure_15_crypto_shred_a_workspace() {
    let s = stack().await;
    let keyring = s.keyring().await;
    let (code, _, err) =
        s.cli("strongbox-vault", &["keyring", "delete", &keyring, "--yes"], "").await;
    assert_eq!(code, 0, "{err}");
    for (id, key) in &s.keys {
        let (status, body) =
            s.api.call(&s.root, "keys.getKey", json!({"keyId": id, "decrypt": true})).await;
        assert_eq!((status, body["error"]["code"].as_str()), (410, Some("KEY_NOT_RECOVERABLE")));
        assert_eq!(
            s.api.verify(&s.root, key, json!({})).await["valid"],
            true,
            "verification still works"
        );
    }
}

#[tokio::test]
async fn procedure_16_disaster_recovery_with_export_and_recover() {
    let s = stack().await;
    let dir = strongbox_tests::TempDir::new("dr");
    let (export, plain) = (dir.path().join("acme.jsonl"), dir.path().join("plain.jsonl"));
    let (code, _, err) = s
        .cli(
            "strongbox-api",
            &["export-encrypted", "--workspace", "acme", "--output", export.to_str().unwrap()],
            "",
        )
        .await;
    assert_eq!(code, 0, "{err}");
    s.vault.shutdown.cancel(); // the vault cannot run
    let vault_db_url = s.vault_db.url().to_owned();
    let (code, _, err) = s
        .cli(
            "strongbox-vault",
            &[
                "recover",
                "--vault-db",
                &vault_db_url,
                "--input",
                export.to_str().unwrap(),
                "--output",
                plain.to_str().unwrap(),
                "--key-stdin",
            ],
            &format!("{SERVER_KEY}\n"),
        )
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("recovered 6 key(s)"), "{err}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&plain).unwrap();
    for (id, key) in &s.keys {
        let line = text.lines().find(|l| l.contains(id.as_str())).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(parsed["plaintext"].as_str(), Some(key.as_str()));
    }
}

#[tokio::test]
async fn procedure_1_and_3_first_start_with_a_generated_key_and_status() {
    let (api_db, vault_db) = (TestDb::new().await, TestDb::new().await);
    let vault = spawn_vault(&vault_db, &[]).await;
    let s = Stack {
        api: strongbox_tests::spawn_api(&api_db, &[]).await,
        vault,
        root: String::new(),
        api_db,
        vault_db,
        keys: Vec::new(),
    };
    let (code, out, _) = s.cli("strongbox-vault", &["status"], "").await;
    assert!(code == 2 && out.contains("uninitialized"), "{out}");
    let (code, out, err) = s.cli("strongbox-vault", &["initialize", "--generate"], "").await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("The vault is initialized and unlocked.") && out.contains("shown once"),
        "{out}"
    );
    let key = out
        .lines()
        .map(str::trim)
        .find(|l| l.len() >= 43 && !l.contains(' '))
        .expect("the printed server key")
        .to_owned();
    let (code, out, _) = s.cli("strongbox-vault", &["status"], "").await;
    assert!(code == 0 && out.contains("state:        unlocked"), "{out}");
    let (code, out, err) = s.cli("strongbox-api", &["bootstrap", "--workspace", "acme"], "").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Root key (shown once"), "{out}");
    // The printed server key is the one that unlocks it after a restart.
    s.cli("strongbox-vault", &["lock"], "").await;
    assert_eq!(
        s.cli("strongbox-vault", &["unlock", "--key-stdin"], &format!("{key}\n")).await.0,
        0
    );
}

#[tokio::test]
async fn procedure_10_lost_server_key_without_and_with_a_backup() {
    let s = stack().await;
    // With a backup: the vault database as it was, and the key current then.
    let dir = strongbox_tests::TempDir::new("lost-key");
    let dump = dir.path().join("vault.dump");
    let status = tokio::process::Command::new(pg_tool("pg_dump"))
        .args(["--format=custom", "--file", dump.to_str().unwrap(), s.vault_db.url()])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    // The key is lost: wipe the vault database, start over.
    let wiped = TestDb::new().await;
    let fresh = spawn_vault_with(&wiped, s.vault.pki.clone(), &[]).await;
    fresh.initialize().await;
    let api = spawn_api_with_vault(&s.api_db, &fresh, &[]).await;
    let (status, body) =
        api.call(&s.root, "keys.getKey", json!({"keyId": s.keys[0].0, "decrypt": true})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (410, Some("KEY_NOT_RECOVERABLE")),
        "without a backup they are gone"
    );
    assert_eq!(
        api.verify(&s.root, &s.keys[0].1, json!({})).await["valid"],
        true,
        "verification is unaffected"
    );
    // With the backup: restore, unlock with the key of that time, rekey to a new one.
    let restored = TestDb::new().await;
    let output = tokio::process::Command::new(pg_tool("pg_restore"))
        .args(["--no-owner", "--dbname", restored.url(), dump.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let back = spawn_vault_with(&restored, s.vault.pki.clone(), &[]).await;
    assert_eq!(back.unlock(SERVER_KEY).await.0, 200);
    let (status, _) = back
        .post(
            "operator",
            "/v1/sys/rekey",
            json!({"current_key": SERVER_KEY, "new_key": "a-key-we-control-now-123"}),
        )
        .await;
    assert_eq!(status, 200);
    let api = spawn_api_with_vault(&s.api_db, &back, &[]).await;
    s.all_recover_through(&api).await;
}

#[tokio::test]
async fn procedure_12_certificates_are_renewed_and_revoked_without_a_restart() {
    let (api_db, vault_db) = (TestDb::new().await, TestDb::new().await);
    let pki = strongbox_tests::TestPki::new();
    let crl = pki.write("crl.pem", &pki.ca.crl(&[]).unwrap());
    let crl_path = crl.display().to_string();
    let vault = spawn_vault_with(
        &vault_db,
        pki.clone(),
        &[
            ("STRONGBOX_VAULT__TLS__CRLS", crl_path.as_str()),
            ("STRONGBOX_VAULT__TLS__RELOAD_INTERVAL_SECONDS", "1"),
        ],
    )
    .await;
    vault.initialize().await;
    let api = spawn_api_with_vault(
        &api_db,
        &vault,
        &[("STRONGBOX_API__VAULT__RELOAD_INTERVAL_SECONDS", "1")],
    )
    .await;
    let root = api.workspace("acme").await;
    let api_id = api.create_api(&root, "certs").await;
    api.ok(&root, "apis.updateApi", json!({"apiId": api_id, "storeEncryptedKeys": true})).await;
    let (key_id, key) = api.create_key(&root, &api_id, json!({"recoverable": true})).await;
    let old_api_serial = {
        let certs = strongbox_shared::tls::load_certs(&pki.path("api.pem")).unwrap();
        x509_serial(&certs[0])
    };
    let old_cert = pki.write("api-old.pem", &std::fs::read_to_string(pki.path("api.pem")).unwrap());
    let old_key =
        pki.write("api-old-key.pem", &std::fs::read_to_string(pki.path("api-key.pem")).unwrap());
    // Renew the vault's server certificate and the api's client certificate in place.
    let vault_cert = pki
        .ca
        .issue_server(
            "vault",
            &["localhost", "127.0.0.1", "::1"],
            strongbox_vault::certs::Validity::days(1),
        )
        .unwrap();
    pki.write("vault-key.pem", &vault_cert.key_pem);
    pki.write("vault.pem", &vault_cert.cert_pem);
    let api_cert = pki.ca.issue_client("api", strongbox_vault::certs::Validity::days(1)).unwrap();
    pki.write("api-key.pem", &api_cert.key_pem);
    pki.write("api.pem", &api_cert.cert_pem);
    // Revoke the old api certificate: only the renewed one may connect from now on.
    pki.write("crl.pem", &pki.ca.crl(&[old_api_serial]).unwrap());
    strongbox_tests::eventually(
        std::time::Duration::from_secs(20),
        "the vault to apply the new CRL",
        || async {
            let old_client = pki.client_with(&old_cert, &old_key);
            old_client
                .get(format!("{}/v1/sys/status", vault.url))
                .send()
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    // The api, on its renewed certificate, still recovers keys; no service was restarted.
    strongbox_tests::eventually(
        std::time::Duration::from_secs(20),
        "the api to use its renewed certificate",
        || async {
            let (status, body) =
                api.call(&root, "keys.getKey", json!({"keyId": key_id, "decrypt": true})).await;
            (status == 200 && body["data"]["plaintext"] == key.as_str()).then_some(())
        },
    )
    .await;
    let (status, _) =
        api.call(&root, "keys.createKey", json!({"apiId": api_id, "recoverable": true})).await;
    assert_eq!(status, 200);
}

fn x509_serial(cert: &rustls::pki_types::CertificateDer<'_>) -> u64 {
    strongbox_tests::pki::serial_of(cert.as_ref())
}

#[tokio::test]
async fn procedure_13_rotate_a_root_key() {
    let s = stack().await;
    let created = s
        .api
        .ok(&s.root, "rootKeys.createKey", json!({"name": "ci", "permissions": ["api.*.read_api"]}))
        .await;
    let (id, old) = (created["keyId"].as_str().unwrap(), created["key"].as_str().unwrap());
    let rolled = s
        .api
        .ok(&s.root, "rootKeys.rerollKey", json!({"keyId": id, "expiration": 3_600_000}))
        .await;
    let new = rolled["key"].as_str().unwrap();
    let probe = json!({"apiId": "api_none"});
    assert_eq!(
        s.api.call(old, "apis.getApi", probe.clone()).await.0,
        404,
        "the old key works until its expiration"
    );
    assert_eq!(s.api.call(new, "apis.getApi", probe.clone()).await.0, 404, "the new key works");
    s.api.ok(&s.root, "rootKeys.deleteKey", json!({"keyId": id})).await;
    assert_eq!(
        s.api.call(old, "apis.getApi", probe.clone()).await.0,
        401,
        "a deleted root key stops at once"
    );
    assert_eq!(s.api.call(new, "apis.getApi", probe).await.0, 404);
}

#[tokio::test]
async fn procedure_17_verify_the_audit_log() {
    let s = stack().await;
    let key = format!("{SERVER_KEY}\n");
    let (code, out, err) =
        s.cli("strongbox-vault", &["audit", "verify", "--key-stdin"], &key).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("audit log intact: ") && out.contains(", newest "), "{out}");
    assert!(!out.contains("not checked"), "with the server key every MAC is checked: {out}");
    // The checkpoint it prints holds on the next run.
    let checkpoint = out.split(", newest ").nth(1).unwrap().trim().to_owned();
    let (code, out, _) = s
        .cli("strongbox-vault", &["audit", "verify", "--key-stdin", "--expect", &checkpoint], &key)
        .await;
    assert_eq!(code, 0, "{out}");
    // An entry altered behind the log's back (its guard switched off first) is named.
    let client = s.vault_db.client().await;
    client
        .batch_execute(
            "ALTER TABLE audit_log DISABLE TRIGGER USER; \
             UPDATE audit_log SET identity = 'spiffe://elsewhere/operator' WHERE seq = 4; \
             ALTER TABLE audit_log ENABLE TRIGGER USER;",
        )
        .await
        .unwrap();
    let (code, out, _) = s.cli("strongbox-vault", &["audit", "verify", "--key-stdin"], &key).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("BROKEN at entry 4") && out.contains("Entries 1-3 check out"), "{out}");
    s.all_recover_through(&s.api).await;
}

/// The shares a CLI printed, in order.
fn printed_shares(out: &str) -> Vec<String> {
    out.lines().map(str::trim).filter(|l| l.starts_with("sb1-")).map(str::to_owned).collect()
}

/// A stack whose vault was initialized by the CLI with 3-of-5 shares; returns the shares.
async fn shares_stack() -> (Stack, Vec<String>) {
    let (api_db, vault_db) = (TestDb::new().await, TestDb::new().await);
    let vault = spawn_vault(&vault_db, &[]).await;
    let mut s = Stack {
        api: strongbox_tests::spawn_api(&api_db, &[]).await,
        vault,
        root: String::new(),
        api_db,
        vault_db,
        keys: Vec::new(),
    };
    let (code, out, err) =
        s.cli("strongbox-vault", &["initialize", "--shares", "5", "--threshold", "3"], "").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("shown once") && out.contains("Any 3 of them unlock"), "{out}");
    let shares = printed_shares(&out);
    assert_eq!(shares.len(), 5, "{out}");
    let (code, out, _) = s.cli("strongbox-vault", &["status"], "").await;
    assert!(code == 0 && out.contains("seal:         shares (3 needed)"), "{out}");
    s.api = spawn_api_with_vault(&s.api_db, &s.vault, &[]).await;
    s.root = s.api.workspace("acme").await;
    let api_id = s.api.create_api(&s.root, "shares").await;
    s.api.ok(&s.root, "apis.updateApi", json!({"apiId": api_id, "storeEncryptedKeys": true})).await;
    for _ in 0..4 {
        s.keys.push(s.api.create_key(&s.root, &api_id, json!({"recoverable": true})).await);
    }
    (s, shares)
}

impl Stack {
    /// `rekey --shares-stdin` with `current`, to a new `n`-of-`k` split; returns the new shares
    /// and what the command printed.
    async fn rekey_to_shares(
        &self,
        current: &[&String],
        n: &str,
        k: &str,
    ) -> (Vec<String>, String) {
        let stdin: String = current.iter().map(|s| format!("{s}\n")).collect();
        let args = ["rekey", "--shares-stdin", "--new-shares", n, "--new-threshold", k];
        let (code, out, err) = self.cli("strongbox-vault", &args, &stdin).await;
        assert_eq!(code, 0, "{err}");
        (printed_shares(&out), out)
    }

    /// Gives `share` to the replica at `url` as one holder would.
    async fn give_share(&self, url: &str, share: &str) -> (i32, String, String) {
        self.cli_at(url, "strongbox-vault", &["unlock", "--share-stdin"], &format!("{share}\n"))
            .await
    }
}

#[tokio::test]
async fn procedure_18_and_19_initialize_with_shares_and_unlock_each_replica_with_them() {
    let (s, shares) = shares_stack().await;
    let b = spawn_vault_with(&s.vault_db, s.vault.pki.clone(), &[]).await;
    s.cli("strongbox-vault", &["lock"], "").await;
    // Three holders, one after another, on replica a.
    let (code, out, err) = s.give_share(&s.vault.url, &shares[3]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Share accepted: 1 of 3"), "{out}");
    let (code, out, _) = s.cli("strongbox-vault", &["status"], "").await;
    assert!(code == 2 && out.contains("progress:     1 given on this replica"), "{out}");
    assert!(s.give_share(&s.vault.url, &shares[0]).await.1.contains("2 of 3"));
    let (code, out, err) = s.give_share(&s.vault.url, &shares[1]).await;
    assert!(code == 0 && out.contains("Unlocked."), "{out}{err}");
    s.all_recover_through(&s.api).await;
    // Replica b needs its own three: progress is per replica.
    assert_eq!(s.cli_at(&b.url, "strongbox-vault", &["status"], "").await.0, 2);
    for share in [&shares[4], &shares[2]] {
        assert_eq!(s.give_share(&b.url, share).await.0, 0);
    }
    let (code, out, _) =
        s.cli_at(&b.url, "strongbox-vault", &["unlock", "--reset-shares"], "").await;
    assert!(code == 0 && out.contains("discarded"), "{out}");
    for share in [&shares[4], &shares[2], &shares[0]] {
        assert_eq!(s.give_share(&b.url, share).await.0, 0);
    }
    assert_eq!(s.cli_at(&b.url, "strongbox-vault", &["status"], "").await.0, 0, "b unlocked");
    let api_b = spawn_api_with_vault(&s.api_db, &b, &[]).await;
    s.all_recover_through(&api_b).await;
    // A mistyped share is refused with a reason and does not count.
    s.cli_at(&b.url, "strongbox-vault", &["lock"], "").await;
    let typo = shares[0].replacen('-', "-9", 1);
    let (code, _, err) = s.give_share(&b.url, &typo).await;
    assert!(code == 1 && err.contains("INVALID_SHARE"), "{err}");
    assert!(err.contains("it was not counted"), "the CLI says what to do next: {err}");
}

#[tokio::test]
async fn procedure_20_hand_over_by_rekeying_to_new_shares() {
    let (s, shares) = shares_stack().await;
    let (new, out) = s.rekey_to_shares(&[&shares[0], &shares[2], &shares[4]], "3", "2").await;
    assert!(out.contains("Server key changed and split"), "{out}");
    assert_eq!(new.len(), 3, "{out}");
    s.all_recover_through(&s.api).await;
    s.cli("strongbox-vault", &["lock"], "").await;
    let (code, _, err) = s.give_share(&s.vault.url, &shares[1]).await;
    assert!(code == 1 && err.contains("INVALID_SHARE"), "the old split is dead: {err}");
    assert_eq!(s.give_share(&s.vault.url, &new[2]).await.0, 0);
    let (code, out, _) = s.give_share(&s.vault.url, &new[0]).await;
    assert!(code == 0 && out.contains("Unlocked."), "{out}");
    s.all_recover_through(&s.api).await;
}

#[tokio::test]
async fn procedure_21_lost_shares_with_enough_left_and_with_too_few() {
    let (s, shares) = shares_stack().await;
    // Two shares are lost; three are left: still enough to re-split, which retires the lost ones.
    let (fresh, _) = s.rekey_to_shares(&[&shares[1], &shares[3], &shares[4]], "5", "3").await;
    assert_eq!(fresh.len(), 5);
    s.all_recover_through(&s.api).await;
    // Later, three of the fresh five are lost: two are left, below the threshold. No unlock is
    // possible: two shares and any third one (a lost share's guess) never open the root.
    s.cli("strongbox-vault", &["lock"], "").await;
    assert_eq!(s.give_share(&s.vault.url, &fresh[0]).await.0, 0);
    assert_eq!(s.give_share(&s.vault.url, &fresh[1]).await.0, 0);
    let (code, _, err) = s.give_share(&s.vault.url, &shares[0]).await;
    assert!(code == 1 && err.contains("INVALID_SHARE"), "an old share does not fit: {err}");
    let (code, out, _) = s.cli("strongbox-vault", &["status"], "").await;
    assert!(code == 2 && out.contains("progress:     2"), "{out}");
    // The recoverable keys are lost with the vault; verification is not affected.
    let (status, body) =
        s.api.call(&s.root, "keys.getKey", json!({"keyId": s.keys[0].0, "decrypt": true})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("VAULT_LOCKED")), "{body}");
    assert_eq!(s.api.verify(&s.root, &s.keys[0].1, json!({})).await["valid"], true);
}
