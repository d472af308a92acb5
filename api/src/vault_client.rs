//! The api's client of the vault: mutual TLS with the api's identity, the vault's CA only and
//! hostname verification; pooled keep-alive connections; connect and request timeouts; bounded
//! retries with backoff for transport failures of idempotent calls only (never for a locked
//! vault); and a circuit breaker, so a dead vault costs callers milliseconds, not a timeout each.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::Instrument as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};
use strongbox_shared::tls::Reloading;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

/// `[vault]`: where the vault is and how to reach it. Without it, recoverable keys answer 503.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultClientConfig {
    /// Base URL of the vault's mTLS listener, such as `https://vault.internal:7080`.
    pub url: String,
    /// CA bundle that signed the vault's certificate (the only trust anchor).
    pub ca: PathBuf,
    /// The api's client certificate (`spiffe://<td>/api`).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// Longest wait for a connection, ms.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Longest a call may take, retries included, ms.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// Extra attempts of an idempotent call after a transport failure.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Consecutive transport failures that open the circuit.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open circuit fails calls at once before one probe is let through, ms.
    #[serde(default = "default_breaker_cooldown")]
    pub breaker_cooldown_ms: u64,
    /// How often the certificate files are checked for changes, seconds.
    #[serde(default = "default_reload")]
    pub reload_interval_seconds: u64,
}

fn default_connect_timeout() -> u64 {
    1_000
}
fn default_request_timeout() -> u64 {
    5_000
}
fn default_retries() -> u32 {
    2
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown() -> u64 {
    5_000
}
fn default_reload() -> u64 {
    10
}

/// Why a vault call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultFailure {
    /// The vault answered that it is locked.
    Locked,
    /// The vault could not be reached, timed out, or the circuit is open.
    Unavailable(String),
    /// The keyring (workspace) was crypto-shredded.
    KeyringDeleted,
    /// The keyring has never been used.
    KeyringNotFound,
    /// Any other refusal.
    Refused {
        /// HTTP status.
        status: u16,
        /// The vault's code.
        code: String,
    },
}

/// One item's outcome of a decrypt.
pub type Opened = Result<Zeroizing<String>, String>;

struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<(u32, Option<Instant>)>,
}

