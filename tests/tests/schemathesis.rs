//! schemathesis (pinned in `ops/test`) generates requests from the served OpenAPI document,
//! valid and invalid, against a real api with a real vault: no answer may be a 5xx, every answer
//! must match the document, and every request that breaks the document must be refused with a
//! 4xx that says so. Its configuration is `tests/schemathesis/schemathesis.toml`.

use std::path::PathBuf;

use serde_json::json;
use strongbox_tests::{TestDb, spawn_api_with_vault, spawn_vault};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_never_break_the_api_or_its_document() {
    let program = std::env::var("STRONGBOX_SCHEMATHESIS").unwrap_or_else(|_| {
        panic!(
            "STRONGBOX_SCHEMATHESIS is not set: run the suite through ops/test, which installs it"
        )
    });
    let (api_db, vault_db) = (TestDb::new().await, TestDb::new().await);
    let vault = spawn_vault(&vault_db, &[]).await;
    vault.initialize().await;
    let api = spawn_api_with_vault(&api_db, &vault, &[]).await;
    let root = api.workspace("schemathesis").await;
    let api_id = api.create_api(&root, "fuzzed").await;
    api.ok(&root, "apis.updateApi", json!({"apiId": api_id, "storeEncryptedKeys": true})).await;
    let (key_id, key) = api.create_key(&root, &api_id, json!({"recoverable": true})).await;
    let doomed_api = api.create_api(&root, "doomed").await;
    let (doomed_key, _) = api.create_key(&root, &api_id, json!({})).await;
    let root_key = |permissions: serde_json::Value| {
        let api = &api;
        let root = &root;
        async move {
            let data =
                api.ok(root, "rootKeys.createKey", json!({"permissions": permissions})).await;
            data["keyId"].as_str().unwrap().to_owned()
        }
    };
    let root_target = root_key(json!(["api.*.read_api"])).await;
    let doomed_root = root_key(json!(["api.*.read_key"])).await;

    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemathesis/schemathesis.toml");
    // Anything it writes goes to a folder of its own, not the checkout.
    let scratch = strongbox_tests::TempDir::new("schemathesis");
    let output = tokio::process::Command::new(&program)
        .current_dir(scratch.path())
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{}/openapi.json", api.url), "--no-color"])
        .envs([
            ("SB_ROOT_KEY", root.as_str()),
            ("SB_API_ID", &api_id),
            ("SB_KEY_ID", &key_id),
            ("SB_KEY", &key),
            ("SB_DOOMED_API_ID", &doomed_api),
            ("SB_DOOMED_KEY_ID", &doomed_key),
            ("SB_ROOT_TARGET_ID", &root_target),
            ("SB_DOOMED_ROOT_ID", &doomed_root),
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "schemathesis found failures:\n{stdout}\n{stderr}");
    // The summary, for `--no-capture` runs.
    eprintln!(
        "{}",
        stdout.lines().skip_while(|l| !l.contains("SUMMARY")).collect::<Vec<_>>().join("\n")
    );
    // It really exercised the calls: every operation was tested and none was skipped.
    assert!(stdout.contains("passed"), "{stdout}");
}
