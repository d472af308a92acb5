//! Slowing down server-key guessing, for the whole deployment: after a few wrong keys from one
//! client (verified identity and address), each further attempt must wait, doubling up to a
//! ceiling. The counts live in the vault database, so every replica sees them and a restart
//! forgets nothing.
//!
//! An attempt is counted before its key is evaluated (see [`Throttle::begin`]), and only one
//! attempt per client is evaluated at a time: a burst of parallel guesses gets one evaluation
//! and 429s, not a queue in front of the KDF.

use std::net::IpAddr;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};

use crate::error::VaultError;

/// How long an attempt may stay in flight before its mark lapses (a replica that died
/// mid-attempt must not block its client for ever). Longer than any derivation.
const IN_FLIGHT_LEASE: Duration = Duration::from_secs(60);

/// The throttle's rules.
#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    free_failures: u32,
    max_delay: Duration,
}

/// An attempt admitted by [`Throttle::begin`]: already counted as a failure. One that is
/// dropped without [`Throttle::success`] or [`Throttle::end`] (an error on the way, or the
/// caller hung up and its request was cancelled) ends as a failure in a task of its own, so
/// its client is not left waiting for the in-flight lease to lapse.
#[must_use = "an admitted attempt must end with success or failure"]
pub struct Attempt {
    identity: String,
    ip: IpAddr,
    /// Set until the attempt has ended.
    pending: Option<Pool>,
}

const END: &str = "UPDATE unlock_attempts SET in_flight_until = NULL, updated_at = now() \
     WHERE identity = $1 AND address = $2";

impl Drop for Attempt {
    fn drop(&mut self) {
        let Some(pool) = self.pending.take() else { return };
        let (identity, ip) = (std::mem::take(&mut self.identity), self.ip);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let ended = match pool.get().await {
                    Ok(client) => client.execute(END, &[&identity, &ip]).await.map(drop).map_err(anyhow::Error::from),
                    Err(error) => Err(error.into()),
                };
                if let Err(error) = ended {
                    tracing::warn!(error = %format!("{error:#}"), "could not end an unlock attempt; its lease lapses");
                }
            });
        }
    }
}

impl Throttle {
    /// `free_failures` wrong keys pass without delay; then 1 s, 2 s, 4 s… up to `max_delay`.
    pub fn new(free_failures: u32, max_delay: Duration) -> Self {
        Self { free_failures, max_delay }
    }

    /// The wait after `failures` wrong keys, if any.
    pub fn delay_after(&self, failures: u32) -> Option<Duration> {
        if failures < self.free_failures {
            return None;
        }
        let doublings = (failures - self.free_failures).min(20);
        Some(Duration::from_secs(1u64 << doublings).min(self.max_delay))
    }

    /// Admits an attempt of (`identity`, `ip`) and counts it as a failure before its key is
    /// evaluated, in one statement; or refuses with 429 and `Retry-After` when the client must
    /// wait, or already has an attempt in flight.
    pub async fn begin(
        &self,
        pool: &Pool,
        identity: &str,
        ip: IpAddr,
    ) -> Result<Attempt, VaultError> {
        let c = &pool.get().await?;
        // The delay this attempt would impose if it fails, computed for the count it will have.
        let row = c
            .query_opt(
                "INSERT INTO unlock_attempts AS a (identity, address, failures, in_flight_until) \
                 VALUES ($1, $2, 1, now() + make_interval(secs => $3)) \
                 ON CONFLICT (identity, address) DO UPDATE SET \
                     failures = a.failures + 1, \
                     in_flight_until = now() + make_interval(secs => $3), \
                     updated_at = now() \
                 WHERE (a.in_flight_until IS NULL OR a.in_flight_until <= now()) \
                   AND (a.blocked_until IS NULL OR a.blocked_until <= now()) \
                 RETURNING failures",
                &[&identity, &ip, &IN_FLIGHT_LEASE.as_secs_f64()],
            )
            .await?;
        let Some(row) = row else {
            return Err(self.refusal(c, identity, ip).await?);
        };
        // Counted: from here on the attempt ends however this call does.
        let attempt = Attempt { identity: identity.to_owned(), ip, pending: Some(pool.clone()) };
        let failures = u32::try_from(row.get::<_, i32>(0)).unwrap_or(u32::MAX);
        if let Some(delay) = self.delay_after(failures) {
            c.execute(
                "UPDATE unlock_attempts SET blocked_until = now() + make_interval(secs => $3) \
                 WHERE identity = $1 AND address = $2",
                &[&identity, &ip, &delay.as_secs_f64()],
            )
            .await?;
        }
        Ok(attempt)
    }

    /// The 429 for a client that must wait: until its block ends or its attempt in flight does.
    async fn refusal(
        &self,
        c: &impl GenericClient,
        identity: &str,
        ip: IpAddr,
    ) -> Result<VaultError, VaultError> {
        let row = c
            .query_opt(
                "SELECT extract(epoch FROM greatest( \
                     CASE WHEN blocked_until > now() THEN blocked_until - now() END, \
                     CASE WHEN in_flight_until > now() THEN interval '1 second' END))::float8 \
                 FROM unlock_attempts WHERE identity = $1 AND address = $2",
                &[&identity, &ip],
            )
            .await?;
        let wait = row.and_then(|r| r.get::<_, Option<f64>>(0)).unwrap_or(1.0);
        // Round up: a client that waits Retry-After seconds is let through.
        let retry_after_seconds = (wait.ceil() as u64).max(1);
        Ok(VaultError::TooManyAttempts { retry_after_seconds })
    }

    /// Ends an attempt whose key was right: the client's count starts over.
    pub async fn success(
        &self,
        c: &impl GenericClient,
        mut attempt: Attempt,
    ) -> Result<(), VaultError> {
        c.execute(
            "DELETE FROM unlock_attempts WHERE identity = $1 AND address = $2",
            &[&attempt.identity, &attempt.ip],
        )
        .await?;
        attempt.pending = None;
        Ok(())
    }

    /// Ends an attempt whose key was wrong, or that could not be evaluated: it stays counted,
    /// and the client may try again once any wait is over.
    pub async fn end(
        &self,
        c: &impl GenericClient,
        mut attempt: Attempt,
    ) -> Result<(), VaultError> {
        c.execute(END, &[&attempt.identity, &attempt.ip]).await?;
        attempt.pending = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_start_after_the_free_failures_and_double_up_to_the_ceiling() {
        let t = Throttle::new(3, Duration::from_secs(5));
        let waits: Vec<Option<u64>> =
            (1..=8).map(|n| t.delay_after(n).map(|d| d.as_secs())).collect();
        assert_eq!(waits, vec![None, None, Some(1), Some(2), Some(4), Some(5), Some(5), Some(5)]);
    }
}
