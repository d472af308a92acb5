//! Limits an admin cannot talk past: bounded permission lists and a work budget per request
//! for containment and verifyKey's queries, rights handed on by `rootKeys.updateKey` expiring
//! with their giver, expirations past the end of time, and a root key changed by a concurrent
//! writer while its own request waits.

use std::time::Duration;

use serde_json::{Value, json};
use strongbox_tests::{TestApi, TestDb, assert_error, eventually, now_ms, spawn_api};

/// `**.a.**.a.….**` of 512 characters: matching it keeps many automaton states alive.
fn wide_pattern() -> String {
    let mut p = String::from("**");
    while p.len() + 5 <= 512 {
        p.push_str(".a.**");
    }
    p
}

/// `a.a.….a.b` with one `a` fewer than [`wide_pattern`] needs: it does not match, but only
/// after every state of the pattern has been tried on every segment.
fn near_miss() -> String {
    let needed = wide_pattern().matches(".a.").count();
    let mut name = vec!["a"; needed - 1];
    name.push("b");
    name.join(".")
}

async fn api_with_workspace() -> (TestDb, TestApi, String) {
    let db = TestDb::new().await;
    let api = spawn_api(&db, &[]).await;
    let root = api.workspace("acme").await;
    (db, api, root)
}

async fn root_key(api: &TestApi, creator: &str, body: Value) -> (String, String) {
    let data = api.ok(creator, "rootKeys.createKey", body).await;
    (data["keyId"].as_str().unwrap().to_owned(), data["key"].as_str().unwrap().to_owned())
}

async fn listed(api: &TestApi, root: &str, id: &str) -> Option<Value> {
    let data = api.ok(root, "rootKeys.listKeys", json!({"limit": 100})).await;
    data.as_array().unwrap().iter().find(|k| k["keyId"] == id).cloned()
}

#[tokio::test]
async fn root_key_permission_lists_are_bounded_and_containment_has_one_budget_per_request() {
    let (_db, api, root) = api_with_workspace().await;
    let too_many: Vec<String> = (0..101).map(|i| format!("api.api_{i}.read_key")).collect();
    let answer = api.call(&root, "rootKeys.createKey", json!({"permissions": too_many})).await;
    assert_error(answer, 400, "INVALID_PERMISSION", "101 permissions");

    // Each check is small, but a hundred of them against a hundred wide patterns is not: the
    // budget spans the request, so the delete is refused, fast, and the target stays.
    let mut held = vec!["root_key.*.manage".to_owned()];
    held.extend(std::iter::repeat_n(wide_pattern(), 99));
    let (_, manager) = root_key(&api, &root, json!({"permissions": held})).await;
    let (target, _) = root_key(&api, &root, json!({"permissions": vec![near_miss(); 100]})).await;
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        api.call(&manager, "rootKeys.deleteKey", json!({"keyId": target})),
    )
    .await
    .expect("containment must give up within its budget");
    assert_error(answer, 400, "PERMISSION_TOO_COMPLEX", "deleteKey");
    assert!(listed(&api, &root, &target).await.is_some(), "the target must stay");
}

#[tokio::test]
async fn rights_handed_on_by_update_expire_with_the_root_key_that_gave_them() {
    let (_db, api, root) = api_with_workspace().await;
    let expires = now_ms() + 3_600_000;
    let (_, giver) =
        root_key(&api, &root, json!({"permissions": ["**"], "expires": expires})).await;
    let (widened, _) = root_key(&api, &root, json!({"permissions": ["api.*.read_api"]})).await;
    let (revived, _) = root_key(&api, &root, json!({"permissions": ["api.*.read_api"]})).await;
    let (renamed, _) = root_key(&api, &root, json!({"permissions": ["api.*.read_api"]})).await;
    api.ok(&root, "rootKeys.updateKey", json!({"keyId": revived, "enabled": false})).await;

    let update = |body: Value| api.ok(&giver, "rootKeys.updateKey", body);
    update(json!({"keyId": widened, "permissions": ["api.*.read_api", "api.*.read_key"]})).await;
    update(json!({"keyId": revived, "enabled": true})).await;
    update(json!({"keyId": renamed, "name": "only a name"})).await;

    for id in [&widened, &revived] {
        let key = listed(&api, &root, id).await.unwrap();
        let at = key["expires"].as_i64().unwrap_or(i64::MAX);
        assert!(at <= expires, "{id} outlives the root key that gave it rights: {key}");
    }
    let key = listed(&api, &root, &renamed).await.unwrap();
    assert!(key["expires"].is_null(), "a rename hands nothing on: {key}");
}

