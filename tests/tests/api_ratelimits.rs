//! Unkey's `ratelimit.*` and `identities.*` calls on one api: what they count, the overrides,
//! the permissions they need, and the inputs they refuse.

use serde_json::{Value, json};
use strongbox_tests::{TestApi, TestDb, assert_error, now_ms, spawn_api};

async fn setup(db: &TestDb) -> (TestApi, String) {
    let api = spawn_api(db, &[]).await;
    let root = api.workspace("acme").await;
    (api, root)
}

fn limit(namespace: &str, identifier: &str, limit: i64) -> Value {
    json!({"namespace": namespace, "identifier": identifier, "limit": limit, "duration": 60_000})
}

async fn root_with(api: &TestApi, root: &str, permissions: &[&str]) -> String {
    let data = api.ok(root, "rootKeys.createKey", json!({"permissions": permissions})).await;
    data["key"].as_str().unwrap().to_owned()
}

async fn namespace_id(db: &TestDb, name: &str) -> String {
    let client = db.client().await;
    let row = client
        .query_one("SELECT id FROM ratelimit_namespaces WHERE name = $1", &[&name])
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test]
async fn ratelimit_limit_counts_each_identifier_in_a_namespace_made_on_first_use() {
    let db = TestDb::new().await;
    let (api, root) = setup(&db).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let d = api.ok(&root, "ratelimit.limit", limit("email", "user_1", 3)).await;
        assert_eq!(d["limit"], 3, "{d}");
        assert!(d["reset"].as_i64().unwrap() > now_ms(), "{d}");
        assert!(d.get("overrideId").is_none(), "{d}");
        seen.push((d["success"].as_bool().unwrap(), d["remaining"].as_i64().unwrap()));
    }
    assert_eq!(seen, [(true, 2), (true, 1), (true, 0), (false, 0)]);
    // Another identifier counts on its own; cost counts units.
    let d = api
        .ok(&root, "ratelimit.limit", json!({"namespace": "email", "identifier": "user_2", "limit": 3, "duration": 60_000, "cost": 3}))
        .await;
    assert_eq!((d["success"].as_bool(), d["remaining"].as_i64()), (Some(true), Some(0)), "{d}");
    // The namespace is also named by its id, and shares the counts.
    let id = namespace_id(&db, "email").await;
    assert!(id.starts_with("rlns_"), "{id}");
    let d = api.ok(&root, "ratelimit.limit", limit(&id, "user_1", 3)).await;
    assert_eq!(d["success"], false, "{d}");
    // Another workspace's namespace of the same name is another namespace.
    let other = api.workspace("globex").await;
    let d = api.ok(&other, "ratelimit.limit", limit("email", "user_1", 3)).await;
    assert_eq!(d["success"], true, "{d}");
    assert_error(
        api.call(&other, "ratelimit.getOverride", json!({"namespace": id, "identifier": "x"}))
            .await,
        404,
        "NOT_FOUND",
        "another workspace's namespace id",
    );
}

