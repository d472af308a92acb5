//! Load client for `ops/bench`. wrk cannot present client certificates, so the vault is driven
//! from Rust over real mTLS with keep-alive connections.
//!
//!   strongbox-load aes-gcm --batch N --seconds S
//!   strongbox-load vault-encrypt --url URL --ca F --cert F --key F --batch N --connections C --seconds S
//!   strongbox-load vault-status --url URL --ca F --cert F --key F --connections C --seconds S
//!
//!   strongbox-load api-setup --url URL --root ROOT_KEY
//!   strongbox-load seed-recoverable --url VAULT --ca F --cert F --key F --db API_DB_URL
//!       --keyring WS --api API_ID --count N
//!
//! The load modes print one JSON line: {"name","requests","items","seconds","req_per_s",
//! "items_per_s","errors"}. `api-setup` creates an API and two keys (one with credits) for the
//! api benchmarks and prints `API_ID=… KEY=… CREDIT_KEY=… LIMITED_KEY=…`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;

struct Args {
    mode: String,
    db: String,
    keyring: String,
    api: String,
    count: usize,
    url: String,
    ca: String,
    cert: String,
    key: String,
    batch: usize,
    connections: usize,
    seconds: u64,
}

fn parse() -> Args {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        mode: args.next().unwrap_or_default(),
        db: String::new(),
        keyring: String::new(),
        api: String::new(),
        count: 0,
        url: String::new(),
        ca: String::new(),
        cert: String::new(),
        key: String::new(),
        batch: 1,
        connections: 8,
        seconds: 5,
    };
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--url" => parsed.url = value,
            "--ca" => parsed.ca = value,
            "--cert" => parsed.cert = value,
            "--key" => parsed.key = value,
            "--batch" => parsed.batch = value.parse().expect("--batch"),
            "--connections" => parsed.connections = value.parse().expect("--connections"),
            "--seconds" => parsed.seconds = value.parse().expect("--seconds"),
            "--root" => parsed.key = value,
            "--db" => parsed.db = value,
            "--keyring" => parsed.keyring = value,
            "--api" => parsed.api = value,
            "--count" => parsed.count = value.parse().expect("--count"),
            other => panic!("unknown flag {other}"),
        }
    }
    parsed
}

fn report(name: &str, requests: u64, items: u64, errors: u64, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    println!(
        "{}",
        json!({
            "name": name, "requests": requests, "items": items, "errors": errors, "seconds": secs,
            "req_per_s": requests as f64 / secs, "items_per_s": items as f64 / secs,
        })
    );
}

/// The same envelope seal the vault performs per item, in process, on one core.
fn aes_gcm(args: &Args) {
    let dek = strongbox_vault::crypto::SecretKey::generate().unwrap();
    let plaintext = b"sk_live_3f9a7c1e5b2d4a6c8e0f1a3b5c7d9e1f";
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let start = Instant::now();
    let mut items = 0u64;
    while Instant::now() < deadline {
        for i in 0..args.batch {
            let context = format!("key_{i}");
            let ct =
                strongbox_vault::crypto::envelope::seal(&dek, "ws_bench", 1, &context, plaintext)
                    .unwrap();
            std::hint::black_box(ct.encode());
        }
        items += args.batch as u64;
    }
    report("in-process envelope seal", items / args.batch as u64, items, 0, start.elapsed());
}

