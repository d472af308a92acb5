//! Network faults between the parts while traffic flows. A [`FaultProxy`] sits on each link
//! (api → vault, api → Postgres, vault → Postgres) and delays, refuses, black-holes and cuts
//! connections under concurrent verify, create, recoverable create and decrypt.
//!
//! For every fault on every link: verifyKey never notices a vault fault; no answer is wrong and
//! no recoverable key exists without its ciphertext; a failure is a 503 with its stable code,
//! in bounded time; and once the link heals, everything works again with no restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strongbox_tests::fault::{Fault, FaultProxy, through, upstream_of};
use strongbox_tests::stack::scrape;
use strongbox_tests::{TestApi, TestDb, TestVault, eventually, spawn_api_with_vault, spawn_vault};

/// Each service's database timeouts in these tests, ms: a connection that owes an answer this
/// long is closed, and a request waits this long for a connection.
const DB_TIMEOUT_MS: &str = "1000";
/// The api's longest vault call, retries included: above the vault's database timeout, so the
/// vault's own 503 arrives before the api gives up.
const VAULT_TIMEOUT_MS: &str = "2000";
/// The slowest any request may be, fault or not: about the timeouts a request can meet in a row
/// (a connection wait, a connect, a statement, a vault call). The black hole lasts longer, so a
/// request that waited it out instead of timing out fails the test.
const BOUND: Duration = Duration::from_secs(5);
const BLACK_HOLE: Duration = Duration::from_secs(7);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Verify,
    VerifyRecoverable,
    Create,
    CreateRecoverable,
    Decrypt,
}

const OPS: [Op; 5] =
    [Op::Verify, Op::VerifyRecoverable, Op::Create, Op::CreateRecoverable, Op::Decrypt];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Vault,
    ApiDatabase,
    VaultDatabase,
}

impl Link {
    /// The one code a failed request may carry while this link is faulty.
    fn code(self) -> &'static str {
        match self {
            Self::Vault | Self::VaultDatabase => "VAULT_UNAVAILABLE",
            Self::ApiDatabase => "DATABASE_UNAVAILABLE",
        }
    }

    /// Whether `op` needs this link at all (if not, it must not fail).
    fn touches(self, op: Op) -> bool {
        match self {
            Self::ApiDatabase => true,
            Self::Vault | Self::VaultDatabase => matches!(op, Op::CreateRecoverable | Op::Decrypt),
        }
    }
}

#[derive(Debug)]
struct Seen {
    op: Op,
    status: u16,
    code: String,
    took: Duration,
}

struct Rig {
    api: TestApi,
    vault: TestVault,
    to_vault: FaultProxy,
    api_pg: FaultProxy,
    vault_pg: FaultProxy,
    root: String,
    plain_api: String,
    recoverable_api: String,
    /// A plain key and a recoverable key `(id, key)` made before any fault.
    plain_key: String,
    recoverable_key: (String, String),
    api_db: TestDb,
    _vault_db: TestDb,
}

