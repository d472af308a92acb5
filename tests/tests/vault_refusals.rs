//! What the vault refuses: routes while locked, roles lacking a route, connections without a
//! trusted, current, unrevoked client certificate, and malformed input.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use strongbox_tests::{
    TestDb, TestPki, TestVault, eventually, send, spawn_vault, spawn_vault_with,
};
use strongbox_vault::certs::{DevCa, Validity};

/// Every route of the mTLS listener: method, path, the roles allowed, and a valid body.
fn routes() -> Vec<(Method, &'static str, &'static [&'static str], Value)> {
    let enc = json!({"keyring": "ws_m", "items": [{"plaintext": "eA==", "context": "c"}]});
    let dec = json!({"keyring": "ws_m", "items": [{"ciphertext": "AQAAAAE", "context": "c"}]});
    vec![
        (Method::POST, "/v1/sys/lock", &["operator"], json!({})),
        (
            Method::POST,
            "/v1/sys/rekey",
            &["operator"],
            json!({"current_key": "x".repeat(16), "new_key": "y".repeat(16)}),
        ),
        (Method::POST, "/v1/sys/rotate", &["operator"], json!({})),
        (Method::POST, "/v1/sys/rotate-root", &["operator"], json!({})),
        (
            Method::POST,
            "/v1/sys/seal/migrate",
            &["operator"],
            json!({"to": "key", "current_key": "x".repeat(16), "new_key": "y".repeat(16)}),
        ),
        (Method::POST, "/v1/encrypt", &["api"], enc),
        (Method::POST, "/v1/decrypt", &["api"], dec.clone()),
        (Method::POST, "/v1/rewrap", &["api", "rewrap"], dec),
        (Method::GET, "/v1/keyrings/ws_m", &["api", "rewrap", "operator"], Value::Null),
        (Method::POST, "/v1/keyrings/ws_m/rotate", &["operator"], json!({})),
        (Method::POST, "/v1/keyrings/rotate", &["operator"], json!({})),
        (
            Method::POST,
            "/v1/keyrings/ws_m/config",
            &["operator"],
            json!({"min_decryption_version": 1}),
        ),
        (Method::POST, "/v1/keyrings/ws_m/trim", &["operator"], json!({})),
        (Method::DELETE, "/v1/keyrings/ws_m", &["operator"], Value::Null),
    ]
}

async fn call(
    vault: &TestVault,
    role: &str,
    method: &Method,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let body = (!body.is_null()).then(|| body.clone());
    vault.call(role, method.clone(), path, body).await
}

#[tokio::test]
async fn while_locked_only_status_unlock_and_initialize_answer() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    vault.initialize().await;
    vault.post("operator", "/v1/sys/lock", json!({})).await;
    for (method, path, roles, body) in routes() {
        if path == "/v1/sys/lock" {
            continue; // locking a locked vault is allowed and harmless
        }
        let request =
            vault.pki.client(roles[0]).request(method.clone(), format!("{}{path}", vault.url));
        // A call without input gets no body: `null` would be refused as input it does not take.
        let request = if body.is_null() { request } else { request.json(&body) };
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 503, "{method} {path}");
        assert_eq!(response.headers()["x-strongbox-locked"], "true", "{method} {path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "VAULT_LOCKED", "{method} {path}");
    }
    assert_eq!(vault.call("api", Method::GET, "/v1/sys/status", None).await.0, 200);
    assert_eq!(
        vault.post("operator", "/v1/sys/initialize", json!({"key": "k".repeat(20)})).await.0,
        409
    );
    assert_eq!(vault.unlock(strongbox_tests::SERVER_KEY).await.0, 200);
}

#[tokio::test]
async fn each_role_is_refused_on_every_route_it_lacks() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    vault.initialize().await;
    for (method, path, allowed, body) in routes() {
        for role in ["api", "rewrap", "operator"] {
            if allowed.contains(&role) {
                continue;
            }
            let (status, response) = call(&vault, role, &method, path, &body).await;
            assert_eq!(
                (status, response["error"]["code"].as_str()),
                (403, Some("FORBIDDEN")),
                "{role} {method} {path}"
            );
        }
    }
    // Lifecycle routes that answer while locked are operator-only too.
    for path in ["/v1/sys/unlock", "/v1/sys/initialize"] {
        for role in ["api", "rewrap"] {
            let (status, _) = vault.post(role, path, json!({"key": "k".repeat(20)})).await;
            assert_eq!(status, 403, "{role} {path}");
        }
    }
    // Status is open to every verified client.
    for role in ["api", "rewrap", "operator"] {
        assert_eq!(vault.call(role, Method::GET, "/v1/sys/status", None).await.0, 200);
    }
}

