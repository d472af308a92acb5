//! The official Unkey SDKs, pinned and unmodified, against a real Strongbox api (and vault).
//! `ops/test` installs them (`STRONGBOX_SDK_PYTHON`, `STRONGBOX_SDK_JS_DIR`); the flows live in
//! `tests/sdk/`.

use std::path::PathBuf;

use serde_json::json;
use strongbox_tests::{TestDb, spawn_api, spawn_api_with_vault, spawn_vault};

fn sdk_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite through ops/test, which installs the SDKs")
    })
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sdk").join(name)
}

/// ES modules resolve packages next to the script, so JavaScript runs from the SDK's folder.
fn js_copy(name: &str) -> PathBuf {
    let dir = sdk_env("STRONGBOX_SDK_JS_DIR");
    let copy = PathBuf::from(&dir).join(format!("{}-{}", std::process::id(), name));
    std::fs::copy(script(name), &copy).unwrap();
    copy
}

async fn run(program: &str, args: &[&str], dir: Option<&str>, env: &[(&str, &str)]) -> String {
    let mut command = tokio::process::Command::new(program);
    command.args(args).envs(env.iter().copied());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let output = command.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("sdk-compat: ok"),
        "{program} {args:?} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

async fn keys_flow(program: &str, script: &str, dir: Option<&str>) {
    let db = TestDb::new().await;
    let api = spawn_api(&db, &[]).await;
    let root = api.workspace("sdk").await;
    run(program, &[script], dir, &[("STRONGBOX_API_URL", &api.url), ("STRONGBOX_ROOT_KEY", &root)])
        .await;
}

/// The recovery flow, then the same calls with the vault locked, then with it stopped.
async fn recovery_phases(program: &str, script: &str, dir: Option<&str>) {
    let (api_db, vault_db) = (TestDb::new().await, TestDb::new().await);
    let vault = spawn_vault(&vault_db, &[]).await;
    vault.initialize().await;
    let api = spawn_api_with_vault(&api_db, &vault, &[]).await;
    let root = api.workspace("recovery").await;
    let api_id = api.create_api(&root, "sdk").await;
    let base = [
        ("STRONGBOX_API_URL", api.url.as_str()),
        ("STRONGBOX_ROOT_KEY", root.as_str()),
        ("STRONGBOX_API_ID", api_id.as_str()),
    ];
    let out = run(program, &[script, "full"], dir, &base).await;
    let keep =
        out.lines().find_map(|l| l.strip_prefix("KEEP=")).expect("the full phase names a key");
    let (keep_id, keep_key) = keep.split_once(' ').unwrap();
    let mut env = base.to_vec();
    env.extend([("STRONGBOX_KEEP_ID", keep_id), ("STRONGBOX_KEEP_KEY", keep_key)]);
    assert_eq!(vault.post("operator", "/v1/sys/lock", json!({})).await.0, 200);
    let mut locked = env.clone();
    locked.push(("STRONGBOX_EXPECT_CODE", "VAULT_LOCKED"));
    run(program, &[script, "down"], dir, &locked).await;
    vault.shutdown.cancel();
    vault.task.await.unwrap().unwrap();
    env.push(("STRONGBOX_EXPECT_CODE", "VAULT_UNAVAILABLE"));
    run(program, &[script, "down"], dir, &env).await;
}

#[tokio::test]
async fn the_python_sdk_works_unmodified() {
    let script = script("compat.py");
    keys_flow(&sdk_env("STRONGBOX_SDK_PYTHON"), script.to_str().unwrap(), None).await;
}

#[tokio::test]
async fn the_typescript_sdk_works_unmodified() {
    let copy = js_copy("compat.mjs");
    keys_flow("node", copy.to_str().unwrap(), Some(&sdk_env("STRONGBOX_SDK_JS_DIR"))).await;
    let _ = std::fs::remove_file(copy);
}

#[tokio::test]
async fn recoverable_keys_work_through_the_python_sdk() {
    let script = script("recovery.py");
    recovery_phases(&sdk_env("STRONGBOX_SDK_PYTHON"), script.to_str().unwrap(), None).await;
}

#[tokio::test]
async fn recoverable_keys_work_through_the_typescript_sdk() {
    let copy = js_copy("recovery.mjs");
    recovery_phases("node", copy.to_str().unwrap(), Some(&sdk_env("STRONGBOX_SDK_JS_DIR"))).await;
    let _ = std::fs::remove_file(copy);
}
