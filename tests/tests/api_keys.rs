//! The keys API over real HTTP and real Postgres: every endpoint, every verification code,
//! credits, rate limits, rerolls and deletion.

use std::time::Duration;

use serde_json::{Value, json};
use strongbox_tests::{TestApi, TestDb, eventually, spawn_api};

async fn setup(db: &TestDb) -> (TestApi, String, String) {
    let api = spawn_api(db, &[]).await;
    let root = api.workspace("acme").await;
    let api_id = api.create_api(&root, "payments").await;
    (api, root, api_id)
}

/// Changes a key behind the api's back and announces it, as a replica's write would.
async fn sql(db: &TestDb, statement: &str, key_id: &str) {
    let client = db.client().await;
    client.execute(statement, &[&key_id]).await.unwrap();
    client
        .execute("SELECT pg_notify('strongbox_api', 'key:' || $1::text)", &[&key_id])
        .await
        .unwrap();
}

#[tokio::test]
async fn apis_are_created_read_and_deleted() {
    let db = TestDb::new().await;
    let (api, root, api_id) = setup(&db).await;
    assert!(api_id.starts_with("api_"));
    let got = api.ok(&root, "apis.getApi", json!({"apiId": api_id})).await;
    assert_eq!(
        (got["id"].as_str(), got["name"].as_str()),
        (Some(api_id.as_str()), Some("payments"))
    );
    let (_, key) = api.create_key(&root, &api_id, json!({})).await;
    assert_eq!(api.verify(&root, &key, json!({})).await["valid"], true);
    api.ok(&root, "apis.deleteApi", json!({"apiId": api_id})).await;
    let (status, body) = api.call(&root, "apis.getApi", json!({"apiId": api_id})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("NOT_FOUND")));
    assert_eq!(
        api.verify(&root, &key, json!({})).await["code"],
        "NOT_FOUND",
        "its keys stop verifying at once"
    );
}

#[tokio::test]
async fn a_key_is_shown_once_and_stored_only_as_a_hash() {
    let db = TestDb::new().await;
    let (api, root, api_id) = setup(&db).await;
    let (key_id, key) =
        api.create_key(&root, &api_id, json!({"prefix": "sk_live", "name": "checkout"})).await;
    assert!(key.starts_with("sk_live_") && key_id.starts_with("key_"));
    let got = api.ok(&root, "keys.getKey", json!({"keyId": key_id})).await;
    assert_eq!(
        got["start"].as_str(),
        Some(&key[.."sk_live_".len() + 4]),
        "prefix and 4 characters"
    );
    assert!(!got.to_string().contains(&key), "getKey never returns the key");
    let listed = api.ok(&root, "apis.listKeys", json!({"apiId": api_id})).await;
    assert!(!listed.to_string().contains(&key));
    let client = db.client().await;
    let dump: String = client
        .query_one("SELECT string_agg(t::text, '|') FROM (SELECT * FROM keys) t", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!dump.contains(&key[8..]), "the key's random part is nowhere in the table");
}

#[tokio::test]
async fn verification_passes_with_its_data() {
    let db = TestDb::new().await;
    let (api, root, api_id) = setup(&db).await;
    let (key_id, key) = api
        .create_key(&root, &api_id, json!({"name": "n", "meta": {"plan": "pro"}, "externalId": "user_1", "permissions": ["documents.*"]}))
        .await;
    let data = api.verify(&root, &key, json!({})).await;
    assert_eq!((data["valid"].clone(), data["code"].clone()), (json!(true), json!("VALID")));
    assert_eq!(data["keyId"], key_id);
    assert_eq!(data["meta"]["plan"], "pro");
    assert_eq!(data["identity"]["externalId"], "user_1");
    assert_eq!(data["permissions"], json!(["documents.*"]));
}

