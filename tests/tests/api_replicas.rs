//! Two api processes on one database: a change made through one takes effect at once on the
//! other, through LISTEN/NOTIFY, not the cache TTL (set to an hour here).

use std::collections::HashMap;

use std::time::Duration;

use serde_json::{Value, json};
use strongbox_tests::{ServiceProcess, TestDb, eventually, http_client};

struct Replica {
    process: ServiceProcess,
    url: String,
    ops: String,
}

async fn start(db: &TestDb) -> Replica {
    start_with(db, &[]).await
}

/// A replica with `extra` variables added or overriding the defaults.
async fn start_with(db: &TestDb, extra: &[(&str, &str)]) -> Replica {
    let mut env = HashMap::from([
        ("STRONGBOX_API__SERVER__LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("STRONGBOX_API__SERVER__OPS_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("STRONGBOX_API__DATABASE__URL".to_owned(), db.url().to_owned()),
        ("STRONGBOX_API__CACHE__TTL_SECONDS".to_owned(), "3600".to_owned()),
    ]);
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let mut process = ServiceProcess::start("strongbox-api", &["serve"], &env);
    let ready = process.wait_for_message("strongbox-api ready to serve").await;
    let url = format!("http://{}", ready["public"].as_str().unwrap());
    let ops = format!("http://{}", ready["ops"].as_str().unwrap());
    Replica { process, url, ops }
}

/// Bootstraps workspace `acme` and returns its root key.
async fn root_key(db: &TestDb) -> String {
    strongbox_api::bootstrap(&strongbox_shared::db::DatabaseConfig::from_url(db.url()), "acme")
        .await
        .unwrap()
        .root_key
}

impl Replica {
    async fn call(&self, root: &str, call: &str, body: Value) -> (u16, Value) {
        let response = http_client()
            .post(format!("{}/v2/{call}", self.url))
            .bearer_auth(root)
            .json(&body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn code(&self, root: &str, key: &str) -> String {
        let (status, body) = self.call(root, "keys.verifyKey", json!({"key": key})).await;
        assert_eq!(status, 200, "{body}");
        body["data"]["code"].as_str().unwrap().to_owned()
    }

    /// Waits (briefly: far below the hour-long TTL) for the notification to arrive.
    async fn becomes(&self, root: &str, key: &str, code: &str) {
        eventually(Duration::from_secs(3), code, || async {
            (self.code(root, key).await == code).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn changes_on_one_replica_apply_on_the_other_at_once() {
    let db = TestDb::new().await;
    let a = start(&db).await;
    let root = root_key(&db).await;
    let b = start(&db).await;
    let (_, body) = a.call(&root, "apis.createApi", json!({"name": "x"})).await;
    let api_id = body["data"]["apiId"].as_str().unwrap().to_owned();
    let (_, body) = a.call(&root, "keys.createKey", json!({"apiId": api_id})).await;
    let (key_id, key) = (
        body["data"]["keyId"].as_str().unwrap().to_owned(),
        body["data"]["key"].as_str().unwrap().to_owned(),
    );

    // b caches the key as valid, then a disables, re-enables and deletes it.
    assert_eq!(b.code(&root, &key).await, "VALID");
    a.call(&root, "keys.updateKey", json!({"keyId": key_id, "enabled": false})).await;
    b.becomes(&root, &key, "DISABLED").await;
    a.call(&root, "keys.updateKey", json!({"keyId": key_id, "enabled": true})).await;
    b.becomes(&root, &key, "VALID").await;
    a.call(&root, "keys.deleteKey", json!({"keyId": key_id})).await;
    b.becomes(&root, &key, "NOT_FOUND").await;

    // The same for deleting an API and for root keys.
    let (_, body) = a.call(&root, "keys.createKey", json!({"apiId": api_id})).await;
    let key = body["data"]["key"].as_str().unwrap().to_owned();
    assert_eq!(b.code(&root, &key).await, "VALID");
    a.call(&root, "apis.deleteApi", json!({"apiId": api_id})).await;
    b.becomes(&root, &key, "NOT_FOUND").await;

    // APIs are cached too: b reads one, a renames it and opts it in to recoverable keys.
    let (_, body) = a.call(&root, "apis.createApi", json!({"name": "before"})).await;
    let api_id = body["data"]["apiId"].as_str().unwrap().to_owned();
    let recoverable = json!({"apiId": api_id, "recoverable": true});
    assert_eq!(b.call(&root, "keys.createKey", recoverable.clone()).await.0, 412);
    assert_eq!(
        b.call(&root, "apis.getApi", json!({"apiId": api_id})).await.1["data"]["name"],
        "before"
    );
    a.call(
        &root,
        "apis.updateApi",
        json!({"apiId": api_id, "name": "after", "storeEncryptedKeys": true}),
    )
    .await;
    eventually(Duration::from_secs(3), "b to see the rename", || async {
        let (_, body) = b.call(&root, "apis.getApi", json!({"apiId": api_id})).await;
        (body["data"]["name"] == "after").then_some(())
    })
    .await;
    // Opted in now; these replicas have no vault, so the vault is what refuses.
    let (status, body) = b.call(&root, "keys.createKey", recoverable).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "VAULT_UNAVAILABLE", "{body}");
    a.call(&root, "apis.deleteApi", json!({"apiId": api_id})).await;
    eventually(Duration::from_secs(3), "b to forget the deleted API", || async {
        let (status, _) = b.call(&root, "keys.createKey", json!({"apiId": api_id})).await;
        (status == 404).then_some(())
    })
    .await;

    let (_, body) =
        a.call(&root, "rootKeys.createKey", json!({"permissions": ["api.*.create_api"]})).await;
    let (rk_id, rk) = (
        body["data"]["keyId"].as_str().unwrap().to_owned(),
        body["data"]["key"].as_str().unwrap().to_owned(),
    );
    assert_eq!(b.call(&rk, "apis.createApi", json!({"name": "y"})).await.0, 200);
    a.call(&root, "rootKeys.deleteKey", json!({"keyId": rk_id})).await;
    eventually(Duration::from_secs(3), "the root key to be refused", || async {
        (b.call(&rk, "apis.createApi", json!({"name": "y"})).await.0 == 401).then_some(())
    })
    .await;

    drop(a.process);
    drop(b.process);
}

#[tokio::test]
async fn a_reconnecting_listener_drops_the_whole_cache() {
    let db = TestDb::new().await;
    let root = root_key(&db).await;
    let b = start(&db).await;
    let client = db.client().await;
    let listening = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND application_name = $1 AND state = 'idle'";
    // The listener clears the cache once it listens; wait for that before caching anything.
    let listener = strongbox_api::cache::LISTENER;
    eventually(Duration::from_secs(10), "the cache listener", || async {
        let n: i64 = client.query_one(listening, &[&listener]).await.unwrap().get(0);
        (n == 1).then_some(())
    })
    .await;
    let (_, body) = b.call(&root, "apis.createApi", json!({"name": "x"})).await;
    let api_id = body["data"]["apiId"].as_str().unwrap().to_owned();
    let (_, body) = b.call(&root, "keys.createKey", json!({"apiId": api_id})).await;
    let (key_id, key) = (
        body["data"]["keyId"].as_str().unwrap().to_owned(),
        body["data"]["key"].as_str().unwrap().to_owned(),
    );
    assert_eq!(b.code(&root, &key).await, "VALID");
    // An API deleted with no notification is still cached, so createKey meets the foreign key:
    // a 404, not a 500, and the stale entry is dropped.
    let (_, body) = b.call(&root, "apis.createApi", json!({"name": "gone"})).await;
    let gone = body["data"]["apiId"].as_str().unwrap().to_owned();
    assert_eq!(b.call(&root, "keys.createKey", json!({"apiId": gone})).await.0, 200);
    client.execute("DELETE FROM apis WHERE id = $1", &[&gone]).await.unwrap();
    for _ in 0..2 {
        let (status, body) = b.call(&root, "keys.createKey", json!({"apiId": gone})).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["code"], "NOT_FOUND", "{body}");
    }
    // The recovery opt-in is always read fresh: an opt-out no replica heard of still counts.
    let (_, body) = b.call(&root, "apis.createApi", json!({"name": "opted"})).await;
    let opted = body["data"]["apiId"].as_str().unwrap().to_owned();
    b.call(&root, "apis.updateApi", json!({"apiId": opted, "storeEncryptedKeys": true})).await;
    assert_eq!(b.call(&root, "keys.createKey", json!({"apiId": opted})).await.0, 200, "cached");
    let recoverable = json!({"apiId": opted, "recoverable": true});
    assert_eq!(b.call(&root, "keys.createKey", recoverable.clone()).await.0, 503, "no vault here");
    client
        .execute("UPDATE apis SET store_encrypted_keys = false WHERE id = $1", &[&opted])
        .await
        .unwrap();
    let (status, body) = b.call(&root, "keys.createKey", recoverable).await;
    assert_eq!(status, 412, "{body}");

    // A change whose notification is lost: written without NOTIFY, while the listener is cut.
    client.execute("UPDATE keys SET enabled = false WHERE id = $1", &[&key_id]).await.unwrap();
    assert_eq!(b.code(&root, &key).await, "VALID", "still cached: nothing announced it");
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = $1",
            &[&listener],
        )
        .await
        .unwrap();
    b.becomes(&root, &key, "DISABLED").await;
    drop(b.process);
}

#[tokio::test]
async fn admin_requests_are_logged_with_the_root_key_id_and_never_a_key() {
    let db = TestDb::new().await;
    let made =
        strongbox_api::bootstrap(&strongbox_shared::db::DatabaseConfig::from_url(db.url()), "acme")
            .await
            .unwrap();
    let mut replica = start(&db).await;
    let (_, body) = replica.call(&made.root_key, "apis.createApi", json!({"name": "x"})).await;
    let api_id = body["data"]["apiId"].as_str().unwrap().to_owned();
    let (_, body) = replica.call(&made.root_key, "keys.createKey", json!({"apiId": api_id})).await;
    let key = body["data"]["key"].as_str().unwrap().to_owned();
    let request_id = body["meta"]["requestId"].as_str().unwrap().to_owned();
    replica.code(&made.root_key, &key).await;
    replica.process.signal("TERM");
    assert!(replica.process.wait().await.success());
    let log = replica.process.log.join("\n");
    let line = replica
        .process
        .log
        .iter()
        .find(|l| l.contains(&request_id) && l.contains("\"message\":\"request\""))
        .unwrap_or_else(|| panic!("no request line for {request_id}:\n{log}"));
    let parsed: Value = serde_json::from_str(line).unwrap();
    assert_eq!(parsed["span"]["auth.root_key"], made.root_key_id.as_str(), "{line}");
    assert_eq!(parsed["span"]["workspace_id"], made.workspace_id.as_str(), "{line}");
    assert!(!log.contains(&made.root_key), "the root key never appears in logs");
    assert!(!log.contains(&key), "a customer key never appears in logs");
}

/// Verifies `key` with `cost` through `replica`: the code and the credits it answered.
async fn spend(replica: &Replica, root: &str, key: &str, cost: i64) -> (String, i64) {
    let (status, body) =
        replica.call(root, "keys.verifyKey", json!({"key": key, "credits": {"cost": cost}})).await;
    assert_eq!(status, 200, "{body}");
    let credits = body["data"]["credits"].as_i64().unwrap_or_else(|| panic!("{body}"));
    (body["data"]["code"].as_str().unwrap().to_owned(), credits)
}

async fn remaining(replica: &Replica, root: &str, key_id: &str) -> i64 {
    let (status, body) = replica.call(root, "keys.getKey", json!({"keyId": key_id})).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["credits"]["remaining"].as_i64().unwrap()
}

#[tokio::test]
async fn credits_stay_exact_with_concurrent_spends_on_two_replicas() {
    let db = TestDb::new().await;
    let root = root_key(&db).await;
    let replicas = [start(&db).await, start(&db).await];
    let (_, body) = replicas[0].call(&root, "apis.createApi", json!({"name": "x"})).await;
    let api_id = body["data"]["apiId"].as_str().unwrap().to_owned();
    let create = |credits: i64| {
        let (replica, root, api_id) = (&replicas[0], &root, &api_id);
        async move {
            let (_, body) = replica
                .call(
                    root,
                    "keys.createKey",
                    json!({"apiId": api_id, "credits": {"remaining": credits}}),
                )
                .await;
            let d = &body["data"];
            (d["keyId"].as_str().unwrap().to_owned(), d["key"].as_str().unwrap().to_owned())
        }
    };

    // Cost 1, more verifications than credits: exactly one VALID answer per credit, each
    // with its own count, and every refusal sees none left.
    let (key_id, key) = create(300).await;
    let answers = futures_util::future::join_all((0..480).map(|i| {
        let (replica, root, key) = (&replicas[i % 2], &root, &key);
        async move { spend(replica, root, key, 1).await }
    }))
    .await;
    let mut left: Vec<i64> =
        answers.iter().filter(|(code, _)| code == "VALID").map(|(_, left)| *left).collect();
    left.sort_unstable();
    assert_eq!(left, (0..300).collect::<Vec<_>>(), "one VALID answer per credit, each exact");
    for (code, left) in &answers {
        assert!(code == "VALID" || (code == "USAGE_EXCEEDED" && *left == 0), "{code} {left}");
    }
    assert_eq!(remaining(&replicas[1], &root, &key_id).await, 0);

    // Mixed costs, with getKey read on both replicas all along: what it reports only falls,
    // and at the end it is the start less what the VALID answers spent.
    let (key_id, key) = create(1000).await;
    let costs = [1, 2, 5, 7, 3];
    let stop = tokio_util::sync::CancellationToken::new();
    let reader = async {
        let mut seen = vec![1000];
        while !stop.is_cancelled() {
            for replica in &replicas {
                let now = remaining(replica, &root, &key_id).await;
                assert!(now <= *seen.last().unwrap(), "credits went back up: {seen:?} then {now}");
                assert!(now >= 0);
                seen.push(now);
            }
        }
        seen
    };
    let spenders = async {
        let answers = futures_util::future::join_all((0..400).map(|i| {
            let (replica, root, key) = (&replicas[i % 2], &root, &key);
            let cost = costs[i % costs.len()];
            async move { (cost, spend(replica, root, key, cost).await) }
        }))
        .await;
        stop.cancel();
        answers
    };
    let (answers, seen) = tokio::join!(spenders, reader);
    let spent: i64 =
        answers.iter().filter(|(_, (code, _))| code == "VALID").map(|(cost, _)| cost).sum();
    let mut after: Vec<i64> = answers
        .iter()
        .filter(|(_, (code, _))| code == "VALID")
        .map(|(_, (_, left))| *left)
        .collect();
    after.sort_unstable();
    after.dedup();
    assert_eq!(
        after.len(),
        answers.iter().filter(|(_, (code, _))| code == "VALID").count(),
        "two spends answered the same count"
    );
    for (cost, (code, left)) in &answers {
        assert!(*left >= 0);
        if code == "USAGE_EXCEEDED" {
            assert!(left < cost, "refused a cost of {cost} with {left} left");
        } else {
            assert_eq!(code, "VALID");
        }
    }
    assert!(spent > 900, "the credits were nearly all spent: {spent}");
    assert_eq!(remaining(&replicas[0], &root, &key_id).await, 1000 - spent);
    assert_eq!(remaining(&replicas[1], &root, &key_id).await, 1000 - spent);
    assert!(seen.len() > 2, "getKey was read while spending");

    // Concurrent spends of one key shared statements (the group commit) on each replica.
    for replica in &replicas {
        let metrics = strongbox_tests::stack::scrape(&replica.ops).await;
        let (spends, statements) = (
            metrics["strongbox_credit_spends_total"],
            metrics["strongbox_credit_statements_total"],
        );
        assert!(spends >= 440.0, "{spends}");
        assert!(statements < spends, "{statements} statements for {spends} spends");
    }
    drop(replicas);
}

/// Runs checks `0..calls` (check `i` goes to replica `i % n`), 24 in flight at once; how many
/// passed.
async fn admitted<F, Fut>(calls: usize, check: F) -> usize
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    use futures_util::StreamExt as _;
    futures_util::stream::iter((0..calls).map(check))
        .buffer_unordered(24)
        .filter(|passed| std::future::ready(*passed))
        .count()
        .await
}

#[tokio::test]
async fn a_key_limit_holds_across_two_and_three_replicas() {
    let db = TestDb::new().await;
    let root = root_key(&db).await;
    let replicas = [start(&db).await, start(&db).await, start(&db).await];
    let (_, body) = replicas[0].call(&root, "apis.createApi", json!({"name": "x"})).await;
    let api_id = body["data"]["apiId"].as_str().unwrap().to_owned();
    for n in [2, 3] {
        let hourly =
            json!([{"name": "hourly", "limit": 40, "duration": 3_600_000, "autoApply": true}]);
        let (_, body) = replicas[0]
            .call(&root, "keys.createKey", json!({"apiId": api_id, "ratelimits": hourly}))
            .await;
        let key = body["data"]["key"].as_str().unwrap().to_owned();
        let valid = admitted(200, |i| {
            let (replica, root, key) = (&replicas[i % n], &root, &key);
            async move {
                let code = replica.code(root, key).await;
                assert!(code == "VALID" || code == "RATE_LIMITED", "{code}");
                code == "VALID"
            }
        })
        .await;
        // Leases only ever refuse early, so never more than the limit; what a replica leased
        // and did not spend is the shortfall, and every replica here kept spending.
        assert!((36..=40).contains(&valid), "{n} replicas admitted {valid} of a limit of 40");
    }
    // A key far below its limit spends leases: most checks cost no round trip.
    let generous =
        json!([{"name": "generous", "limit": 1_000_000, "duration": 60_000, "autoApply": true}]);
    let (_, body) = replicas[0]
        .call(&root, "keys.createKey", json!({"apiId": api_id, "ratelimits": generous}))
        .await;
    let key = body["data"]["key"].as_str().unwrap().to_owned();
    let before = strongbox_tests::stack::scrape(&replicas[0].ops).await;
    for _ in 0..50 {
        assert_eq!(replicas[0].code(&root, &key).await, "VALID");
    }
    let after = strongbox_tests::stack::scrape(&replicas[0].ops).await;
    let trips = after["strongbox_ratelimit_round_trips_total"]
        - before.get("strongbox_ratelimit_round_trips_total").copied().unwrap_or(0.0);
    assert!(trips <= 2.0, "50 checks far below the limit took {trips} round trips");
}

/// A replica reaching the database at `url` (through a fault proxy), with `mode` for
/// `ratelimit.on_unavailable`.
async fn behind(db: &TestDb, url: &str, mode: &str) -> Replica {
    start_with(
        db,
        &[
            ("STRONGBOX_API__DATABASE__URL", url),
            // The cache listener drops the whole cache when its heartbeat goes unanswered;
            // that is kept beyond this test, so that cached keys stay verifiable.
            ("STRONGBOX_API__DATABASE__QUERY_TIMEOUT_MS", "120000"),
            ("STRONGBOX_API__RATELIMIT__ON_UNAVAILABLE", mode),
            ("STRONGBOX_API__RATELIMIT__HEARTBEAT_MS", "100"),
        ],
    )
    .await
}

#[tokio::test]
async fn with_the_shared_state_cut_verification_answers_by_ratelimit_on_unavailable() {
    use strongbox_tests::fault::{Fault, FaultProxy, through, upstream_of};
    let db = TestDb::new().await;
    let proxy = FaultProxy::start(upstream_of(db.url())).await;
    let url = through(db.url(), &proxy);
    let root = root_key(&db).await;
    let replicas = [
        behind(&db, &url, "local").await,
        behind(&db, &url, "deny").await,
        behind(&db, &url, "allow").await,
    ];
    let [local, deny, allow] = &replicas;
    let (_, body) = local.call(&root, "apis.createApi", json!({"name": "x"})).await;
    let api_id = body["data"]["apiId"].as_str().unwrap().to_owned();
    let hourly = json!([{"name": "hourly", "limit": 12, "duration": 3_600_000, "autoApply": true}]);
    let (_, body) =
        local.call(&root, "keys.createKey", json!({"apiId": api_id, "ratelimits": hourly})).await;
    let key = body["data"]["key"].as_str().unwrap().to_owned();
    // Each replica learns that there are three, and caches the root key and the key.
    for replica in &replicas {
        eventually(Duration::from_secs(10), "three live replicas", || async {
            let m = strongbox_tests::stack::scrape(&replica.ops).await;
            (m.get("strongbox_ratelimit_replicas") == Some(&3.0)).then_some(())
        })
        .await;
        assert_eq!(replica.code(&root, &key).await, "VALID");
    }
    // A partition: every connection to the database stops answering.
    proxy.set(Fault::BlackHole);
    // `local` counts this replica's share of the limit (12 / 3 replicas = 4) on its own, after
    // what is left of its lease.
    let mut codes = Vec::new();
    for _ in 0..8 {
        codes.push(local.code(&root, &key).await);
    }
    let valid = codes.iter().filter(|c| *c == "VALID").count();
    assert!((4..=6).contains(&valid), "{codes:?}");
    assert_eq!(codes.last().unwrap(), "RATE_LIMITED", "{codes:?}");
    let m = strongbox_tests::stack::scrape(&local.ops).await;
    assert!(m["strongbox_ratelimit_fallbacks_total{mode=\"local\"}"] >= 4.0, "{m:?}");
    // `deny` refuses and `allow` admits once their leases are spent; both keep answering.
    let denied = futures_util::future::join_all((0..5).map(|_| deny.code(&root, &key))).await;
    assert_eq!(denied.last().unwrap(), "RATE_LIMITED", "{denied:?}");
    let allowed = futures_util::future::join_all((0..20).map(|_| allow.code(&root, &key))).await;
    assert!(allowed.iter().all(|c| c == "VALID"), "{allowed:?}");
    for (replica, mode) in [(deny, "deny"), (allow, "allow")] {
        let m = strongbox_tests::stack::scrape(&replica.ops).await;
        let fallbacks = m[&format!("strongbox_ratelimit_fallbacks_total{{mode=\"{mode}\"}}")];
        assert!(fallbacks >= 1.0, "{m:?}");
    }
    proxy.set(Fault::Pass);
}

#[tokio::test]
async fn identifier_and_identity_limits_hold_across_three_replicas() {
    let db = TestDb::new().await;
    let root = root_key(&db).await;
    let replicas = [start(&db).await, start(&db).await, start(&db).await];
    // ratelimit.limit on one identifier, from every replica.
    let passed = admitted(200, |i| {
        let (replica, root) = (&replicas[i % 3], &root);
        async move {
            let body = json!({"namespace": "email", "identifier": "user_1", "limit": 40, "duration": 3_600_000});
            let (status, body) = replica.call(root, "ratelimit.limit", body).await;
            assert_eq!(status, 200, "{body}");
            body["data"]["success"].as_bool().unwrap()
        }
    })
    .await;
    assert!((36..=40).contains(&passed), "ratelimit.limit passed {passed} of a limit of 40");

    // An identity's limit, shared by its three keys, each verified on every replica.
    let hourly = json!([{"name": "hourly", "limit": 40, "duration": 3_600_000, "autoApply": true}]);
    let (status, body) = replicas[0]
        .call(
            &root,
            "identities.createIdentity",
            json!({"externalId": "cust", "ratelimits": hourly}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = replicas[0].call(&root, "apis.createApi", json!({"name": "x"})).await;
    let api_id = body["data"]["apiId"].as_str().unwrap().to_owned();
    let mut keys = Vec::new();
    for _ in 0..3 {
        let (_, body) = replicas[1]
            .call(&root, "keys.createKey", json!({"apiId": api_id, "externalId": "cust"}))
            .await;
        keys.push(body["data"]["key"].as_str().unwrap().to_owned());
    }
    let valid = admitted(240, |i| {
        let (replica, root, key) = (&replicas[i % 3], &root, &keys[(i / 3) % 3]);
        async move {
            let code = replica.code(root, key).await;
            assert!(code == "VALID" || code == "RATE_LIMITED", "{code}");
            code == "VALID"
        }
    })
    .await;
    assert!((36..=40).contains(&valid), "the identity's keys were admitted {valid} times of 40");
}