#[tokio::test]
async fn overrides_match_exactly_or_by_wildcard_and_are_listed_read_and_deleted() {
    let db = TestDb::new().await;
    let (api, root) = setup(&db).await;
    let set = |identifier: &str, limit: i64| json!({"namespace": "api", "identifier": identifier, "limit": limit, "duration": 60_000});
    let exact = api.ok(&root, "ratelimit.setOverride", set("vip", 100)).await["overrideId"]
        .as_str()
        .unwrap()
        .to_owned();
    let pattern = api.ok(&root, "ratelimit.setOverride", set("team_*", 5)).await["overrideId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(exact.starts_with("rlor_") && pattern.starts_with("rlor_"));
    let d = api.ok(&root, "ratelimit.limit", limit("api", "vip", 1)).await;
    assert_eq!((d["limit"].as_i64(), d["overrideId"].as_str()), (Some(100), Some(exact.as_str())));
    let d = api.ok(&root, "ratelimit.limit", limit("api", "team_red", 1)).await;
    assert_eq!((d["limit"].as_i64(), d["overrideId"].as_str()), (Some(5), Some(pattern.as_str())));
    let d = api.ok(&root, "ratelimit.limit", limit("api", "someone", 1)).await;
    assert_eq!(d["limit"], 1);
    // Setting again replaces, keeping the id.
    let again = api.ok(&root, "ratelimit.setOverride", set("vip", 7)).await;
    assert_eq!(again["overrideId"], exact.as_str());
    let got = api
        .ok(&root, "ratelimit.getOverride", json!({"namespace": "api", "identifier": "vip"}))
        .await;
    assert_eq!(
        got,
        json!({"overrideId": exact, "duration": 60_000, "identifier": "vip", "limit": 7})
    );
    assert_eq!(api.ok(&root, "ratelimit.limit", limit("api", "vip", 1)).await["limit"], 7);

    // Listed a page at a time.
    let (status, page) =
        api.call(&root, "ratelimit.listOverrides", json!({"namespace": "api", "limit": 1})).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["pagination"]["hasMore"], true);
    let cursor = page["pagination"]["cursor"].as_str().unwrap();
    let (_, rest) = api
        .call(&root, "ratelimit.listOverrides", json!({"namespace": "api", "cursor": cursor}))
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1, "{rest}");
    assert_eq!(rest["pagination"]["hasMore"], false);

    let which = json!({"namespace": "api", "identifier": "team_*"});
    api.ok(&root, "ratelimit.deleteOverride", which.clone()).await;
    assert_error(
        api.call(&root, "ratelimit.getOverride", which.clone()).await,
        404,
        "NOT_FOUND",
        "deleted",
    );
    assert_error(
        api.call(&root, "ratelimit.deleteOverride", which).await,
        404,
        "NOT_FOUND",
        "twice",
    );
    assert_eq!(api.ok(&root, "ratelimit.limit", limit("api", "team_red", 1)).await["limit"], 1);
    assert_error(
        api.call(&root, "ratelimit.listOverrides", json!({"namespace": "nope"})).await,
        404,
        "NOT_FOUND",
        "a namespace that was never used",
    );
}

#[tokio::test]
async fn multi_limit_counts_every_limit_and_passes_only_when_all_do() {
    let db = TestDb::new().await;
    let (api, root) = setup(&db).await;
    api.ok(&root, "ratelimit.limit", limit("a", "u", 1)).await;
    let d = api
        .ok(&root, "ratelimit.multiLimit", json!([limit("a", "u", 1), limit("b", "u", 5)]))
        .await;
    assert_eq!(d["passed"], false, "{d}");
    let limits = d["limits"].as_array().unwrap();
    assert_eq!(limits.len(), 2);
    assert_eq!(
        (limits[0]["namespace"].as_str(), limits[0]["passed"].as_bool()),
        (Some("a"), Some(false))
    );
    assert_eq!(
        (limits[1]["identifier"].as_str(), limits[1]["passed"].as_bool()),
        (Some("u"), Some(true))
    );
    assert_eq!(limits[1]["remaining"], 4);
    let d = api.ok(&root, "ratelimit.multiLimit", json!([limit("b", "u", 5)])).await;
    assert_eq!(
        (d["passed"].as_bool(), d["limits"][0]["remaining"].as_i64()),
        (Some(true), Some(3))
    );
    // The body is an array of 1-100 limits.
    assert_error(
        api.call(&root, "ratelimit.multiLimit", limit("a", "u", 1)).await,
        400,
        "BAD_REQUEST",
        "an object",
    );
    assert_error(
        api.call(&root, "ratelimit.multiLimit", json!([])).await,
        400,
        "INVALID_RATELIMIT",
        "empty",
    );
    let many: Vec<Value> = (0..101).map(|i| limit("a", &format!("u{i}"), 1)).collect();
    assert_error(
        api.call(&root, "ratelimit.multiLimit", json!(many)).await,
        400,
        "INVALID_RATELIMIT",
        "101",
    );
}

