//! k-of-n unlock shares over the API: initializing with shares, unlocking share by share with
//! progress, refusals that never count, a wrong complete set, the throttle, progress that stays
//! on one replica and expires, and rekeying between one key and shares.

use std::time::Duration;

use serde_json::{Value, json};
use strongbox_tests::{SERVER_KEY, TestDb, TestVault, eventually, spawn_vault, spawn_vault_with};

fn texts(body: &Value) -> Vec<String> {
    body["shares"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

async fn shares_vault(
    db: &TestDb,
    n: u8,
    k: u8,
    extra: &[(&str, &str)],
) -> (TestVault, Vec<String>) {
    let vault = spawn_vault(db, extra).await;
    let (status, body) =
        vault.post("operator", "/v1/sys/initialize", json!({"shares": n, "threshold": k})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["unlocked"], true);
    (vault, texts(&body))
}

async fn share(vault: &TestVault, text: &str) -> (u16, Value) {
    vault.post("operator", "/v1/sys/unlock", json!({"share": text})).await
}

async fn lock(vault: &TestVault) {
    let (status, body) = vault.post("operator", "/v1/sys/lock", json!({})).await;
    assert_eq!(status, 200, "{body}");
}

fn progress(answer: (u16, Value), unlocked: bool, progress: u64, what: &str) {
    let (status, body) = answer;
    assert_eq!(status, 200, "{what}: {body}");
    assert_eq!(
        (&body["unlocked"], &body["progress"]),
        (&json!(unlocked), &json!(progress)),
        "{what}: {body}"
    );
}

#[tokio::test]
async fn shares_unlock_one_at_a_time_and_a_bad_share_never_counts() {
    let db = TestDb::new().await;
    let (vault, shares) = shares_vault(&db, 5, 3, &[]).await;
    assert_eq!(shares.len(), 5);
    let distinct: std::collections::HashSet<_> = shares.iter().collect();
    assert_eq!(distinct.len(), 5, "five different shares");
    assert!(shares.iter().all(|s| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')));
    let status = vault.status().await;
    assert_eq!(
        (&status["seal"], &status["threshold"], &status["progress"]),
        (&json!("shares"), &json!(3), &json!(0))
    );
    vault.encrypt("ws_shares", &["before"]).await;

    lock(&vault).await;
    // One key is not how this vault unlocks.
    let (status, body) = vault.unlock(SERVER_KEY).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("INVALID_REQUEST")), "{body}");

    progress(share(&vault, &shares[4]).await, false, 1, "first share");
    progress(share(&vault, &shares[4]).await, false, 1, "the same share again counts once");
    // A typo: refused, not counted, and the progress is kept.
    let mut typo = shares[1].clone().into_bytes();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == b'a' { b'b' } else { b'a' };
    let (status, body) = share(&vault, &String::from_utf8(typo).unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("INVALID_SHARE")), "{body}");
    assert_eq!(vault.status().await["progress"], 1, "the typo did not count or reset");
    progress(share(&vault, &shares[0]).await, false, 2, "second share");
    assert_eq!(vault.status().await["progress"], 2);
    assert_eq!(vault.status().await["unlocked"], false);

    // Reset discards the progress.
    progress(
        vault.post("operator", "/v1/sys/unlock", json!({"reset": true})).await,
        false,
        0,
        "reset",
    );
    progress(share(&vault, &shares[1]).await, false, 1, "after the reset");
    progress(share(&vault, &shares[2]).await, false, 2, "");
    progress(share(&vault, &shares[3]).await, true, 0, "the third share unlocks");
    vault.encrypt("ws_shares", &["after"]).await;
    // Only operators give shares.
    let (status, _) = vault.post("api", "/v1/sys/unlock", json!({"share": shares[0]})).await;
    assert_eq!(status, 403);
}

/// A well-formed share of `real`'s split (same id, threshold and number format) whose bytes are
/// made up: it passes every check but the root record's authentication.
fn forged(real: &str, index: u8) -> String {
    use strongbox_vault::crypto::shares::Share;
    let real = Share::decode(real).unwrap();
    let mut y = [0_u8; 32];
    getrandom::fill(&mut y).unwrap();
    Share::new(real.set, real.threshold, index, y).encode().to_string()
}

#[tokio::test]
async fn a_wrong_complete_set_is_refused_discarded_and_throttled() {
    let db = TestDb::new().await;
    let (vault, shares) =
        shares_vault(&db, 3, 2, &[("STRONGBOX_VAULT__UNLOCK__FREE_FAILURES", "1")]).await;
    // A share of another vault's split is refused before it counts.
    let other_db = TestDb::new().await;
    let (_other, foreign) = shares_vault(&other_db, 3, 2, &[]).await;
    lock(&vault).await;
    let (status, body) = share(&vault, &foreign[0]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("INVALID_SHARE")), "{body}");
    assert_eq!(vault.status().await["progress"], 0);

    // A real share and a forged one of the right split: a complete set that opens nothing.
    progress(share(&vault, &shares[0]).await, false, 1, "a real share");
    let (status, body) = share(&vault, &forged(&shares[0], 3)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("WRONG_KEY")), "{body}");
    assert_eq!(vault.status().await["progress"], 0, "a wrong set discards the progress");
    // It counted as a wrong key: the next complete set must wait, and is kept for the retry.
    progress(share(&vault, &shares[0]).await, false, 1, "");
    let (status, body) = share(&vault, &shares[1]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("TOO_MANY_ATTEMPTS")),
        "{body}"
    );
    assert_eq!(vault.status().await["unlocked"], false);
    assert_eq!(vault.status().await["progress"], 2, "a set the throttle did not judge is kept");
}

