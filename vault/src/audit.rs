//! The vault's audit log: one entry per call on the mTLS listener (who, what, which keyring, how
//! many items, the answer's status, when), append-only and chained.
//!
//! Each entry's hash covers the previous entry's hash and every field of its own, so changing,
//! removing or reordering a stored entry breaks the chain from that entry on, and
//! `strongbox-vault audit verify` reports where. Plaintext and ciphertext never go in it.
//!
//! The chain is keyed. While the vault is unlocked an entry's hash is an HMAC-SHA256 under the
//! audit key (random, made at initialization, wrapped under the root key's KEK-wrapping subkey
//! and re-wrapped when the root rotates), so whoever can write the table cannot recompute the
//! chain after changing it. While locked there is no key: those entries (wrong unlocks, status
//! calls) get a plain SHA-256, and the next keyed entry covers their hashes, so only a trailing
//! run of them is open to rewriting until the vault is unlocked. `audit verify` checks the MACs
//! given the server key (offline, as `recover` does); without it, it checks the links and the
//! plain entries only and says so. A checkpoint (sequence number and head hash) is logged every
//! [`CHECKPOINT_EVERY`] entries and at least every [`CHECKPOINT_INTERVAL`], for log shipping to
//! keep off-box; `audit verify --expect SEQ:HASH` checks the chain still holds that entry.
//!
//! Replicas share the chain. Each replica's writer takes every entry waiting at that moment and
//! appends them in one statement (group commit) at the positions after the newest entry it knows;
//! the primary key makes a concurrent append by another replica fail as a duplicate, and the
//! writer then re-reads the newest entry and tries again. A call is answered only after
//! its entry is stored: if the log cannot be written, the caller gets 503 and no result.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use aws_lc_rs::{digest, hmac};
use deadpool_postgres::Pool;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::crypto::SecretKey;

/// The audit key once this replica has been unlocked, shared by the vault and the log.
pub type AuditKey = Arc<RwLock<Option<Arc<SecretKey>>>>;

/// Entries between two checkpoints.
pub const CHECKPOINT_EVERY: i64 = 1000;
/// Longest time between two checkpoints, when entries were written.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

/// The identity of changes a replica makes on its own schedule (`[rotation]`).
pub const SCHEDULER: &str = "strongbox-vault/scheduler";

/// The most entries one transaction appends.
const BATCH: usize = 512;

/// What a handler adds to its call's entry, once it has parsed the request.
#[derive(Debug, Clone, Default)]
pub struct Note {
    /// The keyring the call was about.
    pub keyring: Option<String>,
    /// How many items it carried.
    pub items: Option<i32>,
    /// A word the audit action gets after its route: which kind of call it was, where the
    /// route serves several (`share`, `reset` on `/v1/sys/unlock`).
    pub detail: Option<&'static str>,
}

tokio::task_local! {
    static NOTE: Arc<Mutex<Note>>;
}

/// Records the keyring and item count of the call being served (no-op outside a call).
pub fn note(keyring: &str, items: usize) {
    let _outside_a_call = NOTE.try_with(|n| {
        let mut n = n.lock().unwrap_or_else(|e| e.into_inner());
        n.keyring = Some(keyring.to_owned());
        n.items = Some(i32::try_from(items).unwrap_or(i32::MAX));
    });
}

/// Records which kind of call is being served, where one route serves several.
pub fn note_detail(detail: &'static str) {
    let _outside_a_call = NOTE.try_with(|n| {
        n.lock().unwrap_or_else(|e| e.into_inner()).detail = Some(detail);
    });
}

/// Runs `call` with an empty note, then returns what it noted.
pub async fn noting<F: Future>(call: F) -> (F::Output, Note) {
    let slot = Arc::new(Mutex::new(Note::default()));
    let output = NOTE.scope(slot.clone(), call).await;
    let note = slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
    (output, note)
}

/// One call, as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The caller's SPIFFE id (or why it has none).
    pub identity: String,
    /// Method and route template, such as `POST /v1/keyrings/{keyring}/rotate`.
    pub action: String,
    /// The keyring, when the call named one.
    pub keyring: Option<String>,
    /// Items in the batch, for data-plane calls.
    pub items: Option<i32>,
    /// The HTTP status of the answer.
    pub status: i16,
    /// The W3C trace id the caller sent, or empty.
    pub trace_id: String,
}