impl Breaker {
    /// `Err` while open; lets one probe through once the cooldown has passed.
    fn admit(&self) -> Result<(), VaultFailure> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.1 {
            Some(until) if Instant::now() < until => {
                Err(VaultFailure::Unavailable("the vault circuit breaker is open".to_owned()))
            }
            Some(_) => {
                // Half-open: this call alone probes; the others keep failing fast until it
                // succeeds (closing the circuit) or another cooldown passes. One more failure
                // re-opens it at once.
                breaker_gauge(BREAKER_HALF_OPEN);
                state.1 = Some(Instant::now() + self.cooldown);
                state.0 = self.threshold.saturating_sub(1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn success(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // The common case, a success while all is well, touches nothing.
        if *state != (0, None) {
            *state = (0, None);
            breaker_gauge(BREAKER_CLOSED);
        }
    }

    fn failure(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 += 1;
        if state.0 >= self.threshold {
            state.1 = Some(Instant::now() + self.cooldown);
            breaker_gauge(BREAKER_OPEN);
            tracing::warn!(failures = state.0, "vault unreachable; circuit breaker open");
        }
    }
}

const BREAKER_CLOSED: f64 = 0.0;
const BREAKER_OPEN: f64 = 1.0;
const BREAKER_HALF_OPEN: f64 = 2.0;

/// `strongbox_vault_client_breaker_state`: 0 closed, 1 open, 2 half-open (one probe allowed).
fn breaker_gauge(state: f64) {
    metrics::gauge!("strongbox_vault_client_breaker_state").set(state);
}

/// Counts a failed vault call by kind; `strongbox_vault_client_calls_total` counts them all.
fn count_call<T>(route: &'static str, result: &Result<T, VaultFailure>) {
    metrics::counter!("strongbox_vault_client_calls_total", "route" => route).increment(1);
    if let Err(failure) = result {
        let kind = match failure {
            VaultFailure::Locked => "locked",
            VaultFailure::Unavailable(_) => "unavailable",
            VaultFailure::KeyringDeleted => "keyring_deleted",
            VaultFailure::KeyringNotFound => "keyring_not_found",
            VaultFailure::Refused { .. } => "refused",
        };
        metrics::counter!("strongbox_vault_client_errors_total", "route" => route, "kind" => kind)
            .increment(1);
    }
}

/// The client span of one vault call; its context travels in the `traceparent` header.
fn call_span(method: &str, route: &'static str) -> tracing::Span {
    tracing::info_span!(
        "vault call",
        otel.name = %format!("{method} {route}"),
        otel.kind = "client",
        http.request.method = method,
        http.route = route,
    )
}

/// A client of one vault.
pub struct VaultClient {
    base: String,
    http: Reloading<reqwest::Client>,
    retries: u32,
    /// The most one call may take, retries included.
    timeout: Duration,
    breaker: Breaker,
    reload_interval: Duration,
}

/// Refuses a vault URL that is not `https://`. Recoverable keys travel to the vault in
/// plaintext inside the TLS session; over plain HTTP they would cross the network in the clear,
/// so there is no opt-out.
pub fn check_url(url: &str) -> Result<(), String> {
    strongbox_shared::tls::check_https_url(url)
}

impl VaultClient {
    /// Loads the certificates and builds the client. Refuses a URL that is not `https://`.
    pub fn new(config: &VaultClientConfig) -> anyhow::Result<Self> {
        check_url(&config.url).map_err(|reason| anyhow::anyhow!("the vault URL {reason}"))?;
        let (ca, cert, key) = (config.ca.clone(), config.cert.clone(), config.key.clone());
        let connect = Duration::from_millis(config.connect_timeout_ms);
        let request = Duration::from_millis(config.request_timeout_ms);
        let http = Reloading::new(
            "vault client TLS",
            vec![ca.clone(), cert.clone(), key.clone()],
            move || {
                let tls = strongbox_shared::tls::mtls_client_config(&ca, &cert, &key)?;
                Ok(reqwest::Client::builder()
                    .use_preconfigured_tls(tls)
                    .no_proxy()
                    .https_only(true)
                    .redirect(reqwest::redirect::Policy::none())
                    .connect_timeout(connect)
                    .timeout(request)
                    .pool_idle_timeout(Duration::from_secs(60))
                    .build()?)
            },
        )?;
        // The series exists from the start, so an alert on it never sees a gap.
        breaker_gauge(BREAKER_CLOSED);
        Ok(Self {
            base: config.url.trim_end_matches('/').to_owned(),
            http,
            retries: config.retries,
            timeout: Duration::from_millis(config.request_timeout_ms.max(1)),
            breaker: Breaker {
                threshold: config.breaker_failures.max(1),
                cooldown: Duration::from_millis(config.breaker_cooldown_ms),
                state: Mutex::new((0, None)),
            },
            reload_interval: Duration::from_secs(config.reload_interval_seconds.max(1)),
        })
    }

    /// Reloads the client certificate when its files change, until `stop`.
    pub fn spawn_reloader(&self, stop: CancellationToken) {
        self.http.spawn_watcher(self.reload_interval, stop);
    }

    async fn post(
        &self,
        path: &'static str,
        body: &Value,
        idempotent: bool,
    ) -> Result<Value, VaultFailure> {
        self.post_to(path, path, body, idempotent).await
    }

    /// Posts to `path`, which `route` (its template) names in spans and metrics.
    async fn post_to(
        &self,
        route: &'static str,
        path: &str,
        body: &Value,
        idempotent: bool,
    ) -> Result<Value, VaultFailure> {
        let span = call_span("POST", route);
        let result = self.send_post(path, body, idempotent, &span).instrument(span.clone()).await;
        count_call(route, &result);
        result
    }

    async fn send_post(
        &self,
        path: &str,
        body: &Value,
        idempotent: bool,
        span: &tracing::Span,
    ) -> Result<Value, VaultFailure> {
        let url = format!("{}{path}", self.base);
        let traceparent = crate::context::outgoing_traceparent(span);
        self.exchange(path, idempotent, |client| {
            client.post(&url).header("traceparent", &traceparent).json(body)
        })
        .await
    }

    /// Sends what `request` builds and reads the whole answer, within `request_timeout_ms` in
    /// all, retries included. A transport failure, or an answer cut off before its end, is
    /// retried when the call is idempotent and time is left; a timeout is not (the next attempt
    /// would not have its full time).
    async fn exchange(
        &self,
        path: &str,
        idempotent: bool,
        request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Value, VaultFailure> {
        self.breaker.admit()?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let attempts = if idempotent { self.retries + 1 } else { 1 };
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                let pause = Duration::from_millis(50 << attempt);
                if tokio::time::Instant::now() + pause >= deadline {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            let client = self.http.current();
            let sent = tokio::time::timeout_at(deadline, async {
                let response = request(&client).send().await.map_err(|e| describe(&e))?;
                let status = response.status().as_u16();
                let locked = response.headers().contains_key("x-strongbox-locked");
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| format!("the answer was cut off ({})", describe(&e)))?;
                Ok::<_, String>((status, locked, body))
            })
            .await;
            match sent {
                Ok(Ok((status, locked, body))) => {
                    self.breaker.success();
                    return interpret(status, locked, &body);
                }
                Ok(Err(why)) => {
                    tracing::warn!(path, attempt, error = %why, "vault call failed");
                    last = why;
                }
                Err(_) => {
                    tracing::warn!(path, attempt, "vault call timed out");
                    last = format!("no answer within {} ms", self.timeout.as_millis());
                    break;
                }
            }
        }
        // One failed call is one failure to the breaker, however many attempts it made.
        self.breaker.failure();
        Err(VaultFailure::Unavailable(last))
    }

    /// Seals each `(plaintext, context)` under `keyring`'s newest DEK. Not retried: a second
    /// attempt would seal again.
    pub async fn encrypt(
        &self,
        keyring: &str,
        items: &[(&str, &str)],
    ) -> Result<Vec<(String, i32)>, VaultFailure> {
        let items: Vec<Value> = items
            .iter()
            .map(|(plaintext, context)| json!({"plaintext": STANDARD.encode(plaintext), "context": context}))
            .collect();
        let request = json!({"keyring": keyring, "items": items});
        let answer = self.post("/v1/encrypt", &request, false).await;
        // The base64 copies of the keys are overwritten, whatever the answer.
        strongbox_shared::json::scrub(request);
        let answer = answer?;
        answer["items"]
            .as_array()
            .ok_or_else(|| VaultFailure::Unavailable("malformed vault answer".to_owned()))?
            .iter()
            .map(|i| match (i["ciphertext"].as_str(), i["dek_version"].as_i64()) {
                (Some(c), Some(v)) => Ok((c.to_owned(), i32::try_from(v).unwrap_or(i32::MAX))),
                _ => Err(VaultFailure::Unavailable("malformed vault answer".to_owned())),
            })
            .collect()
    }

    /// Opens each `(ciphertext, context)` of `keyring`; one bad item gets its own error code.
    pub async fn decrypt(
        &self,
        keyring: &str,
        items: &[(&str, &str)],
    ) -> Result<Vec<Opened>, VaultFailure> {
        let body: Vec<Value> =
            items.iter().map(|(c, ctx)| json!({"ciphertext": c, "context": ctx})).collect();
        let mut answer =
            self.post("/v1/decrypt", &json!({"keyring": keyring, "items": body}), true).await?;
        let opened = match answer["items"].as_array_mut() {
            Some(items) => Ok(items.iter_mut().map(open_item).collect()),
            None => Err(VaultFailure::Unavailable("malformed vault answer".to_owned())),
        };
        // Every base64 plaintext of the answer is overwritten once decoded.
        strongbox_shared::json::scrub(answer);
        opened
    }
}

/// One item of a decrypt answer: the plaintext (its base64 taken out of the answer and wiped
/// once decoded) or the item's error code.
fn open_item(item: &mut Value) -> Opened {
    match item.get_mut("plaintext").map(Value::take) {
        Some(Value::String(b64)) => {
            let malformed = || "MALFORMED_PLAINTEXT".to_owned();
            let b64 = Zeroizing::new(b64);
            let bytes = Zeroizing::new(STANDARD.decode(b64.as_bytes()).map_err(|_| malformed())?);
            let text = std::str::from_utf8(&bytes).map_err(|_| malformed())?;
            Ok(Zeroizing::new(text.to_owned()))
        }
        _ => Err(item["error"]["code"].as_str().unwrap_or("UNKNOWN").to_owned()),
    }
}

impl VaultClient {
    /// `(latest_version, min_decryption_version)` of `keyring` (describe: api, rewrap and
    /// operator identities).
    pub async fn versions(&self, keyring: &str) -> Result<(i32, i32), VaultFailure> {
        let span = call_span("GET", "/v1/keyrings/{keyring}");
        let result = self.send_versions(keyring, &span).instrument(span.clone()).await;
        count_call("/v1/keyrings/{keyring}", &result);
        result
    }

    async fn send_versions(
        &self,
        keyring: &str,
        span: &tracing::Span,
    ) -> Result<(i32, i32), VaultFailure> {
        let url = format!("{}/v1/keyrings/{keyring}", self.base);
        let traceparent = crate::context::outgoing_traceparent(span);
        let answer = self
            .exchange("/v1/keyrings/{keyring}", true, |client| {
                client.get(&url).header("traceparent", &traceparent)
            })
            .await?;
        let field = |name: &str| answer[name].as_i64().and_then(|v| i32::try_from(v).ok());
        match (field("latest_version"), field("min_decryption_version")) {
            (Some(latest), Some(min)) => Ok((latest, min)),
            _ => Err(VaultFailure::Unavailable("malformed vault answer".to_owned())),
        }
    }

    /// Re-seals each `(ciphertext, context)` under the newest DEK; never returns plaintext.
    pub async fn rewrap(
        &self,
        keyring: &str,
        items: &[(&str, &str)],
    ) -> Result<Vec<Result<(String, i32), String>>, VaultFailure> {
        let body: Vec<Value> =
            items.iter().map(|(c, ctx)| json!({"ciphertext": c, "context": ctx})).collect();
        let answer =
            self.post("/v1/rewrap", &json!({"keyring": keyring, "items": body}), true).await?;
        let items = answer["items"]
            .as_array()
            .ok_or_else(|| VaultFailure::Unavailable("malformed vault answer".to_owned()))?;
        Ok(items
            .iter()
            .map(|i| match (i["ciphertext"].as_str(), i["dek_version"].as_i64()) {
                (Some(c), Some(v)) => Ok((c.to_owned(), i32::try_from(v).unwrap_or(i32::MAX))),
                _ => Err(i["error"]["code"].as_str().unwrap_or("UNKNOWN").to_owned()),
            })
            .collect())
    }

    /// Sets `min_decryption_version` (operator identity only).
    pub async fn set_min_decryption_version(
        &self,
        keyring: &str,
        version: i32,
    ) -> Result<(), VaultFailure> {
        self.post_to(
            "/v1/keyrings/{keyring}/config",
            &format!("/v1/keyrings/{keyring}/config"),
            &json!({"min_decryption_version": version}),
            true,
        )
        .await
        .map(drop)
    }
}

/// What a whole answer means. A vault that answers but cannot serve (its database is down, a
/// proxy in front of it has no backend) is unavailable, as an unreachable one is.
fn interpret(status: u16, locked: bool, body: &[u8]) -> Result<Value, VaultFailure> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if status == 200 {
        return parsed
            .ok_or_else(|| VaultFailure::Unavailable("malformed vault answer".to_owned()));
    }
    let body = parsed.unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().unwrap_or("UNKNOWN").to_owned();
    Err(match (status, code.as_str()) {
        (503, _) if locked => VaultFailure::Locked,
        (_, "VAULT_LOCKED") => VaultFailure::Locked,
        (_, "KEYRING_DELETED") => VaultFailure::KeyringDeleted,
        (_, "KEYRING_NOT_FOUND") => VaultFailure::KeyringNotFound,
        (502..=504, _) => VaultFailure::Unavailable(format!("the vault answered {status} {code}")),
        _ => VaultFailure::Refused { status, code },
    })
}

fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(e) = source {
            text.push_str(&format!(": {e}"));
            source = e.source();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker { threshold: 3, cooldown: Duration::from_secs(60), state: Mutex::new((0, None)) }
    }

    #[test]
    fn the_breaker_opens_after_its_threshold_and_lets_one_probe_through_after_the_cooldown() {
        let b = breaker();
        for _ in 0..2 {
            b.failure();
            assert!(b.admit().is_ok(), "below the threshold the circuit stays closed");
        }
        b.failure();
        assert!(b.admit().is_err(), "open at the threshold");
        // The cooldown has passed: one caller probes, the others still fail fast.
        b.state.lock().unwrap().1 = Some(Instant::now() - Duration::from_millis(1));
        assert!(b.admit().is_ok(), "the probe");
        assert!(b.admit().is_err(), "a second caller while the probe runs");
        b.success();
        assert!(b.admit().is_ok() && b.admit().is_ok(), "a good probe closes the circuit");
        // A failed probe re-opens it at once.
        b.state.lock().unwrap().1 = Some(Instant::now() - Duration::from_millis(1));
        b.state.lock().unwrap().0 = 3;
        assert!(b.admit().is_ok(), "the probe");
        b.failure();
        assert!(b.state.lock().unwrap().0 >= 3, "a failed probe counts to the threshold at once");
        assert!(b.admit().is_err(), "still open after a failed probe");
    }

    #[test]
    fn answers_are_read_by_status_and_code() {
        assert_eq!(interpret(200, false, b"{\"a\":1}"), Ok(json!({"a": 1})));
        assert!(matches!(interpret(200, false, b"{\"a\""), Err(VaultFailure::Unavailable(_))));
        let code = |c: &str| format!("{{\"error\":{{\"code\":\"{c}\"}}}}").into_bytes();
        assert!(matches!(
            interpret(503, false, &code("DATABASE_UNAVAILABLE")),
            Err(VaultFailure::Unavailable(_))
        ));
        assert!(matches!(interpret(502, false, b"bad gateway"), Err(VaultFailure::Unavailable(_))));
        assert_eq!(interpret(503, true, &code("VAULT_LOCKED")), Err(VaultFailure::Locked));
        assert_eq!(
            interpret(404, false, &code("KEYRING_NOT_FOUND")),
            Err(VaultFailure::KeyringNotFound)
        );
        assert_eq!(
            interpret(400, false, &code("INVALID_INPUT")),
            Err(VaultFailure::Refused { status: 400, code: "INVALID_INPUT".to_owned() })
        );
    }
}