#[tokio::test]
async fn ratelimit_calls_need_unkeys_permissions_per_namespace() {
    let db = TestDb::new().await;
    let (api, root) = setup(&db).await;
    api.ok(&root, "ratelimit.limit", limit("mine", "u", 10)).await;
    let id = namespace_id(&db, "mine").await;
    let narrow = root_with(&api, &root, &[&format!("ratelimit.{id}.limit")]).await;
    assert_eq!(api.ok(&narrow, "ratelimit.limit", limit("mine", "u", 10)).await["remaining"], 8);
    // It may not make namespaces (that needs the action on every one), nor touch overrides.
    assert_error(
        api.call(&narrow, "ratelimit.limit", limit("new", "u", 10)).await,
        403,
        "INSUFFICIENT_PERMISSIONS",
        "create",
    );
    let o = json!({"namespace": "mine", "identifier": "u", "limit": 1, "duration": 1000});
    assert_error(
        api.call(&narrow, "ratelimit.setOverride", o.clone()).await,
        403,
        "INSUFFICIENT_PERMISSIONS",
        "set",
    );
    let which = json!({"namespace": "mine", "identifier": "u"});
    assert_error(
        api.call(&narrow, "ratelimit.getOverride", which.clone()).await,
        403,
        "INSUFFICIENT_PERMISSIONS",
        "get",
    );
    assert_error(
        api.call(&narrow, "ratelimit.deleteOverride", which).await,
        403,
        "INSUFFICIENT_PERMISSIONS",
        "delete",
    );
    // A key for another namespace gets nothing here.
    let elsewhere = root_with(&api, &root, &["ratelimit.rlns_other.*"]).await;
    assert_error(
        api.call(&elsewhere, "ratelimit.limit", limit("mine", "u", 10)).await,
        403,
        "INSUFFICIENT_PERMISSIONS",
        "other ns",
    );
    // `ratelimit.*.limit` may make namespaces.
    let broad = root_with(&api, &root, &["ratelimit.*.limit", "ratelimit.*.set_override"]).await;
    assert_eq!(api.ok(&broad, "ratelimit.limit", limit("new", "u", 10)).await["success"], true);
    api.ok(&broad, "ratelimit.setOverride", o).await;
    // An api key permission is not a rate-limit permission.
    let keys_only = root_with(&api, &root, &["api.*.verify_key"]).await;
    assert_error(
        api.call(&keys_only, "ratelimit.limit", limit("mine", "u", 10)).await,
        403,
        "INSUFFICIENT_PERMISSIONS",
        "api perms",
    );
}

#[tokio::test]
async fn ratelimit_inputs_out_of_range_are_refused_with_stable_codes() {
    let db = TestDb::new().await;
    let (api, root) = setup(&db).await;
    let long = "x".repeat(256);
    for (body, code) in [
        (
            json!({"namespace": "", "identifier": "u", "limit": 1, "duration": 60_000}),
            "INVALID_RATELIMIT",
        ),
        (
            json!({"namespace": long, "identifier": "u", "limit": 1, "duration": 60_000}),
            "INVALID_RATELIMIT",
        ),
        (
            json!({"namespace": "n", "identifier": long, "limit": 1, "duration": 60_000}),
            "INVALID_RATELIMIT",
        ),
        (
            json!({"namespace": "n", "identifier": "u", "limit": -1, "duration": 60_000}),
            "INVALID_RATELIMIT",
        ),
        (
            json!({"namespace": "n", "identifier": "u", "limit": 1, "duration": 999}),
            "INVALID_RATELIMIT",
        ),
        (
            json!({"namespace": "n", "identifier": "u", "limit": 1, "duration": 60_000, "cost": -1}),
            "INVALID_COST",
        ),
        (
            json!({"namespace": "n", "identifier": "u", "limit": 1, "duration": 60_000, "cost": 10_000_000_000_000_000_i64}),
            "INVALID_COST",
        ),
        (json!({"namespace": "n", "identifier": "u", "limit": 1}), "BAD_REQUEST"),
        (
            json!({"namespace": "n\u{0}", "identifier": "u", "limit": 1, "duration": 60_000}),
            "INVALID_STRING",
        ),
    ] {
        assert_error(
            api.call(&root, "ratelimit.limit", body.clone()).await,
            400,
            code,
            &body.to_string(),
        );
    }
    let o = json!({"namespace": "n", "identifier": "u", "limit": 1, "duration": 0});
    assert_error(
        api.call(&root, "ratelimit.setOverride", o).await,
        400,
        "INVALID_RATELIMIT",
        "duration 0",
    );
    let page = json!({"namespace": "n", "limit": 101});
    api.ok(&root, "ratelimit.limit", limit("n", "u", 1)).await;
    assert_error(
        api.call(&root, "ratelimit.listOverrides", page).await,
        400,
        "INVALID_LIMIT",
        "page",
    );
}

