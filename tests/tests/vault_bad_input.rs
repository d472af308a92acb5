//! The vault's bad-input matrix over real mTLS. Every route of the mTLS listener gets malformed,
//! mistyped, oversized, NUL-laden and non-UTF-8 bodies and invalid keyring names: from the
//! identity allowed to call it, so that the input is what gets judged; from every identity that
//! is not, which must learn nothing but `FORBIDDEN` (ops/VAULT.md, "Identities"); and without a
//! client certificate, which the handshake refuses. Every answer must be a 4xx carrying
//! `{"error":{"code","message"}}` with a stable code; tampered ciphertexts inside a batch are
//! per-item errors of a 200, as documented. None of it may change the key hierarchy, and the
//! vault must still serve a round trip afterwards.
//!
//! Each test collects every unexpected answer and fails once, grouped by problem, so that one
//! defect does not hide the others.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::Method;
use serde_json::{Value, json};
use strongbox_tests::{SERVER_KEY, TestDb, TestVault, spawn_vault};
use strongbox_vault::certs::Validity;
use strongbox_vault::config::LimitsConfig;

/// Part of every server key these tests make up; no answer may echo it (nor [`SERVER_KEY`]).
const CANARY: &str = "sekrit-canary";
/// A server key long enough to be accepted, carrying the canary.
const STRONG_KEY: &str = "sekrit-canary-0123456789";

/// The identities of the matrix: the three roles, and `nobody`, a certificate from the trusted
/// CA whose SPIFFE id names no role.
const IDENTITIES: [&str; 4] = ["api", "rewrap", "operator", "nobody"];
/// Who may call a route; the first is the one that sends the matrix.
const OPERATOR: &[&str] = &["operator"];
const API: &[&str] = &["api"];
const REWRAP: &[&str] = &["rewrap", "api"];
const DESCRIBE: &[&str] = &["operator", "api", "rewrap"];
const EVERYONE: &[&str] = &["operator", "api", "rewrap", "nobody"];

/// The answers a case accepts: `(status, code)` pairs, every one a 4xx.
type Expect = &'static [(u16, &'static str)];
const INVALID_REQUEST: Expect = &[(400, "INVALID_REQUEST")];
const INVALID_KEYRING: Expect = &[(400, "INVALID_KEYRING")];
const INVALID_CONTEXT: Expect = &[(400, "INVALID_CONTEXT")];
const INVALID_PLAINTEXT: Expect = &[(400, "INVALID_PLAINTEXT")];
const INVALID_VERSION: Expect = &[(400, "INVALID_VERSION")];
const NO_ITEMS: Expect = &[(400, "NO_ITEMS")];
const WEAK_KEY: Expect = &[(400, "WEAK_KEY")];
const WRONG_KEY: Expect = &[(403, "WRONG_KEY")];
const FORBIDDEN: Expect = &[(403, "FORBIDDEN")];
const NOT_FOUND: Expect = &[(404, "NOT_FOUND")];
const KEYRING_NOT_FOUND: Expect = &[(404, "KEYRING_NOT_FOUND")];
const METHOD_NOT_ALLOWED: Expect = &[(405, "METHOD_NOT_ALLOWED")];
const NOT_INITIALIZED: Expect = &[(409, "NOT_INITIALIZED")];
const BODY_TOO_LARGE: Expect = &[(413, "BODY_TOO_LARGE")];
const TOO_MANY_ITEMS: Expect = &[(413, "TOO_MANY_ITEMS")];
const PLAINTEXT_TOO_LARGE: Expect = &[(413, "PLAINTEXT_TOO_LARGE")];

/// Bodies for one route: what is wrong with each, its raw bytes, and the answer it must get.
type Bodies = Vec<(String, Vec<u8>, Expect)>;

/// One request of the matrix and the answer it must get.
struct Case {
    /// What is wrong with the request.
    what: String,
    /// The identity that sends it.
    who: &'static str,
    method: Method,
    path: String,
    /// Sent as is; no body at all when empty.
    body: Arc<[u8]>,
    expect: Expect,
}

/// A route of the mTLS listener and the identities allowed to call it.
#[derive(Clone)]
struct Route {
    method: Method,
    path: String,
    allowed: &'static [&'static str],
}

impl Route {
    fn new(method: Method, path: impl Into<String>, allowed: &'static [&'static str]) -> Self {
        Self { method, path: path.into(), allowed }
    }

    fn case(
        &self,
        who: &'static str,
        what: &str,
        body: impl Into<Arc<[u8]>>,
        expect: Expect,
    ) -> Case {
        Case {
            what: what.to_owned(),
            who,
            method: self.method.clone(),
            path: self.path.clone(),
            body: body.into(),
            expect,
        }
    }

    fn refused_identities(&self) -> Vec<&'static str> {
        IDENTITIES.into_iter().filter(|who| !self.allowed.contains(who)).collect()
    }

    /// `body` from the first allowed identity, expecting `expect`, and from every identity that
    /// is not allowed, expecting `FORBIDDEN` whatever the body.
    fn cases(&self, what: &str, body: Vec<u8>, expect: Expect) -> Vec<Case> {
        // Shared, not copied: some bodies are over the 8 MiB limit.
        let body: Arc<[u8]> = body.into();
        let mut cases = vec![self.case(self.allowed[0], what, body.clone(), expect)];
        for who in self.refused_identities() {
            cases.push(self.case(who, what, body.clone(), FORBIDDEN));
        }
        cases
    }

    /// [`Route::cases`] for each body.
    fn all(&self, bodies: Bodies) -> Vec<Case> {
        let mut cases = Vec::new();
        for (what, body, expect) in bodies {
            cases.extend(self.cases(&what, body, expect));
        }
        cases
    }

    /// Each body from the identities that may not call this route only.
    fn refused(&self, bodies: &Bodies) -> Vec<Case> {
        let mut cases = Vec::new();
        for (what, body, _) in bodies {
            let body: Arc<[u8]> = body.as_slice().into();
            for who in self.refused_identities() {
                cases.push(self.case(who, what, body.clone(), FORBIDDEN));
            }
        }
        cases
    }
}

/// An answer that was not what its case expects.
struct Failure {
    /// `METHOD path as identity with <what>`.
    request: String,
    /// What went wrong, worded alike for every request it happens to, so that failures group.
    problem: String,
    /// The answer, shortened.
    detail: String,
}

impl Failure {
    fn new(
        request: impl Into<String>,
        problem: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self { request: request.into(), problem: problem.into(), detail: detail.into() }
    }
}

/// Fails the test with every failure, counted by problem first.
fn assert_all(failures: Vec<Failure>) {
    if failures.is_empty() {
        return;
    }
    let mut groups: BTreeMap<&str, usize> = BTreeMap::new();
    for failure in &failures {
        *groups.entry(failure.problem.as_str()).or_default() += 1;
    }
    let summary: Vec<String> = groups.iter().map(|(p, n)| format!("  {n:>4} × {p}")).collect();
    let all: Vec<String> =
        failures.iter().map(|f| format!("  {}: {} {}", f.request, f.problem, f.detail)).collect();
    panic!(
        "{} unexpected answer(s)\nby problem:\n{}\nall:\n{}",
        failures.len(),
        summary.join("\n"),
        all.join("\n")
    );
}