impl Rig {
    async fn start() -> Self {
        let (api_db, vault_db) = (TestDb::new().await, TestDb::new().await);
        let vault_pg = FaultProxy::start(upstream_of(vault_db.url())).await;
        let vault_url = through(vault_db.url(), &vault_pg);
        let vault = spawn_vault(
            &vault_db,
            &[
                ("STRONGBOX_VAULT__DATABASE__URL", vault_url.as_str()),
                ("STRONGBOX_VAULT__DATABASE__QUERY_TIMEOUT_MS", DB_TIMEOUT_MS),
                ("STRONGBOX_VAULT__DATABASE__ACQUIRE_TIMEOUT_MS", DB_TIMEOUT_MS),
                ("STRONGBOX_VAULT__DATABASE__CONNECT_TIMEOUT_MS", "500"),
            ],
        )
        .await;
        vault.initialize().await;
        let vault_port: u16 = vault.url.rsplit(':').next().unwrap().parse().unwrap();
        let to_vault = FaultProxy::start(([127, 0, 0, 1], vault_port).into()).await;
        let api_pg = FaultProxy::start(upstream_of(api_db.url())).await;
        let (vault_link, api_url) =
            (format!("https://localhost:{}", to_vault.port()), through(api_db.url(), &api_pg));
        let api = spawn_api_with_vault(
            &api_db,
            &vault,
            &[
                ("STRONGBOX_API__VAULT__URL", vault_link.as_str()),
                ("STRONGBOX_API__VAULT__REQUEST_TIMEOUT_MS", VAULT_TIMEOUT_MS),
                ("STRONGBOX_API__VAULT__CONNECT_TIMEOUT_MS", "500"),
                ("STRONGBOX_API__VAULT__BREAKER_COOLDOWN_MS", "300"),
                ("STRONGBOX_API__DATABASE__URL", api_url.as_str()),
                ("STRONGBOX_API__DATABASE__QUERY_TIMEOUT_MS", DB_TIMEOUT_MS),
                ("STRONGBOX_API__DATABASE__ACQUIRE_TIMEOUT_MS", DB_TIMEOUT_MS),
                ("STRONGBOX_API__DATABASE__CONNECT_TIMEOUT_MS", "500"),
            ],
        )
        .await;
        let root = api.workspace("faults").await;
        let plain_api = api.create_api(&root, "plain").await;
        let recoverable_api = api.create_api(&root, "recoverable").await;
        api.ok(
            &root,
            "apis.updateApi",
            json!({"apiId": recoverable_api, "storeEncryptedKeys": true}),
        )
        .await;
        let (_, plain_key) = api.create_key(&root, &plain_api, json!({})).await;
        let recoverable_key =
            api.create_key(&root, &recoverable_api, json!({"recoverable": true})).await;
        assert!(to_vault.accepted() > 0, "the api reaches the vault through its proxy");
        assert!(api_pg.accepted() > 0 && vault_pg.accepted() > 0, "both databases are proxied");
        Self {
            api,
            vault,
            to_vault,
            api_pg,
            vault_pg,
            root,
            plain_api,
            recoverable_api,
            plain_key,
            recoverable_key,
            api_db,
            _vault_db: vault_db,
        }
    }

    fn proxy(&self, link: Link) -> &FaultProxy {
        match link {
            Link::Vault => &self.to_vault,
            Link::ApiDatabase => &self.api_pg,
            Link::VaultDatabase => &self.vault_pg,
        }
    }

    /// Runs `op` once; checks a success is right; returns what was seen, and a made key.
    async fn run(&self, op: Op) -> (Seen, Option<(String, String, bool)>) {
        let (call, body) = match op {
            Op::Verify => ("keys.verifyKey", json!({"key": self.plain_key})),
            Op::VerifyRecoverable => ("keys.verifyKey", json!({"key": self.recoverable_key.1})),
            Op::Create => ("keys.createKey", json!({"apiId": self.plain_api})),
            Op::CreateRecoverable => {
                ("keys.createKey", json!({"apiId": self.recoverable_api, "recoverable": true}))
            }
            Op::Decrypt => {
                ("keys.getKey", json!({"keyId": self.recoverable_key.0, "decrypt": true}))
            }
        };
        let started = Instant::now();
        let (status, answer) = call_api(&self.api, &self.root, call, body).await;
        let took = started.elapsed();
        let code = answer["error"]["code"].as_str().unwrap_or_default().to_owned();
        let mut made = None;
        if status == 200 {
            let data = &answer["data"];
            match op {
                Op::Verify | Op::VerifyRecoverable => {
                    assert_eq!(data["valid"], true, "a wrong verification: {answer}");
                }
                Op::Decrypt => {
                    assert_eq!(data["plaintext"], self.recoverable_key.1, "a wrong plaintext");
                }
                Op::Create | Op::CreateRecoverable => {
                    let (id, key) = (data["keyId"].as_str(), data["key"].as_str());
                    made = Some((
                        id.unwrap().to_owned(),
                        key.unwrap().to_owned(),
                        op == Op::CreateRecoverable,
                    ));
                }
            }
        }
        (Seen { op, status, code, took }, made)
    }
}

