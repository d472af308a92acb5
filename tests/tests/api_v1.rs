//! Seed 003's v1 calls, in Unkey's v1 shapes.

use serde_json::{Value, json};
use strongbox_tests::{TestDb, http_client, spawn_api};

#[tokio::test]
async fn v1_create_get_list_and_open_verify() {
    let db = TestDb::new().await;
    let api = spawn_api(&db, &[]).await;
    let root = api.workspace("acme").await;
    let api_id = api.create_api(&root, "v1").await;
    let other_api = api.create_api(&root, "other").await;
    let client = http_client();

    let created: Value = client
        .post(format!("{}/v1/keys.createKey", api.url))
        .bearer_auth(&root)
        .json(&json!({"apiId": api_id, "prefix": "v1", "ownerId": "owner_1", "remaining": 5, "permissions": ["read"],
                      "ratelimit": {"type": "fast", "limit": 10, "duration": 60000}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (key_id, key) = (created["keyId"].as_str().unwrap(), created["key"].as_str().unwrap());
    assert!(key.starts_with("v1_"), "{created}");
    assert!(created.get("meta").is_none() && created.get("data").is_none(), "v1 has no envelope");

    let got: Value = client
        .get(format!("{}/v1/keys.getKey?keyId={key_id}&decrypt=false", api.url))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (got["id"].as_str(), got["apiId"].as_str(), got["ownerId"].as_str()),
        (Some(key_id), Some(api_id.as_str()), Some("owner_1"))
    );
    assert_eq!(
        (got["remaining"].clone(), got["ratelimit"]["limit"].clone()),
        (json!(5), json!(10))
    );

    let listed: Value = client
        .get(format!("{}/v1/apis.listKeys?apiId={api_id}", api.url))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (listed["total"].clone(), listed["keys"][0]["id"].as_str()),
        (json!(1), Some(key_id))
    );

    let verify = |body: Value| {
        let client = client.clone();
        let url = format!("{}/v1/keys.verifyKey", api.url);
        async move { client.post(url).json(&body).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let v = verify(json!({"key": key, "apiId": api_id})).await;
    assert_eq!(
        (v["valid"].clone(), v["code"].clone(), v["remaining"].clone()),
        (json!(true), json!("VALID"), json!(4))
    );
    assert_eq!(v["ownerId"], "owner_1");
    assert_eq!(verify(json!({"key": key, "apiId": other_api})).await["code"], "FORBIDDEN");
    let v =
        verify(json!({"key": key, "authorization": {"permissions": {"and": ["read", "write"]}}}))
            .await;
    assert_eq!(v["code"], "INSUFFICIENT_PERMISSIONS");
    let v =
        verify(json!({"key": key, "authorization": {"permissions": {"or": ["read", "write"]}}}))
            .await;
    assert_eq!(v["code"], "VALID");
    assert_eq!(verify(json!({"key": "v1_nope"})).await["code"], "NOT_FOUND");
}

#[tokio::test]
async fn v1_errors_use_the_v1_shape_and_bearer_only() {
    let db = TestDb::new().await;
    let api = spawn_api(&db, &[]).await;
    let root = api.workspace("acme").await;
    let response = http_client()
        .get(format!("{}/v1/keys.getKey?keyId=key_x", api.url))
        .header("x-api-key", &root)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "UNAUTHORIZED");
    assert!(body["error"]["requestId"].as_str().unwrap().starts_with("req_"));
    let response = http_client()
        .get(format!("{}/v1/keys.getKey?keyId=key_x", api.url))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let response = http_client()
        .get(format!("{}/v1/keys.getKey", api.url))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400, "missing keyId");
}
