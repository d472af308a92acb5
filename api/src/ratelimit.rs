//! Rate limits that hold across every api replica.
//!
//! The counts live in the api database (`ratelimit_windows`, a sliding window: this window's
//! count plus the previous one's, weighted by how much of it still overlaps). A replica never
//! counts on its own; it takes units from the database, and while a limit is far from full it
//! takes a **lease**: the units it needs plus a share of what is left (a tenth divided by the
//! number of live replicas). Later checks spend the lease without a round trip. Near the limit
//! the leases shrink to what each check needs, so every check is decided by the database.
//!
//! A leased unit is counted as used whether or not it is spent, so leases can only refuse early,
//! never admit beyond the limit: the admitted count per window is at most the limit, and at
//! least the limit minus the units leased to replicas that then saw no more traffic.
//!
//! When the database does not answer within `ratelimit.timeout_ms`, `ratelimit.on_unavailable`
//! decides for the next `retry_after_ms`: count locally against this replica's share of the
//! limit (`local`), admit (`allow`) or refuse (`deny`). Each fallback counts in
//! `strongbox_ratelimit_fallbacks_total`, and each failed round trip writes one log line.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::config::{OnUnavailable, RatelimitConfig};
use crate::store;

/// Buckets held by one replica; past it, the idle ones are dropped.
const MAX_BUCKETS: usize = 100_000;
/// Local fallback windows held by one replica; past it, the idle ones are dropped.
const MAX_LOCAL: usize = 100_000;
/// A lease takes this share of what is left, divided by the live replicas: the units leased
/// and never spent (a replica that saw no more traffic) are then at most a tenth of the limit.
const SHARE: f64 = 0.1;
/// A refusal is remembered at least this long (bounded by the window's end), so a caller
/// hammering a full limit costs the database at most this many round trips per second per
/// replica.
const MIN_REFUSAL: Duration = Duration::from_millis(10);

/// The outcome of one limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Over the limit.
    pub exceeded: bool,
    /// Left in this window.
    pub remaining: i64,
    /// When the window ends, Unix milliseconds.
    pub reset: i64,
}

/// One check: `cost` units of `bucket`, limited to `limit` per `duration` ms.
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    /// What is counted: `k:<keyId>:…`, `i:<identityId>:…`, `n:<namespaceId>:…`.
    pub bucket: &'a str,
    /// Units per window.
    pub limit: i64,
    /// Window, ms (at least 1).
    pub duration: i64,
    /// Units this check takes.
    pub cost: i64,
}

/// What this replica holds of one bucket.
#[derive(Default)]
struct Lease {
    /// The limit the lease was taken under; a different limit goes back to the database.
    limit: i64,
    /// The window's end on this replica's clock; the lease is void after it.
    ends: Option<Instant>,
    /// The window's end, Unix ms by the database's clock.
    reset: i64,
    /// Units leased and not yet spent.
    stock: i64,
    /// What the database had left after the last grant.
    left: i64,
    /// The last refusal holds until then, for checks costing at least `refused_cost`.
    refused_until: Option<Instant>,
    refused_cost: i64,
}

impl Lease {
    fn valid(&self, limit: i64, now: Instant) -> bool {
        self.limit == limit && self.ends.is_some_and(|e| now < e)
    }

    /// Decides `check` from what this replica holds, if it can: spends stock, or repeats a
    /// refusal that still holds.
    fn decide(&mut self, check: &Check<'_>, now: Instant) -> Option<Outcome> {
        if !self.valid(check.limit, now) {
            return None;
        }
        if self.stock >= check.cost {
            self.stock -= check.cost;
            return Some(self.outcome(false));
        }
        if self.refused_until.is_some_and(|t| now < t) && check.cost >= self.refused_cost {
            return Some(self.outcome(true));
        }
        None
    }

    fn outcome(&self, exceeded: bool) -> Outcome {
        Outcome { exceeded, remaining: self.left + self.stock, reset: self.reset }
    }
}

/// One bucket on this replica: its lease, decided under a plain lock held for nanoseconds, and
/// the right to ask the database, held by one check at a time.
#[derive(Default)]
struct Bucket {
    lease: Mutex<Lease>,
    asking: tokio::sync::Mutex<()>,
}

/// A sliding window counted on this replica alone, for the `local` fallback.
#[derive(Clone, Copy)]
struct LocalWindow {
    duration: i64,
    start: i64,
    current: i64,
    previous: i64,
}