#[tokio::test]
async fn identities_are_created_read_listed_updated_and_deleted() {
    let db = TestDb::new().await;
    let (api, root) = setup(&db).await;
    let hourly = json!([{"name": "hourly", "limit": 10, "duration": 3_600_000, "autoApply": true}]);
    let id = api
        .ok(
            &root,
            "identities.createIdentity",
            json!({"externalId": "user_1", "meta": {"plan": "pro"}, "ratelimits": hourly}),
        )
        .await["identityId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(id.starts_with("id_"), "{id}");
    assert_error(
        api.call(&root, "identities.createIdentity", json!({"externalId": "user_1"})).await,
        409,
        "CONFLICT",
        "a taken externalId",
    );
    let by_id = api.ok(&root, "identities.getIdentity", json!({"identity": id})).await;
    let by_external = api.ok(&root, "identities.getIdentity", json!({"identity": "user_1"})).await;
    assert_eq!(by_id, by_external);
    assert_eq!(by_id["externalId"], "user_1");
    assert_eq!(by_id["meta"], json!({"plan": "pro"}));
    let limit_id = by_id["ratelimits"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(by_id["ratelimits"][0]["autoApply"], true);

    for n in 2..=4 {
        api.ok(&root, "identities.createIdentity", json!({"externalId": format!("user_{n}")}))
            .await;
    }
    api.ok(&root, "identities.createIdentity", json!({"externalId": "admin"})).await;
    let (_, page) =
        api.call(&root, "identities.listIdentities", json!({"limit": 2, "search": "user_"})).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2, "{page}");
    let cursor = page["pagination"]["cursor"].as_str().unwrap();
    let (_, rest) = api
        .call(&root, "identities.listIdentities", json!({"search": "user_", "cursor": cursor}))
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 2, "{rest}");
    assert_eq!(rest["pagination"]["hasMore"], false);

    // Update: given fields replace; a limit keeping its name keeps its id.
    let updated = api
        .ok(
            &root,
            "identities.updateIdentity",
            json!({"identity": "user_1", "ratelimits": [
                {"name": "hourly", "limit": 20, "duration": 3_600_000, "autoApply": true},
                {"name": "burst", "limit": 2, "duration": 1000}]}),
        )
        .await;
    assert_eq!(updated["meta"], json!({"plan": "pro"}), "meta untouched");
    assert_eq!(updated["ratelimits"][0]["id"], limit_id.as_str());
    assert_eq!(updated["ratelimits"][0]["limit"], 20);
    assert_eq!(updated["ratelimits"][1]["autoApply"], false);
    assert_eq!(api.ok(&root, "identities.getIdentity", json!({"identity": id})).await, updated);

    let (status, body) =
        api.call(&root, "identities.deleteIdentity", json!({"identity": id})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.as_object().unwrap().keys().collect::<Vec<_>>(), ["meta"], "{body}");
    assert_error(
        api.call(&root, "identities.getIdentity", json!({"identity": id})).await,
        404,
        "NOT_FOUND",
        "deleted",
    );
    assert_error(
        api.call(&root, "identities.deleteIdentity", json!({"identity": id})).await,
        404,
        "NOT_FOUND",
        "twice",
    );

    // Another workspace sees none of them.
    let other = api.workspace("globex").await;
    assert_error(
        api.call(&other, "identities.getIdentity", json!({"identity": "user_2"})).await,
        404,
        "NOT_FOUND",
        "foreign",
    );
    let (_, page) = api.call(&other, "identities.listIdentities", json!({})).await;
    assert_eq!(page["data"], json!([]));
}

