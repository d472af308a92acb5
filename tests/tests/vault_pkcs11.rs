//! The PKCS#11 seal end to end, on SoftHSM2: vault processes initialise under the token, and a
//! replica that is killed and restarted unlocks itself and serves decrypts with no operator call.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use strongbox_tests::softhsm::{MODULE, SoftToken};
use strongbox_tests::{ServiceProcess, TempDir, TestDb, TestPki, eventually, send, vault_env};

struct Replica {
    process: ServiceProcess,
    url: String,
}

/// A vault process under the PKCS#11 seal, reading its PIN from `pin_file`.
async fn start(db: &TestDb, pki: &TestPki, pin_file: &Path) -> Replica {
    start_with(db, pki, Some(pin_file)).await
}

/// A vault process under the PKCS#11 seal (with `pin_file`), or under `key` (`None`).
async fn start_with(db: &TestDb, pki: &TestPki, pin_file: Option<&Path>) -> Replica {
    let token = SoftToken::shared();
    let mut env: HashMap<String, String> = vault_env(db, pki).into_iter().collect();
    env.insert("STRONGBOX_VAULT__LOG__FILTER".to_owned(), "info".to_owned());
    if let Some(pin_file) = pin_file {
        for (k, v) in [
            ("STRONGBOX_VAULT__SEAL__KIND", "pkcs11"),
            ("STRONGBOX_VAULT__SEAL__MODULE", MODULE),
            ("STRONGBOX_VAULT__SEAL__TOKEN_LABEL", token.label.as_str()),
            ("STRONGBOX_VAULT__SEAL__PIN_FILE", pin_file.to_str().unwrap()),
        ] {
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    env.insert("SOFTHSM2_CONF".to_owned(), std::env::var("SOFTHSM2_CONF").unwrap());
    let mut process = ServiceProcess::start("strongbox-vault", &["serve"], &env);
    let ready = process.wait_for_message("strongbox-vault ready to serve").await;
    let port = ready["main"].as_str().unwrap().rsplit(':').next().unwrap().to_owned();
    Replica { process, url: format!("https://localhost:{port}") }
}

impl Replica {
    async fn status(&self, pki: &TestPki) -> Value {
        let url = format!("{}/v1/sys/status", self.url);
        let (status, body) = send(pki.client("operator"), reqwest::Method::GET, &url, None).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits (within seconds) until this replica reports itself unlocked.
    async fn unlocks_itself(&self, pki: &TestPki) {
        eventually(Duration::from_secs(20), "the replica to unlock itself", || async {
            (self.status(pki).await["unlocked"] == true).then_some(())
        })
        .await;
    }

    async fn call(&self, pki: &TestPki, role: &str, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        send(pki.client(role), reqwest::Method::POST, &url, Some(body)).await
    }

    async fn decrypt(&self, pki: &TestPki, ciphertext: &str) -> String {
        let body =
            json!({"keyring": "ws_1", "items": [{"ciphertext": ciphertext, "context": "c"}]});
        let (status, body) = self.call(pki, "api", "/v1/decrypt", body).await;
        assert_eq!(status, 200, "{body}");
        let plain = body["items"][0]["plaintext"].as_str().unwrap_or_else(|| panic!("{body}"));
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(plain).unwrap()).unwrap()
    }
}

/// Runs `strongbox-vault ARGS` against `replica` as the runbook does, with the operator's
/// certificate from the env-file keys; returns the exit code and stdout.
async fn cli(pki: &TestPki, replica: &Replica, args: &[&str]) -> (i32, String) {
    cli_with_stdin(pki, replica, args, "").await
}

/// [`cli`] with `stdin` as the command's standard input; stderr is appended to the output
/// returned when the command fails.
async fn cli_with_stdin(
    pki: &TestPki,
    replica: &Replica,
    args: &[&str],
    stdin: &str,
) -> (i32, String) {
    use tokio::io::AsyncWriteExt as _;
    let mut child =
        tokio::process::Command::new(strongbox_tests::process::binary("strongbox-vault"))
            .args(args)
            .env_clear()
            .env("STRONGBOX_VAULT_URL", &replica.url)
            .env("STRONGBOX_TLS_CA", pki.path("ca.pem"))
            .env("STRONGBOX_OPERATOR_CERT", pki.path("operator.pem"))
            .env("STRONGBOX_OPERATOR_KEY", pki.path("operator-key.pem"))
            .env("SOFTHSM2_CONF", std::env::var("SOFTHSM2_CONF").unwrap())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        text.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    (out.status.code().unwrap_or(-1), text)
}

fn pin_file(dir: &TempDir, name: &str, pin: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{pin}\n")).unwrap();
    path
}

#[tokio::test]
async fn a_restarted_replica_unlocks_itself_through_the_token_and_serves() {
    let db = TestDb::new().await;
    let pki = TestPki::new();
    let dir = TempDir::new("pkcs11-pins");
    let token = SoftToken::shared();
    let pin = pin_file(&dir, "pin", &token.pin);
    let a = start(&db, &pki, &pin).await;
    assert_eq!(a.status(&pki).await["state"], "uninitialized");

    // Under this seal an operator's key or shares are refused: the token holds the key.
    let (status, body) =
        a.call(&pki, "operator", "/v1/sys/initialize", json!({"key": "k".repeat(32)})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(a.status(&pki).await["initialized"], false);
    // Initialising under the token (RUNBOOK procedure 23): no key to give, none shown.
    let (code, out) = cli(&pki, &a, &["initialize", "--token", "--output", "json"]).await;
    assert_eq!(code, 0, "{out}");
    let (again, _) = cli(&pki, &a, &["initialize", "--token"]).await;
    assert_ne!(again, 0, "a second initialize is refused");
    let body: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(body["seal"], "pkcs11", "{body}");
    assert!(body.get("server_key").is_none() && body.get("shares").is_none(), "{body}");
    // Five recovery shares by default, three of which authorise; they are not a server key.
    assert_eq!(body["recovery_shares"].as_array().map(Vec::len), Some(5), "{body}");
    assert_eq!(a.status(&pki).await["recovery_threshold"], 3);
    let status = a.status(&pki).await;
    assert_eq!(
        (status["seal"].as_str(), status["unlocked"].as_bool()),
        (Some("pkcs11"), Some(true))
    );
    // The database holds only the token's sealing of the server key.
    let client = db.client().await;
    let row = client
        .query_one("SELECT token_key_label, octet_length(token_sealed) FROM root_record", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "strongbox-unlock");
    assert!(row.get::<_, i32>(1) > 32);

    let plaintext = base64::engine::general_purpose::STANDARD.encode("recoverable secret");
    let (status, body) = a
        .call(
            &pki,
            "api",
            "/v1/encrypt",
            json!({"keyring": "ws_1", "items": [{"plaintext": plaintext, "context": "c"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let ciphertext = body["items"][0]["ciphertext"].as_str().unwrap().to_owned();

    // A second replica comes up and unlocks itself.
    let b = start(&db, &pki, &pin).await;
    b.unlocks_itself(&pki).await;
    assert_eq!(b.decrypt(&pki, &ciphertext).await, "recoverable secret");

    // The first is killed outright and restarted: it unlocks itself and serves.
    let Replica { mut process, .. } = a;
    process.signal("KILL");
    process.wait().await;
    let a = start(&db, &pki, &pin).await;
    a.unlocks_itself(&pki).await;
    assert_eq!(a.decrypt(&pki, &ciphertext).await, "recoverable secret");
    // Each auto-unlock is in the audit log, under the replica's own identity.
    // (The entry follows the unlock by the time a write takes.)
    eventually(Duration::from_secs(10), "two audited auto-unlocks: b, then a", || async {
        let unlocks: i64 = client
            .query_one(
                "SELECT count(*) FROM audit_log \
                 WHERE action = 'auto-unlock through the PKCS#11 token' \
                 AND status = 200 AND identity LIKE 'pkcs11-auto-unlock/%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(unlocks <= 2, "{unlocks}");
        (unlocks == 2).then_some(())
    })
    .await;
    // The audit log's MACs can be checked offline with the token, as with a server key.
    let args = [
        "audit",
        "verify",
        "--output",
        "json",
        "--database-url",
        db.url(),
        "--token",
        "--module",
        MODULE,
        "--token-label",
        &token.label,
        "--pin-file",
        pin.to_str().unwrap(),
    ];
    let (code, out) = cli(&pki, &a, &args).await;
    assert_eq!(code, 0, "{out}");
    let verdict: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(verdict["unchecked_macs"], 0, "{verdict}");
    assert!(verdict["entries"].as_i64().unwrap() >= 2, "{verdict}");
    // An operator cannot type a server key for it: nobody holds one.
    let (status, body) =
        a.call(&pki, "operator", "/v1/sys/unlock", json!({"key": "x".repeat(32)})).await;
    assert_eq!(status, 400, "{body}");

    // An operator's lock holds: auto-unlock does not undo it.
    let url = format!("{}/v1/sys/lock", b.url);
    let (status, body) = send(pki.client("operator"), reqwest::Method::POST, &url, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = b
        .call(
            &pki,
            "api",
            "/v1/decrypt",
            json!({"keyring": "ws_1", "items": [{"ciphertext": ciphertext, "context": "c"}]}),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(b.status(&pki).await["unlocked"], false);
}

#[tokio::test]
async fn a_replica_whose_token_refuses_the_pin_stays_locked_and_says_why() {
    let db = TestDb::new().await;
    let pki = TestPki::new();
    let dir = TempDir::new("pkcs11-pins");
    let token = SoftToken::shared();
    let right = pin_file(&dir, "right", &token.pin);
    let a = start(&db, &pki, &right).await;
    let (status, body) = a.call(&pki, "operator", "/v1/sys/initialize", json!({})).await;
    assert_eq!(status, 200, "{body}");

    let wrong = pin_file(&dir, "wrong", "not-the-pin");
    let mut b = start(&db, &pki, &wrong).await;
    let status = eventually(Duration::from_secs(20), "the reason in the status", || async {
        let status = b.status(&pki).await;
        status["auto_unlock_error"].is_string().then_some(status)
    })
    .await;
    assert_eq!(status["unlocked"], false, "{status}");
    let reason = status["auto_unlock_error"].as_str().unwrap();
    assert!(reason.contains("PIN"), "{reason}");
    let (code, out) = cli(&pki, &b, &["status"]).await;
    assert_eq!(code, 2, "locked: {out}");
    assert!(out.contains("auto-unlock:  failing:") && out.contains("PIN"), "{out}");
    // The refused PIN is not tried again (a real token locks its PIN after a few), until the
    // file holds another: then the replica unlocks itself.
    let waiting =
        eventually(Duration::from_secs(20), "the replica to wait for a new PIN", || async {
            let status = b.status(&pki).await;
            let reason = status["auto_unlock_error"].as_str().unwrap_or_default().to_owned();
            reason.contains("waiting for that file").then_some(reason)
        })
        .await;
    assert!(waiting.contains("seal.pin_file"), "{waiting}");
    std::fs::write(&wrong, format!("{}\n", token.pin)).unwrap();
    b.unlocks_itself(&pki).await;
    assert!(b.status(&pki).await.get("auto_unlock_error").is_none());
    // The log said why, and never showed a PIN.
    b.process.signal("TERM");
    b.process.wait().await;
    let log = b.process.log.join("\n");
    assert!(log.contains("auto-unlock through the PKCS#11 token failed"), "{log}");
    assert!(log.contains("unlocked through the PKCS#11 token"), "{log}");
    assert!(!log.contains("not-the-pin") && !log.contains(&token.pin), "the PIN is never logged");
    // The replica with the right PIN is not affected.
    assert_eq!(a.status(&pki).await["unlocked"], true);
}

#[tokio::test]
async fn initialize_without_a_key_needs_the_pkcs11_seal() {
    let db = TestDb::new().await;
    let vault = strongbox_tests::spawn_vault(&db, &[]).await;
    let (status, body) = vault.post("operator", "/v1/sys/initialize", json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(vault.status().await["initialized"], false);
}

impl Replica {
    async fn encrypt(&self, pki: &TestPki, plaintext: &str) -> String {
        let plaintext = base64::engine::general_purpose::STANDARD.encode(plaintext);
        let body = json!({"keyring": "ws_1", "items": [{"plaintext": plaintext, "context": "c"}]});
        let (status, body) = self.call(pki, "api", "/v1/encrypt", body).await;
        assert_eq!(status, 200, "{body}");
        body["items"][0]["ciphertext"].as_str().unwrap().to_owned()
    }

    async fn stop(self) {
        let Replica { mut process, .. } = self;
        process.signal("KILL");
        process.wait().await;
    }
}

/// The recovery shares an answer printed.
fn recovery_shares(body: &Value) -> Vec<String> {
    body["recovery_shares"]
        .as_array()
        .unwrap_or_else(|| panic!("no recovery shares: {body}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// RUNBOOK procedure 25: a vault under an operator's server key moves to the token; replicas
/// configured with the token then unlock themselves, and the recovery shares never unlock.
#[tokio::test]
async fn enabling_auto_unlock_migrates_a_vault_from_its_server_key_to_the_token() {
    let (db, pki, dir) = (TestDb::new().await, TestPki::new(), TempDir::new("pkcs11-pins"));
    let pin = pin_file(&dir, "pin", &SoftToken::shared().pin);
    let key = "operator-held-server-key-0123";
    let a = start_with(&db, &pki, None).await;
    let (status, body) = a.call(&pki, "operator", "/v1/sys/initialize", json!({"key": key})).await;
    assert_eq!(status, 200, "{body}");
    let ciphertext = a.encrypt(&pki, "recoverable secret").await;

    // Step 1: every replica is configured with the token and restarted. The vault is still
    // under the operator's key, so they wait, locked, and say why.
    a.stop().await;
    let a = start(&db, &pki, &pin).await;
    let b = start(&db, &pki, &pin).await;
    let waiting = eventually(Duration::from_secs(20), "b to say why it waits", || async {
        b.status(&pki).await["auto_unlock_error"].as_str().map(str::to_owned)
    })
    .await;
    assert!(waiting.contains("held by operators"), "{waiting}");
    // Step 2: an operator unlocks one replica with the server key.
    let (code, out) =
        cli_with_stdin(&pki, &a, &["unlock", "--key-stdin"], &format!("{key}\n")).await;
    assert_eq!(code, 0, "{out}");
    // Without the server key nothing moves.
    let args = ["seal", "migrate", "--to", "pkcs11", "--stdin", "--output", "json"];
    let (code, out) = cli_with_stdin(&pki, &a, &args, "not-the-server-key-at-all\n").await;
    assert_ne!(code, 0, "{out}");
    assert_eq!(a.status(&pki).await["seal"], "key");
    // Step 3: the migration, with the server key; three recovery shares, two authorise.
    let args = [
        "seal",
        "migrate",
        "--to",
        "pkcs11",
        "--stdin",
        "--shares",
        "3",
        "--threshold",
        "2",
        "--output",
        "json",
    ];
    let (code, out) = cli_with_stdin(&pki, &a, &args, &format!("{key}\n")).await;
    assert_eq!(code, 0, "{out}");
    let answer: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(answer["seal"], "pkcs11", "{answer}");
    let recovery = recovery_shares(&answer);
    assert_eq!(recovery.len(), 3);
    let status = a.status(&pki).await;
    assert_eq!(
        (status["seal"].as_str(), status["recovery_threshold"].as_u64()),
        (Some("pkcs11"), Some(2))
    );

    // Step 4: the waiting replica unlocks itself at once (it is woken by the new root record),
    // and serves what was encrypted under the old seal.
    b.unlocks_itself(&pki).await;
    assert_eq!(b.decrypt(&pki, &ciphertext).await, "recoverable secret");
    // A restarted replica unlocks itself, with no operator.
    a.stop().await;
    let a = start(&db, &pki, &pin).await;
    a.unlocks_itself(&pki).await;
    assert_eq!(a.decrypt(&pki, &ciphertext).await, "recoverable secret");

    // The old server key authorises nothing now, and recovery shares never unlock.
    let (status, body) = a
        .call(&pki, "operator", "/v1/sys/rekey", json!({"current_key": key, "new_key": key}))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = b.call(&pki, "operator", "/v1/sys/lock", json!({})).await;
    assert_eq!(status, 200, "{body}");
    for share in &recovery {
        let (status, body) =
            b.call(&pki, "operator", "/v1/sys/unlock", json!({"share": share})).await;
        assert_eq!(status, 400, "{body}");
    }
    assert_eq!(b.status(&pki).await["unlocked"], false);
}

/// RUNBOOK procedure 26: the token's key is replaced by a key under a new label, authorised by
/// the recovery shares, which also authorise rotate-root and a rekey that re-splits them.
#[tokio::test]
async fn the_token_key_is_replaced_under_a_new_label_with_the_recovery_shares() {
    let (db, pki, dir) = (TestDb::new().await, TestPki::new(), TempDir::new("pkcs11-pins"));
    let pin = pin_file(&dir, "pin", &SoftToken::shared().pin);
    let a = start(&db, &pki, &pin).await;
    let (status, body) =
        a.call(&pki, "operator", "/v1/sys/initialize", json!({"shares": 3, "threshold": 2})).await;
    assert_eq!(status, 200, "{body}");
    let recovery = recovery_shares(&body);
    let ciphertext = a.encrypt(&pki, "recoverable secret").await;
    let client = db.client().await;
    let generation = || async {
        client.query_one("SELECT generation FROM root_record", &[]).await.unwrap().get::<_, i64>(0)
    };

    // Rotate-root needs a quorum of them under this seal.
    let (status, body) = a.call(&pki, "operator", "/v1/sys/rotate-root", json!({})).await;
    assert_eq!(status, 400, "{body}");
    let one = json!({"recovery_shares": [recovery[0]]});
    let (status, body) = a.call(&pki, "operator", "/v1/sys/rotate-root", one).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("INVALID_SHARE")), "{body}");
    // A split planted in the database (its check replaced) authorises nothing: the check is
    // keyed by the root, which the database does not hold.
    let before = generation().await;
    let stored: Vec<u8> =
        client.query_one("SELECT recovery_check FROM root_record", &[]).await.unwrap().get(0);
    client.execute("UPDATE root_record SET recovery_check = $1", &[&vec![7u8; 32]]).await.unwrap();
    let body = json!({"to": "pkcs11", "key_label": "planted", "recovery_shares": [recovery[0], recovery[1]]});
    let (status, body) = a.call(&pki, "operator", "/v1/sys/seal/migrate", body).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("WRONG_KEY")), "{body}");
    assert_eq!(generation().await, before, "nothing changed");
    client.execute("UPDATE root_record SET recovery_check = $1", &[&stored]).await.unwrap();
    // Nor does a record whose token sealing and split were blanked, to pass for one held by a
    // key that needs no recovery shares: the replica knows how its record was sealed.
    let saved = client
        .query_one(
            "SELECT token_key_label, token_sealed, recovery_shares, recovery_threshold, \
             recovery_set FROM root_record",
            &[],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE root_record SET token_key_label = NULL, token_sealed = NULL, \
             recovery_shares = NULL, recovery_threshold = NULL, recovery_set = NULL, \
             recovery_check = NULL",
            &[],
        )
        .await
        .unwrap();
    let (status, body) = a.call(&pki, "operator", "/v1/sys/rotate-root", json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (500, Some("INTEGRITY_ERROR")), "{body}");
    assert_eq!(generation().await, before, "nothing changed");
    client
        .execute(
            "UPDATE root_record SET token_key_label = $1, token_sealed = $2, \
             recovery_shares = $3, recovery_threshold = $4, recovery_set = $5, recovery_check = $6",
            &[
                &saved.get::<_, String>(0),
                &saved.get::<_, Vec<u8>>(1),
                &saved.get::<_, i16>(2),
                &saved.get::<_, i16>(3),
                &saved.get::<_, Vec<u8>>(4),
                &stored,
            ],
        )
        .await
        .unwrap();
    let (code, out) = cli_with_stdin(
        &pki,
        &a,
        &["rotate-root", "--shares-stdin", "--output", "json"],
        &format!("{}\n{}\n", recovery[0], recovery[2]),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(a.status(&pki).await["root_version"], 2);

    // The procedure: migrate to the token under a new key label, with two recovery shares
    // (still valid after the root rotation). They stay: none are printed.
    let args = [
        "seal",
        "migrate",
        "--to",
        "pkcs11",
        "--key-label",
        "strongbox-unlock-2",
        "--stdin",
        "--output",
        "json",
    ];
    let (code, out) =
        cli_with_stdin(&pki, &a, &args, &format!("{}\n{}\n", recovery[1], recovery[2])).await;
    assert_eq!(code, 0, "{out}");
    let answer: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(answer.get("recovery_shares").is_none(), "{answer}");
    let label: String =
        client.query_one("SELECT token_key_label FROM root_record", &[]).await.unwrap().get(0);
    assert_eq!(label, "strongbox-unlock-2");
    assert_eq!(a.status(&pki).await["token_key_label"], "strongbox-unlock-2");
    // A restarted replica unseals with the new key, whatever its seal.key_label says.
    a.stop().await;
    let a = start(&db, &pki, &pin).await;
    a.unlocks_itself(&pki).await;
    assert_eq!(a.decrypt(&pki, &ciphertext).await, "recoverable secret");

    // A rekey re-splits the recovery shares; the earlier ones then authorise nothing.
    let b = start(&db, &pki, &pin).await;
    b.unlocks_itself(&pki).await;
    let body = json!({
        "recovery_shares": [recovery[0], recovery[1]], "new_shares": 2, "new_threshold": 2,
    });
    let (status, body) = a.call(&pki, "operator", "/v1/sys/rekey", body).await;
    assert_eq!(status, 200, "{body}");
    let renewed = recovery_shares(&body);
    assert_eq!(renewed.len(), 2);
    let old = json!({"recovery_shares": [recovery[0], recovery[1]]});
    let (status, body) = a.call(&pki, "operator", "/v1/sys/rotate-root", old).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("INVALID_SHARE")), "{body}");
    // The other replica's unlock key is stale after that rekey: it unseals the new server key
    // through the token and rotates the root all the same.
    let new = json!({"recovery_shares": renewed});
    let (status, body) = b.call(&pki, "operator", "/v1/sys/rotate-root", new).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(b.decrypt(&pki, &ciphertext).await, "recoverable secret");
    // The first replica locked itself on seeing the new root, and unlocks itself again.
    eventually(Duration::from_secs(20), "a to come back under the new root", || async {
        let status = a.status(&pki).await;
        (status["unlocked"] == true && status["root_version"] == 3).then_some(())
    })
    .await;
    assert_eq!(a.decrypt(&pki, &ciphertext).await, "recoverable secret");
}

/// RUNBOOK procedure 27: back from the token to a server key an operator holds.
#[tokio::test]
async fn a_vault_migrates_back_from_the_token_to_a_server_key() {
    let (db, pki, dir) = (TestDb::new().await, TestPki::new(), TempDir::new("pkcs11-pins"));
    let pin = pin_file(&dir, "pin", &SoftToken::shared().pin);
    let a = start(&db, &pki, &pin).await;
    let (code, out) = cli(&pki, &a, &["initialize", "--token", "--output", "json"]).await;
    assert_eq!(code, 0, "{out}");
    let recovery = recovery_shares(&serde_json::from_str(out.trim()).unwrap());
    let ciphertext = a.encrypt(&pki, "recoverable secret").await;

    // A weak new key is refused before anything is counted or changed.
    let stdin = format!("{}\n{}\n{}\nshort\n", recovery[0], recovery[1], recovery[2]);
    let args = ["seal", "migrate", "--to", "key", "--stdin"];
    let (code, out) = cli_with_stdin(&pki, &a, &args, &stdin).await;
    assert_ne!(code, 0, "{out}");
    assert_eq!(a.status(&pki).await["seal"], "pkcs11");
    let new_key = "the-operators-new-server-key-42";
    let stdin = format!("{}\n{}\n{}\n{new_key}\n", recovery[4], recovery[0], recovery[2]);
    let (code, out) = cli_with_stdin(&pki, &a, &args, &stdin).await;
    assert_eq!(code, 0, "{out}");
    let status = a.status(&pki).await;
    assert_eq!(status["seal"], "key", "{status}");
    assert!(status.get("recovery_threshold").is_none(), "{status}");
    let row = db
        .client()
        .await
        .query_one("SELECT token_sealed IS NULL AND recovery_check IS NULL FROM root_record", &[])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the token's sealing and the recovery split are gone");

    // The replica is reconfigured with seal.kind = "key" and restarted: it waits for the key.
    a.stop().await;
    let a = start_with(&db, &pki, None).await;
    assert_eq!(a.status(&pki).await["unlocked"], false);
    let (code, out) =
        cli_with_stdin(&pki, &a, &["unlock", "--key-stdin"], &format!("{new_key}\n")).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(a.decrypt(&pki, &ciphertext).await, "recoverable secret");
    // The recovery shares are gone with the seal.
    let body = json!({"recovery_shares": [recovery[0], recovery[1], recovery[2]]});
    let (status, body) = a.call(&pki, "operator", "/v1/sys/rotate-root", body).await;
    assert_eq!(status, 400, "{body}");
}

/// A vault sealed by the token before recovery shares existed has none: nothing online can add
/// them (that would let a database writer plant a split), so `seal init-recovery` does it
/// offline with the token, its PIN and the vault database.
#[tokio::test]
async fn a_token_vault_without_recovery_shares_gets_them_offline() {
    let db = TestDb::new().await;
    let pki = TestPki::new();
    let dir = TempDir::new("pkcs11-pins");
    let token = SoftToken::shared();
    let pin = pin_file(&dir, "pin", &token.pin);
    let a = start(&db, &pki, &pin).await;
    let (status, body) = a.call(&pki, "operator", "/v1/sys/initialize", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let first = recovery_shares(&body);
    db.client()
        .await
        .execute(
            "UPDATE root_record SET recovery_shares = NULL, recovery_threshold = NULL, \
             recovery_set = NULL, recovery_check = NULL",
            &[],
        )
        .await
        .unwrap();
    // Without a split, nothing that needs one is possible, and no shares are accepted.
    let (status, body) = a.call(&pki, "operator", "/v1/sys/rotate-root", json!({})).await;
    assert_eq!(status, 400, "{body}");
    let given = json!({"recovery_shares": first[..3]});
    let (status, body) = a.call(&pki, "operator", "/v1/sys/rotate-root", given).await;
    assert_eq!(status, 400, "{body}");
    let body = json!({"to": "key", "recovery_shares": first[..3], "new_key": "k".repeat(20)});
    let (status, body) = a.call(&pki, "operator", "/v1/sys/seal/migrate", body).await;
    assert_eq!(status, 400, "{body}");

    let args = [
        "seal",
        "init-recovery",
        "--database-url",
        db.url(),
        "--module",
        MODULE,
        "--token-label",
        &token.label,
        "--pin-file",
        pin.to_str().unwrap(),
        "--shares",
        "2",
        "--threshold",
        "2",
        "--output",
        "json",
    ];
    let (code, out) = cli(&pki, &a, &args).await;
    assert_eq!(code, 0, "{out}");
    let added = recovery_shares(&serde_json::from_str(out.trim()).unwrap());
    assert_eq!(added.len(), 2);
    let (again, out) = cli(&pki, &a, &args).await;
    assert_ne!(again, 0, "a split is added once: {out}");
    assert_eq!(a.status(&pki).await["recovery_threshold"], 2);
    // The running replica's unlock key went stale with the new generation; it unseals the
    // server key through the token again and rotates the root with the new shares.
    let (status, body) =
        a.call(&pki, "operator", "/v1/sys/rotate-root", json!({"recovery_shares": added})).await;
    assert_eq!(status, 200, "{body}");
}
