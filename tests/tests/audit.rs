//! Audit: the vault's hash-chained log of every call, `strongbox-vault audit verify`, the refusal
//! to answer when the log cannot be written; and the api's decrypt audit retention.

use std::time::Duration;

use serde_json::{Value, json};
use strongbox_tests::{SERVER_KEY, TestDb, eventually, spawn_api, spawn_vault};

#[derive(Debug)]
struct Row {
    seq: i64,
    identity: String,
    action: String,
    keyring: Option<String>,
    items: Option<i32>,
    status: i16,
}

/// `audit verify` with the server key (so keyed entries' MACs are checked) and `extra` args.
async fn audit_verify(db: &TestDb) -> (i32, Value) {
    audit_verify_with(db, &[]).await
}

async fn audit_verify_with(db: &TestDb, extra: &[&str]) -> (i32, Value) {
    let mut args =
        vec!["audit", "verify", "--output", "json", "--key-stdin", "--database-url", db.url()];
    args.extend_from_slice(extra);
    strongbox_tests::process::run_json_with_stdin(
        "strongbox-vault",
        &args,
        &format!("{SERVER_KEY}\n"),
    )
    .await
}

#[tokio::test]
async fn every_vault_call_is_chained_into_the_audit_log_and_tampering_shows_where() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    vault.initialize().await;
    let sealed = vault.encrypt("ws_audit", &["first", "second"]).await;
    let (status, _) = vault
        .post("api", "/v1/decrypt", json!({"keyring": "ws_audit", "items": [{"ciphertext": sealed[0].0, "context": "ctx-0"}]}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = vault.post("api", "/v1/keyrings/ws_audit/rotate", json!({})).await;
    assert_eq!(status, 403, "the api may not rotate");
    let (status, _) = vault.post("operator", "/v1/keyrings/ws_audit/rotate", json!({})).await;
    assert_eq!(status, 200);

    // A change the replica makes on its own schedule is recorded too (the KEK is backdated so
    // that a rotation is due now).
    let client = db.client().await;
    client.batch_execute("UPDATE keks SET created_at = now() - interval '2 days'").await.unwrap();
    vault
        .vault
        .maintain(strongbox_vault::config::RotationConfig {
            kek_period_seconds: 86_400,
            dek_period_seconds: 0,
            check_interval_ms: 60_000,
            rewrap_batch: 100,
        })
        .await
        .unwrap();
    let rows = client
        .query(
            "SELECT seq, identity, action, keyring, items, status FROM audit_log ORDER BY seq",
            &[],
        )
        .await
        .unwrap();
    let entries: Vec<Row> = rows
        .iter()
        .map(|r| Row {
            seq: r.get(0),
            identity: r.get(1),
            action: r.get(2),
            keyring: r.get(3),
            items: r.get(4),
            status: r.get(5),
        })
        .collect();
    let find = |action: &str, status: i16| {
        entries
            .iter()
            .find(|e| e.action == action && e.status == status)
            .unwrap_or_else(|| panic!("no {action} {status} entry in {entries:#?}"))
    };
    assert!(find("POST /v1/sys/initialize", 200).identity.ends_with("/operator"));
    let encrypt = find("POST /v1/encrypt", 200);
    assert!(encrypt.identity.ends_with("/api"));
    assert_eq!((encrypt.keyring.as_deref(), encrypt.items), (Some("ws_audit"), Some(2)));
    assert_eq!(find("POST /v1/decrypt", 200).items, Some(1));
    let denied = find("POST /v1/keyrings/{keyring}/rotate", 403);
    assert_eq!(denied.keyring.as_deref(), Some("ws_audit"));
    assert!(find("POST /v1/keyrings/{keyring}/rotate", 200).identity.ends_with("/operator"));
    let scheduled = find("scheduled rotate kek", 200);
    assert_eq!(scheduled.identity, strongbox_vault::audit::SCHEDULER);
    assert_eq!(
        find("scheduled rewrap deks under the newest kek", 200).items,
        Some(2),
        "ws_audit v1 and v2"
    );
    assert_eq!(find("scheduled delete unused keks", 200).items, Some(1));
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=entries.len() as i64).collect::<Vec<_>>(), "no gaps");
    // Neither plaintext nor ciphertext is in it.
    let dump: String = client
        .query_one("SELECT string_agg(audit_log::text, ' ') FROM audit_log", &[])
        .await
        .unwrap()
        .get(0);
    for secret in ["first", "second", sealed[0].0.as_str(), sealed[1].0.as_str()] {
        assert!(!dump.contains(secret), "the audit log holds {secret}");
    }

    let (code, verdict) = audit_verify(&db).await;
    assert_eq!(code, 0, "{verdict}");
    assert_eq!(verdict["result"], "intact");
    assert_eq!(verdict["entries"], entries.len() as i64);
    assert_eq!(verdict["unchecked_macs"], 0, "with the server key every MAC is checked");
    let keyed: i64 = db.one("SELECT count(*) FROM audit_log WHERE keyed", &[]).await;
    assert!(keyed >= entries.len() as i64 - 1, "calls served while unlocked are keyed");
    // A checkpoint noted now must hold later; one that does not is reported.
    let checkpoint = format!("{}:{}", verdict["entries"], verdict["head"].as_str().unwrap());
    assert_eq!(audit_verify_with(&db, &["--expect", &checkpoint]).await.0, 0);
    let wrong = format!("{}:{}", verdict["entries"], "00".repeat(32));
    let (code, verdict_wrong) = audit_verify_with(&db, &["--expect", &wrong]).await;
    assert_eq!(code, 2, "{verdict_wrong}");

    // The log refuses changes…
    let refused = client.execute("DELETE FROM audit_log WHERE seq = 3", &[]).await;
    assert!(refused.is_err(), "DELETE is refused");
    let refused = client.execute("UPDATE audit_log SET items = 99 WHERE seq = 3", &[]).await;
    assert!(refused.is_err(), "UPDATE is refused");
    // …unless its owner switches the guard off; then verify names the altered entry.
    client.batch_execute("ALTER TABLE audit_log DISABLE TRIGGER USER").await.unwrap();
    client.execute("UPDATE audit_log SET items = items + 1 WHERE seq = 3", &[]).await.unwrap();
    let (code, verdict) = audit_verify(&db).await;
    assert_eq!(code, 2, "{verdict}");
    assert_eq!(verdict["result"], "broken");
    assert_eq!(verdict["seq"], 3);
    assert_eq!(verdict["entries_ok"], 2);
    assert!(verdict["reason"].as_str().unwrap().contains("altered"), "{verdict}");
    client.execute("UPDATE audit_log SET items = items - 1 WHERE seq = 3", &[]).await.unwrap();
    assert_eq!(audit_verify(&db).await.0, 0, "undoing the change mends the chain");
    // A deleted entry shows as missing.
    client.execute("DELETE FROM audit_log WHERE seq = 2", &[]).await.unwrap();
    let (code, verdict) = audit_verify(&db).await;
    assert_eq!((code, verdict["seq"].clone()), (2, json!(2)), "{verdict}");
    assert!(verdict["reason"].as_str().unwrap().contains("missing"), "{verdict}");
    client.batch_execute("ALTER TABLE audit_log ENABLE TRIGGER USER").await.unwrap();
    // A checkpoint past the end shows a cut-off tail.
    let (code, verdict) = audit_verify_with(&db, &["--expect", &checkpoint]).await;
    assert_eq!(code, 2, "after a deletion the old checkpoint no longer holds: {verdict}");

    // When the log cannot be written, the call is refused and its result withheld.
    client.batch_execute("ALTER TABLE audit_log RENAME TO audit_log_away").await.unwrap();
    let (status, body) = vault
        .post("api", "/v1/encrypt", json!({"keyring": "ws_audit", "items": [{"plaintext": "c2VjcmV0", "context": "ctx-0"}]}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("AUDIT_UNAVAILABLE")),
        "{body}"
    );
    assert!(body.get("items").is_none());
    client.batch_execute("ALTER TABLE audit_log_away RENAME TO audit_log").await.unwrap();
    vault.encrypt("ws_audit", &["again"]).await;
    vault.shutdown.cancel();
}