#[tokio::test]
async fn identity_calls_need_unkeys_permissions_and_refuse_bad_input() {
    let db = TestDb::new().await;
    let (api, root) = setup(&db).await;
    let reader = root_with(&api, &root, &["identity.*.read_identity"]).await;
    api.ok(&root, "identities.createIdentity", json!({"externalId": "u"})).await;
    api.ok(&reader, "identities.getIdentity", json!({"identity": "u"})).await;
    for (call, body) in [
        ("identities.createIdentity", json!({"externalId": "v"})),
        ("identities.updateIdentity", json!({"identity": "u", "meta": {}})),
        ("identities.deleteIdentity", json!({"identity": "u"})),
    ] {
        assert_error(api.call(&reader, call, body).await, 403, "INSUFFICIENT_PERMISSIONS", call);
    }
    let nothing = root_with(&api, &root, &["api.*.read_key"]).await;
    assert_error(
        api.call(&nothing, "identities.listIdentities", json!({})).await,
        403,
        "INSUFFICIENT_PERMISSIONS",
        "list",
    );
    let long = "x".repeat(256);
    for (call, body, code) in [
        ("identities.createIdentity", json!({"externalId": ""}), "INVALID_EXTERNAL_ID"),
        ("identities.createIdentity", json!({"externalId": long}), "INVALID_EXTERNAL_ID"),
        ("identities.createIdentity", json!({"externalId": "w", "meta": [1]}), "INVALID_META"),
        (
            "identities.createIdentity",
            json!({"externalId": "w", "ratelimits": [{"name": "a", "limit": 0, "duration": 1000}]}),
            "INVALID_RATELIMIT",
        ),
        (
            "identities.createIdentity",
            json!({"externalId": "w", "ratelimits": [{"name": "a", "limit": 1, "duration": 1000}, {"name": "a", "limit": 1, "duration": 1000}]}),
            "INVALID_RATELIMIT",
        ),
        ("identities.getIdentity", json!({"identity": long}), "INVALID_IDENTITY"),
        ("identities.updateIdentity", json!({"identity": "u", "meta": "x"}), "INVALID_META"),
        ("identities.listIdentities", json!({"limit": 0}), "INVALID_LIMIT"),
        ("identities.listIdentities", json!({"search": long}), "INVALID_SEARCH"),
    ] {
        assert_error(api.call(&root, call, body).await, 400, code, call);
    }
    // Nothing was half-written.
    let (_, page) = api.call(&root, "identities.listIdentities", json!({})).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1, "{page}");
}

#[tokio::test]
async fn verify_key_applies_the_identitys_limits_shared_by_its_keys() {
    let db = TestDb::new().await;
    let (api, root) = setup(&db).await;
    let api_id = api.create_api(&root, "payments").await;
    let shared = json!([{"name": "shared", "limit": 3, "duration": 60_000, "autoApply": true},
                        {"name": "named", "limit": 1, "duration": 60_000}]);
    api.ok(
        &root,
        "identities.createIdentity",
        json!({"externalId": "cust", "meta": {"tier": 1}, "ratelimits": shared}),
    )
    .await;
    let (_, first) = api.create_key(&root, &api_id, json!({"externalId": "cust"})).await;
    let (_, second) = api.create_key(&root, &api_id, json!({"externalId": "cust"})).await;
    let d = api.verify(&root, &first, json!({})).await;
    assert_eq!(d["code"], "VALID", "{d}");
    assert_eq!(d["identity"]["externalId"], "cust");
    assert_eq!(d["identity"]["meta"], json!({"tier": 1}));
    assert_eq!(d["ratelimits"].as_array().unwrap().len(), 1, "only the auto-applied one: {d}");
    assert_eq!(
        (d["ratelimits"][0]["name"].as_str(), d["ratelimits"][0]["remaining"].as_i64()),
        (Some("shared"), Some(2))
    );
    assert_eq!(api.verify(&root, &second, json!({})).await["code"], "VALID");
    assert_eq!(api.verify(&root, &first, json!({})).await["code"], "VALID");
    let d = api.verify(&root, &second, json!({})).await;
    assert_eq!(d["code"], "RATE_LIMITED", "three for both keys together: {d}");
    assert_eq!(d["ratelimits"][0]["exceeded"], true);
    // A limit named in the request applies too.
    let (_, third) = api.create_key(&root, &api_id, json!({"externalId": "cust2"})).await;
    assert_eq!(api.verify(&root, &third, json!({})).await["code"], "VALID", "no identity limits");

    // A key's own limit of the same name wins over the identity's.
    let own = json!([{"name": "shared", "limit": 100, "duration": 60_000, "autoApply": true}]);
    let (_, own_key) =
        api.create_key(&root, &api_id, json!({"externalId": "cust", "ratelimits": own})).await;
    let d = api.verify(&root, &own_key, json!({})).await;
    assert_eq!(
        (d["code"].as_str(), d["ratelimits"][0]["limit"].as_i64()),
        (Some("VALID"), Some(100)),
        "{d}"
    );

    // Raising the identity's limit reaches its cached keys at once.
    api.ok(
        &root,
        "identities.updateIdentity",
        json!({"identity": "cust", "ratelimits": [{"name": "shared", "limit": 1000, "duration": 60_000, "autoApply": true}]}),
    )
    .await;
    let d = api.verify(&root, &first, json!({})).await;
    assert_eq!(
        (d["code"].as_str(), d["ratelimits"][0]["limit"].as_i64()),
        (Some("VALID"), Some(1000)),
        "{d}"
    );
    // "named" was removed with that update: naming it now is the caller's mistake.
    let body = json!({"key": first, "ratelimits": [{"name": "named"}]});
    let (status, answer) = api.call(&root, "keys.verifyKey", body).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("INVALID_RATELIMIT")),
        "{answer}"
    );

    // Deleting the identity leaves its keys working, without it.
    api.ok(&root, "identities.deleteIdentity", json!({"identity": "cust"})).await;
    let d = api.verify(&root, &first, json!({})).await;
    assert_eq!(d["code"], "VALID", "{d}");
    assert!(d.get("identity").is_none(), "{d}");
    assert!(d.get("ratelimits").is_none(), "{d}");
}

