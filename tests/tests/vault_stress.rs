//! Stress, in the spirit of Vault's transit fuzzing: two replicas on one database, many tasks
//! encrypting, decrypting, rewrapping, rotating keyrings and KEKs and retiring versions at once,
//! for a bounded time. Zero wrong results are allowed, and no encryption may ever be made under
//! a version whose retirement had committed before the request began.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use strongbox_tests::{SERVER_KEY, TestDb, TestVault, spawn_vault, spawn_vault_with};

const KEYRINGS: [&str; 3] = ["ws_s0", "ws_s1", "ws_s2"];
const RUN_FOR: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct Record {
    keyring: usize,
    ciphertext: String,
    context: String,
    plaintext: String,
    version: i64,
}

#[derive(Default)]
struct Shared {
    records: Vec<Record>,
    /// (keyring, min_decryption_version, when the change had committed)
    retirements: Vec<(usize, i64, Instant)>,
    violations: Vec<String>,
    operations: u64,
}

struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).unwrap();
        Self(u64::from_le_bytes(seed) | 1)
    }
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn min_in_force(shared: &Shared, keyring: usize, before: Instant) -> i64 {
    shared
        .retirements
        .iter()
        .filter(|(k, _, t)| *k == keyring && *t < before)
        .map(|(_, m, _)| *m)
        .max()
        .unwrap_or(1)
}

async fn encrypter(replicas: Arc<[TestVault; 2]>, shared: Arc<Mutex<Shared>>, worker: usize) {
    let mut rng = Rng::new();
    let deadline = Instant::now() + RUN_FOR;
    let mut n = 0u64;
    while Instant::now() < deadline {
        let replica = &replicas[rng.below(2)];
        let keyring = rng.below(KEYRINGS.len());
        let items: Vec<(String, String)> = (0..1 + rng.below(4))
            .map(|i| (format!("sk_{worker}_{n}_{i}"), format!("key_{worker}_{n}_{i}")))
            .collect();
        n += 1;
        let body = json!({"keyring": KEYRINGS[keyring], "items": items.iter().map(|(p, c)| json!({"plaintext": STANDARD.encode(p), "context": c})).collect::<Vec<_>>()});
        let started = Instant::now();
        let (status, response) = replica.post("api", "/v1/encrypt", body).await;
        let mut s = shared.lock().unwrap();
        s.operations += 1;
        if status != 200 {
            s.violations.push(format!("encrypt failed: {status} {response}"));
            drop(s);
            continue;
        }
        let floor = min_in_force(&s, keyring, started);
        for ((plaintext, context), item) in
            items.into_iter().zip(response["items"].as_array().unwrap())
        {
            let version = item["dek_version"].as_i64().unwrap();
            if version < floor {
                s.violations
                    .push(format!("encrypted under v{version} after v{floor} became the minimum"));
            }
            s.records.push(Record {
                keyring,
                ciphertext: item["ciphertext"].as_str().unwrap().to_owned(),
                context,
                plaintext,
                version,
            });
        }
    }
}

async fn decrypter(replicas: Arc<[TestVault; 2]>, shared: Arc<Mutex<Shared>>, rewrap: bool) {
    let mut rng = Rng::new();
    let deadline = Instant::now() + RUN_FOR;
    while Instant::now() < deadline {
        let picked: Option<Vec<Record>> = {
            let s = shared.lock().unwrap();
            (!s.records.is_empty()).then(|| {
                (0..1 + rng.below(8))
                    .map(|_| s.records[rng.below(s.records.len())].clone())
                    .collect()
            })
        };
        let Some(picked) = picked else {
            tokio::task::yield_now().await;
            continue;
        };
        let keyring = picked[0].keyring;
        let picked: Vec<Record> = picked.into_iter().filter(|r| r.keyring == keyring).collect();
        let replica = &replicas[rng.below(2)];
        let items: Vec<Value> = picked
            .iter()
            .map(|r| json!({"ciphertext": r.ciphertext, "context": r.context}))
            .collect();
        let path = if rewrap { "/v1/rewrap" } else { "/v1/decrypt" };
        let role = if rewrap { "rewrap" } else { "api" };
        let (status, response) =
            replica.post(role, path, json!({"keyring": KEYRINGS[keyring], "items": items})).await;
        let mut s = shared.lock().unwrap();
        s.operations += 1;
        if status != 200 {
            s.violations.push(format!("{path} failed: {status} {response}"));
            drop(s);
            continue;
        }
        for (record, item) in picked.iter().zip(response["items"].as_array().unwrap()) {
            match (item["error"]["code"].as_str(), rewrap) {
                (Some("VERSION_RETIRED" | "VERSION_DESTROYED"), _) => {}
                (Some(other), _) => {
                    s.violations.push(format!("{path}: unexpected {other} for v{}", record.version))
                }
                (None, false) => {
                    let got = String::from_utf8(
                        STANDARD.decode(item["plaintext"].as_str().unwrap()).unwrap(),
                    )
                    .unwrap();
                    if got != record.plaintext {
                        s.violations.push(format!(
                            "WRONG PLAINTEXT: {got} instead of {}",
                            record.plaintext
                        ));
                    }
                }
                (None, true) => {
                    let rewrapped = Record {
                        ciphertext: item["ciphertext"].as_str().unwrap().to_owned(),
                        version: item["dek_version"].as_i64().unwrap(),
                        ..record.clone()
                    };
                    s.records.push(rewrapped);
                }
            }
        }
    }
}