/// `POST /v2/<call>`; a request that gets no answer at all within a minute is status 0.
async fn call_api(api: &TestApi, root: &str, call: &str, body: Value) -> (u16, Value) {
    let client =
        reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().unwrap();
    let sent = client.post(format!("{}/v2/{call}", api.url)).bearer_auth(root).json(&body).send();
    match sent.await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// Concurrent traffic of every kind until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    made: Arc<Mutex<Vec<(String, String, bool)>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(rig: &Arc<Rig>, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let made = Arc::new(Mutex::new(Vec::new()));
        let workers = (0..workers)
            .map(|w| {
                let (rig, stop, seen, made) =
                    (rig.clone(), stop.clone(), seen.clone(), made.clone());
                tokio::spawn(async move {
                    let mut i = w;
                    while !stop.load(Ordering::Relaxed) {
                        let (one, key) = rig.run(OPS[i % OPS.len()]).await;
                        seen.lock().unwrap().push(one);
                        made.lock().unwrap().extend(key);
                        i += 1;
                    }
                })
            })
            .collect();
        Self { stop, seen, made, workers }
    }

    /// What was seen since the last call.
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    async fn stop(self) -> Vec<(String, String, bool)> {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.await.unwrap();
        }
        std::mem::take(&mut *self.made.lock().unwrap())
    }
}