/// Drives the vault's mTLS listener: `POST /v1/encrypt` of `--batch` items, or with `status`
/// `GET /v1/sys/status` (the same listener, client, keep-alive and concurrency, without the
/// crypto, the database or the audit log: the transport's own ceiling).
async fn vault_encrypt(args: Args, status: bool) {
    let tls = strongbox_shared::tls::mtls_client_config(
        args.ca.as_ref(),
        args.cert.as_ref(),
        args.key.as_ref(),
    )
    .expect("TLS files");
    let plaintext = base64::engine::general_purpose::STANDARD
        .encode(b"sk_live_3f9a7c1e5b2d4a6c8e0f1a3b5c7d9e1f");
    let items: Vec<_> = (0..args.batch)
        .map(|i| json!({"plaintext": plaintext, "context": format!("key_{i}")}))
        .collect();
    let body =
        Arc::new(serde_json::to_vec(&json!({"keyring": "ws_bench", "items": items})).unwrap());
    let url = if status {
        format!("{}/v1/sys/status", args.url)
    } else {
        format!("{}/v1/encrypt", args.url)
    };
    let (requests, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // Warm up: creates the keyring and the connections.
    let warm =
        reqwest::Client::builder().use_preconfigured_tls(tls.clone()).no_proxy().build().unwrap();
    let request = |client: &reqwest::Client| {
        if status {
            client.get(&url)
        } else {
            client.post(&url).header("content-type", "application/json").body((*body).clone())
        }
    };
    let r = request(&warm).send().await.unwrap();
    assert!(r.status().is_success(), "warm-up failed: {}", r.status());
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls.clone())
            .no_proxy()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        let (url, body, requests, errors) =
            (url.clone(), body.clone(), requests.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let request = if status {
                    client.get(&url)
                } else {
                    client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body((*body).clone())
                };
                let sent = request.send().await;
                match sent {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        requests.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let n = requests.load(Ordering::Relaxed);
    let (name, items) = if status {
        ("vault status over mTLS".to_owned(), n)
    } else {
        (format!("vault encrypt over mTLS, batch {}", args.batch), n * args.batch as u64)
    };
    report(&name, n, items, errors.load(Ordering::Relaxed), start.elapsed());
}

async fn api_setup(args: Args) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let call = |call: &str, body: serde_json::Value| {
        let request =
            client.post(format!("{}/v2/{call}", args.url)).bearer_auth(&args.key).json(&body);
        async move {
            let response = request.send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            response.json::<serde_json::Value>().await.unwrap()["data"].clone()
        }
    };
    let api_id = call("apis.createApi", json!({"name": "bench"})).await["apiId"]
        .as_str()
        .unwrap()
        .to_owned();
    let key =
        call("keys.createKey", json!({"apiId": api_id})).await["key"].as_str().unwrap().to_owned();
    let credit_key = call(
        "keys.createKey",
        json!({"apiId": api_id, "credits": {"remaining": 1_000_000_000_000i64}}),
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    // A key with an auto-applied rate limit far above any load the bench offers, so every
    // verification is VALID and what is measured is the cost of counting.
    let limited_key = call(
        "keys.createKey",
        json!({"apiId": api_id, "ratelimits": [{"name": "bench", "limit": 1_000_000_000_000i64,
            "duration": 60_000, "autoApply": true}]}),
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    // Recoverable keys: an API that opts in, with 100 of them to list.
    let list_api = call("apis.createApi", json!({"name": "bench-list"})).await["apiId"]
        .as_str()
        .unwrap()
        .to_owned();
    call("apis.updateApi", json!({"apiId": list_api, "storeEncryptedKeys": true})).await;
    for _ in 0..100 {
        call("keys.createKey", json!({"apiId": list_api, "recoverable": true})).await;
    }
    let rec_api = call("apis.createApi", json!({"name": "bench-recoverable"})).await["apiId"]
        .as_str()
        .unwrap()
        .to_owned();
    call("apis.updateApi", json!({"apiId": rec_api, "storeEncryptedKeys": true})).await;
    println!(
        "API_ID={api_id} KEY={key} CREDIT_KEY={credit_key} LIMITED_KEY={limited_key} \
         LIST_API={list_api} REC_API={rec_api}"
    );
}

/// Seeds `count` recoverable keys fast: sealed by the vault in batches of 1000 and inserted
/// straight into the api database (the rewrap benchmark needs 100,000).
async fn seed_recoverable(args: Args) {
    let tls = strongbox_shared::tls::mtls_client_config(
        args.ca.as_ref(),
        args.cert.as_ref(),
        args.key.as_ref(),
    )
    .unwrap();
    let client = reqwest::Client::builder().use_preconfigured_tls(tls).no_proxy().build().unwrap();
    let (db, conn) = tokio_postgres::connect(&args.db, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let mut start = 0;
    while start < args.count {
        let end = (start + 1000).min(args.count);
        let ids: Vec<String> = (start..end).map(|i| format!("key_bench_{i:07}")).collect();
        let plaintexts: Vec<String> = (start..end).map(|i| format!("sk_bench_{i:07}")).collect();
        let items: Vec<_> = ids
            .iter()
            .zip(&plaintexts)
            .map(|(id, p)| json!({"plaintext": base64::engine::general_purpose::STANDARD.encode(p), "context": id}))
            .collect();
        let response = client
            .post(format!("{}/v1/encrypt", args.url))
            .json(&json!({"keyring": args.keyring, "items": items}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let body: serde_json::Value = response.json().await.unwrap();
        let ciphertexts: Vec<String> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["ciphertext"].as_str().unwrap().to_owned())
            .collect();
        let hashes: Vec<Vec<u8>> =
            plaintexts.iter().map(|p| strongbox_shared::keys::hash(p).to_vec()).collect();
        db.execute(
            "INSERT INTO keys (id, workspace_id, api_id, hash, start, byte_length) \
             SELECT id, $2, $4, h, 'sk_b', 16 FROM unnest($1::text[], $3::bytea[]) AS t(id, h)",
            &[&ids, &args.keyring, &hashes, &args.api],
        )
        .await
        .unwrap();
        db.execute(
            "INSERT INTO encrypted_keys (key_id, workspace_id, keyring, ciphertext, dek_version) \
             SELECT id, $2, $2, c, 1 FROM unnest($1::text[], $3::text[]) AS t(id, c)",
            &[&ids, &args.keyring, &ciphertexts],
        )
        .await
        .unwrap();
        start = end;
    }
    println!("seeded {}", args.count);
}

fn main() {
    let args = parse();
    match args.mode.as_str() {
        "seed-recoverable" => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
            runtime.block_on(seed_recoverable(args));
        }
        "api-setup" => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
            runtime.block_on(api_setup(args));
        }
        "aes-gcm" => aes_gcm(&args),
        "vault-encrypt" | "vault-status" => {
            let status = args.mode == "vault-status";
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
            runtime.block_on(vault_encrypt(args, status));
        }
        other => panic!("unknown mode {other:?}; use aes-gcm, vault-encrypt or vault-status"),
    }
}