/// Sends every case, one connection each (HTTP/1.1 closes a connection whose body was left
/// unread, so none is reused), and returns the answers that were not as expected.
async fn run(vault: &TestVault, cases: Vec<Case>) -> Vec<Failure> {
    let mut failures = Vec::new();
    for case in &cases {
        if let Err((problem, detail)) = answer_problem(vault, case).await {
            let request = format!(
                "{} {} as {} with {}",
                case.method,
                excerpt(&case.path, 80),
                case.who,
                case.what
            );
            failures.push(Failure::new(request, problem, detail));
        }
    }
    failures
}

/// Sends `case` and says what is wrong with its answer, if anything.
async fn answer_problem(vault: &TestVault, case: &Case) -> Result<(), (String, String)> {
    let expected = expectation(case.expect);
    let mut request = vault
        .pki
        .client(case.who)
        .request(case.method.clone(), format!("{}{}", vault.url, case.path));
    if !case.body.is_empty() {
        request = request.header("content-type", "application/json").body(case.body.to_vec());
    }
    let response = request
        .send()
        .await
        .map_err(|e| (format!("expected {expected}, got no answer"), chain(&e)))?;
    let status = response.status().as_u16();
    let json_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let text = response.text().await.map_err(|e| {
        (format!("expected {expected}, got {status} with an unreadable body"), chain(&e))
    })?;
    let Ok(body) = serde_json::from_str::<Value>(&text) else {
        let problem = format!("expected {expected}, got {status} with a body that is not JSON");
        return Err((problem, format!("{:?}", excerpt(&text, 160))));
    };
    let code = body["error"]["code"].as_str().unwrap_or("<no error.code>");
    if status >= 500 {
        let problem = format!("expected {expected}, got a server error {status} {code}");
        return Err((problem, excerpt(&text, 160)));
    }
    if !case.expect.iter().any(|&(s, c)| s == status && c == code) {
        return Err((format!("expected {expected}, got {status} {code}"), excerpt(&text, 160)));
    }
    if body["error"]["message"].as_str().is_none_or(|m| m.is_empty()) {
        return Err((format!("{status} {code} without an error.message"), excerpt(&text, 160)));
    }
    if !json_type {
        return Err((format!("{status} {code} without a JSON content type"), String::new()));
    }
    if text.contains(CANARY) || text.contains(SERVER_KEY) {
        return Err((format!("{status} {code} echoes a server key"), String::new()));
    }
    Ok(())
}

fn expectation(expect: Expect) -> String {
    expect.iter().map(|(s, c)| format!("{s} {c}")).collect::<Vec<_>>().join(" or ")
}