/// A stored entry: its place in the chain and its time.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Position, from 1, without gaps.
    pub seq: i64,
    /// When it was appended (microsecond precision, as Postgres stores it).
    pub at: OffsetDateTime,
    /// The call.
    pub entry: Entry,
    /// The previous entry's hash (32 zero bytes for the first).
    pub prev_hash: Vec<u8>,
    /// This entry's hash.
    pub hash: Vec<u8>,
}

/// The chain hash of an entry: over the previous hash and every field, each length-prefixed so
/// that no two different entries encode alike. With `key`, an HMAC-SHA256 under it; without, a
/// plain SHA-256 (entries written while the vault is locked, and those from before the chain was
/// keyed).
pub fn chain_hash(
    prev_hash: &[u8],
    seq: i64,
    at: OffsetDateTime,
    entry: &Entry,
    key: Option<&SecretKey>,
) -> [u8; 32] {
    let mut message = Vec::with_capacity(256);
    let mut field = |bytes: &[u8]| {
        message.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        message.extend_from_slice(bytes);
    };
    field(if key.is_some() { b"strongbox-vault-audit-v2" } else { b"strongbox-vault-audit-v1" });
    field(prev_hash);
    field(&seq.to_be_bytes());
    field(&micros(at).to_be_bytes());
    field(entry.identity.as_bytes());
    field(entry.action.as_bytes());
    match &entry.keyring {
        Some(k) => field(&[&[1u8][..], k.as_bytes()].concat()),
        None => field(&[0u8]),
    }
    match entry.items {
        Some(n) => field(&[&[1u8][..], &n.to_be_bytes()[..]].concat()),
        None => field(&[0u8]),
    }
    field(&entry.status.to_be_bytes());
    field(entry.trace_id.as_bytes());
    let mut out = [0u8; 32];
    match key {
        Some(key) => {
            let key = hmac::Key::new(hmac::HMAC_SHA256, key.expose());
            out.copy_from_slice(hmac::sign(&key, &message).as_ref());
        }
        None => out.copy_from_slice(digest::digest(&digest::SHA256, &message).as_ref()),
    }
    out
}

fn micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// The audit log writer of one replica.
pub struct AuditLog {
    queue: mpsc::Sender<Queued>,
    key: AuditKey,
}

/// An entry waiting to be written, with the key it is written under: the key when the call
/// was answered, not when the batch is written (a lock in between must not unkey it).
type Queued = (Entry, Option<Arc<SecretKey>>, oneshot::Sender<bool>);

impl AuditLog {
    /// Starts the writer; entries are keyed with `key` while it holds one. It stops when the
    /// last handle is dropped.
    pub fn start(pool: Pool, key: AuditKey) -> Self {
        let (queue, waiting) = mpsc::channel(4 * BATCH);
        tokio::spawn(write_loop(pool, waiting));
        Self { queue, key }
    }

    /// Appends `entry`, keyed under the audit key held now; `false` when it could not be stored.
    pub async fn record(&self, entry: Entry) -> bool {
        let key = self.key.read().unwrap_or_else(|e| e.into_inner()).clone();
        let (done, stored) = oneshot::channel();
        if self.queue.send((entry, key, done)).await.is_err() {
            return false;
        }
        stored.await.unwrap_or(false)
    }
}

/// The newest entry a writer knows of: its position and hash.
type Head = (i64, Vec<u8>);

/// When this replica last logged a checkpoint.
struct Checkpoint {
    seq: i64,
    at: Instant,
}

impl Checkpoint {
    /// Logs (seq, head) once `CHECKPOINT_EVERY` entries or `CHECKPOINT_INTERVAL` have passed:
    /// shipped off the host with the logs, a checkpoint is what `audit verify --expect` checks
    /// against, and what shows a cut-off tail.
    fn maybe_log(&mut self, seq: i64, hash: &[u8]) {
        if seq - self.seq < CHECKPOINT_EVERY && self.at.elapsed() < CHECKPOINT_INTERVAL {
            return;
        }
        let head = strongbox_shared::id::hex(hash);
        tracing::info!(seq, head, checkpoint = format!("{seq}:{head}"), "audit checkpoint");
        metrics::gauge!("strongbox_vault_audit_checkpoint_seq").set(seq as f64);
        *self = Self { seq, at: Instant::now() };
    }
}

