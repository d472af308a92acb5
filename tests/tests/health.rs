//! Health and readiness over real HTTP, through the same `Application::build` that `main` uses.

use std::time::Duration;

use serde_json::Value;
use strongbox_tests::{TestDb, eventually, http_client, spawn_api, spawn_vault};

async fn get(url: String) -> (u16, Value) {
    let response = http_client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn api_is_healthy_and_ready_with_its_database() {
    let db = TestDb::new().await;
    let api = spawn_api(&db, &[]).await;
    assert_eq!(
        get(format!("{}/healthz", api.ops_url)).await,
        (200, serde_json::json!({"status": "ok"}))
    );
    let (status, body) = get(format!("{}/readyz", api.ops_url)).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
}

#[tokio::test]
async fn api_liveness_answers_in_unkeys_envelope() {
    let db = TestDb::new().await;
    let api = spawn_api(&db, &[]).await;
    let (status, body) = get(format!("{}/v2/liveness", api.url)).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["message"], "OK");
    assert!(body["meta"]["requestId"].as_str().unwrap().starts_with("req_"), "{body}");
}

#[tokio::test]
async fn health_endpoints_are_not_on_the_public_listener() {
    let db = TestDb::new().await;
    let api = spawn_api(&db, &[]).await;
    let response = http_client().get(format!("{}/healthz", api.url)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test]
async fn api_is_unready_but_healthy_when_its_database_goes_away() {
    let db = TestDb::new().await;
    let api = spawn_api(&db, &[]).await;
    assert_eq!(get(format!("{}/readyz", api.ops_url)).await.0, 200);
    db.drop_now().await;
    let body = eventually(Duration::from_secs(10), "readyz to report 503", || async {
        let (status, body) = get(format!("{}/readyz", api.ops_url)).await;
        (status == 503).then_some(body)
    })
    .await;
    assert_eq!(body["status"], "not_ready");
    assert_eq!(get(format!("{}/healthz", api.ops_url)).await.0, 200);
}

#[tokio::test]
async fn vault_is_live_but_not_ready_until_unlocked() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    assert_eq!(get(format!("{}/healthz", vault.ops_url)).await.0, 200);
    let (status, body) = get(format!("{}/readyz", vault.ops_url)).await;
    assert_eq!((status, body["reason"].as_str()), (503, Some("locked")));
    vault.initialize().await;
    assert_eq!(get(format!("{}/readyz", vault.ops_url)).await.0, 200);
}

#[tokio::test]
async fn vault_status_is_on_the_plain_ops_port_too() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    let (status, body) = get(format!("{}/v1/sys/status", vault.ops_url)).await;
    assert_eq!(status, 200);
    assert_eq!(body["initialized"], false);
    // Nothing else of the vault's API is on the ops port.
    let response =
        http_client().post(format!("{}/v1/encrypt", vault.ops_url)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test]
async fn vault_unknown_routes_answer_in_the_vault_error_format() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    let (status, body) =
        vault.call("operator", reqwest::Method::GET, "/v1/no-such-route", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "NOT_FOUND");
    let (status, body) = vault.call("operator", reqwest::Method::GET, "/v1/encrypt", None).await;
    assert_eq!(status, 405);
    assert_eq!(body["error"]["code"], "METHOD_NOT_ALLOWED");
}