#[tokio::test]
async fn concurrent_first_uses_of_a_namespace_make_one_and_all_succeed() {
    let db = TestDb::new().await;
    let (api, root) = setup(&db).await;
    for round in 0..3 {
        let name = format!("fresh-{round}");
        let answers = futures_util::future::join_all(
            (0..24).map(|i| api.call(&root, "ratelimit.limit", limit(&name, &format!("u{i}"), 5))),
        )
        .await;
        for (status, body) in &answers {
            assert_eq!(*status, 200, "{body}");
            assert_eq!(body["data"]["success"], true, "{body}");
        }
        let client = db.client().await;
        let row = client
            .query_one("SELECT count(*) FROM ratelimit_namespaces WHERE name = $1", &[&name])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 1);
    }
}

#[tokio::test]
async fn a_namespace_made_by_a_concurrent_first_use_is_found_not_lost() {
    let db = TestDb::new().await;
    let (api, _root) = setup(&db).await;
    let first = db.client().await;
    let workspace: String = first.query_one("SELECT id FROM workspaces", &[]).await.unwrap().get(0);
    first.batch_execute("BEGIN").await.unwrap();
    first
        .execute(
            "INSERT INTO ratelimit_namespaces (id, workspace_id, name) VALUES ('rlns_first', $1, 'n')",
            &[&workspace],
        )
        .await
        .unwrap();
    // The second first use starts while the first is uncommitted, so it waits on it.
    let second = api.pool.get().await.unwrap();
    let racing = tokio::spawn(async move {
        strongbox_api::store::ratelimit::create_namespace(&second, &workspace, "n", "rlns_second")
            .await
            .map_err(|e| format!("{:#}", anyhow::Error::new(e)))
    });
    let observer = db.client().await;
    strongbox_tests::eventually(
        std::time::Duration::from_secs(10),
        "the second to wait",
        || async {
            let n: i64 = observer
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                 AND query LIKE '%INSERT INTO ratelimit_namespaces%'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (n == 1).then_some(())
        },
    )
    .await;
    first.batch_execute("COMMIT").await.unwrap();
    assert_eq!(racing.await.unwrap().as_deref(), Ok("rlns_first"));
}

#[tokio::test]
async fn overrides_are_bounded_per_namespace_and_per_pattern() {
    let db = TestDb::new().await;
    let (api, root) = setup(&db).await;
    let set = |identifier: String| json!({"namespace": "capped", "identifier": identifier, "limit": 5, "duration": 60_000});
    assert_error(
        api.call(&root, "ratelimit.setOverride", set("*a*b*c*d*".to_owned())).await,
        400,
        "INVALID_RATELIMIT",
        "five stars",
    );
    let count = || async {
        let client = db.client().await;
        let row = client.query_one("SELECT count(*) FROM ratelimit_overrides", &[]).await.unwrap();
        row.get::<_, i64>(0)
    };
    for i in 0..100 {
        api.ok(&root, "ratelimit.setOverride", set(format!("p{i}_*"))).await;
    }
    assert_error(
        api.call(&root, "ratelimit.setOverride", set("p100_*".to_owned())).await,
        400,
        "TOO_MANY_OVERRIDES",
        "the 101st pattern",
    );
    // Replacing one that exists is not adding one; an exact identifier still fits.
    api.ok(&root, "ratelimit.setOverride", set("p7_*".to_owned())).await;
    api.ok(&root, "ratelimit.setOverride", set("exact".to_owned())).await;
    assert_eq!(count().await, 101);
    // Up to the total: 1000 overrides in all.
    let client = db.client().await;
    client
        .execute(
            "INSERT INTO ratelimit_overrides (id, namespace_id, identifier, \"limit\", duration) \
             SELECT 'rlor_bulk_' || i, id, 'bulk_' || i, 1, 1000 \
             FROM ratelimit_namespaces, generate_series(1, 899) AS i WHERE name = 'capped'",
            &[],
        )
        .await
        .unwrap();
    assert_error(
        api.call(&root, "ratelimit.setOverride", set("one_more".to_owned())).await,
        400,
        "TOO_MANY_OVERRIDES",
        "the 1001st override",
    );
    assert_eq!(count().await, 1000);
    // Matching among the patterns still picks the most specific one.
    let d = api.ok(&root, "ratelimit.limit", limit("capped", "p42_x", 1)).await;
    assert_eq!(d["limit"], 5, "{d}");
}

