//! Pins the defects of the service-layer issue, one test each: a root key acting on a wider one,
//! what a rerolled or newly created root key inherits, renames racing credit spends and a
//! disable, v1 errors that must name their cause in v1's own codes, permission patterns too
//! complex to decide, and a shutdown that must not outwait its grace period on a stuck database.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use strongbox_tests::{
    ServiceProcess, TestApi, TestDb, TestVault, assert_error, eventually, http_client, now_ms,
    spawn_api, spawn_api_with_vault, spawn_vault,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The error codes of Unkey's v1 API, as `@unkey/api` 0.38.0 types them.
const V1_CODES: &[&str] = &[
    "BAD_REQUEST",
    "UNAUTHORIZED",
    "FORBIDDEN",
    "NOT_FOUND",
    "CONFLICT",
    "PRECONDITION_FAILED",
    "TOO_MANY_REQUESTS",
    "INTERNAL_SERVER_ERROR",
    "DELETE_PROTECTED",
];

/// A v2 client bound to one root key that can be cloned into tasks (and points at an
/// in-process api or a real binary alike).
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    url: String,
    root: String,
}

impl Client {
    fn new(url: &str, root: &str) -> Self {
        Self { http: http_client(), url: url.to_owned(), root: root.to_owned() }
    }

    /// The same api, as another root key.
    fn as_root(&self, root: &str) -> Self {
        Self { root: root.to_owned(), ..self.clone() }
    }

    fn request(&self, call: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http.post(format!("{}/v2/{call}", self.url)).bearer_auth(&self.root).json(body)
    }

