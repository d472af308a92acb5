//! Who may do what: Bearer-only root keys, permissions and the grant rule, tenant isolation,
//! the recovery preconditions, and bad input that is refused without writing anything.

use serde_json::{Value, json};
use strongbox_tests::{TestDb, spawn_api};

async fn raw(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn root_keys_are_accepted_only_as_bearer() {
    let db = TestDb::new().await;
    let api = spawn_api(&db, &[]).await;
    let root = api.workspace("acme").await;
    let url = format!("{}/v2/apis.createApi", api.url);
    let client = strongbox_tests::http_client();
    let body = json!({"name": "x"});
    let cases = [
        ("none", client.post(&url).json(&body)),
        ("x-api-key", client.post(&url).header("x-api-key", &root).json(&body)),
        ("query", client.post(format!("{url}?rootKey={root}")).json(&body)),
        ("basic", client.post(&url).header("authorization", format!("Basic {root}")).json(&body)),
        ("wrong", client.post(&url).bearer_auth(format!("sb_{}", "0".repeat(64))).json(&body)),
        ("malformed", client.post(&url).bearer_auth("not-a-root-key").json(&body)),
    ];
    for (name, request) in cases {
        let (status, response) = raw(request).await;
        assert_eq!(
            (status, response["error"]["code"].as_str()),
            (401, Some("UNAUTHORIZED")),
            "{name}"
        );
        assert!(!response.to_string().contains(&root[3..]), "{name}: the key is never echoed");
    }
    let (status, _) = raw(client.post(&url).bearer_auth(&root).json(&body)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_limited_root_key_can_do_only_what_it_holds_and_grant_only_what_it_covers() {
    let db = TestDb::new().await;
    let api = spawn_api(&db, &[]).await;
    let root = api.workspace("acme").await;
    let api_a = api.create_api(&root, "a").await;
    let api_b = api.create_api(&root, "b").await;
    let limited = api
        .ok(&root, "rootKeys.createKey", json!({"name": "ci", "permissions": [format!("api.{api_a}.create_key"), format!("api.{api_a}.read_key"), "root_key.*.manage"]}))
        .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(strongbox_shared::keys::looks_like_root_key(&limited));
    api.create_key(&limited, &api_a, json!({})).await;
    let (status, body) = api.call(&limited, "keys.createKey", json!({"apiId": api_b})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("INSUFFICIENT_PERMISSIONS")));
    let (status, _) = api.call(&limited, "apis.createApi", json!({"name": "c"})).await;
    assert_eq!(status, 403);
    // Granting: only what its own permissions cover.
    let ok = api
        .call(
            &limited,
            "rootKeys.createKey",
            json!({"permissions": [format!("api.{api_a}.read_key")]}),
        )
        .await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    for wider in [
        format!("api.{api_b}.read_key"),
        "api.*.read_key".to_owned(),
        format!("api.{api_a}.*"),
        "**".to_owned(),
    ] {
        let (status, body) =
            api.call(&limited, "rootKeys.createKey", json!({"permissions": [wider]})).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("INSUFFICIENT_PERMISSIONS")),
            "{wider}"
        );
    }
    let (status, body) =
        api.call(&root, "rootKeys.createKey", json!({"permissions": ["a..b"]})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("INVALID_PERMISSION")));
}

#[tokio::test]
async fn root_key_changes_take_effect_at_once() {
    let db = TestDb::new().await;
    let api = spawn_api(&db, &[]).await;
    let root = api.workspace("acme").await;
    let created =
        api.ok(&root, "rootKeys.createKey", json!({"permissions": ["api.*.create_api"]})).await;
    let (id, key) = (created["keyId"].as_str().unwrap(), created["key"].as_str().unwrap());
    assert_eq!(api.call(key, "apis.createApi", json!({"name": "x"})).await.0, 200);
    api.ok(&root, "rootKeys.updateKey", json!({"keyId": id, "permissions": ["api.*.read_api"]}))
        .await;
    assert_eq!(api.call(key, "apis.createApi", json!({"name": "x"})).await.0, 403);
    api.ok(&root, "rootKeys.updateKey", json!({"keyId": id, "enabled": false})).await;
    assert_eq!(api.call(key, "apis.createApi", json!({"name": "x"})).await.0, 401);
    api.ok(
        &root,
        "rootKeys.updateKey",
        json!({"keyId": id, "enabled": true, "permissions": ["api.*.create_api"]}),
    )
    .await;
    let rolled = api.ok(&root, "rootKeys.rerollKey", json!({"keyId": id, "expiration": 0})).await;
    assert_eq!(
        api.call(key, "apis.createApi", json!({"name": "x"})).await.0,
        401,
        "the old root key is gone"
    );
    let new_key = rolled["key"].as_str().unwrap();
    assert_eq!(api.call(new_key, "apis.createApi", json!({"name": "x"})).await.0, 200);
    let listed = api.ok(&root, "rootKeys.listKeys", json!({})).await;
    let ids: Vec<&str> =
        listed.as_array().unwrap().iter().map(|k| k["keyId"].as_str().unwrap()).collect();
    assert!(ids.contains(&rolled["keyId"].as_str().unwrap()) && !ids.contains(&id));
    assert!(!listed.to_string().contains(new_key), "listKeys never shows a key");
    api.ok(&root, "rootKeys.deleteKey", json!({"keyId": rolled["keyId"]})).await;
    assert_eq!(api.call(new_key, "apis.createApi", json!({"name": "x"})).await.0, 401);
}