#[tokio::test]
async fn identities_outside_the_trust_domain_or_ambiguous_get_no_role() {
    let db = TestDb::new().await;
    let pki = TestPki::new();
    let vault = spawn_vault_with(&db, pki.clone(), &[]).await;
    vault.initialize().await;
    let cases = [
        ("foreign", vec!["spiffe://elsewhere.test/operator".to_owned()]),
        ("unknown", vec![format!("spiffe://{}/admin", strongbox_tests::pki::TRUST_DOMAIN)]),
        ("two", vec![pki.ca.spiffe_id("api"), pki.ca.spiffe_id("operator")]),
        ("none", vec![]),
    ];
    for (name, uris) in cases {
        let issued = pki.ca.issue_client_with_uris(name, &uris, Validity::days(1)).unwrap();
        let cert = pki.write(&format!("{name}.pem"), &issued.cert_pem);
        let key = pki.write(&format!("{name}-key.pem"), &issued.key_pem);
        let client = pki.client_with(&cert, &key);
        let (status, _) = send(
            client.clone(),
            Method::POST,
            &format!("{}/v1/sys/rotate", vault.url),
            Some(json!({})),
        )
        .await;
        assert_eq!(status, 403, "{name}");
        let (status, _) =
            send(client, Method::GET, &format!("{}/v1/sys/status", vault.url), None).await;
        assert_eq!(status, 200, "{name}: status is open to any verified client");
    }
}

async fn refused(client: reqwest::Client, vault: &TestVault) {
    let result = client.get(format!("{}/v1/sys/status", vault.url)).send().await;
    assert!(result.is_err(), "the handshake must fail, got {:?}", result.map(|r| r.status()));
}