async fn rotator(replicas: Arc<[TestVault; 2]>, shared: Arc<Mutex<Shared>>) {
    let mut rng = Rng::new();
    let deadline = Instant::now() + RUN_FOR;
    let mut i = 0;
    while Instant::now() < deadline {
        i += 1;
        let replica = &replicas[rng.below(2)];
        let keyring = rng.below(KEYRINGS.len());
        let (status, body) = if i % 7 == 0 {
            replica.post("operator", "/v1/sys/rotate", json!({})).await
        } else if i % 3 == 0 {
            // Retire everything but the two newest versions.
            let (_, d) = replica
                .call(
                    "operator",
                    reqwest::Method::GET,
                    &format!("/v1/keyrings/{}", KEYRINGS[keyring]),
                    None,
                )
                .await;
            let Some(latest) = d["latest_version"].as_i64() else { continue };
            let min = (latest - 1).max(1);
            let r = replica
                .post(
                    "operator",
                    &format!("/v1/keyrings/{}/config", KEYRINGS[keyring]),
                    json!({"min_decryption_version": min}),
                )
                .await;
            if r.0 == 200 {
                shared.lock().unwrap().retirements.push((keyring, min, Instant::now()));
            }
            r
        } else {
            replica
                .post("operator", &format!("/v1/keyrings/{}/rotate", KEYRINGS[keyring]), json!({}))
                .await
        };
        {
            let mut s = shared.lock().unwrap();
            s.operations += 1;
            if status != 200 && status != 404 {
                s.violations.push(format!("admin call failed: {status} {body}"));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_under_concurrent_load_never_give_a_wrong_result() {
    let db = TestDb::new().await;
    let a = spawn_vault(&db, &[]).await;
    a.initialize().await;
    let b = spawn_vault_with(&db, a.pki.clone(), &[]).await;
    assert_eq!(b.unlock(SERVER_KEY).await.0, 200);
    let replicas = Arc::new([a, b]);
    let shared = Arc::new(Mutex::new(Shared::default()));

    let mut tasks = Vec::new();
    for worker in 0..4 {
        tasks.push(tokio::spawn(encrypter(replicas.clone(), shared.clone(), worker)));
    }
    for rewrap in [false, false, true] {
        tasks.push(tokio::spawn(decrypter(replicas.clone(), shared.clone(), rewrap)));
    }
    tasks.push(tokio::spawn(rotator(replicas.clone(), shared.clone())));
    for task in tasks {
        task.await.unwrap();
    }

    let records = {
        let s = shared.lock().unwrap();
        assert!(
            s.violations.is_empty(),
            "{} violations, first: {:?}",
            s.violations.len(),
            &s.violations[..s.violations.len().min(5)]
        );
        assert!(s.operations > 100, "the load ran: {} operations", s.operations);
        assert!(!s.retirements.is_empty(), "retirements happened");
        eprintln!(
            "stress: {} operations, {} ciphertexts, {} retirements",
            s.operations,
            s.records.len(),
            s.retirements.len()
        );
        s.records.clone()
    };

    // Everything not retired still decrypts to what was sealed, on both replicas.
    for (k, keyring) in KEYRINGS.iter().enumerate() {
        let (_, d) = replicas[0]
            .call("operator", reqwest::Method::GET, &format!("/v1/keyrings/{keyring}"), None)
            .await;
        let min = d["min_decryption_version"].as_i64().unwrap();
        let live: Vec<&Record> =
            records.iter().filter(|r| r.keyring == k && r.version >= min).collect();
        for chunk in live.chunks(500) {
            let items: Vec<(String, String)> =
                chunk.iter().map(|r| (r.ciphertext.clone(), r.context.clone())).collect();
            for replica in replicas.iter() {
                let opened = replica.decrypt(keyring, &items).await;
                for (record, got) in chunk.iter().zip(opened) {
                    assert_eq!(
                        got,
                        Ok(record.plaintext.clone()),
                        "v{} in {keyring}",
                        record.version
                    );
                }
            }
        }
    }
}