/// The limiter of one replica.
pub struct Limiter {
    config: RatelimitConfig,
    /// This replica's heartbeat id.
    replica: String,
    buckets: Mutex<HashMap<String, Arc<Bucket>>>,
    local: Mutex<HashMap<String, LocalWindow>>,
    /// Live replicas at the last heartbeat (1 until one is seen).
    replicas: AtomicI64,
    /// Until then, checks fall back without trying the database.
    down_until: Mutex<Option<Instant>>,
}

/// Why a round trip gave no answer.
enum Failure {
    /// Every pooled connection was busy: this check alone falls back.
    Busy,
    /// The database did not answer: checks fall back for `retry_after_ms`.
    Down(String),
}

/// A pooled connection only if one is free now: background work never queues behind (or in
/// front of) requests for the pool; a busy pool skips a heartbeat, which the next one makes up.
async fn idle_connection(
    pool: &Pool,
) -> Result<deadpool_postgres::Object, deadpool_postgres::PoolError> {
    let now = deadpool_postgres::Timeouts { wait: Some(Duration::ZERO), ..pool.timeouts() };
    pool.timeout_get(&now).await
}

/// Locks a plain mutex, whose holders never panic while holding it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where `bucket`'s windows start within `duration`: spread by a hash of the bucket, so that the
/// windows of many buckets do not all end, and send their leases back to the database, at the
/// same instant. Every replica computes the same offset.
fn offset(bucket: &str, duration: i64) -> i64 {
    // FNV-1a: stable across processes and versions, unlike the standard library's hasher.
    let hash = bucket
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    i64::try_from(hash % u64::try_from(duration.max(1)).unwrap_or(1)).unwrap_or(0)
}