#[tokio::test]
async fn decrypt_audit_rows_older_than_the_retention_are_purged() {
    let db = TestDb::new().await;
    strongbox_api::migrate(&strongbox_shared::db::DatabaseConfig::from_url(db.url()))
        .await
        .unwrap();
    let client = db.client().await;
    client
        .batch_execute(
            "INSERT INTO decrypt_audit (workspace_id, root_key_id, request_id, key_ids, created_at) VALUES \
               ('ws_a', 'rk_a', 'req_old', ARRAY['key_a'], now() - interval '31 days'), \
               ('ws_a', 'rk_a', 'req_recent', ARRAY['key_a'], now() - interval '29 days'), \
               ('ws_a', 'rk_a', 'req_new', ARRAY['key_a'], now())",
        )
        .await
        .unwrap();
    let api = spawn_api(&db, &[("STRONGBOX_API__AUDIT__DECRYPT_RETENTION_DAYS", "30")]).await;
    let left = eventually(Duration::from_secs(30), "the purge at start", || {
        let client = &client;
        async move {
            let rows = client
                .query("SELECT request_id FROM decrypt_audit ORDER BY id", &[])
                .await
                .unwrap();
            let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            (!ids.contains(&"req_old".to_owned())).then_some(ids)
        }
    })
    .await;
    assert_eq!(left, ["req_recent", "req_new"]);
    api.shutdown.cancel();
}