#[tokio::test]
async fn share_unlocks_on_a_fresh_replica_keep_the_audit_chain_verifiable() {
    let db = TestDb::new().await;
    let (a, shares) = shares_vault(&db, 3, 2, &[]).await;
    a.encrypt("ws_audit_shares", &["keyed"]).await;
    // A replica that was never unlocked holds no audit key: what it answers before the unlock
    // is chained with plain hashes.
    let b = spawn_vault_with(&db, a.pki.clone(), &[]).await;
    progress(share(&b, &shares[2]).await, false, 1, "");
    progress(b.post("operator", "/v1/sys/unlock", json!({"reset": true})).await, false, 0, "");
    progress(share(&b, &shares[2]).await, false, 1, "");
    progress(share(&b, &shares[0]).await, true, 0, "");
    b.encrypt("ws_audit_shares", &["after"]).await;
    let (code, verdict) = strongbox_tests::process::run_json_with_stdin(
        "strongbox-vault",
        &["audit", "verify", "--output", "json", "--shares-stdin", "--database-url", db.url()],
        &format!("{}\n{}\n", shares[1], shares[0]),
    )
    .await;
    assert_eq!((code, verdict["result"].as_str()), (0, Some("intact")), "{verdict}");
}

#[tokio::test]
async fn progress_stays_on_its_replica_and_expires() {
    let db = TestDb::new().await;
    let ttl = [("STRONGBOX_VAULT__UNLOCK__SHARE_PROGRESS_TTL_SECONDS", "1")];
    let (a, shares) = shares_vault(&db, 3, 2, &ttl).await;
    let b = spawn_vault_with(&db, a.pki.clone(), &ttl).await;
    lock(&a).await;
    progress(share(&b, &shares[0]).await, false, 1, "on b");
    assert_eq!(a.status().await["progress"], 0, "a knows nothing of b's progress");
    progress(share(&a, &shares[1]).await, false, 1, "on a");
    // Unused progress expires.
    eventually(Duration::from_secs(10), "b's progress to expire", || async {
        (b.status().await["progress"] == 0).then_some(())
    })
    .await;
    progress(share(&b, &shares[2]).await, false, 1, "b starts over");
    progress(share(&b, &shares[0]).await, true, 0, "b unlocks");
}

