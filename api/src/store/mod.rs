//! SQL for the api database, one module per aggregate. Functions take any client or
//! transaction, so callers compose them.

pub mod apis;
pub mod encrypted;
pub mod keys;
pub mod root_keys;
pub mod workspaces;

/// Milliseconds since the Unix epoch, as Unkey's wire format counts time.
pub fn unix_ms(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The time `ms` milliseconds after the Unix epoch.
pub fn from_unix_ms(ms: i64) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}
