//! The official Unkey SDKs, pinned and unmodified, against a real Strongbox api. `ops/test`
//! installs them (`STRONGBOX_SDK_PYTHON`, `STRONGBOX_SDK_JS_DIR`); the flows live in
//! `tests/sdk/compat.py` and `tests/sdk/compat.mjs`.

use std::path::PathBuf;

use strongbox_tests::{TestDb, spawn_api};

fn sdk_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite through ops/test, which installs the SDKs")
    })
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sdk").join(name)
}

async fn run(program: &str, args: &[&str], dir: Option<&str>, url: &str, root_key: &str) {
    let mut command = tokio::process::Command::new(program);
    command.args(args).env("STRONGBOX_API_URL", url).env("STRONGBOX_ROOT_KEY", root_key);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let output = command.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("sdk-compat: ok"),
        "{program} failed:\n{stdout}\n{stderr}"
    );
}

#[tokio::test]
async fn the_python_sdk_works_unmodified() {
    let db = TestDb::new().await;
    let api = spawn_api(&db, &[]).await;
    let root = api.workspace("python").await;
    let script = script("compat.py");
    run(&sdk_env("STRONGBOX_SDK_PYTHON"), &[script.to_str().unwrap()], None, &api.url, &root).await;
}

#[tokio::test]
async fn the_typescript_sdk_works_unmodified() {
    let db = TestDb::new().await;
    let api = spawn_api(&db, &[]).await;
    let root = api.workspace("typescript").await;
    let dir = sdk_env("STRONGBOX_SDK_JS_DIR");
    // ES modules resolve packages next to the script, so it runs from the SDK's folder.
    let copy = PathBuf::from(&dir).join(format!("compat-{}.mjs", std::process::id()));
    std::fs::copy(script("compat.mjs"), &copy).unwrap();
    run("node", &[copy.to_str().unwrap()], Some(&dir), &api.url, &root).await;
    let _ = std::fs::remove_file(copy);
}
