//! Slowing down server-key guessing: after a few wrong keys from one client (identity and
//! address), each further attempt must wait, doubling up to a ceiling.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::VaultError;

/// Entries kept before expired ones are pruned.
const PRUNE_AT: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    blocked_until: Instant,
}

/// Failure counts per client.
pub struct Throttle {
    free_failures: u32,
    max_delay: Duration,
    entries: Mutex<HashMap<(String, IpAddr), Entry>>,
}

impl Throttle {
    /// `free_failures` wrong keys pass without delay; then 1 s, 2 s, 4 s… up to `max_delay`.
    pub fn new(free_failures: u32, max_delay: Duration) -> Self {
        Self { free_failures, max_delay, entries: Mutex::new(HashMap::new()) }
    }

    /// Refuses an attempt while the client must wait.
    pub fn check(&self, identity: &str, ip: IpAddr) -> Result<(), VaultError> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.get(&(identity.to_owned(), ip)) {
            let now = Instant::now();
            if entry.blocked_until > now {
                let wait = entry.blocked_until - now;
                // Round up: a client that waits Retry-After seconds is let through.
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                return Err(VaultError::TooManyAttempts { retry_after_seconds: secs.max(1) });
            }
        }
        Ok(())
    }

    /// Records a wrong key.
    pub fn failure(&self, identity: &str, ip: IpAddr) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if entries.len() >= PRUNE_AT {
            entries.retain(|_, e| e.blocked_until > now);
        }
        let entry = entries
            .entry((identity.to_owned(), ip))
            .or_insert(Entry { failures: 0, blocked_until: now });
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures >= self.free_failures {
            let doublings = (entry.failures - self.free_failures).min(20);
            let delay = Duration::from_secs(1u64 << doublings).min(self.max_delay);
            entry.blocked_until = now + delay;
        }
    }

    /// Forgets a client's failures after a right key.
    pub fn success(&self, identity: &str, ip: IpAddr) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(&(identity.to_owned(), ip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_start_after_the_free_failures_and_reset_on_success() {
        let t = Throttle::new(3, Duration::from_secs(300));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..2 {
            t.check("op", ip).unwrap();
            t.failure("op", ip);
        }
        t.check("op", ip).unwrap();
        t.failure("op", ip);
        let Err(VaultError::TooManyAttempts { retry_after_seconds }) = t.check("op", ip) else {
            panic!("third failure should impose a wait");
        };
        assert_eq!(retry_after_seconds, 1);
        // Another identity or address is unaffected.
        t.check("other", ip).unwrap();
        t.check("op", "10.0.0.2".parse().unwrap()).unwrap();
        t.success("op", ip);
        t.check("op", ip).unwrap();
    }

    #[test]
    fn waits_double_up_to_the_ceiling() {
        let t = Throttle::new(1, Duration::from_secs(5));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut waits = Vec::new();
        for _ in 0..6 {
            t.failure("op", ip);
            if let Err(VaultError::TooManyAttempts { retry_after_seconds }) = t.check("op", ip) {
                waits.push(retry_after_seconds);
            }
        }
        assert_eq!(waits, vec![1, 2, 4, 5, 5, 5]);
    }
}