#[tokio::test]
async fn every_verification_code_in_unkeys_order() {
    let db = TestDb::new().await;
    let (api, root, api_id) = setup(&db).await;
    assert_eq!(api.verify(&root, "sk_nope_123", json!({})).await["code"], "NOT_FOUND");

    let (id, key) = api.create_key(&root, &api_id, json!({"enabled": false})).await;
    assert_eq!(api.verify(&root, &key, json!({})).await["code"], "DISABLED");
    api.ok(&root, "keys.updateKey", json!({"keyId": id, "enabled": true})).await;
    assert_eq!(api.verify(&root, &key, json!({})).await["code"], "VALID", "updates apply at once");

    sql(&db, "UPDATE keys SET expires_at = now() - interval '1 minute' WHERE id = $1", &id).await;
    let expired = eventually(Duration::from_secs(5), "the notification", || async {
        let d = api.verify(&root, &key, json!({})).await;
        (d["code"] == "EXPIRED").then_some(d)
    })
    .await;
    assert_eq!(expired["valid"], false);

    let (_, key) = api
        .create_key(&root, &api_id, json!({"permissions": ["documents.*", "billing.read"]}))
        .await;
    let q = |query: &str| json!({"permissions": query});
    assert_eq!(
        api.verify(&root, &key, q("documents.read AND billing.read")).await["code"],
        "VALID"
    );
    assert_eq!(
        api.verify(&root, &key, q("documents.read AND billing.write")).await["code"],
        "INSUFFICIENT_PERMISSIONS"
    );
    assert_eq!(
        api.verify(&root, &key, q("(billing.write OR documents.delete) AND billing.read")).await["code"],
        "VALID"
    );

    let (_, key) = api.create_key(&root, &api_id, json!({"credits": {"remaining": 2}})).await;
    let spend: Vec<(Value, Value)> = {
        let mut out = Vec::new();
        for _ in 0..3 {
            let d = api.verify(&root, &key, json!({})).await;
            out.push((d["code"].clone(), d["credits"].clone()));
        }
        out
    };
    assert_eq!(
        spend,
        vec![
            (json!("VALID"), json!(1)),
            (json!("VALID"), json!(0)),
            (json!("USAGE_EXCEEDED"), json!(0))
        ]
    );

    let (_, key) = api
        .create_key(&root, &api_id, json!({"ratelimits": [{"name": "requests", "limit": 2, "duration": 60000, "autoApply": true}]}))
        .await;
    let codes: Vec<Value> = {
        let mut out = Vec::new();
        for _ in 0..3 {
            out.push(api.verify(&root, &key, json!({})).await["code"].clone());
        }
        out
    };
    assert_eq!(codes, vec![json!("VALID"), json!("VALID"), json!("RATE_LIMITED")]);
    let d = api.verify(&root, &key, json!({})).await;
    assert_eq!(d["ratelimits"][0]["exceeded"], true);
    assert_eq!(d["ratelimits"][0]["name"], "requests");
}

#[tokio::test]
async fn credits_honour_cost_and_can_be_set_incremented_and_decremented() {
    let db = TestDb::new().await;
    let (api, root, api_id) = setup(&db).await;
    let (id, key) = api.create_key(&root, &api_id, json!({"credits": {"remaining": 10}})).await;
    assert_eq!(api.verify(&root, &key, json!({"credits": {"cost": 4}})).await["credits"], 6);
    assert_eq!(
        api.verify(&root, &key, json!({"credits": {"cost": 7}})).await["code"],
        "USAGE_EXCEEDED"
    );
    assert_eq!(api.verify(&root, &key, json!({"credits": {"cost": 0}})).await["code"], "VALID");
    let op = |operation: &str, value: Value| json!({"keyId": id, "operation": operation, "value": value});
    assert_eq!(
        api.ok(&root, "keys.updateCredits", op("increment", json!(5))).await["remaining"],
        11
    );
    assert_eq!(
        api.ok(&root, "keys.updateCredits", op("decrement", json!(20))).await["remaining"],
        0
    );
    assert_eq!(api.ok(&root, "keys.updateCredits", op("set", json!(3))).await["remaining"], 3);
    assert_eq!(api.verify(&root, &key, json!({})).await["credits"], 2);
    let unlimited = api.ok(&root, "keys.updateCredits", op("set", Value::Null)).await;
    assert_eq!(unlimited["remaining"], Value::Null);
    assert_eq!(api.verify(&root, &key, json!({"credits": {"cost": 1000}})).await["code"], "VALID");
    let (status, body) = api.call(&root, "keys.updateCredits", op("multiply", json!(2))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("INVALID_CREDITS")));
}

#[tokio::test]
async fn credits_refill_daily_and_monthly() {
    let db = TestDb::new().await;
    let (api, root, api_id) = setup(&db).await;
    let (id, key) = api
        .create_key(
            &root,
            &api_id,
            json!({"credits": {"remaining": 1, "refill": {"interval": "daily", "amount": 5}}}),
        )
        .await;
    assert_eq!(api.verify(&root, &key, json!({})).await["credits"], 0);
    assert_eq!(api.verify(&root, &key, json!({})).await["code"], "USAGE_EXCEEDED");
    // The key was created yesterday: today's period begins with a refill to 5.
    sql(&db, "UPDATE keys SET created_at = now() - interval '2 days', last_refill_at = NULL WHERE id = $1", &id).await;
    let d = api.verify(&root, &key, json!({})).await;
    assert_eq!((d["code"].clone(), d["credits"].clone()), (json!("VALID"), json!(4)));
    assert_eq!(api.verify(&root, &key, json!({})).await["credits"], 3, "one refill per period");
    let got = api.ok(&root, "keys.getKey", json!({"keyId": id})).await;
    assert_eq!(got["credits"]["refill"], json!({"interval": "daily", "amount": 5}));

    let (status, body) = api
        .call(&root, "keys.createKey", json!({"apiId": api_id, "credits": {"remaining": 1, "refill": {"interval": "weekly", "amount": 5}}}))
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("INVALID_CREDITS")));
    let (_, monthly) = api
        .create_key(&root, &api_id, json!({"credits": {"remaining": 1, "refill": {"interval": "monthly", "amount": 9, "refillDay": 31}}}))
        .await;
    assert_eq!(api.verify(&root, &monthly, json!({})).await["credits"], 0);
}

