//! Bad input never reaches Postgres or a 500: NUL characters and invalid UTF-8 anywhere in a
//! body or a v1 query, bodies that are not the JSON object a call expects, and values Postgres
//! would store but not give back. Each is a 400 with a stable code, and nothing is written.

use serde_json::{Value, json};
use strongbox_tests::{TestApi, TestDb, assert_error, http_client, spawn_api};

async fn api_with_key() -> (TestDb, TestApi, String, String, String) {
    let db = TestDb::new().await;
    let api = spawn_api(&db, &[]).await;
    let root = api.workspace("acme").await;
    let api_id = api.create_api(&root, "a").await;
    let (key_id, _) = api.create_key(&root, &api_id, json!({})).await;
    (db, api, root, api_id, key_id)
}

/// `POST /v2/<call>` with a raw body.
async fn raw(api: &TestApi, root: &str, call: &str, body: Vec<u8>) -> (u16, Value) {
    let response = http_client()
        .post(format!("{}/v2/{call}", api.url))
        .bearer_auth(root)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_nul_in_any_string_is_refused_before_it_reaches_postgres() {
    let (_db, api, root, api_id, key_id) = api_with_key().await;
    let bodies = [
        ("apis.getApi", json!({"apiId": "a\u{0}b"})),
        ("apis.updateApi", json!({"apiId": api_id, "name": "x\u{0}"})),
        ("apis.createApi", json!({"name": "\u{0}"})),
        ("keys.createKey", json!({"apiId": api_id, "meta": {"k": "v\u{0}"}})),
        ("keys.createKey", json!({"apiId": api_id, "externalId": "\u{0}"})),
        ("keys.updateKey", json!({"keyId": key_id, "name": "n\u{0}"})),
        ("keys.verifyKey", json!({"key": "sk\u{0}"})),
        ("rootKeys.createKey", json!({"permissions": ["api.\u{0}.read_key"]})),
    ];
    for (call, body) in bodies {
        let answer = api.call(&root, call, body.clone()).await;
        assert_error(answer, 400, "INVALID_STRING", &format!("{call} {body}"));
    }
    // A backslash followed by the text u0000 is not a NUL and is accepted as a name.
    api.ok(&root, "apis.updateApi", json!({"apiId": api_id, "name": "\\u0000"})).await;
    let listed = api.ok(&root, "apis.getApi", json!({"apiId": api_id})).await;
    assert_eq!(listed["name"], "\\u0000");
    // v1 query strings too.
    let response = http_client()
        .get(format!("{}/v1/keys.getKey?keyId=a%00b", api.url))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "BAD_REQUEST", "{body}");
}

#[tokio::test]
async fn a_body_must_be_the_json_object_the_call_expects() {
    let (_db, api, root, _, _) = api_with_key().await;
    for body in [&b"[null, null]"[..], b"null", b"\"listKeys\"", b"42", b"", b"  [{}]"] {
        let answer = raw(&api, &root, "rootKeys.listKeys", body.to_vec()).await;
        assert_error(answer, 400, "BAD_REQUEST", &String::from_utf8_lossy(body));
    }
    let answer = raw(&api, &root, "apis.createApi", b"{\"name\": \"a\xff\"}".to_vec()).await;
    assert_error(answer, 400, "INVALID_STRING", "invalid UTF-8");
    let answer = raw(&api, &root, "apis.createApi", br#"{"name": "\ud800"}"#.to_vec()).await;
    assert_error(answer, 400, "BAD_REQUEST", "a lone surrogate");
    // Nor anywhere inside it: an array never stands in for a nested object.
    let answer =
        api.call(&root, "rootKeys.createKey", json!({"permissions": ["**"], "expires": [1]})).await;
    assert_error(answer, 400, "BAD_REQUEST", "an array for a number");
    let answer =
        raw(&api, &root, "keys.verifyKey", br#"{"key": "k", "credits": [1]}"#.to_vec()).await;
    assert_error(answer, 400, "BAD_REQUEST", "an array for the credits object");
    let response = http_client()
        .post(format!("{}/v1/keys.verifyKey", api.url))
        .json(&json!({"key": "k", "authorization": ["documents.read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400, "v1 authorization as an array");
    // Whitespace before the object is still an object.
    let answer = raw(&api, &root, "rootKeys.listKeys", b" \n{}".to_vec()).await;
    assert_eq!(answer.0, 200, "{}", answer.1);
}

#[tokio::test]
async fn values_postgres_would_keep_but_not_give_back_are_refused() {
    let (_db, api, root, api_id, key_id) = api_with_key().await;
    let answer =
        api.call(&root, "keys.updateKey", json!({"keyId": key_id, "meta": {"n": f64::MAX}})).await;
    assert_error(answer, 400, "INVALID_META", "a number near f64::MAX");
    let long = "x".repeat(256);
    let answer =
        api.call(&root, "keys.createKey", json!({"apiId": api_id, "externalId": long})).await;
    assert_error(answer, 400, "INVALID_EXTERNAL_ID", "an externalId past the index limit");
    let answer = api
        .call(
            &root,
            "keys.updateCredits",
            json!({"keyId": key_id, "operation": "set", "value": i64::MAX}),
        )
        .await;
    assert_error(answer, 400, "INVALID_CREDITS", "credits past 10^15");
    // The key is untouched and still reads back.
    let key = api.ok(&root, "keys.getKey", json!({"keyId": key_id})).await;
    assert!(key.get("meta").is_none() && key.get("credits").is_none(), "{key}");
}