#[tokio::test]
async fn a_permission_query_too_complex_for_its_key_is_refused_not_computed() {
    let (_db, api, root) = api_with_workspace().await;
    let api_id = api.create_api(&root, "a").await;
    let (_, key) =
        api.create_key(&root, &api_id, json!({"permissions": vec![wide_pattern(); 1000]})).await;
    let name = near_miss();
    let query = format!("{name} OR {name}");
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        api.call(&root, "keys.verifyKey", json!({"key": key, "permissions": query})),
    )
    .await
    .expect("the query must give up within its budget");
    assert_error(answer, 400, "PERMISSION_TOO_COMPLEX", "verifyKey");
    let too_many = vec!["a"; 1001];
    let answer =
        api.call(&root, "keys.createKey", json!({"apiId": api_id, "permissions": too_many})).await;
    assert_error(answer, 400, "INVALID_PERMISSION", "1001 permissions");
    // An ordinary query on the same key is still decided.
    let data = api.verify(&root, &key, json!({"permissions": "a.b"})).await;
    assert_eq!(data["code"], "INSUFFICIENT_PERMISSIONS", "{data}");
}

#[tokio::test]
async fn a_reroll_expiration_past_the_end_of_time_is_refused_and_changes_nothing() {
    let (_db, api, root) = api_with_workspace().await;
    let api_id = api.create_api(&root, "a").await;
    let (key_id, key) = api.create_key(&root, &api_id, json!({})).await;
    let (root_id, _) = root_key(&api, &root, json!({"permissions": ["api.*.read_api"]})).await;
    let far = 9_000_000_000_000_000_i64;
    let answer =
        api.call(&root, "keys.rerollKey", json!({"keyId": key_id, "expiration": far})).await;
    assert_error(answer, 400, "INVALID_EXPIRATION", "keys.rerollKey");
    let answer =
        api.call(&root, "rootKeys.rerollKey", json!({"keyId": root_id, "expiration": far})).await;
    assert_error(answer, 400, "INVALID_EXPIRATION", "rootKeys.rerollKey");
    assert_eq!(api.verify(&root, &key, json!({})).await["code"], "VALID");
    let keys = api.ok(&root, "apis.listKeys", json!({"apiId": api_id})).await;
    assert_eq!(keys.as_array().unwrap().len(), 1, "no new key: {keys}");
    assert_eq!(
        api.ok(&root, "rootKeys.listKeys", json!({})).await.as_array().unwrap().len(),
        2,
        "no new root key"
    );
}

#[tokio::test]
async fn a_root_key_narrowed_while_its_request_waits_cannot_act() {
    let (db, api, root) = api_with_workspace().await;
    let (manager_id, manager) = root_key(&api, &root, json!({"permissions": ["**"]})).await;
    let (target, _) = root_key(&api, &root, json!({"permissions": ["api.*.read_api"]})).await;

    // A concurrent writer holds both rows, so the manager's delete waits for them.
    let mut writer = db.client().await;
    let tx = writer.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM root_keys WHERE id = ANY($1) FOR UPDATE",
        &[&vec![manager_id.clone(), target.clone()]],
    )
    .await
    .unwrap();
    let request = {
        let (api_url, manager, target) = (api.url.clone(), manager.clone(), target.clone());
        tokio::spawn(async move {
            let response = strongbox_tests::http_client()
                .post(format!("{api_url}/v2/rootKeys.deleteKey"))
                .bearer_auth(&manager)
                .json(&json!({"keyId": target}))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        })
    };
    let db_ref = &db;
    eventually(Duration::from_secs(10), "the delete to wait for the row locks", || async move {
        let waiting: i64 = db_ref
            .one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await;
        (waiting > 0).then_some(())
    })
    .await;
    // Meanwhile the manager loses its rights.
    tx.execute(
        "UPDATE root_keys SET permissions = '{api.*.read_api}' WHERE id = $1",
        &[&manager_id],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let answer = request.await.unwrap();
    assert_error(answer, 401, "UNAUTHORIZED", "a delete by a root key narrowed meanwhile");
    assert!(listed(&api, &root, &target).await.is_some(), "the target must stay");
}