#[tokio::test]
async fn nothing_of_one_workspace_is_visible_from_another() {
    let db = TestDb::new().await;
    let api = spawn_api(&db, &[]).await;
    let root_a = api.workspace("tenant-a").await;
    let root_b = api.workspace("tenant-b").await;
    let api_a = api.create_api(&root_a, "a").await;
    let (key_id, key) = api.create_key(&root_a, &api_a, json!({})).await;
    for (call, body) in [
        ("apis.getApi", json!({"apiId": api_a})),
        ("apis.listKeys", json!({"apiId": api_a})),
        ("apis.deleteApi", json!({"apiId": api_a})),
        ("keys.createKey", json!({"apiId": api_a})),
        ("keys.getKey", json!({"keyId": key_id})),
        ("keys.updateKey", json!({"keyId": key_id, "enabled": false})),
        ("keys.deleteKey", json!({"keyId": key_id})),
        ("keys.rerollKey", json!({"keyId": key_id, "expiration": 0})),
        ("keys.updateCredits", json!({"keyId": key_id, "operation": "set", "value": 1})),
        ("keys.whoami", json!({"key": key})),
    ] {
        let (status, body) = api.call(&root_b, call, body).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("NOT_FOUND")),
            "{call}: never 403"
        );
    }
    assert_eq!(api.verify(&root_b, &key, json!({})).await["code"], "NOT_FOUND");
    assert_eq!(api.verify(&root_a, &key, json!({})).await["code"], "VALID", "untouched");
}

#[tokio::test]
async fn verify_needs_the_verify_permission_of_the_keys_api() {
    let db = TestDb::new().await;
    let api = spawn_api(&db, &[]).await;
    let root = api.workspace("acme").await;
    let api_id = api.create_api(&root, "a").await;
    let (_, key) = api.create_key(&root, &api_id, json!({})).await;
    let reader = api
        .ok(&root, "rootKeys.createKey", json!({"permissions": [format!("api.{api_id}.read_key")]}))
        .await;
    let (status, _) =
        api.call(reader["key"].as_str().unwrap(), "keys.verifyKey", json!({"key": key})).await;
    assert_eq!(status, 403);
    let verifier =
        api.ok(&root, "rootKeys.createKey", json!({"permissions": ["api.*.verify_key"]})).await;
    assert_eq!(api.verify(verifier["key"].as_str().unwrap(), &key, json!({})).await["valid"], true);
}