#[tokio::test]
async fn a_refused_call_counts_nothing_and_makes_no_namespace() {
    let db = TestDb::new().await;
    let (api, root) = setup(&db).await;
    // The second element is bad: nothing is counted, and the first namespace is not made.
    let bad = json!([limit("first", "u", 1), {"namespace": "second", "identifier": "", "limit": 1, "duration": 60_000}]);
    assert_error(
        api.call(&root, "ratelimit.multiLimit", bad).await,
        400,
        "INVALID_RATELIMIT",
        "[1]",
    );
    let client = db.client().await;
    let made: i64 =
        client.query_one("SELECT count(*) FROM ratelimit_namespaces", &[]).await.unwrap().get(0);
    assert_eq!(made, 0);
    let bad = json!({"namespace": "third", "identifier": "u", "limit": 1, "duration": 1});
    assert_error(
        api.call(&root, "ratelimit.setOverride", bad).await,
        400,
        "INVALID_RATELIMIT",
        "set",
    );
    let bad = json!({"namespace": "third", "identifier": "u", "limit": 1, "duration": 60_000, "cost": -1});
    assert_error(api.call(&root, "ratelimit.limit", bad).await, 400, "INVALID_COST", "limit");
    let made: i64 =
        client.query_one("SELECT count(*) FROM ratelimit_namespaces", &[]).await.unwrap().get(0);
    assert_eq!(made, 0);
    // A key that may limit in one namespace only: a multiLimit naming another is refused whole.
    api.ok(&root, "ratelimit.limit", limit("mine", "u", 5)).await;
    let id = namespace_id(&db, "mine").await;
    let narrow = root_with(&api, &root, &[&format!("ratelimit.{id}.limit")]).await;
    let mixed = json!([limit("mine", "u", 5), limit("elsewhere", "u", 5)]);
    assert_error(
        api.call(&narrow, "ratelimit.multiLimit", mixed).await,
        403,
        "INSUFFICIENT_PERMISSIONS",
        "mixed",
    );
    assert_eq!(
        api.ok(&root, "ratelimit.limit", limit("mine", "u", 5)).await["remaining"],
        3,
        "one count only"
    );
}

#[tokio::test]
async fn a_costly_refusal_does_not_refuse_cheaper_calls() {
    let db = TestDb::new().await;
    let (api, root) = setup(&db).await;
    let with_cost = |cost: i64| json!({"namespace": "n", "identifier": "u", "limit": 10, "duration": 3_600_000, "cost": cost});
    let d = api.ok(&root, "ratelimit.limit", with_cost(11)).await;
    assert_eq!(d["success"], false, "{d}");
    let d = api.ok(&root, "ratelimit.limit", with_cost(1)).await;
    assert_eq!((d["success"].as_bool(), d["remaining"].as_i64()), (Some(true), Some(9)), "{d}");
    let d = api.ok(&root, "ratelimit.limit", with_cost(9)).await;
    assert_eq!((d["success"].as_bool(), d["remaining"].as_i64()), (Some(true), Some(0)), "{d}");
    let d = api.ok(&root, "ratelimit.limit", with_cost(1)).await;
    assert_eq!(d["success"], false, "{d}");
    let d = api.ok(&root, "ratelimit.limit", with_cost(0)).await;
    assert_eq!(d["success"], true, "cost 0 checks without taking while not over: {d}");
}

