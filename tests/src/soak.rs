//! A bounded soak: the real binaries under minutes of mixed traffic, with a keyring rotation, a
//! KEK rotation and a rewrap in the middle, and short outages injected on every link by
//! [`FaultProxy`]s. It counts every error by code, samples each service's RSS and open file
//! descriptors, and reports verifyKey's p50 and p99 per period.
//!
//! `ops/soak` runs it for five minutes of one-minute periods; `ops/test` runs a one-minute
//! version with ten-second periods (`tests/tests/soak.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use crate::fault::{Fault, FaultProxy, through, upstream_of};
use crate::{SERVER_KEY, ServiceProcess, TestDb, TestPki, send, vault_env};

/// How long, and how hard.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The whole run.
    pub length: Duration,
    /// One reporting period (p50/p99 and samples are per period).
    pub period: Duration,
    /// Concurrent clients.
    pub clients: usize,
    /// How long each injected outage lasts.
    pub outage: Duration,
}

impl Settings {
    /// Five minutes in one-minute periods: `ops/soak`.
    pub fn full() -> Self {
        Self {
            length: Duration::from_secs(300),
            period: Duration::from_secs(60),
            clients: 8,
            outage: Duration::from_secs(3),
        }
    }

    /// One minute in ten-second periods: `ops/test`.
    pub fn short() -> Self {
        Self {
            length: Duration::from_secs(60),
            period: Duration::from_secs(10),
            clients: 4,
            outage: Duration::from_secs(2),
        }
    }
}

/// One period's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Period {
    /// Seconds from the start at which the period began.
    pub start_s: u64,
    /// verifyKey calls answered in the period.
    pub verifies: usize,
    /// Median verifyKey latency, ms.
    pub verify_p50_ms: f64,
    /// 99th-percentile verifyKey latency, ms.
    pub verify_p99_ms: f64,
    /// Mean resident set of the api and the vault, KiB.
    pub rss_kib: [u64; 2],
    /// Most open file descriptors seen of the api and the vault.
    pub fds: [u64; 2],
}

/// What a soak saw.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Requests made.
    pub requests: u64,
    /// Every failed request by `"<status> <code>"`, expected or not.
    pub errors: BTreeMap<String, u64>,
    /// Failures outside an outage (and its grace), or wrong answers, by the same key.
    pub unexpected: BTreeMap<String, u64>,
    /// Per period.
    pub periods: Vec<Period>,
    /// What happened when, seconds from the start.
    pub events: Vec<(u64, String)>,
    /// Stored ciphertexts still below their keyring's newest version at the end.
    pub rewrap_remaining: i64,
}

impl Report {
    /// Zero unexpected errors, a finished rewrap, and RSS and file descriptors flat (last
    /// period against the first: at most 1.3× + 16 MiB of RSS, 32 more descriptors).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.unexpected.is_empty() {
            problems.push(format!("unexpected errors: {:?}", self.unexpected));
        }
        if self.rewrap_remaining != 0 {
            problems.push(format!("{} stored keys were not rewrapped", self.rewrap_remaining));
        }
        if let (Some(first), Some(last)) = (self.periods.first(), self.periods.last()) {
            for (i, name) in ["api", "vault"].iter().enumerate() {
                let limit = first.rss_kib[i] * 13 / 10 + 16 * 1024;
                if last.rss_kib[i] > limit {
                    problems.push(format!(
                        "{name} RSS grew from {} KiB to {} KiB",
                        first.rss_kib[i], last.rss_kib[i]
                    ));
                }
                if last.fds[i] > first.fds[i] + 32 {
                    problems.push(format!(
                        "{name} file descriptors grew from {} to {}",
                        first.fds[i], last.fds[i]
                    ));
                }
            }
        }
        problems
    }

    /// A table for people.
    pub fn render(&self) -> String {
        let mut out = format!("requests: {}\nerrors by code:", self.requests);
        if self.errors.is_empty() {
            out.push_str(" none");
        }
        for (code, n) in &self.errors {
            let bad = self.unexpected.get(code).copied().unwrap_or(0);
            out.push_str(&format!("\n  {code}: {n} ({bad} unexpected)"));
        }
        out.push_str("\nevents:");
        for (at, what) in &self.events {
            out.push_str(&format!("\n  {at:>4} s  {what}"));
        }
        out.push_str(
            "\nperiod  verifies  p50 ms  p99 ms  api RSS MiB  vault RSS MiB  api fds  vault fds",
        );
        for p in &self.periods {
            out.push_str(&format!(
                "\n{:>4} s  {:>8}  {:>6.2}  {:>6.2}  {:>11.1}  {:>13.1}  {:>7}  {:>9}",
                p.start_s,
                p.verifies,
                p.verify_p50_ms,
                p.verify_p99_ms,
                p.rss_kib[0] as f64 / 1024.0,
                p.rss_kib[1] as f64 / 1024.0,
                p.fds[0],
                p.fds[1]
            ));
        }
        out.push_str(&format!("\nrewrap remaining: {}", self.rewrap_remaining));
        out
    }
}