/// Appends that lose to another replica this many times in a row give up (the calls are refused).
const MAX_ATTEMPTS: usize = 16;

const INSERT: &str = "INSERT INTO audit_log (seq, at, identity, action, keyring, items, status, trace_id, prev_hash, hash, keyed) \
     SELECT s, $2, i, a, k, n, st, t, p, h, y \
     FROM unnest($1::bigint[], $3::text[], $4::text[], $5::text[], $6::int[], $7::smallint[], $8::text[], $9::bytea[], $10::bytea[], $11::bool[]) \
       AS u(s, i, a, k, n, st, t, p, h, y)";

async fn write_loop(pool: Pool, mut waiting: mpsc::Receiver<Queued>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut head = None;
    let mut checkpoint = Checkpoint { seq: 0, at: Instant::now() };
    while waiting.recv_many(&mut batch, BATCH).await > 0 {
        let mut entries = Vec::with_capacity(batch.len());
        let mut acks = Vec::with_capacity(batch.len());
        for (entry, key, ack) in batch.drain(..) {
            entries.push((entry, key));
            acks.push(ack);
        }
        let stored = match append(&pool, &mut head, &entries).await {
            Ok(()) => true,
            Err(error) => {
                metrics::counter!("strongbox_vault_audit_write_failures_total").increment(1);
                tracing::error!(error = %format!("{error:#}"), entries = entries.len(), "audit log write failed; the calls are refused");
                false
            }
        };
        if stored {
            metrics::counter!("strongbox_vault_audit_entries_total")
                .increment(entries.len() as u64);
            if let Some((seq, hash)) = &head {
                checkpoint.maybe_log(*seq, hash);
            }
        }
        for ack in acks {
            let _caller_gone = ack.send(stored);
        }
    }
}

/// Appends `entries` after `head` in one statement. The primary key on `seq` decides between
/// replicas appending at once: the loser's insert fails as a duplicate, and it re-reads the
/// head and tries again. A replica that appends alone keeps its head in memory, so an append
/// is one round trip.
async fn append(
    pool: &Pool,
    head: &mut Option<Head>,
    entries: &[(Entry, Option<Arc<SecretKey>>)],
) -> anyhow::Result<()> {
    let client = pool.get().await?;
    let insert = client.prepare_cached(INSERT).await?;
    let now = OffsetDateTime::now_utc();
    // Postgres keeps microseconds; hash what it will give back.
    let at = now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)?;
    for _ in 0..MAX_ATTEMPTS {
        let (mut seq, mut prev) = match head.take() {
            Some(known) => known,
            None => client
                .query_opt("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", &[])
                .await?
                .map_or((0, vec![0u8; 32]), |r| (r.get(0), r.get(1))),
        };
        let mut columns = Columns::default();
        for (entry, key) in entries {
            seq = seq.checked_add(1).context("the audit log's positions are exhausted")?;
            let hash = chain_hash(&prev, seq, at, entry, key.as_deref());
            columns.push(seq, entry, std::mem::replace(&mut prev, hash.to_vec()), hash.to_vec());
            columns.keyed.push(key.is_some());
        }
        let inserted = client
            .execute(
                &insert,
                &[
                    &columns.seq,
                    &at,
                    &columns.identity,
                    &columns.action,
                    &columns.keyring,
                    &columns.items,
                    &columns.status,
                    &columns.trace_id,
                    &columns.prev_hash,
                    &columns.hash,
                    &columns.keyed,
                ],
            )
            .await;
        match inserted {
            Ok(_) => {
                *head = Some((seq, prev));
                return Ok(());
            }
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                // Another replica appended first; `head` is now unknown and is re-read.
            }
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("another replica won the audit log's next position {MAX_ATTEMPTS} times in a row")
}