fn excerpt(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    format!("{}…", text.chars().take(max).collect::<String>())
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Without a client certificate the handshake fails, so no route, and no body parser, is
/// reached.
async fn anonymous_failures(vault: &TestVault, routes: &[&Route]) -> Vec<Failure> {
    let mut failures = Vec::new();
    for route in routes {
        let answer = vault
            .pki
            .anonymous_client()
            .request(route.method.clone(), format!("{}{}", vault.url, route.path))
            .header("content-type", "application/json")
            .body("[]")
            .send()
            .await;
        if let Ok(response) = answer {
            failures.push(Failure::new(
                format!("{} {} without a client certificate", route.method, route.path),
                "expected the handshake to fail, got an answer",
                response.status().to_string(),
            ));
        }
    }
    failures
}

/// Requests the router answers itself, before any handler, alike for every identity.
fn routing(requests: &[(Method, &str, Expect)]) -> Vec<Case> {
    let mut cases = Vec::new();
    for (method, path, expect) in requests {
        let route = Route::new(method.clone(), *path, EVERYONE);
        for who in ["operator", "nobody"] {
            cases.push(route.case(who, "no such route or method", Vec::<u8>::new(), expect));
        }
    }
    cases
}

fn raw(body: &Value) -> Vec<u8> {
    serde_json::to_vec(body).unwrap()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn json_case(what: &str, body: Value, expect: Expect) -> (String, Vec<u8>, Expect) {
    (what.to_owned(), raw(&body), expect)
}

fn raw_case(what: &str, body: &[u8], expect: Expect) -> (String, Vec<u8>, Expect) {
    (what.to_owned(), body.to_vec(), expect)
}

/// `body` followed by spaces up to `len` bytes: still valid JSON, so only its size is wrong.
fn padded(body: &[u8], len: usize) -> Vec<u8> {
    let mut out = body.to_vec();
    out.resize(len, b' ');
    out
}

/// Where the first string value of a serialized object starts (just after its opening quote).
fn first_string_value(body: &[u8]) -> Option<usize> {
    body.windows(3).position(|w| w == b"\":\"").map(|i| i + 3)
}

/// Bodies no JSON route may accept, each derived from `valid` so that only the defect differs
/// from a body the route would act on (a defect the vault missed would show as a write). All
/// are refused before the handler runs: 400 `INVALID_REQUEST`, or 413 `BODY_TOO_LARGE` past
/// `limit`.
fn malformed(valid: &Value, limit: usize) -> Bodies {
    let good = raw(valid);
    let inner = &good[1..good.len() - 1];
    let single_quoted: Vec<u8> = good.iter().map(|&c| if c == b'"' { b'\'' } else { c }).collect();
    let deep = cat(&[&vec![b'['; 100_000][..], &vec![b']'; 100_000][..]]);
    let mut bodies: Bodies = vec![
        raw_case("an empty body", b"", INVALID_REQUEST),
        raw_case("whitespace only", b" \r\n\t ", INVALID_REQUEST),
        raw_case("JSON cut in the middle", &good[..good.len() / 2], INVALID_REQUEST),
        raw_case("JSON missing its last brace", &good[..good.len() - 1], INVALID_REQUEST),
        raw_case("trailing garbage", &cat(&[&good[..], &b" x"[..]]), INVALID_REQUEST),
        raw_case("two JSON documents", &cat(&[&good[..], &good[..]]), INVALID_REQUEST),
        raw_case("a trailing comma", &cat(&[&b"{"[..], inner, &b",}"[..]]), INVALID_REQUEST),
        raw_case("a byte-order mark", &cat(&[&b"\xEF\xBB\xBF"[..], &good[..]]), INVALID_REQUEST),
        raw_case("single quotes", &single_quoted, INVALID_REQUEST),
        raw_case("a JSON array", b"[]", INVALID_REQUEST),
        raw_case("JSON null", b"null", INVALID_REQUEST),
        raw_case("a JSON string", b"\"x\"", INVALID_REQUEST),
        raw_case("a JSON number", b"42", INVALID_REQUEST),
        raw_case("JSON true", b"true", INVALID_REQUEST),
        raw_case("an empty object", b"{}", INVALID_REQUEST),
        raw_case(
            "the body inside an array",
            &cat(&[&b"["[..], &good[..], &b"]"[..]]),
            INVALID_REQUEST,
        ),
        raw_case(
            "an unknown extra field",
            &cat(&[&b"{\"extra\":true,"[..], inner, &b"}"[..]]),
            INVALID_REQUEST,
        ),
        raw_case(
            "every field given twice",
            &cat(&[&b"{"[..], inner, &b","[..], inner, &b"}"[..]]),
            INVALID_REQUEST,
        ),
        raw_case("arrays nested 100 000 deep", &deep, INVALID_REQUEST),
        raw_case(
            "a valid body padded past the body limit",
            &padded(&good, limit + 1),
            BODY_TOO_LARGE,
        ),
    ];
    if let Some(at) = first_string_value(&good) {
        for (what, bad) in [
            ("an invalid UTF-8 byte in a string", &b"\xFF"[..]),
            ("an overlong UTF-8 NUL (C0 80) in a string", &b"\xC0\x80"[..]),
            ("a UTF-8-encoded surrogate in a string", &b"\xED\xA0\x80"[..]),
            ("a raw NUL byte in a string", &b"\x00"[..]),
            ("a lone surrogate escape in a string", &b"\\ud800"[..]),
        ] {
            bodies.push(raw_case(what, &cat(&[&good[..at], bad, &good[at..]]), INVALID_REQUEST));
        }
    }
    bodies
}

/// Bodies sent to routes that take none, by identities that may not call them.
fn stray_bodies() -> Bodies {
    vec![
        raw_case("no body", b"", FORBIDDEN),
        raw_case("an empty object", b"{}", FORBIDDEN),
        raw_case("a JSON array", b"[]", FORBIDDEN),
        raw_case("malformed JSON", b"{\"keyring\":", FORBIDDEN),
        raw_case("invalid UTF-8", b"{\"\xFF\":1}", FORBIDDEN),
    ]
}

/// Per table that a write would touch (never `audit_log`, which records refused calls on
/// purpose): its row count, and the columns a write would move.
type TableState = (&'static str, i64, String);

async fn written_state(db: &TestDb) -> Vec<TableState> {
    let client = db.client().await;
    let mut state: Vec<TableState> = Vec::new();
    for (table, columns) in [
        ("root_record", "format('%s/%s', generation, root_version)"),
        ("keks", "format('%s/%s', version, root_version)"),
        (
            "keyrings",
            "format('%s/%s/%s/%s/%s', name, latest_version, min_decryption_version, \
             trimmed_below, deleted_at IS NULL)",
        ),
        ("deks", "format('%s/%s/%s', keyring, version, kek_version)"),
    ] {
        let sql = format!(
            "SELECT count(*), coalesce(string_agg({columns}, ',' ORDER BY {columns}), '') \
             FROM {table}"
        );
        let row =
            client.query_one(sql.as_str(), &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        state.push((table, row.get(0), row.get(1)));
    }
    state
}

fn state_changes(before: &[TableState], after: &[TableState]) -> Vec<Failure> {
    before
        .iter()
        .zip(after)
        .filter(|(b, a)| b != a)
        .map(|(b, a)| {
            let (was, is) = (excerpt(&b.2, 200), excerpt(&a.2, 200));
            Failure::new(
                format!("table {}", b.0),
                "changed by refused calls",
                format!("{} rows [{was}] became {} rows [{is}]", b.1, a.1),
            )
        })
        .collect()
}

/// After the matrix the vault still seals and opens.
async fn still_serves(vault: &TestVault) {
    let sealed = vault.encrypt("ws_a", &["after the matrix"]).await;
    let opened = vault.decrypt("ws_a", &[(sealed[0].0.clone(), "ctx-0".to_owned())]).await;
    assert_eq!(opened, vec![Ok("after the matrix".to_owned())]);
}

/// A vault whose PKI also holds `nobody.pem`: trusted, but its SPIFFE id names no role.
async fn vault_with_nobody(db: &TestDb) -> TestVault {
    let vault = spawn_vault(db, &[]).await;
    let id = vault.pki.ca.spiffe_id("nobody");
    let issued = vault.pki.ca.issue_client_with_uris("nobody", &[id], Validity::days(1)).unwrap();
    vault.pki.write("nobody.pem", &issued.cert_pem);
    vault.pki.write("nobody-key.pem", &issued.key_pem);
    vault
}

// ---- lifecycle ----------------------------------------------------------------------------

/// `initialize` bodies, sent before initialization: one accepted by mistake would initialize.
fn initialize_bodies() -> Bodies {
    vec![
        json_case("a numeric key", json!({"key": 42}), INVALID_REQUEST),
        json_case("a null key", json!({"key": null}), INVALID_REQUEST),
        json_case("a boolean key", json!({"key": true}), INVALID_REQUEST),
        json_case("a key in an array", json!({"key": [STRONG_KEY]}), INVALID_REQUEST),
        json_case("a key in an object", json!({"key": {"value": STRONG_KEY}}), INVALID_REQUEST),
        json_case("no key", json!({"server_key": STRONG_KEY}), INVALID_REQUEST),
        json_case("the key spelt Key", json!({"Key": STRONG_KEY}), INVALID_REQUEST),
        json_case("an empty key", json!({"key": ""}), WEAK_KEY),
        json_case("a 13-character key", json!({"key": CANARY}), WEAK_KEY),
        json_case("a key that is one NUL", json!({"key": "\0"}), WEAK_KEY),
        json_case("a key of 15 NULs", json!({"key": "\0".repeat(15)}), WEAK_KEY),
        json_case("a key of 15 two-byte characters", json!({"key": "ä".repeat(15)}), WEAK_KEY),
        json_case("the fields as a positional array", json!([CANARY]), INVALID_REQUEST),
    ]
}

/// `unlock` bodies, sent before initialization.
fn unlock_bodies() -> Bodies {
    vec![
        json_case(
            "a well-formed key before initialization",
            json!({"key": STRONG_KEY}),
            NOT_INITIALIZED,
        ),
        json_case("a numeric key", json!({"key": 42}), INVALID_REQUEST),
        json_case("a null key", json!({"key": null}), INVALID_REQUEST),
        json_case("a key in an array", json!({"key": [STRONG_KEY]}), INVALID_REQUEST),
        json_case("no key", json!({"current_key": STRONG_KEY}), INVALID_REQUEST),
        json_case("the fields as a positional array", json!([STRONG_KEY]), INVALID_REQUEST),
    ]
}

/// `rekey` bodies, sent to an unlocked vault: one accepted by mistake would change the server
/// key (the root record's generation).
fn rekey_bodies() -> Bodies {
    let rekey = |current: Value, new: Value| json!({"current_key": current, "new_key": new});
    vec![
        json_case("no new_key", json!({"current_key": SERVER_KEY}), INVALID_REQUEST),
        json_case("no current_key", json!({"new_key": STRONG_KEY}), INVALID_REQUEST),
        json_case("a numeric current_key", rekey(json!(1), json!(STRONG_KEY)), INVALID_REQUEST),
        json_case("a null new_key", rekey(json!(SERVER_KEY), Value::Null), INVALID_REQUEST),
        json_case("unlock's body", json!({"key": SERVER_KEY}), INVALID_REQUEST),
        json_case("an empty new_key", rekey(json!(SERVER_KEY), json!("")), WEAK_KEY),
        json_case("a 13-character new_key", rekey(json!(SERVER_KEY), json!(CANARY)), WEAK_KEY),
        json_case("a new_key that is one NUL", rekey(json!(SERVER_KEY), json!("\0")), WEAK_KEY),
        json_case(
            "a wrong current_key starting with NUL",
            rekey(json!(format!("\0{STRONG_KEY}")), json!(STRONG_KEY)),
            WRONG_KEY,
        ),
        json_case("the fields as a positional array", json!([SERVER_KEY, CANARY]), INVALID_REQUEST),
    ]
}

fn migrate_bodies() -> Bodies {
    let to = |to: &str, extra: Value| {
        let mut body = json!({"to": to, "current_key": SERVER_KEY});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    vec![
        json_case(
            "no to",
            json!({"current_key": SERVER_KEY, "new_key": STRONG_KEY}),
            INVALID_REQUEST,
        ),
        json_case("an unknown seal", to("hsm", json!({"new_key": STRONG_KEY})), INVALID_REQUEST),
        json_case("a seal in capitals", to("KEY", json!({"new_key": STRONG_KEY})), INVALID_REQUEST),
        json_case("to key without new_key", to("key", json!({})), INVALID_REQUEST),
        json_case("to key with a weak new_key", to("key", json!({"new_key": CANARY})), WEAK_KEY),
        json_case(
            "to shares with one share",
            to("shares", json!({"new_shares": 1, "new_threshold": 1})),
            INVALID_REQUEST,
        ),
        json_case(
            "to shares with 300 shares",
            to("shares", json!({"new_shares": 300, "new_threshold": 2})),
            INVALID_REQUEST,
        ),
        json_case("to pkcs11 without a token", to("pkcs11", json!({})), INVALID_REQUEST),
        json_case(
            "recovery shares for a vault held by a key",
            json!({"to": "key", "recovery_shares": ["sb1-1-x", "sb1-2-y"], "new_key": STRONG_KEY}),
            INVALID_REQUEST,
        ),
        json_case(
            "a key label to key",
            to("key", json!({"new_key": STRONG_KEY, "key_label": "l"})),
            INVALID_REQUEST,
        ),
        json_case(
            "a wrong current_key starting with NUL",
            json!({"to": "key", "current_key": format!("\0{STRONG_KEY}"), "new_key": STRONG_KEY}),
            WRONG_KEY,
        ),
    ]
}

#[tokio::test]
async fn lifecycle_routes_answer_bad_input_with_a_json_4xx_and_change_nothing() {
    let db = TestDb::new().await;
    let vault = vault_with_nobody(&db).await;
    let limit = vault.vault.limits().max_body_bytes;
    let initialize = Route::new(Method::POST, "/v1/sys/initialize", OPERATOR);
    let unlock = Route::new(Method::POST, "/v1/sys/unlock", OPERATOR);
    let rekey = Route::new(Method::POST, "/v1/sys/rekey", OPERATOR);
    let migrate = Route::new(Method::POST, "/v1/sys/seal/migrate", OPERATOR);
    let status = Route::new(Method::GET, "/v1/sys/status", EVERYONE);
    let bodiless: Vec<Route> = ["/v1/sys/lock", "/v1/sys/rotate", "/v1/sys/rotate-root"]
        .into_iter()
        .map(|path| Route::new(Method::POST, path, OPERATOR))
        .collect();

    // Uninitialized first, so that a body `initialize` wrongly took would create the root record.
    let uninitialized = written_state(&db).await;
    let key = json!({"key": STRONG_KEY});
    let mut cases = initialize.all(malformed(&key, limit));
    cases.extend(initialize.all(initialize_bodies()));
    cases.extend(unlock.all(malformed(&key, limit)));
    cases.extend(unlock.all(unlock_bodies()));
    let mut failures = run(&vault, cases).await;
    failures.extend(state_changes(&uninitialized, &written_state(&db).await));
    let state = vault.status().await["state"].clone();
    if state != "uninitialized" {
        failures.push(Failure::new("GET /v1/sys/status", "not uninitialized", state.to_string()));
    }

    // Unlocked, with a keyring, so that rekey and the body-less routes have something to change.
    vault.initialize().await;
    vault.encrypt("ws_a", &["alpha"]).await;
    let before = written_state(&db).await;
    let rekey_body = json!({"current_key": SERVER_KEY, "new_key": STRONG_KEY});
    let mut cases = rekey.all(malformed(&rekey_body, limit));
    cases.extend(rekey.all(rekey_bodies()));
    let migrate_body = json!({"to": "key", "current_key": SERVER_KEY, "new_key": STRONG_KEY});
    cases.extend(migrate.all(malformed(&migrate_body, limit)));
    cases.extend(migrate.all(migrate_bodies()));
    // One wrong key each for unlock and rekey: under `unlock.free_failures`, so never throttled.
    let wrong = json!({"key": format!("\0{STRONG_KEY}")});
    cases.extend(unlock.all(vec![json_case("a wrong key starting with NUL", wrong, WRONG_KEY)]));
    for route in &bodiless {
        cases.extend(route.refused(&stray_bodies()));
    }
    cases.extend(routing(&[
        (Method::GET, "/v1/sys/initialize", METHOD_NOT_ALLOWED),
        (Method::PUT, "/v1/sys/unlock", METHOD_NOT_ALLOWED),
        (Method::GET, "/v1/sys/rekey", METHOD_NOT_ALLOWED),
        (Method::GET, "/v1/sys/seal/migrate", METHOD_NOT_ALLOWED),
        (Method::DELETE, "/v1/sys/lock", METHOD_NOT_ALLOWED),
        (Method::GET, "/v1/sys/rotate", METHOD_NOT_ALLOWED),
        (Method::PATCH, "/v1/sys/rotate-root", METHOD_NOT_ALLOWED),
        (Method::POST, "/v1/sys/status", METHOD_NOT_ALLOWED),
        (Method::POST, "/v1/sys/unseal", NOT_FOUND),
        (Method::POST, "/v1/sys/unlock/", NOT_FOUND),
        (Method::POST, "/v1/SYS/unlock", NOT_FOUND),
        (Method::POST, "/v1/sys/%00", NOT_FOUND),
        (Method::POST, "/v1/sys", NOT_FOUND),
    ]));
    failures.extend(run(&vault, cases).await);
    let mut routes = vec![&initialize, &unlock, &rekey, &status];
    routes.extend(&bodiless);
    failures.extend(anonymous_failures(&vault, &routes).await);
    failures.extend(state_changes(&before, &written_state(&db).await));
    let state = vault.status().await["state"].clone();
    if state != "unlocked" {
        failures.push(Failure::new("GET /v1/sys/status", "not unlocked", state.to_string()));
    }
    assert_all(failures);
    still_serves(&vault).await;
}

// ---- data plane ---------------------------------------------------------------------------

/// Encrypt bodies wrong in one place each. They name `ws_fresh`, which does not exist, so a body
/// wrongly accepted would create a keyring and show in the table check; the positional ones
/// name `ws_a`, so that they cannot write even if accepted.
fn encrypt_bodies(limits: LimitsConfig) -> Bodies {
    let item = json!({"plaintext": "eA==", "context": "c"});
    let with_keyring = |keyring: Value| json!({"keyring": keyring, "items": [item.clone()]});
    let with_items = |items: Value| json!({"keyring": "ws_fresh", "items": items});
    let with_plaintext = |p: Value| with_items(json!([{"plaintext": p, "context": "c"}]));
    let with_context = |c: Value| with_items(json!([{"plaintext": "eA==", "context": c}]));
    let too_many = Value::Array(vec![item.clone(); limits.max_items + 1]);
    let too_large = STANDARD.encode(vec![0u8; limits.max_plaintext_bytes + 1]);
    let mut bodies = vec![
        json_case("an empty keyring", with_keyring(json!("")), INVALID_KEYRING),
        json_case("a keyring with a space", with_keyring(json!("ws fresh")), INVALID_KEYRING),
        json_case("a keyring that is one NUL", with_keyring(json!("\0")), INVALID_KEYRING),
        json_case("a keyring with a NUL inside", with_keyring(json!("ws\0fresh")), INVALID_KEYRING),
        json_case("a keyring ending in NUL", with_keyring(json!("ws_fresh\0")), INVALID_KEYRING),
        json_case("a 65-character keyring", with_keyring(json!("k".repeat(65))), INVALID_KEYRING),
        json_case(
            "a keyring with a non-ASCII letter",
            with_keyring(json!("ws_ä")),
            INVALID_KEYRING,
        ),
        json_case("a keyring with a path", with_keyring(json!("ws/../ws_a")), INVALID_KEYRING),
        json_case("a keyring with a newline", with_keyring(json!("ws_fresh\n")), INVALID_KEYRING),
        json_case("a percent-encoded keyring", with_keyring(json!("ws%5Ffresh")), INVALID_KEYRING),
        json_case("a numeric keyring", with_keyring(json!(7)), INVALID_REQUEST),
        json_case("a null keyring", with_keyring(Value::Null), INVALID_REQUEST),
        json_case("a keyring in an array", with_keyring(json!(["ws_fresh"])), INVALID_REQUEST),
        json_case("no keyring", json!({"items": [item.clone()]}), INVALID_REQUEST),
        json_case("no items", json!({"keyring": "ws_fresh"}), INVALID_REQUEST),
        json_case("empty items", with_items(json!([])), NO_ITEMS),
        json_case("one item over max_items", with_items(too_many), TOO_MANY_ITEMS),
        json_case("items as an object", with_items(item.clone()), INVALID_REQUEST),
        json_case("items as a string", with_items(json!("eA==")), INVALID_REQUEST),
        json_case("null items", with_items(Value::Null), INVALID_REQUEST),
        json_case("a numeric item", with_items(json!([1])), INVALID_REQUEST),
        json_case("a null item", with_items(json!([null])), INVALID_REQUEST),
        json_case("an empty item", with_items(json!([{}])), INVALID_REQUEST),
        json_case(
            "an item without a context",
            with_items(json!([{"plaintext": "eA=="}])),
            INVALID_REQUEST,
        ),
        json_case(
            "an item without a plaintext",
            with_items(json!([{"context": "c"}])),
            INVALID_REQUEST,
        ),
        json_case(
            "an item with an extra field",
            with_items(json!([{"plaintext": "eA==", "context": "c", "keyring": "ws_a"}])),
            INVALID_REQUEST,
        ),
        json_case(
            "a good item then one that is not base64",
            with_items(json!([item.clone(), {"plaintext": "not base64!", "context": "c"}])),
            INVALID_PLAINTEXT,
        ),
        json_case(
            "a good item then one with an empty context",
            with_items(json!([item.clone(), {"plaintext": "eA==", "context": ""}])),
            INVALID_CONTEXT,
        ),
        json_case("a numeric plaintext", with_plaintext(json!(7)), INVALID_REQUEST),
        json_case("a null plaintext", with_plaintext(Value::Null), INVALID_REQUEST),
        json_case("a plaintext in an array", with_plaintext(json!(["eA=="])), INVALID_REQUEST),
        json_case(
            "a plaintext one byte over the limit",
            with_plaintext(json!(too_large)),
            PLAINTEXT_TOO_LARGE,
        ),
        json_case("an empty context", with_context(json!("")), INVALID_CONTEXT),
        json_case("a 257-byte context", with_context(json!("c".repeat(257))), INVALID_CONTEXT),
        json_case(
            "a 258-byte context of 129 characters",
            with_context(json!("ä".repeat(129))),
            INVALID_CONTEXT,
        ),
        json_case("a numeric context", with_context(json!(7)), INVALID_REQUEST),
        json_case("a null context", with_context(Value::Null), INVALID_REQUEST),
        json_case("a context in an array", with_context(json!(["c"])), INVALID_REQUEST),
        json_case(
            "the fields as a positional array",
            json!(["ws_a", [item.clone()]]),
            INVALID_REQUEST,
        ),
        json_case(
            "an item as a positional array",
            json!({"keyring": "ws_a", "items": [["eA==", "c"]]}),
            INVALID_REQUEST,
        ),
    ];
    for (what, plaintext) in [
        ("a plaintext that is not base64", "not base64!"),
        ("an unpadded plaintext", "eA"),
        ("a plaintext short of padding", "eA="),
        ("an over-padded plaintext", "eA==="),
        ("a plaintext with non-zero trailing bits", "eB=="),
        ("a plaintext in the URL-safe alphabet", "-_8="),
        ("a plaintext with a trailing newline", "eA==\n"),
        ("a plaintext with a leading space", " eA=="),
        ("a plaintext that is one NUL", "\0"),
        ("a plaintext with a NUL after the padding", "eA==\0"),
        ("a non-ASCII plaintext", "ä"),
        ("a plaintext of padding only", "===="),
    ] {
        bodies.push(json_case(what, with_plaintext(json!(plaintext)), INVALID_PLAINTEXT));
    }
    bodies
}

/// Decrypt and rewrap bodies wrong in one place each, for keyring `ws_a` where `a` (sealed for
/// `ctx-0`) lives.
fn cipher_bodies(a: &str, limits: LimitsConfig) -> Bodies {
    let item = json!({"ciphertext": a, "context": "ctx-0"});
    let with_keyring = |keyring: Value| json!({"keyring": keyring, "items": [item.clone()]});
    let with_items = |items: Value| json!({"keyring": "ws_a", "items": items});
    let with_item = |ciphertext: Value, context: Value| {
        with_items(json!([{"ciphertext": ciphertext, "context": context}]))
    };
    let too_many = Value::Array(vec![item.clone(); limits.max_items + 1]);
    vec![
        json_case("an empty keyring", with_keyring(json!("")), INVALID_KEYRING),
        json_case("a keyring with a space", with_keyring(json!("ws a")), INVALID_KEYRING),
        json_case("a keyring that is one NUL", with_keyring(json!("\0")), INVALID_KEYRING),
        json_case(
            "a live keyring with a NUL appended",
            with_keyring(json!("ws_a\0")),
            INVALID_KEYRING,
        ),
        json_case(
            "a live keyring with a NUL in front",
            with_keyring(json!("\0ws_a")),
            INVALID_KEYRING,
        ),
        json_case("a live keyring with a newline", with_keyring(json!("ws_a\n")), INVALID_KEYRING),
        json_case("a 65-character keyring", with_keyring(json!("k".repeat(65))), INVALID_KEYRING),
        json_case(
            "a keyring with a non-ASCII letter",
            with_keyring(json!("ws_ä")),
            INVALID_KEYRING,
        ),
        json_case("a live keyring in capitals", with_keyring(json!("WS_A")), KEYRING_NOT_FOUND),
        json_case("an unknown keyring", with_keyring(json!("ws_nowhere")), KEYRING_NOT_FOUND),
        json_case("a numeric keyring", with_keyring(json!(7)), INVALID_REQUEST),
        json_case("a null keyring", with_keyring(Value::Null), INVALID_REQUEST),
        json_case("no keyring", json!({"items": [item.clone()]}), INVALID_REQUEST),
        json_case("no items", json!({"keyring": "ws_a"}), INVALID_REQUEST),
        json_case("empty items", with_items(json!([])), NO_ITEMS),
        json_case("one item over max_items", with_items(too_many), TOO_MANY_ITEMS),
        json_case("items as an object", with_items(item.clone()), INVALID_REQUEST),
        json_case("null items", with_items(Value::Null), INVALID_REQUEST),
        json_case("a numeric item", with_items(json!([1])), INVALID_REQUEST),
        json_case("an empty item", with_items(json!([{}])), INVALID_REQUEST),
        json_case(
            "an item without a context",
            with_items(json!([{"ciphertext": a}])),
            INVALID_REQUEST,
        ),
        json_case(
            "an item without a ciphertext",
            with_items(json!([{"context": "ctx-0"}])),
            INVALID_REQUEST,
        ),
        json_case(
            "an item with an extra field",
            with_items(json!([{"ciphertext": a, "context": "ctx-0", "dek_version": 1}])),
            INVALID_REQUEST,
        ),
        json_case(
            "an encrypt item",
            with_items(json!([{"plaintext": "eA==", "context": "ctx-0"}])),
            INVALID_REQUEST,
        ),
        json_case("a numeric ciphertext", with_item(json!(7), json!("ctx-0")), INVALID_REQUEST),
        json_case("a null ciphertext", with_item(Value::Null, json!("ctx-0")), INVALID_REQUEST),
        json_case(
            "a ciphertext in an array",
            with_item(json!([a]), json!("ctx-0")),
            INVALID_REQUEST,
        ),
        json_case("an empty context", with_item(json!(a), json!("")), INVALID_CONTEXT),
        json_case(
            "a 257-byte context",
            with_item(json!(a), json!("c".repeat(257))),
            INVALID_CONTEXT,
        ),
        json_case(
            "a 258-byte context of 129 characters",
            with_item(json!(a), json!("ä".repeat(129))),
            INVALID_CONTEXT,
        ),
        json_case("a numeric context", with_item(json!(a), json!(7)), INVALID_REQUEST),
        json_case("a null context", with_item(json!(a), Value::Null), INVALID_REQUEST),
        json_case(
            "a good item then one with an empty context",
            with_items(json!([item.clone(), {"ciphertext": a, "context": ""}])),
            INVALID_CONTEXT,
        ),
        json_case(
            "the fields as a positional array",
            json!(["ws_a", [item.clone()]]),
            INVALID_REQUEST,
        ),
        json_case(
            "an item as a positional array",
            with_items(json!([[a, "ctx-0"]])),
            INVALID_REQUEST,
        ),
    ]
}

/// One item of a decrypt or rewrap batch and what it must come back as: `Ok(plaintext)` or
/// `Err(per-item code)`.
struct Item {
    what: &'static str,
    ciphertext: String,
    context: String,
    expect: Result<&'static str, &'static str>,
}

fn item(
    what: &'static str,
    ciphertext: impl Into<String>,
    context: &str,
    expect: Result<&'static str, &'static str>,
) -> Item {
    Item { what, ciphertext: ciphertext.into(), context: context.to_owned(), expect }
}

/// `ciphertext` decoded, edited and encoded again.
fn edited(ciphertext: &str, edit: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut bytes = URL_SAFE_NO_PAD.decode(ciphertext).unwrap();
    edit(&mut bytes);
    URL_SAFE_NO_PAD.encode(&bytes)
}

/// Tampered forms of `a` ("alpha", `ws_a`, version 1, `ctx-0`) around two good copies. The
/// envelope is `01 ‖ version u32 ‖ nonce 12 ‖ body ‖ tag 16`.
fn tampered_items(a: &str, other_keyrings: &str) -> Vec<Item> {
    const FAILED: Result<&str, &str> = Err("DECRYPTION_FAILED");
    const MALFORMED: Result<&str, &str> = Err("MALFORMED_CIPHERTEXT");
    const NO_VERSION: Result<&str, &str> = Err("VERSION_NOT_FOUND");
    let len = URL_SAFE_NO_PAD.decode(a).unwrap().len();
    vec![
        item("the ciphertext as sealed", a, "ctx-0", Ok("alpha")),
        item("a bit flipped in the nonce", edited(a, |b| b[5] ^= 0x01), "ctx-0", FAILED),
        item("a bit flipped in the body", edited(a, |b| b[17] ^= 0x01), "ctx-0", FAILED),
        item("a bit flipped in the tag", edited(a, |b| b[len - 1] ^= 0x80), "ctx-0", FAILED),
        item("its last byte cut off", edited(a, |b| b.truncate(len - 1)), "ctx-0", FAILED),
        item(
            "cut shorter than header, nonce and tag",
            edited(a, |b| b.truncate(32)),
            "ctx-0",
            MALFORMED,
        ),
        item("only its header", edited(a, |b| b.truncate(5)), "ctx-0", MALFORMED),
        item("an unknown format byte", edited(a, |b| b[0] = 2), "ctx-0", MALFORMED),
        item("its version relabelled 2", edited(a, |b| b[4] = 2), "ctx-0", NO_VERSION),
        item("its version relabelled 0", edited(a, |b| b[4] = 0), "ctx-0", NO_VERSION),
        item("its version's top bit set", edited(a, |b| b[1] |= 0x80), "ctx-0", NO_VERSION),
        item("another keyring's ciphertext", other_keyrings, "ctx-0", FAILED),
        item("another context", a, "ctx-1", FAILED),
        item("its context with a NUL appended", a, "ctx-0\0", FAILED),
        item("a context that is one NUL", a, "\0", FAILED),
        item("base64 padding appended", format!("{a}="), "ctx-0", MALFORMED),
        item("standard base64 characters", format!("{}+/", &a[..a.len() - 2]), "ctx-0", MALFORMED),
        item("a NUL appended", format!("{a}\0"), "ctx-0", MALFORMED),
        item("a leading space", format!(" {a}"), "ctx-0", MALFORMED),
        item("one NUL", "\0", "ctx-0", MALFORMED),
        item("a non-ASCII character", "ä", "ctx-0", MALFORMED),
        item("an empty ciphertext", "", "ctx-0", MALFORMED),
        item("100 000 A's (zero bytes)", "A".repeat(100_000), "ctx-0", MALFORMED),
        item("the ciphertext as sealed, again", a, "ctx-0", Ok("alpha")),
    ]
}

/// Sends `items` in one batch to decrypt (as `api`) and to rewrap (as `rewrap`): both answer
/// 200 with one answer per item. Rewrap returns a current-version item unchanged, never a
/// plaintext, and the same per-item errors as decrypt.
async fn item_failures(vault: &TestVault, keyring: &str, items: &[Item]) -> Vec<Failure> {
    let batch: Vec<Value> =
        items.iter().map(|i| json!({"ciphertext": i.ciphertext, "context": i.context})).collect();
    let body = json!({"keyring": keyring, "items": batch});
    let mut failures = Vec::new();
    for (who, path) in [("api", "/v1/decrypt"), ("rewrap", "/v1/rewrap")] {
        let (status, answer) = vault.post(who, path, body.clone()).await;
        let answers = answer["items"].as_array().cloned().unwrap_or_default();
        if status != 200 || answers.len() != items.len() {
            failures.push(Failure::new(
                format!("POST {path} as {who} with a batch of bad items"),
                format!("expected 200 with {} items, got {status}", items.len()),
                excerpt(&answer.to_string(), 300),
            ));
            continue;
        }
        if path == "/v1/rewrap" && answer.to_string().contains("plaintext") {
            failures.push(Failure::new("POST /v1/rewrap", "answered with a plaintext", ""));
        }
        for (item, got) in items.iter().zip(&answers) {
            let ok = match item.expect {
                Ok(plaintext) if path == "/v1/decrypt" => {
                    got["plaintext"] == STANDARD.encode(plaintext) && got.get("error").is_none()
                }
                Ok(_) => got["ciphertext"] == item.ciphertext.as_str() && got["dek_version"] == 1,
                Err(code) => {
                    got["error"]["code"] == code
                        && got["error"]["message"].as_str().is_some_and(|m| !m.is_empty())
                        && got.get("plaintext").is_none()
                        && got.get("ciphertext").is_none()
                }
            };
            if !ok {
                failures.push(Failure::new(
                    format!("POST {path} as {who}, item with {}", item.what),
                    format!("expected {:?}", item.expect),
                    excerpt(&got.to_string(), 200),
                ));
            }
        }
    }
    failures
}

#[tokio::test]
async fn data_plane_refuses_bad_calls_with_a_json_4xx_and_flags_bad_items_one_by_one() {
    let db = TestDb::new().await;
    let vault = vault_with_nobody(&db).await;
    vault.initialize().await;
    let a = vault.encrypt("ws_a", &["alpha"]).await.remove(0).0;
    let b = vault.encrypt("ws_b", &["beta"]).await.remove(0).0;
    let limits = vault.vault.limits();
    let before = written_state(&db).await;

    let encrypt = Route::new(Method::POST, "/v1/encrypt", API);
    let decrypt = Route::new(Method::POST, "/v1/decrypt", API);
    let rewrap = Route::new(Method::POST, "/v1/rewrap", REWRAP);
    let sealable = json!({"keyring": "ws_fresh", "items": [{"plaintext": "eA==", "context": "c"}]});
    let mut cases = encrypt.all(malformed(&sealable, limits.max_body_bytes));
    cases.extend(encrypt.all(encrypt_bodies(limits)));
    let openable = json!({"keyring": "ws_a", "items": [{"ciphertext": a, "context": "ctx-0"}]});
    for route in [&decrypt, &rewrap] {
        cases.extend(route.all(malformed(&openable, limits.max_body_bytes)));
        cases.extend(route.all(cipher_bodies(&a, limits)));
    }
    cases.extend(routing(&[
        (Method::GET, "/v1/encrypt", METHOD_NOT_ALLOWED),
        (Method::PUT, "/v1/decrypt", METHOD_NOT_ALLOWED),
        (Method::DELETE, "/v1/rewrap", METHOD_NOT_ALLOWED),
        (Method::POST, "/v1/encrypt/", NOT_FOUND),
        (Method::POST, "/v1/Encrypt", NOT_FOUND),
        (Method::POST, "/v1/encrypt%00", NOT_FOUND),
        (Method::POST, "/v1/decrypt/ws_a", NOT_FOUND),
    ]));
    let mut failures = run(&vault, cases).await;
    failures.extend(anonymous_failures(&vault, &[&encrypt, &decrypt, &rewrap]).await);

    // Per-item errors of a 200: one bad item never fails the others.
    failures.extend(item_failures(&vault, "ws_a", &tampered_items(&a, &b)).await);

    // NUL is data like any other in a context or a plaintext: accepted, and bound exactly.
    let nul_item = json!({"plaintext": "AAAA", "context": "\0"});
    let (status, sealed) =
        vault.post("api", "/v1/encrypt", json!({"keyring": "ws_a", "items": [nul_item]})).await;
    match sealed["items"][0]["ciphertext"].as_str().filter(|_| status == 200) {
        Some(nul) => {
            let items = [
                item("three NUL bytes for a NUL context", nul, "\0", Ok("\0\0\0")),
                item("the NUL context doubled", nul, "\0\0", Err("DECRYPTION_FAILED")),
                item("a space for the NUL context", nul, " ", Err("DECRYPTION_FAILED")),
            ];
            failures.extend(item_failures(&vault, "ws_a", &items).await);
        }
        None => failures.push(Failure::new(
            "POST /v1/encrypt as api with NUL bytes under a NUL context",
            format!("expected 200, got {status}"),
            excerpt(&sealed.to_string(), 200),
        )),
    }

    failures.extend(state_changes(&before, &written_state(&db).await));
    assert_all(failures);
    still_serves(&vault).await;
}

// ---- keyrings -----------------------------------------------------------------------------

/// The routes that name a keyring in their path.
fn keyring_routes(name: &str) -> Vec<Route> {
    vec![
        Route::new(Method::GET, format!("/v1/keyrings/{name}"), DESCRIBE),
        Route::new(Method::POST, format!("/v1/keyrings/{name}/rotate"), OPERATOR),
        Route::new(Method::POST, format!("/v1/keyrings/{name}/config"), OPERATOR),
        Route::new(Method::POST, format!("/v1/keyrings/{name}/trim"), OPERATOR),
        Route::new(Method::DELETE, format!("/v1/keyrings/{name}"), OPERATOR),
    ]
}

/// Path segments that are not a live keyring, as sent on the wire (already percent-encoded).
/// Several are one character away from the live `ws_a`: none may reach it.
fn bad_names() -> Vec<(&'static str, String, Expect)> {
    let name =
        |what: &'static str, segment: &str, expect: Expect| (what, segment.to_owned(), expect);
    vec![
        name("a 65-character name", &"k".repeat(65), INVALID_KEYRING),
        name("a 4096-character name", &"k".repeat(4096), INVALID_KEYRING),
        name("a dot", "ws.a", INVALID_KEYRING),
        name("an encoded space after a live name", "ws_a%20", INVALID_KEYRING),
        name("an encoded NUL", "%00", INVALID_KEYRING),
        name("an encoded NUL after a live name", "ws_a%00", INVALID_KEYRING),
        name("an encoded NUL before a live name", "%00ws_a", INVALID_KEYRING),
        name("an encoded newline after a live name", "ws_a%0A", INVALID_KEYRING),
        name("an encoded slash", "ws_a%2Fx", INVALID_KEYRING),
        name("an encoded question mark", "ws_a%3Fx", INVALID_KEYRING),
        name("an encoded non-ASCII letter", "ws_%C3%A4", INVALID_KEYRING),
        name("an invalid percent escape", "ws_a%ZZ", INVALID_KEYRING),
        name("an encoded byte that is not UTF-8", "ws_a%FF", INVALID_KEYRING),
        name("an encoded overlong UTF-8 NUL", "ws_a%C0%80", INVALID_KEYRING),
        name("a valid 64-character name never used", &"k".repeat(64), KEYRING_NOT_FOUND),
        name("a live name in capitals", "WS_A", KEYRING_NOT_FOUND),
        name("an unknown name", "ws_nowhere", KEYRING_NOT_FOUND),
    ]
}

/// `config` bodies for `ws_a` (latest version 2, min 1).
fn config_bodies() -> Bodies {
    let min = |version: Value| json!({"min_decryption_version": version});
    vec![
        json_case("a string version", min(json!("2")), INVALID_REQUEST),
        json_case("a fractional version", min(json!(1.5)), INVALID_REQUEST),
        json_case("a float version", min(json!(2.0)), INVALID_REQUEST),
        raw_case("an exponent", b"{\"min_decryption_version\":2e0}", INVALID_REQUEST),
        raw_case("a leading zero", b"{\"min_decryption_version\":02}", INVALID_REQUEST),
        json_case("2^31", min(json!(2_147_483_648_i64)), INVALID_REQUEST),
        json_case("-2^31 - 1", min(json!(-2_147_483_649_i64)), INVALID_REQUEST),
        raw_case(
            "a 23-digit version",
            b"{\"min_decryption_version\":99999999999999999999999}",
            INVALID_REQUEST,
        ),
        json_case("a null version", min(Value::Null), INVALID_REQUEST),
        json_case("a version in an array", min(json!([2])), INVALID_REQUEST),
        json_case("no version", json!({"min_version": 2}), INVALID_REQUEST),
        json_case("version 0", min(json!(0)), INVALID_VERSION),
        json_case("version -1", min(json!(-1)), INVALID_VERSION),
        json_case("version i32::MIN", min(json!(i32::MIN)), INVALID_VERSION),
        json_case("a version above the latest", min(json!(3)), INVALID_VERSION),
        json_case("version i32::MAX", min(json!(i32::MAX)), INVALID_VERSION),
        json_case("the fields as a positional array", json!([2]), INVALID_REQUEST),
    ]
}

#[tokio::test]
async fn keyring_routes_answer_bad_names_and_bodies_with_a_json_4xx_and_change_nothing() {
    let db = TestDb::new().await;
    let vault = vault_with_nobody(&db).await;
    vault.initialize().await;
    vault.encrypt("ws_a", &["alpha"]).await;
    // Version 2, so that a config body wrongly accepted (they name version 2) shows as a change.
    let (status, body) = vault.post("operator", "/v1/keyrings/ws_a/rotate", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let limit = vault.vault.limits().max_body_bytes;
    let before = written_state(&db).await;

    let retire = json!({"min_decryption_version": 2});
    let config = Route::new(Method::POST, "/v1/keyrings/ws_a/config", OPERATOR);
    let mut cases = config.all(malformed(&retire, limit));
    cases.extend(config.all(config_bodies()));
    let rotate_all = Route::new(Method::POST, "/v1/keyrings/rotate", OPERATOR);
    cases.extend(rotate_all.refused(&stray_bodies()));

    let mut named = Vec::new();
    for (what, segment, expect) in bad_names() {
        for route in keyring_routes(&segment) {
            let body = if route.path.ends_with("/config") { raw(&retire) } else { Vec::new() };
            named.extend(route.cases(what, body, expect));
        }
    }
    // An empty name between two slashes still reaches the sub-routes' handlers.
    for route in keyring_routes("").into_iter().filter(|r| r.path.matches('/').count() == 4) {
        let body = if route.path.ends_with("/config") { raw(&retire) } else { Vec::new() };
        named.extend(route.cases("an empty name", body, INVALID_KEYRING));
    }
    // Deletes last: one wrongly accepted would change what the other routes see.
    named.sort_by_key(|case| case.method == Method::DELETE);
    cases.extend(named);

    cases.extend(routing(&[
        (Method::PUT, "/v1/keyrings/ws_a", METHOD_NOT_ALLOWED),
        (Method::PATCH, "/v1/keyrings/ws_a", METHOD_NOT_ALLOWED),
        (Method::POST, "/v1/keyrings/ws_a", METHOD_NOT_ALLOWED),
        (Method::GET, "/v1/keyrings/ws_a/rotate", METHOD_NOT_ALLOWED),
        (Method::GET, "/v1/keyrings/ws_a/config", METHOD_NOT_ALLOWED),
        (Method::DELETE, "/v1/keyrings/ws_a/trim", METHOD_NOT_ALLOWED),
        (Method::GET, "/v1/keyrings", NOT_FOUND),
        (Method::GET, "/v1/keyrings/", NOT_FOUND),
        (Method::DELETE, "/v1/keyrings/", NOT_FOUND),
        (Method::DELETE, "/v1/keyrings/ws_a/", NOT_FOUND),
        (Method::POST, "/v1/keyrings/ws_a/rotate/", NOT_FOUND),
        (Method::POST, "/v1/keyrings/ws_a/unknown", NOT_FOUND),
    ]));
    let mut failures = run(&vault, cases).await;
    let live = keyring_routes("ws_a");
    let mut routes: Vec<&Route> = live.iter().collect();
    routes.push(&rotate_all);
    failures.extend(anonymous_failures(&vault, &routes).await);
    failures.extend(state_changes(&before, &written_state(&db).await));
    assert_all(failures);

    let (status, described) = vault.call("api", Method::GET, "/v1/keyrings/ws_a", None).await;
    let versions =
        (described["latest_version"].as_i64(), described["min_decryption_version"].as_i64());
    assert_eq!((status, versions), (200, (Some(2), Some(1))), "{described}");
    still_serves(&vault).await;
}

// ---- routes without input -----------------------------------------------------------------

/// `lock`, `rotate`, `rotate-root`, `keyrings/rotate` and `keyrings/{keyring}/rotate|trim` take
/// no input. They accept an empty body and `{}` (vault_refusals.rs relies on both), but any other
/// body is a caller's mistake that must not be acted on as if it were absent:
/// `{"keyring":"ws_b"}` sent to `/v1/keyrings/rotate` would otherwise rotate every keyring. And
/// the body limit holds on every route, not only on those that parse a body.
#[tokio::test]
async fn post_routes_without_input_refuse_a_body_rather_than_ignore_it() {
    let db = TestDb::new().await;
    let vault = spawn_vault(&db, &[]).await;
    vault.initialize().await;
    vault.encrypt("ws_a", &["alpha"]).await;
    let limit = vault.vault.limits().max_body_bytes;
    let before = written_state(&db).await;

    let bodies = vec![
        json_case(
            "an argument the route has no use for",
            json!({"keyring": "ws_b"}),
            INVALID_REQUEST,
        ),
        raw_case("a JSON array", b"[]", INVALID_REQUEST),
        raw_case("JSON null", b"null", INVALID_REQUEST),
        raw_case("malformed JSON", b"{\"keyring\":", INVALID_REQUEST),
        raw_case("trailing garbage", b"{} x", INVALID_REQUEST),
        raw_case("invalid UTF-8", b"{\"\xFF\":1}", INVALID_REQUEST),
        raw_case(
            "an empty object padded past the body limit",
            &padded(b"{}", limit + 1),
            BODY_TOO_LARGE,
        ),
    ];
    let mut cases = Vec::new();
    // Lock last: were its body ignored, every later call would answer VAULT_LOCKED.
    for path in [
        "/v1/keyrings/rotate",
        "/v1/keyrings/ws_a/rotate",
        "/v1/keyrings/ws_a/trim",
        "/v1/sys/rotate",
        "/v1/sys/rotate-root",
        "/v1/sys/lock",
    ] {
        let route = Route::new(Method::POST, path, OPERATOR);
        for (what, body, expect) in &bodies {
            cases.push(route.case("operator", what, body.clone(), expect));
        }
    }
    let mut failures = run(&vault, cases).await;
    failures.extend(state_changes(&before, &written_state(&db).await));
    let state = vault.status().await["state"].clone();
    if state != "unlocked" {
        failures.push(Failure::new("GET /v1/sys/status", "not unlocked", state.to_string()));
    }
    assert_all(failures);
}