/// Every kind of call succeeds again.
async fn recovered(rig: &Rig, after: &str) {
    eventually(
        Duration::from_secs(30),
        &format!("every call to work again after {after}"),
        || async {
            for op in OPS {
                if rig.run(op).await.0.status != 200 {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}

/// Checks what traffic saw while `link` was faulty; `bites` says the fault must have failed some
/// requests (so the test cannot pass with the fault not in the path).
fn judge(link: Link, fault: &str, seen: &[Seen], bites: bool) {
    assert!(!seen.is_empty(), "{fault} on {link:?}: no traffic ran");
    let failed = seen.iter().filter(|s| s.status != 200).count();
    eprintln!("{fault} on {link:?}: {} requests, {failed} failed", seen.len());
    assert!(!bites || failed > 0, "{fault} on {link:?} failed nothing");
    for one in seen {
        let what = format!("{fault} on {link:?}: {one:?}");
        assert!(one.took <= BOUND, "a request hung: {what}");
        if one.status == 200 {
            continue;
        }
        assert!(link.touches(one.op), "a call that does not need the link failed: {what}");
        assert_eq!((one.status, one.code.as_str()), (503, link.code()), "{what}");
    }
}

async fn faults_on(link: Link) {
    let rig = Arc::new(Rig::start().await);
    let load = Load::start(&rig, 6);
    let proxy = rig.proxy(link);
    // Traffic first flows cleanly.
    eventually(Duration::from_secs(10), "clean traffic", || async {
        (rig.load_seen(&load) >= 20).then_some(())
    })
    .await;
    judge(link, "no fault", &load.take(), false);

    let phases: [(&str, Fault, Duration); 3] = [
        ("a 200 ms delay", Fault::Delay(Duration::from_millis(200)), Duration::from_secs(2)),
        ("refused connections", Fault::Refuse, Duration::from_secs(2)),
        ("a black hole", Fault::BlackHole, BLACK_HOLE),
    ];
    for (name, fault, length) in phases {
        proxy.set(fault);
        if fault == Fault::Refuse {
            // Open connections go too, so refusals are met at once.
            proxy.cut();
        }
        tokio::time::sleep(length).await;
        proxy.set(Fault::Pass);
        recovered(&rig, name).await;
        judge(link, name, &load.take(), matches!(fault, Fault::Refuse | Fault::BlackHole));
    }

    // Connections cut again and again, mid-request and mid-response.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    recovered(&rig, "cut connections").await;
    judge(link, "cut connections", &load.take(), false);
    let made = load.stop().await;

    check_after(&rig, &made).await;
}

impl Rig {
    fn load_seen(&self, load: &Load) -> usize {
        load.seen.lock().unwrap().len()
    }
}

/// After the faults: both services serve as before without a restart, the circuit is closed,
/// and every key a client was given works; no recoverable key lacks its ciphertext.
async fn check_after(rig: &Rig, made: &[(String, String, bool)]) {
    for url in [&rig.api.ops_url, &rig.vault.ops_url] {
        eventually(Duration::from_secs(10), "ready again", || async {
            let response = strongbox_tests::http_client().get(format!("{url}/readyz")).send().await;
            response.is_ok_and(|r| r.status() == 200).then_some(())
        })
        .await;
    }
    let metrics = scrape(&rig.api.ops_url).await;
    assert_eq!(metrics.get("strongbox_vault_client_breaker_state"), Some(&0.0), "circuit closed");

    let bare: i64 = rig
        .api_db
        .one(
            "SELECT count(*) FROM keys k WHERE k.api_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM encrypted_keys e WHERE e.key_id = k.id)",
            &[&rig.recoverable_api],
        )
        .await;
    assert_eq!(bare, 0, "a recoverable key without its ciphertext");
    assert!(made.iter().any(|m| m.2), "some recoverable keys were made under faults");
    for (id, key, recoverable) in made {
        let verified = rig.api.verify(&rig.root, key, json!({})).await;
        assert_eq!(verified["valid"], true, "{id}");
        if *recoverable {
            let got =
                rig.api.ok(&rig.root, "keys.getKey", json!({"keyId": id, "decrypt": true})).await;
            assert_eq!(got["plaintext"], key.as_str(), "{id}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_between_the_api_and_the_vault() {
    faults_on(Link::Vault).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_between_the_api_and_its_database() {
    faults_on(Link::ApiDatabase).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_between_the_vault_and_its_database() {
    faults_on(Link::VaultDatabase).await;
}

/// A client of the vault through the rig's proxy, as the rewrap job's identity.
fn rewrap_client(rig: &Rig) -> strongbox_api::vault_client::VaultClient {
    use strongbox_api::vault_client::{VaultClient, VaultClientConfig};
    VaultClient::new(&VaultClientConfig {
        url: format!("https://localhost:{}", rig.to_vault.port()),
        ca: rig.vault.pki.path("ca.pem"),
        cert: rig.vault.pki.path("api.pem"),
        key: rig.vault.pki.path("api-key.pem"),
        connect_timeout_ms: 500,
        request_timeout_ms: 2_000,
        retries: 1,
        breaker_failures: 5,
        breaker_cooldown_ms: 300,
        reload_interval_seconds: 60,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrap_cut_off_from_the_vault_resumes_once_the_link_heals() {
    use strongbox_api::rewrap::{self, RewrapError};
    let rig = Rig::start().await;
    let mut keys = Vec::new();
    for _ in 0..30 {
        let made =
            rig.api.create_key(&rig.root, &rig.recoverable_api, json!({"recoverable": true}));
        keys.push(made.await);
    }
    let keyring: String = rig.api_db.one("SELECT keyring FROM encrypted_keys LIMIT 1", &[]).await;
    // The rig's own recoverable key is there too.
    let total: i64 = rig.api_db.one("SELECT count(*) FROM encrypted_keys", &[]).await;
    let (status, body) =
        rig.vault.post("operator", &format!("/v1/keyrings/{keyring}/rotate"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let database = strongbox_shared::db::DatabaseConfig::from_url(rig.api_db.url());
    let vault = rewrap_client(&rig);

    // The link goes dark after the first batches.
    let mut cut_at = None;
    let mut progress = |_: &str, done: u64, _: i64| {
        if done >= 10 && cut_at.is_none() {
            rig.to_vault.set(Fault::BlackHole);
            cut_at = Some(Instant::now());
        }
    };
    let first = rewrap::run(&database, &vault, None, 5, true, &mut progress).await;
    let cut_at = cut_at.expect("the fault began mid-run");
    assert!(matches!(first, Err(RewrapError::Vault(_))), "{first:?}");
    assert!(cut_at.elapsed() <= BOUND, "the run gave up in bounded time");
    let moved_before: i64 =
        rig.api_db.one("SELECT count(*) FROM encrypted_keys WHERE dek_version = 2", &[]).await;
    assert!((10..total).contains(&moved_before), "{moved_before} rows moved before the fault");

    rig.to_vault.set(Fault::Pass);
    let outcomes = eventually(Duration::from_secs(30), "a rewrap after the link heals", || async {
        rewrap::run(&database, &vault, None, 5, true, &mut |_, _, _| {}).await.ok()
    })
    .await;
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].remaining, 0, "{:?}", outcomes[0]);
    assert_eq!(
        outcomes[0].moved,
        u64::try_from(total - moved_before).unwrap(),
        "the second run took up where the first stopped"
    );
    for (id, key) in keys {
        let got = rig.api.ok(&rig.root, "keys.getKey", json!({"keyId": id, "decrypt": true})).await;
        assert_eq!(got["plaintext"], key.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kek_rewrap_resumes_once_the_vault_database_is_back() {
    let db = TestDb::new().await;
    let proxy = FaultProxy::start(upstream_of(db.url())).await;
    let url = through(db.url(), &proxy);
    let vault = spawn_vault(
        &db,
        &[
            ("STRONGBOX_VAULT__DATABASE__URL", url.as_str()),
            ("STRONGBOX_VAULT__DATABASE__QUERY_TIMEOUT_MS", DB_TIMEOUT_MS),
            ("STRONGBOX_VAULT__DATABASE__ACQUIRE_TIMEOUT_MS", DB_TIMEOUT_MS),
            ("STRONGBOX_VAULT__DATABASE__CONNECT_TIMEOUT_MS", "500"),
            ("STRONGBOX_VAULT__ROTATION__CHECK_INTERVAL_MS", "100"),
            ("STRONGBOX_VAULT__ROTATION__REWRAP_BATCH", "1"),
        ],
    )
    .await;
    vault.initialize().await;
    for i in 0..40 {
        vault.encrypt(&format!("ws_kek_{i:02}"), &["x"]).await;
    }
    let under = |version: i32| {
        let db = &db;
        async move {
            db.one::<i64>("SELECT count(*) FROM deks WHERE kek_version = $1", &[&version]).await
        }
    };
    // Slow the link, so the re-wrap is still going when the fault starts.
    proxy.set(Fault::Delay(Duration::from_millis(20)));
    let (status, body) = vault.post("operator", "/v1/sys/rotate", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let newest = i32::try_from(body["kek_version"].as_i64().unwrap()).unwrap();
    eventually(Duration::from_secs(20), "the re-wrap to start", || async {
        (under(newest).await >= 1).then_some(())
    })
    .await;
    proxy.set(Fault::BlackHole);
    // Long enough for a maintenance pass to fail on the dead link and be retried.
    tokio::time::sleep(Duration::from_millis(3 * 1000)).await;
    let during = under(newest).await;
    assert!(during < 40, "the re-wrap was cut off part way ({during} of 40 done)");
    proxy.set(Fault::Pass);
    eventually(Duration::from_secs(60), "every DEK under the newest KEK", || async {
        (under(newest).await == 40).then_some(())
    })
    .await;
    // The vault serves with the new KEK, with no restart.
    vault.encrypt("ws_kek_00", &["after"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_its_database_stops_trusting_its_cache() {
    let db = TestDb::new().await;
    let proxy = FaultProxy::start(upstream_of(db.url())).await;
    let url = through(db.url(), &proxy);
    let cut_off = strongbox_tests::spawn_api(
        &db,
        &[
            ("STRONGBOX_API__DATABASE__URL", url.as_str()),
            ("STRONGBOX_API__DATABASE__QUERY_TIMEOUT_MS", DB_TIMEOUT_MS),
            ("STRONGBOX_API__DATABASE__ACQUIRE_TIMEOUT_MS", DB_TIMEOUT_MS),
            ("STRONGBOX_API__DATABASE__CONNECT_TIMEOUT_MS", "500"),
        ],
    )
    .await;
    let other = strongbox_tests::spawn_api(&db, &[]).await;
    let root = other.workspace("stale").await;
    let api_id = other.create_api(&root, "stale").await;
    let (key_id, key) = other.create_key(&root, &api_id, json!({})).await;
    assert_eq!(cut_off.verify(&root, &key, json!({})).await["valid"], true);

    // The replica's listening connection goes silent; it still answers from its cache.
    proxy.set(Fault::BlackHole);
    let (status, body) = cut_off.call(&root, "keys.verifyKey", json!({"key": key})).await;
    assert_eq!((status, &body["data"]["valid"]), (200, &json!(true)), "{body}");
    other.ok(&root, "keys.deleteKey", json!({"keyId": key_id})).await;

    // It cannot hear the deletion, so within its database timeout it stops trusting what it
    // cached: the answer becomes a 503, never "valid" for a deleted key.
    let started = Instant::now();
    eventually(Duration::from_secs(10), "the cut-off replica to stop saying valid", || async {
        let (status, body) = cut_off.call(&root, "keys.verifyKey", json!({"key": key})).await;
        (status != 200 || body["data"]["valid"] != true).then_some((status, body))
    })
    .await;
    assert!(started.elapsed() <= BOUND, "stale for {:?}", started.elapsed());
    proxy.set(Fault::Pass);
    eventually(Duration::from_secs(20), "the deletion to be seen once healed", || async {
        let (status, body) = cut_off.call(&root, "keys.verifyKey", json!({"key": key})).await;
        (status == 200 && body["data"]["valid"] == false).then_some(())
    })
    .await;
}