#[derive(Default)]
struct Columns {
    seq: Vec<i64>,
    identity: Vec<String>,
    action: Vec<String>,
    keyring: Vec<Option<String>>,
    items: Vec<Option<i32>>,
    status: Vec<i16>,
    trace_id: Vec<String>,
    prev_hash: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
    keyed: Vec<bool>,
}

impl Columns {
    fn push(&mut self, seq: i64, entry: &Entry, prev_hash: Vec<u8>, hash: Vec<u8>) {
        self.seq.push(seq);
        self.identity.push(entry.identity.clone());
        self.action.push(entry.action.clone());
        self.keyring.push(entry.keyring.clone());
        self.items.push(entry.items);
        self.status.push(entry.status);
        self.trace_id.push(entry.trace_id.clone());
        self.prev_hash.push(prev_hash);
        self.hash.push(hash);
    }
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Verdict {
    /// Every entry links to the one before and matches its hash.
    Intact {
        /// Entries checked.
        entries: i64,
        /// The newest entry's hash (hex), to note down and compare later: the chain alone
        /// cannot show that entries were cut off its end.
        head: Option<String>,
        /// Keyed entries whose MAC was not checked, for want of the server key (their links
        /// were).
        unchecked_macs: i64,
        /// The newest entries after the last keyed one: plain hashes, which anyone who can
        /// write the table could have rewritten (a checkpoint is what vouches for them).
        plain_tail: i64,
    },
    /// The chain breaks at `seq`.
    Broken {
        /// The first entry that does not check out.
        seq: i64,
        /// What is wrong with it.
        reason: String,
        /// Entries before it that checked out.
        entries_ok: i64,
    },
}

/// An entry the chain must still hold: `SEQ:HASH` from a checkpoint noted earlier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Its position.
    pub seq: i64,
    /// Its hash.
    pub hash: Vec<u8>,
}

impl std::str::FromStr for Expected {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad =
            || format!("{text:?} is not SEQ:HASH (a checkpoint: a number, ':', 64 hex digits)");
        let (seq, hex) = text.split_once(':').ok_or_else(bad)?;
        let seq: i64 = seq.parse().ok().filter(|s| *s > 0).ok_or_else(bad)?;
        if hex.len() != 64 {
            return Err(bad());
        }
        let hash = (0..32)
            .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or(""), 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| bad())?;
        Ok(Self { seq, hash })
    }
}

/// The audit key and where the chain it keys starts, as the wrapping binds them.
pub struct OpenedKey {
    key: SecretKey,
    keyed_after: i64,
}

/// How `verify` treats keyed entries' MACs.
pub enum Macs {
    /// Not checked: no server key was given (links and plain hashes still are).
    Unchecked,
    /// Checked under the audit key.
    Check(OpenedKey),
    /// The database holds no audit key: any keyed entry means the key was deleted, which
    /// breaks the log as evidence.
    KeyGone,
    /// The server key opens the root but not the audit key: its record was altered (or where
    /// keying starts was moved).
    KeyAltered,
}

/// The audit key, opened with the server key as `recover` opens the root: for `audit verify`,
/// offline. `KeyGone` when the database holds none.
pub async fn open_key(pool: &Pool, server_key: secrecy::SecretString) -> anyhow::Result<Macs> {
    use crate::crypto::hierarchy;
    let client = pool.get().await.context("connecting to the vault database")?;
    let record =
        crate::store::root(&client).await?.context("the vault database holds no root record")?;
    let Some(row) = crate::store::audit_key(&client).await? else {
        return Ok(Macs::KeyGone);
    };
    if !record.params.within_ceiling() {
        anyhow::bail!("the root record asks for argon2 parameters above the ceiling");
    }
    let (params, salt) = (record.params, record.salt.clone());
    let unlock = tokio::task::spawn_blocking(move || {
        hierarchy::derive_unlock_key(&server_key, params, &salt)
    })
    .await??;
    let root = hierarchy::open_root(&unlock, record.params, &record.salt, &record.sealed_root)
        .map_err(|_| anyhow::anyhow!("the server key does not open this vault's root record"))?;
    let wrapping = hierarchy::kek_wrapping_key(&root)?;
    Ok(match hierarchy::unwrap_audit_key(&wrapping, row.keyed_after(), &row.wrapped) {
        Ok(key) => Macs::Check(OpenedKey { key, keyed_after: row.keyed_after }),
        Err(_) => Macs::KeyAltered,
    })
}

