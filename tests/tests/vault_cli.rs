//! The operator CLI, run as the real binary against a real vault over mTLS, configured only
//! through the env-file keys.

use std::process::Stdio;

use serde_json::Value;
use strongbox_tests::process::binary;
use strongbox_tests::{TestDb, TestPki, TestVault, spawn_vault};
use tokio::io::AsyncWriteExt as _;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn cli(vault: Option<(&str, &TestPki)>, args: &[&str], stdin: &str) -> Run {
    let mut command = tokio::process::Command::new(binary("strongbox-vault"));
    command
        .args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((url, pki)) = vault {
        command
            .env("STRONGBOX_VAULT_URL", url)
            .env("STRONGBOX_TLS_CA", pki.path("ca.pem"))
            .env("STRONGBOX_OPERATOR_CERT", pki.path("operator.pem"))
            .env("STRONGBOX_OPERATOR_KEY", pki.path("operator-key.pem"));
    }
    let mut child = command.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let output = child.wait_with_output().await.unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn at(vault: &TestVault) -> Option<(&str, &TestPki)> {
    Some((vault.url.as_str(), &vault.pki))
}

#[tokio::test]
async fn an_operator_initializes_locks_unlocks_and_rekeys_from_the_cli() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;

    let status = cli(at(&vault), &["status"], "").await;
    assert_eq!(status.code, 2, "uninitialized exits 2: {}", status.stdout);
    assert!(status.stdout.contains("uninitialized"), "{}", status.stdout);

    let init = cli(at(&vault), &["initialize", "--generate", "--output", "json"], "").await;
    assert_eq!(init.code, 0, "{}", init.stderr);
    let init: Value = serde_json::from_str(&init.stdout).unwrap();
    let key = init["server_key"].as_str().unwrap().to_owned();
    assert!(key.len() >= 43, "a 256-bit key: {key}");

    assert_eq!(cli(at(&vault), &["status"], "").await.code, 0);
    let lock = cli(at(&vault), &["lock"], "").await;
    assert_eq!(lock.code, 0, "{}", lock.stderr);
    assert_eq!(cli(at(&vault), &["status"], "").await.code, 2);

    let wrong = cli(at(&vault), &["unlock", "--key-stdin"], "definitely-not-the-key\n").await;
    assert_eq!(wrong.code, 1);
    assert!(
        wrong.stderr.contains("WRONG_KEY") && wrong.stderr.contains("next:"),
        "{}",
        wrong.stderr
    );
    assert!(!wrong.stderr.contains("definitely-not-the-key"), "the key is never echoed");

    let unlock = cli(at(&vault), &["unlock", "--key-stdin"], &format!("{key}\n")).await;
    assert_eq!(unlock.code, 0, "{}", unlock.stderr);

    let new_key = "operator-chosen-new-server-key";
    let rekey = cli(at(&vault), &["rekey", "--key-stdin"], &format!("{key}\n{new_key}\n")).await;
    assert_eq!(rekey.code, 0, "{}", rekey.stderr);
    cli(at(&vault), &["lock"], "").await;
    assert_eq!(cli(at(&vault), &["unlock", "--key-stdin"], &format!("{key}\n")).await.code, 1);
    assert_eq!(cli(at(&vault), &["unlock", "--key-stdin"], &format!("{new_key}\n")).await.code, 0);

    let json_status = cli(at(&vault), &["status", "--output", "json"], "").await;
    let parsed: Value = serde_json::from_str(&json_status.stdout).unwrap();
    assert_eq!(parsed["unlocked"], true);
}