#[tokio::test]
async fn update_reroll_delete_and_whoami() {
    let db = TestDb::new().await;
    let (api, root, api_id) = setup(&db).await;
    let (id, key) = api
        .create_key(&root, &api_id, json!({"name": "old", "meta": {"a": 1}, "prefix": "pk"}))
        .await;
    api.ok(
        &root,
        "keys.updateKey",
        json!({"keyId": id, "name": "new", "meta": null, "externalId": "u9"}),
    )
    .await;
    let got = api.ok(&root, "keys.getKey", json!({"keyId": id})).await;
    assert_eq!(
        (got["name"].as_str(), got.get("meta"), got["identity"]["externalId"].as_str()),
        (Some("new"), None, Some("u9"))
    );
    assert!(got["updatedAt"].as_i64().unwrap() > 0);

    let who = api.ok(&root, "keys.whoami", json!({"key": key})).await;
    assert_eq!(who["keyId"], id);

    let rolled = api.ok(&root, "keys.rerollKey", json!({"keyId": id, "expiration": 0})).await;
    let new_key = rolled["key"].as_str().unwrap();
    assert!(new_key.starts_with("pk_") && new_key != key);
    assert_eq!(api.verify(&root, &key, json!({})).await["code"], "NOT_FOUND");
    let v = api.verify(&root, new_key, json!({})).await;
    assert_eq!(
        (v["code"].as_str(), v["name"].as_str()),
        (Some("VALID"), Some("new")),
        "settings carry over"
    );

    let new_id = rolled["keyId"].as_str().unwrap();
    let later =
        api.ok(&root, "keys.rerollKey", json!({"keyId": new_id, "expiration": 3_600_000})).await;
    assert_eq!(
        api.verify(&root, new_key, json!({})).await["code"],
        "VALID",
        "the old key works until its expiration"
    );
    let old = api.ok(&root, "keys.getKey", json!({"keyId": new_id})).await;
    assert!(old["expires"].as_i64().unwrap() > 0);

    let latest = later["key"].as_str().unwrap();
    api.ok(&root, "keys.deleteKey", json!({"keyId": later["keyId"]})).await;
    assert_eq!(api.verify(&root, latest, json!({})).await["code"], "NOT_FOUND");
    let (status, _) = api.call(&root, "keys.getKey", json!({"keyId": later["keyId"]})).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn list_keys_pages_by_cursor_and_filters_by_external_id() {
    let db = TestDb::new().await;
    let (api, root, api_id) = setup(&db).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let external = if i % 2 == 0 { "even" } else { "odd" };
        ids.push(api.create_key(&root, &api_id, json!({"externalId": external})).await.0);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let (status, body) = api
            .call(&root, "apis.listKeys", json!({"apiId": api_id, "limit": 2, "cursor": cursor}))
            .await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        seen.extend(
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["keyId"].as_str().unwrap().to_owned()),
        );
        if body["pagination"]["hasMore"] == false {
            assert!(body["pagination"].get("cursor").is_none(), "no cursor on the last page");
            break;
        }
        cursor = body["pagination"]["cursor"].as_str().map(str::to_owned);
    }
    assert_eq!((pages, seen), (3, ids));
    let odd = api.ok(&root, "apis.listKeys", json!({"apiId": api_id, "externalId": "odd"})).await;
    assert_eq!(odd.as_array().unwrap().len(), 2);
    let (status, body) =
        api.call(&root, "apis.listKeys", json!({"apiId": api_id, "limit": 101})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("INVALID_LIMIT")));
}

#[tokio::test]
async fn last_used_is_recorded_off_the_request_path() {
    let db = TestDb::new().await;
    let (api, root, api_id) = setup(&db).await;
    let (id, key) = api.create_key(&root, &api_id, json!({})).await;
    assert!(api.ok(&root, "keys.getKey", json!({"keyId": id})).await.get("lastUsedAt").is_none());
    api.verify(&root, &key, json!({})).await;
    eventually(Duration::from_secs(10), "lastUsedAt to be written", || async {
        api.ok(&root, "keys.getKey", json!({"keyId": id})).await["lastUsedAt"].as_i64()
    })
    .await;
}

#[tokio::test]
async fn unsupported_unkey_calls_answer_501_naming_what_is_supported() {
    let db = TestDb::new().await;
    let (api, root, _) = setup(&db).await;
    for call in [
        "permissions.createRole",
        "permissions.listPermissions",
        "ratelimit.deleteNamespace",
        "analytics.getVerifications",
    ] {
        let (status, body) = api.call(&root, call, json!({})).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (501, Some("NOT_SUPPORTED")),
            "{call}"
        );
        assert!(body["error"]["detail"].as_str().unwrap().contains("keys.verifyKey"));
        assert!(body["error"]["type"].as_str().unwrap().ends_with("/NOT_SUPPORTED"));
    }
    let (status, body) =
        api.call(&root, "keys.createKey", json!({"apiId": "x", "roles": ["admin"]})).await;
    assert_eq!(status, 404, "unknown api first: {body}");
}