    async fn call(&self, call: &str, body: Value) -> (u16, Value) {
        let response = self.request(call, &body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn ok(&self, call: &str, body: Value) -> Value {
        let (status, response) = self.call(call, body).await;
        assert_eq!(status, 200, "{call}: {response}");
        response["data"].clone()
    }
}

/// An in-process api on a fresh database with one workspace: (database, api, its root key).
async fn api_with_workspace() -> (TestDb, TestApi, String) {
    let db = TestDb::new().await;
    let api = spawn_api(&db, &[]).await;
    let root = api.workspace("acme").await;
    (db, api, root)
}

/// A root key made by `creator` with `permissions`: (keyId, key).
async fn root_key(api: &TestApi, creator: &str, permissions: Value) -> (String, String) {
    let data = api.ok(creator, "rootKeys.createKey", json!({"permissions": permissions})).await;
    (data["keyId"].as_str().unwrap().to_owned(), data["key"].as_str().unwrap().to_owned())
}

/// The workspace's root keys as `rootKeys.listKeys` shows them, by keyId.
async fn listed_root_keys(api: &TestApi, root: &str) -> HashMap<String, Value> {
    let data = api.ok(root, "rootKeys.listKeys", json!({"limit": 100})).await;
    data.as_array()
        .unwrap()
        .iter()
        .map(|k| (k["keyId"].as_str().unwrap().to_owned(), k.clone()))
        .collect()
}

/// A listKeys entry without `lastUsedAt`, which using a key may change.
fn without_last_used(mut entry: Value) -> Value {
    if let Some(fields) = entry.as_object_mut() {
        fields.remove("lastUsedAt");
    }
    entry
}

#[tokio::test]
async fn a_manage_only_root_key_cannot_take_over_a_wider_one() {
    let (_db, api, root) = api_with_workspace().await;
    let api_id = api.create_api(&root, "a").await;
    let (_, manager) = root_key(&api, &root, json!(["root_key.*.manage"])).await;
    let (super_id, super_key) = root_key(&api, &root, json!(["**"])).await;
    let (wide_id, wide_key) = root_key(&api, &root, json!([format!("api.{api_id}.*")])).await;
    let before = listed_root_keys(&api, &root).await;

    for target in [&super_id, &wide_id] {
        for (call, body) in [
            ("rootKeys.rerollKey", json!({"keyId": target})),
            ("rootKeys.rerollKey", json!({"keyId": target, "expiration": 60_000})),
            ("rootKeys.updateKey", json!({"keyId": target, "name": "taken over"})),
            ("rootKeys.updateKey", json!({"keyId": target, "enabled": false})),
            ("rootKeys.deleteKey", json!({"keyId": target})),
        ] {
            let answer = api.call(&manager, call, body.clone()).await;
            assert_error(answer, 403, "INSUFFICIENT_PERMISSIONS", &format!("{call} {body}"));
        }
    }
    for key in [&super_key, &wide_key] {
        api.ok(key, "apis.getApi", json!({"apiId": api_id})).await;
    }
    let after = listed_root_keys(&api, &root).await;
    assert_eq!(after.len(), before.len(), "a refused reroll added a root key");
    for id in [&super_id, &wide_id] {
        assert_eq!(
            without_last_used(after[id.as_str()].clone()),
            without_last_used(before[id.as_str()].clone()),
            "{id} was changed by a root key that does not cover it"
        );
    }

    // What the manager covers, it may manage.
    let (peer_id, peer_key) = root_key(&api, &root, json!(["root_key.*.manage"])).await;
    api.ok(&manager, "rootKeys.updateKey", json!({"keyId": peer_id, "name": "renamed"})).await;
    api.ok(&manager, "rootKeys.updateKey", json!({"keyId": peer_id, "enabled": false})).await;
    api.ok(&manager, "rootKeys.updateKey", json!({"keyId": peer_id, "enabled": true})).await;
    assert_eq!(listed_root_keys(&api, &root).await[peer_id.as_str()]["name"], "renamed");
    let rolled = api.ok(&manager, "rootKeys.rerollKey", json!({"keyId": peer_id})).await;
    let rolled_id = rolled["keyId"].as_str().unwrap();
    let listed = listed_root_keys(&api, &root).await;
    assert!(listed.contains_key(rolled_id) && !listed.contains_key(&peer_id), "{listed:?}");
    let answer = api.call(&peer_key, "rootKeys.listKeys", json!({})).await;
    assert_error(answer, 401, "UNAUTHORIZED", "the root key rerolled away");
    api.ok(&manager, "rootKeys.deleteKey", json!({"keyId": rolled_id})).await;
    assert!(!listed_root_keys(&api, &root).await.contains_key(rolled_id));
}

#[tokio::test]
async fn a_rerolled_disabled_root_key_stays_disabled() {
    let (_db, api, root) = api_with_workspace().await;
    let api_id = api.create_api(&root, "a").await;
    let (old_id, old_key) = root_key(&api, &root, json!(["api.*.read_api"])).await;
    api.ok(&old_key, "apis.getApi", json!({"apiId": api_id})).await;
    api.ok(&root, "rootKeys.updateKey", json!({"keyId": old_id, "enabled": false})).await;
    let rolled =
        api.ok(&root, "rootKeys.rerollKey", json!({"keyId": old_id, "expiration": 60_000})).await;
    let (new_id, new_key) = (rolled["keyId"].as_str().unwrap(), rolled["key"].as_str().unwrap());

    for key in [new_key, old_key.as_str()] {
        for (call, body) in [
            ("apis.getApi", json!({"apiId": api_id})),
            ("apis.createApi", json!({"name": "b"})),
            ("rootKeys.listKeys", json!({})),
        ] {
            assert_error(api.call(key, call, body).await, 401, "UNAUTHORIZED", call);
        }
    }
    let listed = listed_root_keys(&api, &root).await;
    assert_eq!(listed[new_id]["enabled"], false, "{}", listed[new_id]);
}

#[tokio::test]
async fn a_new_root_key_never_outlives_its_creator() {
    let (_db, api, root) = api_with_workspace().await;
    let in_an_hour = now_ms() + 3_600_000;
    let created = api
        .ok(&root, "rootKeys.createKey", json!({"permissions": ["**"], "expires": in_an_hour}))
        .await;
    let creator_id = created["keyId"].as_str().unwrap().to_owned();
    let creator = created["key"].as_str().unwrap().to_owned();

    let (unbounded_id, _) = root_key(&api, &creator, json!(["api.*.read_api"])).await;
    let later = api
        .ok(
            &creator,
            "rootKeys.createKey",
            json!({"permissions": ["api.*.read_api"], "expires": now_ms() + 10 * 86_400_000}),
        )
        .await;
    let later_id = later["keyId"].as_str().unwrap().to_owned();
    let (plain_id, _) = root_key(&api, &root, json!(["api.*.read_api"])).await;
    let rolled = api.ok(&creator, "rootKeys.rerollKey", json!({"keyId": plain_id})).await;
    let rolled_id = rolled["keyId"].as_str().unwrap().to_owned();

    let listed = listed_root_keys(&api, &root).await;
    let limit = listed[creator_id.as_str()]["expires"].as_i64().unwrap();
    assert!(limit <= in_an_hour, "{}", listed[creator_id.as_str()]);
    let now = now_ms();
    for (what, id) in [
        ("created without expires", &unbounded_id),
        ("created to expire in 10 days", &later_id),
        ("rerolled from a key without expiry", &rolled_id),
    ] {
        let entry = &listed[id.as_str()];
        let expires = entry["expires"].as_i64();
        assert!(
            expires.is_some_and(|e| e <= limit && e > now),
            "{what}: {entry} must expire by its creator's expiry {limit}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renames_racing_verifications_lose_no_credit_spend() {
    let (_db, api, root) = api_with_workspace().await;
    let api_id = api.create_api(&root, "credits").await;
    let (key_id, key) =
        api.create_key(&root, &api_id, json!({"credits": {"remaining": 1000}})).await;
    let client = Client::new(&api.url, &root);

    let verifiers: Vec<JoinHandle<i64>> = (0..4)
        .map(|_| {
            let (client, key) = (client.clone(), key.clone());
            tokio::spawn(async move {
                let mut valid = 0;
                for _ in 0..150 {
                    if client.ok("keys.verifyKey", json!({"key": key})).await["code"] == "VALID" {
                        valid += 1;
                    }
                }
                valid
            })
        })
        .collect();
    let renamer = {
        let (client, key_id) = (client.clone(), key_id.clone());
        tokio::spawn(async move {
            for i in 0..30 {
                let body = json!({"keyId": key_id, "name": format!("rename-{i}")});
                client.ok("keys.updateKey", body).await;
            }
        })
    };
    let mut valid = 0;
    for verifier in verifiers {
        valid += verifier.await.unwrap();
    }
    renamer.await.unwrap();

    let data = api.ok(&root, "keys.getKey", json!({"keyId": key_id})).await;
    assert_eq!(
        data["credits"]["remaining"].as_i64(),
        Some(1000 - valid),
        "{valid} VALID verifications; a rename wrote back a stale credit count: {data}"
    );
    assert_eq!(valid, 600);
}

/// Sends `keys.updateKey` with `body` from a task of its own.
fn update_in_background(client: &Client, body: Value) -> JoinHandle<()> {
    let client = client.clone();
    tokio::spawn(async move {
        client.ok("keys.updateKey", body).await;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disable_racing_renames_stays_disabled() {
    let (_db, api, root) = api_with_workspace().await;
    let api_id = api.create_api(&root, "disable").await;
    let client = Client::new(&api.url, &root);
    for round in 0..20 {
        let (key_id, key) = api.create_key(&root, &api_id, json!({"name": "start"})).await;
        assert_eq!(api.verify(&root, &key, json!({})).await["code"], "VALID");
        let rename = |i: usize| json!({"keyId": key_id, "name": format!("rename-{round}-{i}")});
        let mut writers: Vec<JoinHandle<()>> =
            (0..3).map(|i| update_in_background(&client, rename(i))).collect();
        writers.push(update_in_background(&client, json!({"keyId": key_id, "enabled": false})));
        writers.extend((3..6).map(|i| update_in_background(&client, rename(i))));
        for writer in writers {
            writer.await.unwrap();
        }

        let data = api.ok(&root, "keys.getKey", json!({"keyId": key_id})).await;
        assert_eq!(data["enabled"], false, "round {round}: a rename re-enabled the key: {data}");
        let verdict = api.verify(&root, &key, json!({})).await;
        assert_eq!(verdict["code"], "DISABLED", "round {round}: {verdict}");
    }
}

/// An api with a vault, a workspace whose API stores encrypted keys, and one recoverable key.
struct Recoverable {
    api: TestApi,
    vault: TestVault,
    root: String,
    key_id: String,
    /// (api database, vault database); last, so they outlive the services.
    dbs: (TestDb, TestDb),
}

async fn recoverable_key() -> Recoverable {
    let (api_db, vault_db) = (TestDb::new().await, TestDb::new().await);
    let vault = spawn_vault(&vault_db, &[]).await;
    vault.initialize().await;
    let api = spawn_api_with_vault(&api_db, &vault, &[]).await;
    let root = api.workspace("acme").await;
    let api_id = api.create_api(&root, "recovery").await;
    api.ok(&root, "apis.updateApi", json!({"apiId": api_id, "storeEncryptedKeys": true})).await;
    let (key_id, _) = api.create_key(&root, &api_id, json!({"recoverable": true})).await;
    Recoverable { api, vault, root, key_id, dbs: (api_db, vault_db) }
}

impl Recoverable {
    /// `GET /v1/keys.getKey?keyId=…&decrypt=true`: status and body.
    async fn v1_get_decrypted(&self) -> (u16, Value) {
        let response = http_client()
            .get(format!("{}/v1/keys.getKey?keyId={}&decrypt=true", self.api.url, self.key_id))
            .bearer_auth(&self.root)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// Asserts a v1 error answer: its status, a code of v1's enum, and words of its message.
fn assert_v1_error(answer: (u16, Value), status: u16, code: &str, mentions: &str) {
    let (got, body) = answer;
    assert_eq!(got, status, "{body}");
    let error = &body["error"];
    let got_code = error["code"].as_str().unwrap_or_default();
    assert!(V1_CODES.contains(&got_code), "{got_code:?} is not a v1 error code: {body}");
    assert_eq!(got_code, code, "{body}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.to_lowercase().contains(mentions), "the message should say why: {body}");
    assert!(error["requestId"].as_str().unwrap_or_default().starts_with("req_"), "{body}");
}

#[tokio::test]
async fn v1_get_key_of_a_shredded_key_is_410_with_a_v1_code_naming_the_cause() {
    let s = recoverable_key().await;
    assert_eq!(s.v1_get_decrypted().await.0, 200, "recoverable before the shredding");
    let keyring: String = s.dbs.0.one("SELECT keyring FROM encrypted_keys", &[]).await;
    let path = format!("/v1/keyrings/{keyring}");
    let (status, body) = s.vault.call("operator", reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 200, "{body}");

    assert_v1_error(s.v1_get_decrypted().await, 410, "PRECONDITION_FAILED", "recover");
}

#[tokio::test]
async fn v1_get_key_while_the_vault_is_locked_is_503_with_a_v1_code_naming_the_cause() {
    let s = recoverable_key().await;
    let (status, body) = s.vault.post("operator", "/v1/sys/lock", json!({})).await;
    assert_eq!(status, 200, "{body}");

    assert_v1_error(s.v1_get_decrypted().await, 503, "INTERNAL_SERVER_ERROR", "locked");
}

/// The real api binary on `db` with `extra` variables; returns it and its public URL.
async fn api_binary(db: &TestDb, extra: &[(&str, &str)]) -> (ServiceProcess, String) {
    let mut env = HashMap::from([
        ("STRONGBOX_API__SERVER__LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("STRONGBOX_API__SERVER__OPS_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("STRONGBOX_API__DATABASE__URL".to_owned(), db.url().to_owned()),
    ]);
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let mut process = ServiceProcess::start("strongbox-api", &["serve"], &env);
    let ready = process.wait_for_message("strongbox-api ready to serve").await;
    let url = format!("http://{}", ready["public"].as_str().unwrap());
    (process, url)
}

/// Bootstraps a workspace on `db` (after the binary has migrated it); returns its root key.
async fn bootstrap(db: &TestDb) -> String {
    let config = strongbox_shared::db::DatabaseConfig::from_url(db.url());
    strongbox_api::bootstrap(&config, "acme").await.unwrap().root_key
}

/// Creates an API and a key on it; returns (keyId, key).
async fn api_and_key(admin: &Client) -> (String, String) {
    let api = admin.ok("apis.createApi", json!({"name": "policy"})).await;
    let created = admin.ok("keys.createKey", json!({"apiId": api["apiId"]})).await;
    (created["keyId"].as_str().unwrap().to_owned(), created["key"].as_str().unwrap().to_owned())
}

/// Verifies `key` until `stop`, each answer due within 2 s and VALID, counting answers.
async fn keep_verifying(
    client: Client,
    key: String,
    answered: Arc<AtomicUsize>,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let verification = client.call("keys.verifyKey", json!({"key": key}));
        let (status, body) = tokio::time::timeout(Duration::from_secs(2), verification)
            .await
            .expect("a verification took over 2 s");
        assert_eq!((status, body["data"]["code"].as_str()), (200, Some("VALID")), "{body}");
        answered.fetch_add(1, Ordering::SeqCst);
    }
}

/// Waits until `answered` exceeds `count`.
async fn answered_beyond(answered: &AtomicUsize, count: usize) {
    eventually(Duration::from_secs(10), "verifications to go on", || {
        let now = answered.load(Ordering::SeqCst);
        async move { (now > count).then_some(()) }
    })
    .await;
}

/// Runs against the real binary: on a deciding algorithm that is exponential in the pattern, the
/// api would burn CPU and memory for ever, which must not happen inside the test process.
#[tokio::test]
async fn an_exploding_permission_pattern_is_refused_quickly_while_verify_keeps_answering() {
    let db = TestDb::new().await;
    let (_process, url) = api_binary(&db, &[]).await;
    let admin = Client::new(&url, &bootstrap(&db).await);
    let (_, key) = api_and_key(&admin).await;
    let created =
        admin.ok("rootKeys.createKey", json!({"permissions": ["root_key.*.manage"]})).await;
    let manager = admin.as_root(created["key"].as_str().unwrap());
    let peer = admin.ok("rootKeys.createKey", json!({"permissions": ["root_key.*.manage"]})).await;
    let exploding = format!("**.a{}", ".*".repeat(60));

    let answered = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let verifier = tokio::spawn(keep_verifying(admin.clone(), key, answered.clone(), stop.clone()));
    answered_beyond(&answered, 0).await;

    for (call, body) in [
        ("rootKeys.createKey", json!({"permissions": [exploding]})),
        ("rootKeys.updateKey", json!({"keyId": peer["keyId"], "permissions": [exploding]})),
    ] {
        let answer = tokio::time::timeout(Duration::from_secs(2), manager.call(call, body))
            .await
            .unwrap_or_else(|_| panic!("{call} with {exploding} took over 2 s"));
        assert_error(answer, 400, "PERMISSION_TOO_COMPLEX", call);
    }
    answered_beyond(&answered, answered.load(Ordering::SeqCst) + 2).await;
    stop.cancel();
    verifier.await.unwrap();

    let listed = admin.ok("rootKeys.listKeys", json!({})).await;
    assert!(!listed.to_string().contains("**.a"), "a refused pattern was stored: {listed}");
}

#[tokio::test]
async fn shutdown_does_not_wait_past_the_grace_period_for_a_stuck_request() {
    let db = TestDb::new().await;
    let (mut process, url) = api_binary(
        &db,
        &[
            ("STRONGBOX_API__SERVER__SHUTDOWN_GRACE_SECONDS", "1"),
            // No periodic flush: the verification below leaves a usage write pending at shutdown.
            ("STRONGBOX_API__USAGE__FLUSH_INTERVAL_MS", "600000"),
        ],
    )
    .await;
    let admin = Client::new(&url, &bootstrap(&db).await);
    let (key_id, key) = api_and_key(&admin).await;
    assert_eq!(admin.ok("keys.verifyKey", json!({"key": key})).await["code"], "VALID");

    // A writer that never finishes: every statement on `keys` now waits for this transaction.
    let mut locker = db.client().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE keys IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let stuck = tokio::spawn(admin.request("keys.getKey", &json!({"keyId": key_id})).send());
    let db_ref = &db;
    eventually(Duration::from_secs(10), "getKey to wait for the lock", || async move {
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

    process.signal("TERM");
    let exited = tokio::time::timeout(Duration::from_secs(15), process.wait()).await;
    assert!(
        exited.is_ok(),
        "the api still ran 15 s after SIGTERM with a 1 s grace period; log:\n{}",
        process.log.join("\n")
    );
    lock.rollback().await.unwrap();
    stuck.abort();
}
