//! Rate limits of keys, per replica: a fixed window per (key, limit name). With N replicas a
//! key may get up to N× its limit; the README says so.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Windows kept before stale ones are pruned.
const PRUNE_AT: usize = 100_000;

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

/// Counters of one replica.
#[derive(Default)]
pub struct Limiter {
    windows: Mutex<HashMap<(String, String), (i64, i64)>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Limiter {
    /// Counts `cost` against `limit` per `duration` ms for (`key_id`, `name`).
    pub fn hit(&self, key_id: &str, name: &str, limit: i64, duration: i64, cost: i64) -> Outcome {
        let now = now_ms();
        let duration = duration.max(1);
        let window = now / duration;
        let reset = (window + 1) * duration;
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= PRUNE_AT {
            windows.retain(|_, (w, _)| *w * duration >= now - 86_400_000);
        }
        let entry = windows.entry((key_id.to_owned(), name.to_owned())).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        if entry.1 + cost > limit {
            return Outcome { exceeded: true, remaining: (limit - entry.1).max(0), reset };
        }
        entry.1 += cost;
        Outcome { exceeded: false, remaining: limit - entry.1, reset }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_allows_its_limit_then_refuses() {
        let limiter = Limiter::default();
        let a: Vec<bool> = (0..4).map(|_| limiter.hit("k", "n", 3, 60_000, 1).exceeded).collect();
        assert_eq!(a, vec![false, false, false, true]);
        assert!(!limiter.hit("k", "other", 3, 60_000, 1).exceeded);
        assert!(!limiter.hit("k2", "n", 3, 60_000, 1).exceeded);
        assert!(limiter.hit("k3", "n", 3, 60_000, 4).exceeded, "cost counts");
    }
}
