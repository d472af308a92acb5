//! In-process caches of key, root-key and API lookups, kept exact across replicas.
//!
//! Every change to a key, root key, API, identity or rate-limit namespace commits a NOTIFY on
//! the api database (`key:<id>`, `root_key:<id>`, `api:<id>`, `identity:<id>`, `ns:<id>`); every replica LISTENs and drops the entry at once. The whole cache is
//! dropped whenever the listening connection (re)connects, since notifications may have been
//! missed; a short TTL is only the last fallback.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use strongbox_shared::db::DatabaseConfig;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use crate::domain::apis::Api;
use crate::domain::keys::Key;
use crate::domain::ratelimit::Namespace;
use crate::service::policy::Authority;
use crate::store::notify::CHANNEL;

struct Entry<T> {
    value: Arc<T>,
    at: Instant,
}

struct Map<T> {
    by_hash: HashMap<[u8; 32], Entry<T>>,
    hash_of: HashMap<String, [u8; 32]>,
}

impl<T> Default for Map<T> {
    fn default() -> Self {
        Self { by_hash: HashMap::new(), hash_of: HashMap::new() }
    }
}

/// The caches of one api replica.
pub struct Cache {
    ttl: Duration,
    /// Bumped by every invalidation; a lookup that raced one does not cache what it read.
    epoch: AtomicU64,
    keys: RwLock<Map<Key>>,
    root_keys: RwLock<Map<Authority>>,
    /// APIs by id, for createKey and listKeys.
    apis: RwLock<HashMap<String, Entry<Api>>>,
    /// Rate-limit namespaces with their overrides, by workspace, then by the id or name asked
    /// for (nested, so a lookup borrows the request's strings instead of copying them).
    namespaces: RwLock<HashMap<String, HashMap<String, Entry<Namespace>>>>,
}

fn get<T>(map: &RwLock<Map<T>>, hash: &[u8; 32], ttl: Duration) -> Option<Arc<T>> {
    let map = map.read().unwrap_or_else(|e| e.into_inner());
    map.by_hash.get(hash).filter(|e| e.at.elapsed() < ttl).map(|e| e.value.clone())
}

/// `strongbox_cache_lookups_total{cache,result}`: the hit ratio is hits over all lookups.
fn count_lookup<T>(cache: &'static str, found: Option<T>) -> Option<T> {
    let result = if found.is_some() { "hit" } else { "miss" };
    metrics::counter!("strongbox_cache_lookups_total", "cache" => cache, "result" => result)
        .increment(1);
    found
}

fn forget<T>(map: &RwLock<Map<T>>, id: &str) {
    let mut map = map.write().unwrap_or_else(|e| e.into_inner());
    if let Some(hash) = map.hash_of.remove(id) {
        map.by_hash.remove(&hash);
    }
}