#[derive(Default)]
struct Tally {
    requests: u64,
    /// `(when, "<status> <code>")` of each failure.
    failures: Vec<(Duration, String)>,
    wrong: Vec<String>,
    /// `(when, latency)` of each answered verifyKey.
    verifies: Vec<(Duration, Duration)>,
}

struct Services {
    api: ServiceProcess,
    vault: ServiceProcess,
    api_url: String,
    vault_url: String,
    pki: Arc<TestPki>,
    to_vault: FaultProxy,
    api_pg: FaultProxy,
    vault_pg: FaultProxy,
    api_db: TestDb,
    _vault_db: TestDb,
    root: String,
}

async fn start() -> Services {
    let (api_db, vault_db) = (TestDb::new().await, TestDb::new().await);
    let pki = TestPki::new();
    let vault_pg = FaultProxy::start(upstream_of(vault_db.url())).await;
    let mut env: HashMap<String, String> = vault_env(&vault_db, &pki).into_iter().collect();
    env.insert("STRONGBOX_VAULT__DATABASE__URL".into(), through(vault_db.url(), &vault_pg));
    env.insert("STRONGBOX_VAULT__LOG__FILTER".into(), "info".into());
    let mut vault = ServiceProcess::start("strongbox-vault", &["serve"], &env);
    let ready = vault.wait_for_message("strongbox-vault ready to serve").await;
    let port: u16 = ready["main"].as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap();
    let vault_url = format!("https://localhost:{port}");
    let (status, body) = send(
        pki.client("operator"),
        reqwest::Method::POST,
        &format!("{vault_url}/v1/sys/initialize"),
        Some(json!({"key": SERVER_KEY})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let to_vault = FaultProxy::start(([127, 0, 0, 1], port).into()).await;
    let api_pg = FaultProxy::start(upstream_of(api_db.url())).await;
    let mut env = crate::stack::api_env(
        &through(api_db.url(), &api_pg),
        &format!("https://localhost:{}", to_vault.port()),
        &pki,
    );
    env.insert("STRONGBOX_API__LOG__FILTER".to_owned(), "info".to_owned());
    let mut api = ServiceProcess::start("strongbox-api", &["serve"], &env);
    let ready = api.wait_for_message("strongbox-api ready to serve").await;
    let api_url = format!("http://{}", ready["public"].as_str().unwrap());
    let made = strongbox_api::bootstrap(
        &strongbox_shared::db::DatabaseConfig::from_url(api_db.url()),
        "soak",
    )
    .await
    .unwrap();
    Services {
        api,
        vault,
        api_url,
        vault_url,
        pki,
        to_vault,
        api_pg,
        vault_pg,
        api_db,
        _vault_db: vault_db,
        root: made.root_key,
    }
}

impl Services {
    async fn call(&self, client: &reqwest::Client, name: &str, body: Value) -> (u16, Value) {
        let sent =
            client.post(format!("{}/v2/{name}", self.api_url)).bearer_auth(&self.root).json(&body);
        match sent.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    async fn ok(&self, client: &reqwest::Client, name: &str, body: Value) -> Value {
        let (status, answer) = self.call(client, name, body).await;
        assert_eq!(status, 200, "{name}: {answer}");
        answer["data"].clone()
    }

    async fn operator(&self, path: &str) -> (u16, Value) {
        send(
            self.pki.client("operator"),
            reqwest::Method::POST,
            &format!("{}{path}", self.vault_url),
            Some(json!({})),
        )
        .await
    }

    fn vault_client(&self) -> strongbox_api::vault_client::VaultClient {
        use strongbox_api::vault_client::{VaultClient, VaultClientConfig};
        VaultClient::new(&VaultClientConfig {
            url: format!("https://localhost:{}", self.to_vault.port()),
            ca: self.pki.path("ca.pem"),
            cert: self.pki.path("api.pem"),
            key: self.pki.path("api-key.pem"),
            connect_timeout_ms: 1_000,
            request_timeout_ms: 5_000,
            retries: 2,
            breaker_failures: 5,
            breaker_cooldown_ms: 1_000,
            reload_interval_seconds: 60,
        })
        .unwrap()
    }
}

/// `(resident KiB, open descriptors)` of process `pid`.
fn sample(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    (rss, u64::try_from(fds).unwrap_or(0))
}

/// One sample: when, then `(RSS KiB, descriptors)` of the api and of the vault.
type Sample = (Duration, (u64, u64), (u64, u64));

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Runs one soak and reports it.
pub async fn run(settings: Settings) -> Report {
    let services = Arc::new(start().await);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let plain_api = services.ok(&client, "apis.createApi", json!({"name": "plain"})).await["apiId"]
        .as_str()
        .unwrap()
        .to_owned();
    let recoverable_api =
        services.ok(&client, "apis.createApi", json!({"name": "recoverable"})).await["apiId"]
            .as_str()
            .unwrap()
            .to_owned();
    services
        .ok(
            &client,
            "apis.updateApi",
            json!({"apiId": recoverable_api, "storeEncryptedKeys": true}),
        )
        .await;
    let mut keys = Vec::new();
    for i in 0..40 {
        let (api, recoverable) =
            if i % 2 == 0 { (&plain_api, false) } else { (&recoverable_api, true) };
        let data = services
            .ok(&client, "keys.createKey", json!({"apiId": api, "recoverable": recoverable}))
            .await;
        keys.push((
            data["keyId"].as_str().unwrap().to_owned(),
            data["key"].as_str().unwrap().to_owned(),
            recoverable,
        ));
    }
    let keys = Arc::new(keys);

    let started = Instant::now();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..settings.clients {
        let (services, client, keys, tally, stop) =
            (services.clone(), client.clone(), keys.clone(), tally.clone(), stop.clone());
        let (plain_api, recoverable_api) = (plain_api.clone(), recoverable_api.clone());
        workers.push(tokio::spawn(async move {
            let mut i = w * 7;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let (id, key, recoverable) = &keys[i % keys.len()];
                // Seven verifications in ten calls; then creates, plain and recoverable, and a
                // decrypt.
                let (name, body) = match i % 10 {
                    0 => ("keys.createKey", json!({"apiId": plain_api})),
                    1 => ("keys.createKey", json!({"apiId": recoverable_api, "recoverable": true})),
                    2 => {
                        let (id, _, _) = &keys[(i / 2 * 2 + 1) % keys.len()];
                        ("keys.getKey", json!({"keyId": id, "decrypt": true}))
                    }
                    _ => ("keys.verifyKey", json!({"key": key})),
                };
                let at = started.elapsed();
                let (status, answer) = services.call(&client, name, body).await;
                let took = started.elapsed() - at;
                let mut tally = tally.lock().unwrap();
                tally.requests += 1;
                if status != 200 {
                    let code = answer["error"]["code"].as_str().unwrap_or("NO_ANSWER");
                    tally.failures.push((at, format!("{status} {code}")));
                    continue;
                }
                let data = &answer["data"];
                match name {
                    "keys.verifyKey" => {
                        tally.verifies.push((at, took));
                        if data["valid"] != true {
                            tally.wrong.push(format!("verifyKey said {data} for {id}"));
                        }
                    }
                    "keys.getKey" => {
                        let (_, expected, _) = &keys[(i / 2 * 2 + 1) % keys.len()];
                        if data["plaintext"] != expected.as_str() {
                            tally.wrong.push("getKey returned a wrong plaintext".to_owned());
                        }
                    }
                    _ if data["key"].as_str().is_none() => {
                        tally.wrong.push(format!("createKey answered {data}"));
                    }
                    _ => {}
                }
                let _ = recoverable;
            }
        }));
    }

    // Samples of (when, api, vault) every second.
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (samples, stop) = (samples.clone(), stop.clone());
        let pids = (services.api.pid(), services.vault.pid());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let at = started.elapsed();
                samples.lock().unwrap().push((at, sample(pids.0), sample(pids.1)));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    // The schedule, as fractions of the run.
    let mut events = Vec::new();
    let mut outages: Vec<(Duration, Duration)> = Vec::new();
    let at = |fraction: f64| settings.length.mul_f64(fraction);
    let until = |when: Duration| async move {
        if let Some(wait) = when.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    };
    let note = |events: &mut Vec<(u64, String)>, what: String| {
        events.push((started.elapsed().as_secs(), what));
    };

    until(at(0.15)).await;
    note(&mut events, "outage: api → vault black-holed".to_owned());
    outage(&services.to_vault, Fault::BlackHole, settings.outage, &mut outages, started).await;

    until(at(0.30)).await;
    let (status, body) = services.operator("/v1/keyrings/rotate").await;
    note(&mut events, format!("keyring rotation: {status}"));
    assert_eq!(status, 200, "{body}");
    until(at(0.35)).await;
    let (status, body) = services.operator("/v1/sys/rotate").await;
    note(&mut events, format!("KEK rotation: {status}"));
    assert_eq!(status, 200, "{body}");

    until(at(0.40)).await;
    let database = strongbox_shared::db::DatabaseConfig::from_url(services.api_db.url());
    let rewrap = {
        let (services, database) = (services.clone(), database.clone());
        tokio::spawn(async move {
            let vault = services.vault_client();
            let mut attempts = 0;
            loop {
                attempts += 1;
                let ran = strongbox_api::rewrap::run(
                    &database,
                    &vault,
                    None,
                    10,
                    true,
                    &mut |_, _, _| {},
                )
                .await;
                match ran {
                    Ok(outcomes) => {
                        return (attempts, outcomes.iter().map(|o| o.moved).sum::<u64>());
                    }
                    Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            }
        })
    };
    note(&mut events, "rewrap started".to_owned());

    until(at(0.55)).await;
    note(&mut events, "outage: api → Postgres refused and cut".to_owned());
    services.api_pg.cut();
    outage(&services.api_pg, Fault::Refuse, settings.outage, &mut outages, started).await;

    until(at(0.70)).await;
    note(&mut events, "outage: vault → Postgres black-holed".to_owned());
    outage(&services.vault_pg, Fault::BlackHole, settings.outage, &mut outages, started).await;

    until(at(0.85)).await;
    let cut_at = started.elapsed();
    for proxy in [&services.to_vault, &services.api_pg, &services.vault_pg] {
        proxy.cut();
    }
    outages.push((cut_at, started.elapsed()));
    note(&mut events, "every link cut once".to_owned());

    let (attempts, moved) = rewrap.await.unwrap();
    note(&mut events, format!("rewrap done: {moved} rows in {attempts} attempt(s)"));
    until(settings.length).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    sampler.await.unwrap();

    let remaining: i64 = {
        let db = services.api_db.client().await;
        let rows = db
            .query("SELECT keyring, max(dek_version) FROM encrypted_keys GROUP BY keyring", &[])
            .await
            .unwrap();
        let vault = services.vault_client();
        let mut remaining = 0;
        for row in rows {
            let keyring: String = row.get(0);
            let (latest, _) = vault.versions(&keyring).await.unwrap();
            let below: i64 = db
                .query_one(
                    "SELECT count(*) FROM encrypted_keys WHERE keyring = $1 AND dek_version < $2",
                    &[&keyring, &latest],
                )
                .await
                .unwrap()
                .get(0);
            remaining += below;
        }
        remaining
    };

    let tally = std::mem::take(&mut *tally.lock().unwrap());
    // A failure is expected during an outage and for a grace after it: the circuit breaker's
    // cooldown and a pool's reconnect backoff.
    let grace = Duration::from_secs(8);
    let mut errors = BTreeMap::new();
    let mut unexpected = BTreeMap::new();
    for (at, code) in &tally.failures {
        *errors.entry(code.clone()).or_insert(0) += 1;
        let covered = outages
            .iter()
            .any(|(from, to)| *at + Duration::from_millis(100) >= *from && *at <= *to + grace);
        let kind = code == "503 VAULT_UNAVAILABLE" || code == "503 DATABASE_UNAVAILABLE";
        if !(covered && kind) {
            *unexpected.entry(code.clone()).or_insert(0) += 1;
        }
    }
    for wrong in &tally.wrong {
        *errors.entry("WRONG_ANSWER".to_owned()).or_insert(0) += 1;
        *unexpected.entry("WRONG_ANSWER".to_owned()).or_insert(0) += 1;
        eprintln!("soak: {wrong}");
    }

    let samples = samples.lock().unwrap().clone();
    let count = (settings.length.as_secs_f64() / settings.period.as_secs_f64()).ceil() as u32;
    let periods = (0..count)
        .map(|n| {
            let from = settings.period * n;
            let to = from + settings.period;
            let within = |t: &Duration| *t >= from && *t < to;
            let mut latencies: Vec<Duration> =
                tally.verifies.iter().filter(|(t, _)| within(t)).map(|(_, d)| *d).collect();
            latencies.sort();
            let here: Vec<_> = samples.iter().filter(|(t, _, _)| within(t)).collect();
            let mean = |f: &dyn Fn(&Sample) -> u64| {
                let n = u64::try_from(here.len().max(1)).unwrap_or(1);
                here.iter().map(|s| f(s)).sum::<u64>() / n
            };
            let most = |f: &dyn Fn(&Sample) -> u64| here.iter().map(|s| f(s)).max().unwrap_or(0);
            Period {
                start_s: from.as_secs(),
                verifies: latencies.len(),
                verify_p50_ms: percentile(&latencies, 0.50),
                verify_p99_ms: percentile(&latencies, 0.99),
                rss_kib: [mean(&|s| s.1.0), mean(&|s| s.2.0)],
                fds: [most(&|s| s.1.1), most(&|s| s.2.1)],
            }
        })
        .collect();

    Report {
        requests: tally.requests,
        errors,
        unexpected,
        periods,
        events,
        rewrap_remaining: remaining,
    }
}

/// Puts `fault` on `proxy` for `length`, noting the window.
async fn outage(
    proxy: &FaultProxy,
    fault: Fault,
    length: Duration,
    outages: &mut Vec<(Duration, Duration)>,
    started: Instant,
) {
    let from = started.elapsed();
    proxy.set(fault);
    tokio::time::sleep(length).await;
    proxy.set(Fault::Pass);
    outages.push((from, started.elapsed()));
}