#[tokio::test]
async fn replicas_appending_at_once_keep_one_unbroken_chain() {
    let db = TestDb::new().await;
    let first = spawn_vault(&db, &[]).await;
    first.initialize().await;
    let second = strongbox_tests::spawn_vault_with(&db, first.pki.clone(), &[]).await;
    assert_eq!(second.unlock(strongbox_tests::SERVER_KEY).await.0, 200);
    let client = db.client().await;
    let count = || async {
        client.query_one("SELECT count(*) FROM audit_log", &[]).await.unwrap().get::<_, i64>(0)
    };
    let before = count().await;
    let calls = 40;
    let mut tasks = Vec::new();
    for i in 0..calls {
        let replica = if i % 2 == 0 { &first } else { &second };
        tasks.push(replica.post(
            "api",
            "/v1/encrypt",
            json!({"keyring": format!("ws_{}", i % 3), "items": [{"plaintext": "c2VjcmV0", "context": "ctx"}]}),
        ));
    }
    for (status, body) in futures_util::future::join_all(tasks).await {
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(count().await - before, calls);
    let (code, verdict) = audit_verify(&db).await;
    assert_eq!((code, verdict["result"].as_str()), (0, Some("intact")), "{verdict}");
    first.shutdown.cancel();
    second.shutdown.cancel();
}

/// What the table's owner can do without the audit key: switch the guard off and rewrite the
/// chain from entry `from` on as plain SHA-256, changing each entry with `change`.
async fn rewrite_plain(
    db: &TestDb,
    from: i64,
    change: impl Fn(i64, &mut strongbox_vault::audit::Entry),
) {
    let client = db.client().await;
    client.batch_execute("ALTER TABLE audit_log DISABLE TRIGGER USER").await.unwrap();
    let rows = client
        .query("SELECT seq, at, identity, action, keyring, items, status, trace_id, prev_hash FROM audit_log WHERE seq >= $1 ORDER BY seq", &[&from])
        .await
        .unwrap();
    let mut prev: Vec<u8> = rows[0].get(8);
    for row in &rows {
        let seq: i64 = row.get(0);
        let mut entry = strongbox_vault::audit::Entry {
            identity: row.get(2),
            action: row.get(3),
            keyring: row.get(4),
            items: row.get(5),
            status: row.get(6),
            trace_id: row.get(7),
        };
        change(seq, &mut entry);
        let hash = strongbox_vault::audit::chain_hash(&prev, seq, row.get(1), &entry, None);
        client
            .execute(
                "UPDATE audit_log SET items = $2, status = $3, keyed = false, prev_hash = $4, hash = $5 WHERE seq = $1",
                &[&seq, &entry.items, &entry.status, &prev, &hash.to_vec()],
            )
            .await
            .unwrap();
        prev = hash.to_vec();
    }
}

#[tokio::test]
async fn an_owner_who_rewrites_the_chain_without_the_audit_key_is_caught() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    vault.initialize().await;
    vault.encrypt("ws_audit", &["one", "two"]).await;
    vault.encrypt("ws_audit", &["three"]).await;
    let before = audit_verify(&db).await;
    assert_eq!(before.0, 0, "{}", before.1);
    assert_eq!(before.1["plain_tail"], 0, "an honest log ends keyed: {}", before.1);
    let snapshot = db.client().await;
    snapshot.batch_execute("CREATE TABLE audit_copy AS SELECT * FROM audit_log").await.unwrap();
    let restore = || async {
        let client = db.client().await;
        client
            .batch_execute(
                "ALTER TABLE audit_log DISABLE TRIGGER USER; DELETE FROM audit_log; \
                 INSERT INTO audit_log SELECT * FROM audit_copy; \
                 ALTER TABLE audit_log ENABLE TRIGGER USER",
            )
            .await
            .unwrap();
    };

    // Changing an encrypt's entry and recomputing the chain from there, or from the very
    // first entry (so no keyed entry is left before the change), is caught: where keying
    // starts is bound into the audit key's wrapping.
    for from in [2, 1] {
        rewrite_plain(&db, from, |seq, entry| {
            if entry.action == "POST /v1/encrypt" && seq <= 3 {
                entry.items = Some(99);
            }
        })
        .await;
        let (code, verdict) = audit_verify(&db).await;
        assert_eq!(
            (code, verdict["result"].as_str()),
            (2, Some("broken")),
            "from {from}: {verdict}"
        );
        assert!(
            verdict["reason"].as_str().unwrap().contains("without the audit key"),
            "from {from}: {verdict}"
        );
        restore().await;
    }
    assert_eq!(audit_verify(&db).await.0, 0);

    // Moving where keying starts past the log's end does not help: the key no longer opens.
    let client = db.client().await;
    let keyed_after: i64 = db.one("SELECT keyed_after FROM audit_key", &[]).await;
    client.batch_execute("UPDATE audit_key SET keyed_after = 1000000").await.unwrap();
    let (code, verdict) = audit_verify(&db).await;
    assert_eq!((code, verdict["result"].as_str()), (2, Some("broken")), "{verdict}");
    assert!(
        verdict["reason"].as_str().unwrap().contains("audit key's record was altered"),
        "{verdict}"
    );
    client.execute("UPDATE audit_key SET keyed_after = $1", &[&keyed_after]).await.unwrap();

    // Rewriting a tail as refusals (the one thing a replica without the key writes) links,
    // but verify says those entries are unprotected plain hashes, for a checkpoint to settle.
    let entries = before.1["entries"].as_i64().unwrap();
    rewrite_plain(&db, entries - 1, |_, entry| entry.status = 503).await;
    let (code, verdict) = audit_verify(&db).await;
    assert_eq!(code, 0, "{verdict}");
    assert_eq!(verdict["plain_tail"], 2, "{verdict}");
    let checkpoint = format!("{entries}:{}", before.1["head"].as_str().unwrap());
    assert_eq!(audit_verify_with(&db, &["--expect", &checkpoint]).await.0, 2);
    restore().await;

    // Deleting the audit key does not switch the MAC checks off, and the vault will not make
    // a new one over a keyed log.
    client.batch_execute("DELETE FROM audit_key").await.unwrap();
    let (code, verdict) = audit_verify(&db).await;
    assert_eq!((code, verdict["result"].as_str()), (2, Some("broken")), "{verdict}");
    assert!(verdict["reason"].as_str().unwrap().contains("no audit key"), "{verdict}");
    assert_eq!(vault.post("operator", "/v1/sys/lock", json!({})).await.0, 200);
    let (status, body) = vault.unlock(SERVER_KEY).await;
    assert_eq!((status, body["error"]["code"].as_str()), (500, Some("INTEGRITY_ERROR")), "{body}");
    vault.shutdown.cancel();
}