/// Whether the vault may have written `entry` with a plain hash although the chain is keyed
/// by then: only a replica never unlocked since it started holds no key, and it can only have
/// refused a call, reported its status, been locked, or taken shares towards an unlock.
fn plain_is_due(entry: &Entry) -> bool {
    !(200..300).contains(&entry.status)
        || matches!(
            entry.action.as_str(),
            // HEAD is answered by the GET handler.
            "GET /v1/sys/status"
                | "HEAD /v1/sys/status"
                | "POST /v1/sys/lock"
                // Shares given and progress reset while locked, before any key is in memory.
                | "POST /v1/sys/unlock share"
                | "POST /v1/sys/unlock reset"
        )
}

/// Walks the whole chain in order, checking keyed entries' MACs with `key` when given, and
/// that `expect` (when given) is still in it.
pub async fn verify(
    pool: &Pool,
    macs: &Macs,
    expect: Option<&Expected>,
) -> anyhow::Result<Verdict> {
    let client = pool.get().await?;
    let mut expected_seq = 1i64;
    let mut prev = vec![0u8; 32];
    let mut unchecked_macs = 0i64;
    let mut last_keyed = 0i64;
    // After the audit key was made, a plain hash is only due for what a replica without the
    // key answers; on anything else it means the entry was rewritten by someone without the
    // key (a downgrade). Given the server key, where keying starts comes from the key's
    // wrapping and cannot be moved; without it, from the table, as a consistency check.
    let (key, keyed_after, key_gone) = match macs {
        Macs::Check(opened) => (Some(&opened.key), opened.keyed_after, false),
        Macs::Unchecked => match crate::store::audit_key(&client).await? {
            Some(row) => (None, row.keyed_after, false),
            None => (None, i64::MAX, true),
        },
        Macs::KeyGone => (None, i64::MAX, true),
        Macs::KeyAltered => {
            return Ok(Verdict::Broken {
                seq: 0,
                reason: "the audit key's record was altered: the server key opens the root but \
                         not the audit key (or where keying starts was moved)"
                    .to_owned(),
                entries_ok: 0,
            });
        }
    };
    loop {
        let rows = client
            .query(
                "SELECT seq, at, identity, action, keyring, items, status, trace_id, prev_hash, hash, keyed \
                 FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT 10000",
                &[&expected_seq],
            )
            .await?;
        if rows.is_empty() {
            let entries = expected_seq - 1;
            if let Some(expect) = expect
                && expect.seq > entries
            {
                return Ok(Verdict::Broken {
                    seq: expect.seq,
                    reason: format!(
                        "the checkpoint's entry is gone: the log ends at {entries} (its end was cut off)"
                    ),
                    entries_ok: entries,
                });
            }
            // The call that made the key (an initialize or unlock) is answered with a keyed
            // entry, so entries after keying started with none keyed are a plain rewrite.
            if key.is_some() && last_keyed == 0 && entries > keyed_after {
                return Ok(Verdict::Broken {
                    seq: keyed_after + 1,
                    reason: "no entry after the audit key was made is keyed (the chain was \
                             rewritten without the audit key)"
                        .to_owned(),
                    entries_ok: keyed_after,
                });
            }
            let head = (expected_seq > 1).then(|| strongbox_shared::id::hex(&prev));
            return Ok(Verdict::Intact {
                entries,
                head,
                unchecked_macs,
                plain_tail: entries - last_keyed,
            });
        }
        for row in rows {
            let stored = Stored {
                seq: row.get(0),
                at: row.get(1),
                entry: Entry {
                    identity: row.get(2),
                    action: row.get(3),
                    keyring: row.get(4),
                    items: row.get(5),
                    status: row.get(6),
                    trace_id: row.get(7),
                },
                prev_hash: row.get(8),
                hash: row.get(9),
            };
            let keyed: bool = row.get(10);
            let broken = |reason: &str| Verdict::Broken {
                seq: expected_seq,
                reason: reason.to_owned(),
                entries_ok: expected_seq - 1,
            };
            if stored.seq != expected_seq {
                return Ok(broken(&format!(
                    "entry missing: the next stored entry is {} (entries were deleted)",
                    stored.seq
                )));
            }
            if stored.prev_hash != prev {
                return Ok(broken(
                    "its previous-hash does not match the entry before it (entries were deleted, inserted or reordered)",
                ));
            }
            if !keyed && stored.seq > keyed_after && !plain_is_due(&stored.entry) {
                return Ok(broken(
                    "a plain hash where the vault would have keyed the entry (rewritten \
                     without the audit key)",
                ));
            }
            if keyed && key_gone {
                return Ok(broken(
                    "a keyed entry, but the vault database holds no audit key (it was deleted, \
                     so no MAC can be checked)",
                ));
            }
            if keyed {
                last_keyed = stored.seq;
            }
            match (keyed, key) {
                (true, Some(key)) => {
                    let computed =
                        chain_hash(&prev, stored.seq, stored.at, &stored.entry, Some(key));
                    if stored.hash != computed {
                        return Ok(broken(
                            "its MAC does not match its contents (the entry was altered, or its \
                             chain recomputed without the audit key)",
                        ));
                    }
                }
                (true, None) => unchecked_macs += 1,
                (false, _) => {
                    let computed = chain_hash(&prev, stored.seq, stored.at, &stored.entry, None);
                    if stored.hash != computed {
                        return Ok(broken(
                            "its contents do not match its hash (the entry was altered)",
                        ));
                    }
                }
            }
            if let Some(expect) = expect
                && expect.seq == stored.seq
                && expect.hash != stored.hash
            {
                return Ok(broken(
                    "it does not carry the checkpoint's hash (the log was rewritten since)",
                ));
            }
            prev = stored.hash;
            expected_seq += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            identity: "spiffe://strongbox.local/api".to_owned(),
            action: "POST /v1/encrypt".to_owned(),
            keyring: Some("ws_1".to_owned()),
            items: Some(3),
            status: 200,
            trace_id: String::new(),
        }
    }

    #[test]
    fn every_field_and_the_previous_hash_change_the_hash() {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let base = chain_hash(&[0; 32], 1, at, &entry(), None);
        let key = SecretKey::generate().unwrap();
        let other = SecretKey::generate().unwrap();
        let keyed = chain_hash(&[0; 32], 1, at, &entry(), Some(&key));
        let mut variants = vec![
            chain_hash(&[1; 32], 1, at, &entry(), None),
            chain_hash(&[0; 32], 2, at, &entry(), None),
            chain_hash(&[0; 32], 1, at + time::Duration::microseconds(1), &entry(), None),
            keyed,
        ];
        assert_ne!(keyed, chain_hash(&[0; 32], 1, at, &entry(), Some(&other)), "the key counts");
        assert_eq!(keyed, chain_hash(&[0; 32], 1, at, &entry(), Some(&key)), "deterministic");
        let changes: [fn(&mut Entry); 7] = [
            |e| e.identity.push('x'),
            |e| e.action.push('x'),
            |e| e.keyring = None,
            |e| e.keyring = Some(String::new()),
            |e| e.items = None,
            |e| e.status = 500,
            |e| e.trace_id.push('0'),
        ];
        for change in changes {
            let mut e = entry();
            change(&mut e);
            variants.push(chain_hash(&[0; 32], 1, at, &e, None));
        }
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(*v, base, "variant {i} hashed like the original");
        }
    }
}

#[cfg(test)]
mod expected_tests {
    use super::Expected;

    #[test]
    fn a_checkpoint_parses_from_seq_and_hash() {
        let hash = "ab".repeat(32);
        let e: Expected = format!("42:{hash}").parse().unwrap();
        assert_eq!((e.seq, e.hash.len(), e.hash[0]), (42, 32, 0xab));
        for bad in ["42", "0:ab", &format!("x:{hash}"), &format!("42:{}", "zz".repeat(32))] {
            assert!(bad.parse::<Expected>().is_err(), "{bad}");
        }
    }
}