impl Cache {
    /// Entries older than `ttl` are re-read.
    pub fn new(ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            ttl,
            epoch: AtomicU64::new(0),
            keys: RwLock::default(),
            root_keys: RwLock::default(),
            apis: RwLock::default(),
            namespaces: RwLock::default(),
        })
    }

    /// A cached key by hash.
    pub fn key(&self, hash: &[u8; 32]) -> Option<Arc<Key>> {
        count_lookup("key", get(&self.keys, hash, self.ttl))
    }

    /// The current invalidation epoch; read it before a database lookup.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Caches a key read at `epoch`, unless an invalidation happened since.
    pub fn put_key_if_current(&self, hash: [u8; 32], key: Arc<Key>, epoch: u64) {
        let mut map = self.keys.write().unwrap_or_else(|e| e.into_inner());
        if self.epoch.load(Ordering::SeqCst) == epoch {
            map.hash_of.insert(key.id.clone(), hash);
            map.by_hash.insert(hash, Entry { value: key, at: Instant::now() });
        }
    }

    /// A cached root key by hash.
    pub fn root_key(&self, hash: &[u8; 32]) -> Option<Arc<Authority>> {
        count_lookup("root_key", get(&self.root_keys, hash, self.ttl))
    }

    /// Caches a root key read at `epoch`, unless an invalidation happened since.
    pub fn put_root_key_if_current(&self, hash: [u8; 32], key: Arc<Authority>, epoch: u64) {
        let mut map = self.root_keys.write().unwrap_or_else(|e| e.into_inner());
        if self.epoch.load(Ordering::SeqCst) == epoch {
            map.hash_of.insert(key.id().to_owned(), hash);
            map.by_hash.insert(hash, Entry { value: key, at: Instant::now() });
        }
    }

    /// A cached API by id.
    pub fn api(&self, id: &str) -> Option<Arc<Api>> {
        let apis = self.apis.read().unwrap_or_else(|e| e.into_inner());
        let found = apis.get(id).filter(|e| e.at.elapsed() < self.ttl).map(|e| e.value.clone());
        count_lookup("api", found)
    }

    /// Caches an API read at `epoch`, unless an invalidation happened since.
    pub fn put_api_if_current(&self, api: Arc<Api>, epoch: u64) {
        let mut apis = self.apis.write().unwrap_or_else(|e| e.into_inner());
        if self.epoch.load(Ordering::SeqCst) == epoch {
            apis.insert(api.id.clone(), Entry { value: api, at: Instant::now() });
        }
    }

    /// Drops an API by id.
    pub fn forget_api(&self, id: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.apis.write().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// A cached namespace of `workspace_id` by the id or name it was asked for.
    pub fn namespace(&self, workspace_id: &str, id_or_name: &str) -> Option<Arc<Namespace>> {
        let namespaces = self.namespaces.read().unwrap_or_else(|e| e.into_inner());
        let found = namespaces
            .get(workspace_id)
            .and_then(|by_name| by_name.get(id_or_name))
            .filter(|e| e.at.elapsed() < self.ttl)
            .map(|e| e.value.clone());
        count_lookup("namespace", found)
    }

    /// Caches a namespace read at `epoch` under the id or name it was asked for.
    pub fn put_namespace_if_current(&self, id_or_name: &str, ns: Arc<Namespace>, epoch: u64) {
        let mut namespaces = self.namespaces.write().unwrap_or_else(|e| e.into_inner());
        if self.epoch.load(Ordering::SeqCst) == epoch {
            namespaces
                .entry(ns.workspace_id.clone())
                .or_default()
                .insert(id_or_name.to_owned(), Entry { value: ns, at: Instant::now() });
        }
    }

    /// Drops a namespace, under every id or name it was cached by.
    pub fn forget_namespace(&self, id: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let mut namespaces = self.namespaces.write().unwrap_or_else(|e| e.into_inner());
        for by_name in namespaces.values_mut() {
            by_name.retain(|_, e| e.value.id != id);
        }
        namespaces.retain(|_, by_name| !by_name.is_empty());
    }

    /// Drops the keys of an identity, which carry its meta and rate limits.
    pub fn forget_identity(&self, id: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let mut map = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let Map { by_hash, hash_of } = &mut *map;
        by_hash.retain(|_, e| {
            let linked = e.value.identity.as_ref().is_some_and(|(i, _)| i == id);
            if linked {
                hash_of.remove(&e.value.id);
            }
            !linked
        });
    }

    /// Drops keys by id.
    pub fn forget_keys(&self, ids: &[String]) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        for id in ids {
            forget(&self.keys, id);
        }
    }

    /// Drops a root key by id.
    pub fn forget_root_key(&self, id: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        forget(&self.root_keys, id);
    }

    /// Drops everything.
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Map::default();
        *self.root_keys.write().unwrap_or_else(|e| e.into_inner()) = Map::default();
        self.apis.write().unwrap_or_else(|e| e.into_inner()).clear();
        self.namespaces.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn apply(&self, payload: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if let Some(id) = payload.strip_prefix("key:") {
            forget(&self.keys, id);
        } else if let Some(id) = payload.strip_prefix("root_key:") {
            forget(&self.root_keys, id);
        } else if let Some(id) = payload.strip_prefix("api:") {
            self.apis.write().unwrap_or_else(|e| e.into_inner()).remove(id);
        } else if let Some(id) = payload.strip_prefix("identity:") {
            self.forget_identity(id);
        } else if let Some(id) = payload.strip_prefix("ns:") {
            self.forget_namespace(id);
        } else {
            tracing::warn!(payload, "unknown api notification; dropping the whole cache");
            self.clear();
        }
    }
}

/// The listening session's `application_name`.
pub const LISTENER: &str = "strongbox-api cache listener";

/// How often the listening connection proves the server still answers.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Keeps `cache` exact until `stop` is cancelled.
pub fn spawn_listener(cache: Arc<Cache>, database: DatabaseConfig, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match listen(&cache, &database, &stop).await {
                Ok(()) => return,
                Err(error) => tracing::warn!(
                    error = format!("{error:#}"),
                    "cache listener lost; reconnecting"
                ),
            }
            // Notifications may have been missed while disconnected.
            cache.clear();
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}

async fn listen(
    cache: &Cache,
    database: &DatabaseConfig,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let (client, mut connection) = database.open_as(LISTENER).await?;
    let (tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message
                && tx.send(n.payload().to_owned()).is_err()
            {
                break;
            }
        }
    });
    let result = async {
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        // Anything cached before LISTEN took effect may be stale.
        cache.clear();
        // A listening connection that silently stopped hearing the server (a partition, a
        // paused node) would leave the cache stale. A heartbeat makes it owe an answer, so a dead
        // server closes it within `query_timeout_ms` and the reconnect clears the cache.
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                notice = notices.recv() => match notice {
                    Some(payload) => cache.apply(&payload),
                    None => anyhow::bail!("notification stream ended"),
                },
                _ = heartbeat.tick() => {
                    client.simple_query("").await?;
                }
            }
        }
    }
    .await;
    driver.abort();
    result
}