#[tokio::test]
async fn entries_stay_keyed_across_a_rekey_and_a_lock() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    vault.initialize().await;
    let new_key = "a-new-server-key-of-32-characters!";
    let (status, body) = vault
        .post("operator", "/v1/sys/rekey", json!({"current_key": SERVER_KEY, "new_key": new_key}))
        .await;
    assert_eq!(status, 200, "{body}");
    vault.encrypt("ws_audit", &["after the rekey"]).await;
    assert_eq!(vault.post("operator", "/v1/sys/lock", json!({})).await.0, 200);
    let (status, _) = vault
        .post(
            "api",
            "/v1/encrypt",
            json!({"keyring": "ws_audit", "items": [{"plaintext": "c2VjcmV0", "context": "c"}]}),
        )
        .await;
    assert_eq!(status, 503, "locked");
    let plain: Vec<String> = db
        .client()
        .await
        .query("SELECT seq || ' ' || action || ' ' || status FROM audit_log WHERE NOT keyed AND seq > (SELECT keyed_after FROM audit_key) ORDER BY seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(plain.is_empty(), "written after the key was made, yet plain: {plain:?}");
    vault.shutdown.cancel();
}

#[tokio::test]
async fn a_replica_never_unlocked_writes_plain_entries_that_verify_accepts() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    vault.initialize().await;
    vault.encrypt("ws_audit", &["one"]).await;
    // A second replica, not unlocked since it started, holds no audit key: its status answers
    // (a HEAD too, which the GET handler answers) and refusals are plain.
    let fresh = strongbox_tests::spawn_vault_with(&db, vault.pki.clone(), &[]).await;
    let head =
        vault.pki.client("api").head(format!("{}/v1/sys/status", fresh.url)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(fresh.unlock("a-wrong-key-of-20-chars").await.0, 403);
    let plain: i64 = db
        .one(
            "SELECT count(*) FROM audit_log WHERE NOT keyed AND seq > (SELECT keyed_after FROM audit_key)",
            &[],
        )
        .await;
    assert!(plain >= 2, "{plain}");
    vault.encrypt("ws_audit", &["two"]).await;
    let (code, verdict) = audit_verify(&db).await;
    assert_eq!(code, 0, "{verdict}");
    assert_eq!(verdict["plain_tail"], 0, "{verdict}");
    fresh.shutdown.cancel();
    vault.shutdown.cancel();
}