#[tokio::test]
async fn initialize_and_rekey_move_between_one_key_and_shares() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    for bad in [
        json!({"shares": 1, "threshold": 1}),
        json!({"shares": 17, "threshold": 2}),
        json!({"shares": 3, "threshold": 4}),
        json!({"shares": 3}),
        json!({"key": SERVER_KEY, "shares": 3, "threshold": 2}),
        json!({"shares": 300, "threshold": 2}),
    ] {
        let (status, body) = vault.post("operator", "/v1/sys/initialize", bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    vault.initialize().await;
    assert_eq!(vault.status().await["seal"], "key");

    // One key → 2-of-3 shares.
    let (status, body) = vault
        .post(
            "operator",
            "/v1/sys/rekey",
            json!({"current_key": SERVER_KEY, "new_shares": 3, "new_threshold": 2}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let first = texts(&body);
    assert_eq!(first.len(), 3);
    assert_eq!(vault.status().await["threshold"], 2);
    // Shares → 3-of-4 shares, authorised by a complete set of the current ones.
    let (status, body) = vault
        .post(
            "operator",
            "/v1/sys/rekey",
            json!({"shares": [first[2], first[0]], "new_shares": 4, "new_threshold": 3}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let second = texts(&body);
    lock(&vault).await;
    // The old split no longer fits.
    let (status, body) = share(&vault, &first[0]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("INVALID_SHARE")), "{body}");
    for (i, text) in second.iter().take(3).enumerate() {
        progress(
            share(&vault, text).await,
            i == 2,
            if i == 2 { 0 } else { i as u64 + 1 },
            "new split",
        );
    }
    // Too few current shares, or the wrong kind of current key, is refused.
    let (status, body) = vault
        .post(
            "operator",
            "/v1/sys/rekey",
            json!({"shares": [second[0], second[1]], "new_key": "a-new-server-key-of-length"}),
        )
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("INVALID_SHARE")), "{body}");
    let (status, _) = vault
        .post(
            "operator",
            "/v1/sys/rekey",
            json!({"current_key": SERVER_KEY, "new_key": "a-new-server-key-of-length"}),
        )
        .await;
    assert_eq!(status, 400);
    // Shares → one key again.
    let (status, body) = vault
        .post("operator", "/v1/sys/rekey", json!({"shares": [second[3], second[1], second[0]], "new_key": "a-new-server-key-of-length"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("shares").is_none());
    lock(&vault).await;
    assert_eq!(vault.unlock("a-new-server-key-of-length").await.0, 200);
    assert_eq!(vault.status().await["seal"], "key");
}

#[tokio::test]
async fn pathological_share_bodies_are_clear_400s_and_never_count() {
    let db = TestDb::new().await;
    let (vault, shares) = shares_vault(&db, 3, 2, &[]).await;
    lock(&vault).await;
    progress(share(&vault, &shares[0]).await, false, 1, "one share in");
    let long = format!("sb1-1-{}", "z".repeat(100_000));
    for (body, code) in [
        (json!({"share": ""}), "INVALID_SHARE"),
        (json!({"share": long}), "INVALID_SHARE"),
        (json!({"share": "sb1-1-0OIl"}), "INVALID_SHARE"),
        (json!({"share": "sb1-99999999999999999999-abc"}), "INVALID_SHARE"),
        (json!({"share": 5}), "INVALID_REQUEST"),
        (json!({"share": shares[1], "key": SERVER_KEY}), "INVALID_REQUEST"),
        (json!({"reset": false}), "INVALID_REQUEST"),
        (json!({}), "INVALID_REQUEST"),
        (json!({"share": "sb1-1-a\u{0}b"}), "INVALID_SHARE"),
    ] {
        let (status, answer) = vault.post("operator", "/v1/sys/unlock", body.clone()).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}: {answer}"
        );
    }
    assert_eq!(vault.status().await["progress"], 1, "nothing pathological counted or reset");
    progress(share(&vault, &shares[1]).await, true, 0, "the real second share unlocks");
    // Rekey bodies that mix or miss their parts.
    for body in [
        json!({"shares": [shares[0], shares[1]], "current_key": SERVER_KEY, "new_key": "x-long-enough-new-key"}),
        json!({"shares": [shares[0], shares[1]]}),
        json!({"shares": [shares[0], shares[1]], "new_shares": 3}),
        json!({"shares": [], "new_key": "x-long-enough-new-key"}),
    ] {
        let (status, _) = vault.post("operator", "/v1/sys/rekey", body.clone()).await;
        assert_eq!(status, 400, "{body}");
    }
}