#[tokio::test]
async fn keyring_administration_from_the_cli() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    vault.initialize().await;
    vault.encrypt("ws_cli", &["sk_a"]).await;

    let rotate = cli(at(&vault), &["keyring", "rotate", "ws_cli"], "").await;
    assert_eq!(rotate.code, 0, "{}", rotate.stderr);
    assert!(
        rotate.stdout.contains("version 2") && rotate.stdout.contains("strongbox-api rewrap"),
        "{}",
        rotate.stdout
    );

    let show = cli(at(&vault), &["keyring", "show", "ws_cli", "--output", "json"], "").await;
    let shown: Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(shown["latest_version"], 2);

    let retire = cli(at(&vault), &["keyring", "retire", "ws_cli", "--min-version", "2"], "").await;
    assert_eq!(retire.code, 0, "{}", retire.stderr);
    assert!(
        retire.stderr.contains("raw operation"),
        "the raw operation says so: {}",
        retire.stderr
    );

    let unconfirmed = cli(at(&vault), &["keyring", "trim", "ws_cli"], "").await;
    assert_eq!(unconfirmed.code, 1);
    assert!(unconfirmed.stderr.contains("--yes"), "{}", unconfirmed.stderr);
    let trim = cli(at(&vault), &["keyring", "trim", "ws_cli", "--yes"], "").await;
    assert_eq!(trim.code, 0, "{}", trim.stderr);

    let all = cli(at(&vault), &["keyring", "rotate", "--all"], "").await;
    assert_eq!(all.code, 0, "{}", all.stderr);

    let delete = cli(at(&vault), &["keyring", "delete", "ws_cli", "--yes"], "").await;
    assert_eq!(delete.code, 0, "{}", delete.stderr);
    let gone = cli(at(&vault), &["keyring", "show", "ws_cli"], "").await;
    assert_eq!(gone.code, 1);
    assert!(gone.stderr.contains("KEYRING_DELETED"), "{}", gone.stderr);
}

#[tokio::test]
async fn cli_errors_say_what_to_do_next() {
    let missing = cli(None, &["status"], "").await;
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("STRONGBOX_VAULT_URL"), "{}", missing.stderr);

    // A mistyped command line exits 1: exit 2 means "locked" to `status` and "broken" to
    // `audit verify`, and a script must not read a typo as either. Help exits 0.
    let typo = cli(None, &["audit", "verify", "--output", "yaml"], "").await;
    assert_eq!(typo.code, 1, "{}", typo.stderr);
    assert!(typo.stderr.contains("possible values: text, json"), "{}", typo.stderr);
    assert_eq!(cli(None, &["stauts"], "").await.code, 1);
    let help = cli(None, &["audit", "verify", "--help"], "").await;
    assert_eq!(help.code, 0, "{}", help.stderr);
    assert!(help.stdout.contains("2 broken"), "{}", help.stdout);

    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    let weak = cli(at(&vault), &["initialize", "--key-stdin"], "short\n").await;
    assert_eq!(weak.code, 1);
    assert!(weak.stderr.contains("at least 16"), "{}", weak.stderr);

    let locked_rotate = cli(at(&vault), &["rotate"], "").await;
    assert_eq!(locked_rotate.code, 1);
    assert!(locked_rotate.stderr.contains("VAULT_LOCKED"), "{}", locked_rotate.stderr);

    let (url, pki) = (vault.url.clone(), vault.pki.clone());
    vault.shutdown.cancel();
    vault.task.await.unwrap().unwrap();
    let down = cli(Some((&url, &pki)), &["status"], "").await;
    assert_eq!(down.code, 1);
    assert!(down.stderr.contains("cannot reach the vault"), "{}", down.stderr);
}

#[tokio::test]
async fn dev_certificates_are_written_with_private_keys_unreadable_by_others() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = strongbox_tests::TempDir::new("certs");
    let out = dir.path().join("certs");
    let run = cli(
        None,
        &["certs", "dev", "--out", out.to_str().unwrap(), "--trust-domain", "dev.test"],
        "",
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    for name in ["ca.pem", "vault.pem", "api.pem", "rewrap.pem", "operator.pem"] {
        assert!(out.join(name).exists(), "{name}");
    }
    for name in ["ca-key.pem", "vault-key.pem", "api-key.pem", "rewrap-key.pem", "operator-key.pem"]
    {
        let mode = std::fs::metadata(out.join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    let certs = strongbox_shared::tls::load_certs(&out.join("vault.pem")).unwrap();
    let uris = strongbox_shared::tls::uri_sans(&certs[0]).unwrap();
    assert_eq!(uris, vec!["spiffe://dev.test/vault".to_owned()]);
    let certs = strongbox_shared::tls::load_certs(&out.join("api.pem")).unwrap();
    assert_eq!(
        strongbox_shared::tls::uri_sans(&certs[0]).unwrap(),
        vec!["spiffe://dev.test/api".to_owned()]
    );
    let long =
        cli(None, &["certs", "dev", "--out", out.to_str().unwrap(), "--days", "365"], "").await;
    assert_eq!(long.code, 1, "dev certificates stay short-lived");
}