#[tokio::test]
async fn a_connection_without_a_client_certificate_is_refused() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    refused(vault.pki.anonymous_client(), &vault).await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    let stranger = DevCa::generate(strongbox_tests::pki::TRUST_DOMAIN, Validity::days(1)).unwrap();
    let issued = stranger.issue_client("operator", Validity::days(1)).unwrap();
    let cert = vault.pki.write("stranger.pem", &issued.cert_pem);
    let key = vault.pki.write("stranger-key.pem", &issued.key_pem);
    refused(vault.pki.client_with(&cert, &key), &vault).await;
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    let validity = Validity { from: time::Duration::days(-3), until: time::Duration::days(-1) };
    let issued = vault.pki.ca.issue_client("operator", validity).unwrap();
    let cert = vault.pki.write("expired.pem", &issued.cert_pem);
    let key = vault.pki.write("expired-key.pem", &issued.key_pem);
    refused(vault.pki.client_with(&cert, &key), &vault).await;
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_once_the_crl_file_changes() {
    let db = TestDb::new().await;
    let pki = TestPki::new();
    let victim = pki.ca.issue_client("api", Validity::days(1)).unwrap();
    let cert = pki.write("victim.pem", &victim.cert_pem);
    let key = pki.write("victim-key.pem", &victim.key_pem);
    let crl = pki.write("crl.pem", &pki.ca.crl(&[]).unwrap());
    let crl_path = crl.display().to_string();
    let vault = spawn_vault_with(
        &db,
        pki.clone(),
        &[
            ("STRONGBOX_VAULT__TLS__CRLS", crl_path.as_str()),
            ("STRONGBOX_VAULT__TLS__RELOAD_INTERVAL_SECONDS", "1"),
        ],
    )
    .await;
    let client = pki.client_with(&cert, &key);
    assert_eq!(
        send(client, Method::GET, &format!("{}/v1/sys/status", vault.url), None).await.0,
        200
    );

    // Revoke it by rewriting the CRL file; no restart.
    pki.write("crl.pem", &pki.ca.crl(&[victim.serial]).unwrap());
    eventually(Duration::from_secs(15), "the new CRL to apply", || async {
        // A fresh client per attempt: a pooled connection would skip the handshake.
        pki.client_with(&cert, &key)
            .get(format!("{}/v1/sys/status", vault.url))
            .send()
            .await
            .is_err()
            .then_some(())
    })
    .await;
    // Other certificates still work.
    assert_eq!(vault.call("operator", Method::GET, "/v1/sys/status", None).await.0, 200);
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_writes_nothing() {
    let db = TestDb::new().await;
    let vault = spawn_vault(
        &db,
        &[
            ("STRONGBOX_VAULT__LIMITS__MAX_ITEMS", "3"),
            ("STRONGBOX_VAULT__LIMITS__MAX_PLAINTEXT_BYTES", "8"),
        ],
    )
    .await;
    vault.initialize().await;
    let item = json!({"plaintext": "eA==", "context": "c"});
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"keyring": "bad keyring", "items": [item]}), 400, "INVALID_KEYRING"),
        (json!({"keyring": "k".repeat(65), "items": [item]}), 400, "INVALID_KEYRING"),
        (json!({"keyring": "ws_in", "items": []}), 400, "NO_ITEMS"),
        (json!({"keyring": "ws_in", "items": [item, item, item, item]}), 413, "TOO_MANY_ITEMS"),
        (
            json!({"keyring": "ws_in", "items": [{"plaintext": "AAAAAAAAAAAA", "context": "c"}]}),
            413,
            "PLAINTEXT_TOO_LARGE",
        ),
        (
            json!({"keyring": "ws_in", "items": [{"plaintext": "not base64!", "context": "c"}]}),
            400,
            "INVALID_PLAINTEXT",
        ),
        (
            json!({"keyring": "ws_in", "items": [{"plaintext": "eA==", "context": ""}]}),
            400,
            "INVALID_CONTEXT",
        ),
        (
            json!({"keyring": "ws_in", "items": [{"plaintext": "eA==", "context": "c".repeat(257)}]}),
            400,
            "INVALID_CONTEXT",
        ),
        (
            json!({"keyring": "ws_in", "items": [{"plaintext": 7, "context": "c"}]}),
            400,
            "INVALID_REQUEST",
        ),
        (json!({"keyring": "ws_in", "items": [item], "extra": true}), 400, "INVALID_REQUEST"),
        (json!({"items": [item]}), 400, "INVALID_REQUEST"),
    ];
    for (body, status, code) in cases {
        let (got, response) = vault.post("api", "/v1/encrypt", body.clone()).await;
        assert_eq!((got, response["error"]["code"].as_str()), (status, Some(code)), "{body}");
    }
    // Malformed JSON, and a body over the limit.
    let client = vault.pki.client("api");
    let response = client
        .post(format!("{}/v1/encrypt", vault.url))
        .body("{\"keyring\":")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let big = "x".repeat(9 * 1024 * 1024);
    let response = client.post(format!("{}/v1/encrypt", vault.url)).body(big).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "BODY_TOO_LARGE");
    // Nothing was created by any refused call.
    let client = db.client().await;
    let keyrings: i64 =
        client.query_one("SELECT count(*) FROM keyrings", &[]).await.unwrap().get(0);
    assert_eq!(keyrings, 0);
}

#[tokio::test]
async fn a_server_key_sent_with_the_wrong_type_is_not_echoed() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    let (status, body) =
        vault.post("operator", "/v1/sys/initialize", json!({"key": 987654321987654321u64})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("INVALID_REQUEST")));
    assert!(!body.to_string().contains("987654321987654321"), "{body}");
}

#[tokio::test]
async fn post_routes_without_input_accept_an_empty_body_with_or_without_json_content_type() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    vault.initialize().await;
    let client = vault.pki.client("operator");
    let plain = client.post(format!("{}/v1/sys/rotate", vault.url)).send().await.unwrap();
    assert_eq!(plain.status().as_u16(), 200);
    let typed = client
        .post(format!("{}/v1/sys/rotate", vault.url))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(typed.status().as_u16(), 200);
    let body: Value = typed.json().await.unwrap();
    assert_eq!(body["kek_version"], 3);
}