/// The start of the window of `duration` (offset by `offset`) that holds `now`.
fn window_start(now: i64, duration: i64, offset: i64) -> i64 {
    now - (now - offset).rem_euclid(duration)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Limiter {
    /// A limiter for one replica.
    pub fn new(config: RatelimitConfig) -> Self {
        let replica = strongbox_shared::id::new_id("replica")
            .unwrap_or_else(|_| format!("replica_{}_{}", std::process::id(), now_ms()));
        Self {
            config,
            replica,
            buckets: Mutex::default(),
            local: Mutex::default(),
            replicas: AtomicI64::new(1),
            down_until: Mutex::new(None),
        }
    }

    /// Live replicas at the last heartbeat.
    pub fn replicas(&self) -> i64 {
        self.replicas.load(Ordering::Relaxed).max(1)
    }

    /// Counts `check` against the limit shared by every replica.
    pub async fn hit(&self, pool: &Pool, check: Check<'_>) -> Outcome {
        let check = Check { duration: check.duration.max(1), ..check };
        let deadline = Duration::from_millis(self.config.timeout_ms.max(1));
        let bucket = self.bucket(check.bucket);
        if let Some(outcome) = lock(&bucket.lease).decide(&check, Instant::now()) {
            return outcome;
        }
        // One check of a bucket asks the database at a time; the others queue here, bounded by
        // the same deadline as the round trip, and may find the answer they need when it ends.
        let Ok(_asking) = tokio::time::timeout(deadline, bucket.asking.lock()).await else {
            return self.fallback(check);
        };
        let now = Instant::now();
        // Units this check already holds, taken out so that no other check spends them while
        // the database is asked for the rest.
        let held = {
            let mut lease = lock(&bucket.lease);
            if let Some(outcome) = lease.decide(&check, now) {
                return outcome;
            }
            if !lease.valid(check.limit, now) {
                *lease = Lease::default();
            }
            std::mem::take(&mut lease.stock)
        };
        let give_back = |held: i64| lock(&bucket.lease).stock += held;
        let down_until = *lock(&self.down_until);
        if down_until.is_some_and(|t| now < t) {
            give_back(held);
            return self.fallback(check);
        }
        let need = check.cost - held;
        let share = SHARE / self.replicas() as f64;
        let offset = offset(check.bucket, check.duration);
        let sent = Instant::now();
        let taken = match self.take(pool, &check, deadline, offset, need, share).await {
            Ok(taken) => taken,
            Err(failure) => {
                give_back(held);
                return match failure {
                    Failure::Busy => self.fallback(check),
                    Failure::Down(why) => self.trip(check, &why),
                };
            }
        };
        // The window's end, measured from when the request left: never later than the
        // database's own end.
        let window_left = (taken.window_start + check.duration - taken.now_ms).max(0);
        let ends = sent + Duration::from_millis(u64::try_from(window_left).unwrap_or(0));
        let mut lease = lock(&bucket.lease);
        if !lease.valid(check.limit, now) {
            *lease = Lease { limit: check.limit, ends: Some(ends), ..Lease::default() };
        }
        lease.reset = taken.window_start + check.duration;
        lease.left = (check.limit - taken.used).max(0);
        let admitted = taken.granted > 0 || (need <= 0 && taken.used <= check.limit);
        if admitted {
            lease.stock += held + taken.granted - check.cost;
            lease.refused_until = None;
            lease.outcome(false)
        } else {
            lease.stock += held;
            // Units free up no faster than the previous window's weight decays: at most
            // limit/duration per ms. The refusal holds for checks at least this costly.
            let unit = Duration::from_millis(
                u64::try_from(check.duration / check.limit.max(1)).unwrap_or(0),
            );
            lease.refused_until = Some(ends.min(now + unit.max(MIN_REFUSAL)));
            lease.refused_cost = check.cost;
            lease.outcome(true)
        }
    }

    /// One round trip to the shared state, within `deadline`.
    async fn take(
        &self,
        pool: &Pool,
        check: &Check<'_>,
        deadline: Duration,
        offset: i64,
        need: i64,
        share: f64,
    ) -> Result<store::ratelimit::Taken, Failure> {
        let sent = Instant::now();
        let client = match tokio::time::timeout(deadline, pool.get()).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => {
                return Err(Failure::Down(format!("{:#}", anyhow::Error::new(error))));
            }
            // Every connection busy serving other calls is not the database being down.
            Err(_) if pool.status().size >= pool.status().max_size => return Err(Failure::Busy),
            Err(_) => {
                return Err(Failure::Down("no connection within ratelimit.timeout_ms".into()));
            }
        };
        let left = deadline.saturating_sub(sent.elapsed());
        let (bucket, limit, duration) = (check.bucket, check.limit, check.duration);
        let taken = tokio::time::timeout(
            left,
            store::ratelimit::take(&client, bucket, limit, duration, offset, need, share),
        )
        .await;
        metrics::counter!("strongbox_ratelimit_round_trips_total").increment(1);
        match taken {
            Ok(Ok(taken)) => Ok(taken),
            Ok(Err(error)) => Err(Failure::Down(format!("{:#}", anyhow::Error::new(error)))),
            Err(_) => Err(Failure::Down("no answer within ratelimit.timeout_ms".into())),
        }
    }

    /// The bucket of `name`, made on first use. Past [`MAX_BUCKETS`], every bucket not in use
    /// is dropped: its unspent units only ever refuse early, so dropping one is always safe.
    fn bucket(&self, name: &str) -> Arc<Bucket> {
        let mut buckets = lock(&self.buckets);
        if let Some(bucket) = buckets.get(name) {
            return bucket.clone();
        }
        if buckets.len() >= MAX_BUCKETS {
            buckets.retain(|_, bucket| Arc::strong_count(bucket) > 1);
        }
        buckets.entry(name.to_owned()).or_default().clone()
    }

    /// A round trip failed: fall back for `retry_after_ms`, and say so once.
    fn trip(&self, check: Check<'_>, why: &str) -> Outcome {
        *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) =
            Instant::now().checked_add(Duration::from_millis(self.config.retry_after_ms));
        tracing::warn!(
            error = why,
            on_unavailable = self.config.on_unavailable.as_str(),
            retry_after_ms = self.config.retry_after_ms,
            "the shared rate-limit state did not answer; falling back"
        );
        self.fallback(check)
    }

    fn fallback(&self, check: Check<'_>) -> Outcome {
        let mode = self.config.on_unavailable;
        metrics::counter!("strongbox_ratelimit_fallbacks_total", "mode" => mode.as_str())
            .increment(1);
        let now = now_ms();
        let reset = window_start(now, check.duration, offset(check.bucket, check.duration))
            + check.duration;
        match mode {
            OnUnavailable::Allow => {
                Outcome { exceeded: false, remaining: (check.limit - check.cost).max(0), reset }
            }
            OnUnavailable::Deny => Outcome { exceeded: true, remaining: 0, reset },
            OnUnavailable::Local => self.local(check, now),
        }
    }

    /// This replica's share of the limit, counted in a sliding window of its own.
    fn local(&self, check: Check<'_>, now: i64) -> Outcome {
        let n = self.replicas();
        let limit = check.limit / n + i64::from(check.limit % n != 0);
        let start = window_start(now, check.duration, offset(check.bucket, check.duration));
        let reset = start + check.duration;
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        if local.len() >= MAX_LOCAL && !local.contains_key(check.bucket) {
            local.retain(|_, w| w.start + 2 * w.duration > now);
            if local.len() >= MAX_LOCAL {
                local.clear();
            }
        }
        let w = local.entry(check.bucket.to_owned()).or_insert(LocalWindow {
            duration: check.duration,
            start,
            current: 0,
            previous: 0,
        });
        if w.start != start || w.duration != check.duration {
            let previous = if w.start + check.duration == start { w.current } else { 0 };
            *w = LocalWindow { duration: check.duration, start, current: 0, previous };
        }
        let overlap = i128::from(check.duration - (now - start));
        let weighted = i128::from(w.previous) * overlap / i128::from(check.duration);
        let used = w.current + i64::try_from(weighted).unwrap_or(i64::MAX);
        if limit - used < check.cost {
            return Outcome { exceeded: true, remaining: (limit - used).max(0), reset };
        }
        w.current += check.cost;
        Outcome { exceeded: false, remaining: limit - used - check.cost, reset }
    }

    /// Writes this replica's heartbeat every `heartbeat_ms`, counts the live replicas, and sweeps
    /// old windows; removes the heartbeat when `stop` is cancelled.
    pub fn spawn_heartbeat(self: Arc<Self>, pool: Pool, stop: CancellationToken) {
        tokio::spawn(async move {
            let every = Duration::from_millis(self.config.heartbeat_ms.max(10));
            let live_ms = i64::try_from(every.as_millis() * 3).unwrap_or(i64::MAX);
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut beats: u64 = 0;
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if let Err(error) = self.beat(&pool, live_ms, beats.is_multiple_of(60)).await {
                    tracing::debug!(error = format!("{error:#}"), "rate-limit heartbeat failed");
                }
                beats += 1;
            }
            if let Ok(client) = idle_connection(&pool).await {
                let _ = store::ratelimit::leave(&client, &self.replica).await;
            }
        });
    }

    async fn beat(&self, pool: &Pool, live_ms: i64, sweep: bool) -> anyhow::Result<()> {
        let client = idle_connection(pool).await?;
        let live = store::ratelimit::heartbeat(&client, &self.replica, live_ms).await?;
        self.replicas.store(live.max(1), Ordering::Relaxed);
        metrics::gauge!("strongbox_ratelimit_replicas").set(live.max(1) as f64);
        if sweep {
            store::ratelimit::sweep(&client).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(mode: OnUnavailable) -> Limiter {
        Limiter::new(RatelimitConfig { on_unavailable: mode, ..RatelimitConfig::default() })
    }

    #[test]
    fn the_local_fallback_counts_this_replicas_share() {
        let limiter = limiter(OnUnavailable::Local);
        limiter.replicas.store(3, Ordering::Relaxed);
        let check = Check { bucket: "k", limit: 10, duration: 3_600_000, cost: 1 };
        // ceil(10 / 3) = 4 on this replica.
        let admitted = (0..10).filter(|_| !limiter.fallback(check).exceeded).count();
        assert_eq!(admitted, 4);
        assert!(!limiter.fallback(Check { bucket: "other", ..check }).exceeded);
    }

    #[test]
    fn idle_leases_are_dropped_past_the_cap_and_held_ones_kept() {
        let limiter = limiter(OnUnavailable::Local);
        let held = limiter.bucket("held");
        for i in 0..MAX_BUCKETS {
            limiter.bucket(&format!("b{i}"));
        }
        limiter.bucket("one more");
        let buckets = limiter.buckets.lock().unwrap();
        assert!(buckets.len() <= 3, "{}", buckets.len());
        assert!(buckets.contains_key("held") && Arc::strong_count(&held) == 2);
    }

    #[test]
    fn windows_are_offset_per_bucket_the_same_way_everywhere() {
        let (a, b) = (
            offset("k:key_1:hourly:3600000", 3_600_000),
            offset("k:key_2:hourly:3600000", 3_600_000),
        );
        assert_ne!(a, b, "two buckets, two offsets");
        assert_eq!(a, offset("k:key_1:hourly:3600000", 3_600_000));
        assert!((0..3_600_000).contains(&a));
        let now = 1_800_000_000_123;
        let start = window_start(now, 3_600_000, a);
        assert!(start <= now && now < start + 3_600_000);
        assert_eq!((start - a).rem_euclid(3_600_000), 0);
        assert_eq!(window_start(start, 3_600_000, a), start, "a window starts at its start");
    }

    #[test]
    fn allow_and_deny_decide_without_counting() {
        let check = Check { bucket: "k", limit: 1, duration: 1000, cost: 1 };
        let allow = limiter(OnUnavailable::Allow);
        assert!((0..5).all(|_| !allow.fallback(check).exceeded));
        let deny = limiter(OnUnavailable::Deny);
        assert!(deny.fallback(check).exceeded);
    }
}