#[tokio::test]
async fn recoverable_keys_need_the_permission_and_the_opt_in_and_write_nothing_without_a_vault() {
    let db = TestDb::new().await;
    let api = spawn_api(&db, &[]).await;
    let root = api.workspace("acme").await;
    let api_id = api.create_api(&root, "a").await;
    let plain = api
        .ok(
            &root,
            "rootKeys.createKey",
            json!({"permissions": [format!("api.{api_id}.create_key")]}),
        )
        .await;
    let (status, body) = api
        .call(
            plain["key"].as_str().unwrap(),
            "keys.createKey",
            json!({"apiId": api_id, "recoverable": true}),
        )
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("INSUFFICIENT_PERMISSIONS")));
    let (status, body) =
        api.call(&root, "keys.createKey", json!({"apiId": api_id, "recoverable": true})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (412, Some("PRECONDITION_FAILED")));
    api.ok(&root, "apis.updateApi", json!({"apiId": api_id, "storeEncryptedKeys": true})).await;
    assert_eq!(
        api.ok(&root, "apis.getApi", json!({"apiId": api_id})).await["storeEncryptedKeys"],
        true
    );
    let (status, body) =
        api.call(&root, "keys.createKey", json!({"apiId": api_id, "recoverable": true})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("VAULT_UNAVAILABLE")));
    let client = db.client().await;
    let keys: i64 = client.query_one("SELECT count(*) FROM keys", &[]).await.unwrap().get(0);
    assert_eq!(keys, 0, "no half-created key");
    // Plain keys and verification are unaffected.
    let (_, key) = api.create_key(&root, &api_id, json!({})).await;
    assert_eq!(api.verify(&root, &key, json!({})).await["valid"], true);
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_that_writes_nothing() {
    let db = TestDb::new().await;
    let api = spawn_api(&db, &[]).await;
    let root = api.workspace("acme").await;
    let api_id = api.create_api(&root, "a").await;
    let big_meta = json!({"blob": "x".repeat(11 * 1024)});
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("keys.createKey", json!({"apiId": "api_missing"}), 404, "NOT_FOUND"),
        ("keys.createKey", json!({"apiId": api_id, "prefix": "bad-prefix"}), 400, "INVALID_PREFIX"),
        (
            "keys.createKey",
            json!({"apiId": api_id, "prefix": "x".repeat(17)}),
            400,
            "INVALID_PREFIX",
        ),
        ("keys.createKey", json!({"apiId": api_id, "byteLength": 15}), 400, "INVALID_BYTE_LENGTH"),
        ("keys.createKey", json!({"apiId": api_id, "byteLength": 256}), 400, "INVALID_BYTE_LENGTH"),
        ("keys.createKey", json!({"apiId": api_id, "meta": big_meta}), 400, "META_TOO_LARGE"),
        ("keys.createKey", json!({"apiId": api_id, "meta": [1, 2]}), 400, "INVALID_META"),
        ("keys.createKey", json!({"apiId": api_id, "byteLength": "sixteen"}), 400, "BAD_REQUEST"),
        ("keys.createKey", json!({"apiId": api_id, "expires": 1000}), 400, "INVALID_EXPIRES"),
        (
            "keys.createKey",
            json!({"apiId": api_id, "permissions": ["bad perm"]}),
            400,
            "INVALID_PERMISSION",
        ),
        (
            "keys.createKey",
            json!({"apiId": api_id, "ratelimits": [{"name": "r", "limit": 0, "duration": 1000}]}),
            400,
            "INVALID_RATELIMIT",
        ),
        ("keys.createKey", json!({"name": "no api"}), 400, "BAD_REQUEST"),
        (
            "keys.verifyKey",
            json!({"key": "k", "permissions": "a AND (b"}),
            400,
            "INVALID_PERMISSION_QUERY",
        ),
        (
            "keys.verifyKey",
            json!({"key": "k", "permissions": "a OR"}),
            400,
            "INVALID_PERMISSION_QUERY",
        ),
        ("keys.getKey", json!({"keyId": "key_missing"}), 404, "NOT_FOUND"),
        ("apis.createApi", json!({"name": ""}), 400, "INVALID_NAME"),
    ];
    for (call, body, status, code) in cases {
        let (got, response) = api.call(&root, call, body.clone()).await;
        assert_eq!(
            (got, response["error"]["code"].as_str()),
            (status, Some(code)),
            "{call} {body}"
        );
        assert_eq!(response["error"]["status"], status);
        assert!(response["error"]["type"].as_str().unwrap().ends_with(&format!("/{code}")));
        assert!(response["error"]["title"].is_string() && response["error"]["detail"].is_string());
        if status == 400 {
            assert!(
                !response["error"]["errors"].as_array().unwrap().is_empty(),
                "400s carry errors[]: {response}"
            );
        }
    }
    let client = strongbox_tests::http_client();
    let response = client
        .post(format!("{}/v2/keys.createKey", api.url))
        .bearer_auth(&root)
        .header("content-type", "application/json")
        .body("{\"apiId\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let response = client
        .post(format!("{}/v2/keys.createKey", api.url))
        .bearer_auth(&root)
        .header("content-type", "application/json")
        .body(format!(
            "{{\"apiId\": \"{api_id}\", \"name\": \"{}\"}}",
            "x".repeat(1024 * 1024 + 10)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE");
    let db_client = db.client().await;
    let keys: i64 = db_client.query_one("SELECT count(*) FROM keys", &[]).await.unwrap().get(0);
    assert_eq!(keys, 0, "no refused call wrote a key");
}