#[tokio::test]
async fn keys_and_identities_hold_at_most_a_hundred_rate_limits() {
    let db = TestDb::new().await;
    let (api, root) = setup(&db).await;
    let api_id = api.create_api(&root, "x").await;
    let many: Vec<Value> =
        (0..101).map(|i| json!({"name": format!("l{i}"), "limit": 1, "duration": 1000})).collect();
    let body = json!({"apiId": api_id, "ratelimits": many});
    assert_error(api.call(&root, "keys.createKey", body).await, 400, "INVALID_RATELIMIT", "key");
    let body = json!({"externalId": "u", "ratelimits": many});
    assert_error(
        api.call(&root, "identities.createIdentity", body).await,
        400,
        "INVALID_RATELIMIT",
        "identity",
    );
    let body = json!({"externalId": "u", "ratelimits": &many[..100]});
    api.ok(&root, "identities.createIdentity", body).await;
}

/// As Unkey: a rate limit named in verifyKey that neither the key nor its identity has is
/// refused (400, and nothing is spent) unless the request gives its limit and duration; then it
/// is counted for that key alone.
#[tokio::test]
async fn verify_key_refuses_an_unknown_limit_name_unless_it_gives_the_limit() {
    let db = TestDb::new().await;
    let (api, root) = setup(&db).await;
    let api_id = api.create_api(&root, "payments").await;
    let credits = json!({"credits": {"remaining": 10}});
    let (key_id, key) = api.create_key(&root, &api_id, credits).await;
    let (_, other) = api.create_key(&root, &api_id, json!({})).await;

    let unknown = json!({"key": key, "ratelimits": [{"name": "burst", "cost": 1}]});
    let (status, answer) = api.call(&root, "keys.verifyKey", unknown).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("INVALID_RATELIMIT")),
        "{answer}"
    );
    let only_limit = json!({"key": key, "ratelimits": [{"name": "burst", "limit": 2}]});
    assert_eq!(api.call(&root, "keys.verifyKey", only_limit).await.0, 400);
    let got = api.ok(&root, "keys.getKey", json!({"keyId": key_id})).await;
    assert_eq!(got["credits"]["remaining"], 10, "a refused verification spends nothing: {got}");

    // With its limit and duration, it applies to this key for this call.
    let inline = |key: &str| json!({"key": key, "ratelimits": [{"name": "burst", "limit": 2, "duration": 60_000}]});
    for remaining in [1, 0] {
        let d = api.ok(&root, "keys.verifyKey", inline(&key)).await;
        assert_eq!(d["code"], "VALID", "{d}");
        let limit = &d["ratelimits"][0];
        assert_eq!(
            (limit["name"].as_str(), limit["id"].as_str(), limit["remaining"].as_i64()),
            (Some("burst"), Some("burst"), Some(remaining)),
            "{d}"
        );
    }
    let d = api.ok(&root, "keys.verifyKey", inline(&key)).await;
    assert_eq!(d["code"], "RATE_LIMITED", "{d}");
    // Another key's count of the same name is its own.
    assert_eq!(api.ok(&root, "keys.verifyKey", inline(&other)).await["code"], "VALID");

    // At most ten such limits per verification.
    let eleven: Vec<Value> =
        (0..11).map(|i| json!({"name": format!("n{i}"), "limit": 5, "duration": 1000})).collect();
    let (status, answer) =
        api.call(&root, "keys.verifyKey", json!({"key": other, "ratelimits": eleven})).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("INVALID_RATELIMIT")),
        "{answer}"
    );
    // A disabled key is DISABLED, whatever limits the request names.
    api.ok(&root, "keys.updateKey", json!({"keyId": key_id, "enabled": false})).await;
    let unknown = json!({"key": key, "ratelimits": [{"name": "nope"}]});
    assert_eq!(api.ok(&root, "keys.verifyKey", unknown).await["code"], "DISABLED");

    // Bad names and too many limits are refused before the key is looked at.
    let long = json!({"key": key, "ratelimits": [{"name": "x".repeat(129), "limit": 1, "duration": 1000}]});
    assert_eq!(api.call(&root, "keys.verifyKey", long).await.0, 400);
    let many: Vec<Value> =
        (0..101).map(|i| json!({"name": format!("l{i}"), "limit": 1, "duration": 1000})).collect();
    let (status, answer) =
        api.call(&root, "keys.verifyKey", json!({"key": key, "ratelimits": many})).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("INVALID_RATELIMIT")),
        "{answer}"
    );
}
