//! SQL for the vault database. Every function takes any client or transaction, so callers
//! compose them into transactions.

use deadpool_postgres::GenericClient;
use strongbox_shared::db::prepared;

use crate::crypto::hierarchy::Argon2Params;

/// Channel of the vault's change notifications.
pub const CHANNEL: &str = "strongbox_vault";

/// The root record row.
#[derive(Debug, Clone)]
pub struct RootRow {
    /// Compare-and-swap token: bumped by every change.
    pub generation: i64,
    /// Bumped when the root key itself changes.
    pub root_version: i32,
    /// Argon2 parameters that derive the unlock key.
    pub params: Argon2Params,
    /// Argon2 salt.
    pub salt: Vec<u8>,
    /// The root key sealed under the unlock key.
    pub sealed_root: Vec<u8>,
    /// How the server key is held.
    pub seal: Seal,
    /// Under [`Seal::Pkcs11`]: the server key as the token sealed it.
    pub token: Option<TokenSealed>,
    /// Under [`Seal::Pkcs11`]: the recovery shares' split.
    pub recovery: Option<Recovery>,
}

/// A split of recovery shares: not secret, and useless without the root key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// N.
    pub shares: u8,
    /// K.
    pub threshold: u8,
    /// The split's random id, which each of its shares carries.
    pub set: [u8; 4],
    /// HMAC of the split's secret under the root's recovery subkey.
    pub check: Vec<u8>,
}

/// The server key sealed by a PKCS#11 token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSealed {
    /// The label of the token's key that sealed it.
    pub key_label: String,
    /// What the token's `seal` made.
    pub sealed: Vec<u8>,
}

/// How the server key is held: one secret, or split into shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seal {
    /// One server key an operator holds.
    Key,
    /// Split into `shares` shares, any `threshold` of which rebuild it.
    Shares {
        /// N.
        shares: u8,
        /// K.
        threshold: u8,
        /// The split's random id, which each of its shares carries.
        set: [u8; 4],
    },
    /// A random server key, sealed by a key in a PKCS#11 token (the record's `token`).
    Pkcs11,
}

impl Seal {
    fn columns(self) -> (Option<i16>, Option<i16>, Option<Vec<u8>>) {
        match self {
            Self::Key | Self::Pkcs11 => (None, None, None),
            Self::Shares { shares, threshold, set } => {
                (Some(i16::from(shares)), Some(i16::from(threshold)), Some(set.to_vec()))
            }
        }
    }
}

fn to_u32(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

fn to_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn root_from_row(row: &tokio_postgres::Row) -> RootRow {
    let token = match (
        row.get::<_, Option<String>>("token_key_label"),
        row.get::<_, Option<Vec<u8>>>("token_sealed"),
    ) {
        (Some(key_label), Some(sealed)) => Some(TokenSealed { key_label, sealed }),
        _ => None,
    };
    let recovery = match (
        row.get::<_, Option<i16>>("recovery_shares"),
        row.get::<_, Option<i16>>("recovery_threshold"),
        row.get::<_, Option<Vec<u8>>>("recovery_set"),
        row.get::<_, Option<Vec<u8>>>("recovery_check"),
    ) {
        (Some(n), Some(k), Some(set), Some(check)) => Some(Recovery {
            shares: u8::try_from(n).unwrap_or(0),
            threshold: u8::try_from(k).unwrap_or(0),
            set: <[u8; 4]>::try_from(set.as_slice()).unwrap_or_default(),
            check,
        }),
        _ => None,
    };
    RootRow {
        generation: row.get("generation"),
        root_version: row.get("root_version"),
        params: Argon2Params {
            m_kib: to_u32(row.get("argon2_m_kib")),
            t: to_u32(row.get("argon2_t")),
            p: to_u32(row.get("argon2_p")),
        },
        salt: row.get("salt"),
        sealed_root: row.get("sealed_root"),
        seal: match (
            row.get::<_, Option<i16>>("shares"),
            row.get::<_, Option<i16>>("threshold"),
            row.get::<_, Option<Vec<u8>>>("share_set"),
        ) {
            _ if token.is_some() => Seal::Pkcs11,
            (Some(n), Some(k), Some(set)) => Seal::Shares {
                shares: u8::try_from(n).unwrap_or(0),
                threshold: u8::try_from(k).unwrap_or(0),
                set: <[u8; 4]>::try_from(set.as_slice()).unwrap_or_default(),
            },
            _ => Seal::Key,
        },
        token,
        recovery,
    }
}

const ROOT_COLUMNS: &str = "generation, root_version, argon2_m_kib, argon2_t, argon2_p, salt, \
                            sealed_root, shares, threshold, share_set, token_key_label, token_sealed, \
                            recovery_shares, recovery_threshold, recovery_set, recovery_check";

/// The root record, if the vault is initialized.
pub async fn root(c: &impl GenericClient) -> Result<Option<RootRow>, tokio_postgres::Error> {
    let row =
        prepared::query_opt(c, &format!("SELECT {ROOT_COLUMNS} FROM root_record"), &[]).await?;
    Ok(row.as_ref().map(root_from_row))
}

/// The root record, locked until the transaction ends.
pub async fn root_for_update(
    c: &impl GenericClient,
) -> Result<Option<RootRow>, tokio_postgres::Error> {
    let row =
        prepared::query_opt(c, &format!("SELECT {ROOT_COLUMNS} FROM root_record FOR UPDATE"), &[])
            .await?;
    Ok(row.as_ref().map(root_from_row))
}

/// The root version, share-locked so no root rotation commits while the caller wraps a KEK.
pub async fn root_version_for_share(
    c: &impl GenericClient,
) -> Result<Option<i32>, tokio_postgres::Error> {
    let row = prepared::query_opt(c, "SELECT root_version FROM root_record FOR SHARE", &[]).await?;
    Ok(row.map(|r| r.get(0)))
}

/// Inserts the first root record. `false` when one exists already.
pub async fn insert_root(
    c: &impl GenericClient,
    root: &RootRow,
) -> Result<bool, tokio_postgres::Error> {
    let (shares, threshold, set) = root.seal.columns();
    let (label, sealed) = token_columns(root);
    let (r_shares, r_threshold, r_set, r_check) = recovery_columns(root);
    let n = prepared::execute(
        c,
        "INSERT INTO root_record (id, generation, root_version, argon2_m_kib, argon2_t, \
             argon2_p, salt, sealed_root, shares, threshold, share_set, token_key_label, \
             token_sealed, recovery_shares, recovery_threshold, recovery_set, recovery_check) \
             VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (id) DO NOTHING",
        &[
            &root.generation,
            &root.root_version,
            &to_i32(root.params.m_kib),
            &to_i32(root.params.t),
            &to_i32(root.params.p),
            &root.salt,
            &root.sealed_root,
            &shares,
            &threshold,
            &set,
            &label,
            &sealed,
            &r_shares,
            &r_threshold,
            &r_set,
            &r_check,
        ],
    )
    .await?;
    Ok(n == 1)
}

type RecoveryColumns<'a> = (Option<i16>, Option<i16>, Option<&'a [u8]>, Option<&'a [u8]>);

fn recovery_columns(root: &RootRow) -> RecoveryColumns<'_> {
    match &root.recovery {
        Some(r) => (
            Some(i16::from(r.shares)),
            Some(i16::from(r.threshold)),
            Some(r.set.as_slice()),
            Some(r.check.as_slice()),
        ),
        None => (None, None, None, None),
    }
}

fn token_columns(root: &RootRow) -> (Option<&str>, Option<&[u8]>) {
    match &root.token {
        Some(t) => (Some(t.key_label.as_str()), Some(t.sealed.as_slice())),
        None => (None, None),
    }
}

/// Replaces the root record if its generation is still `expected`. `false` when another change
/// won the race.
pub async fn replace_root(
    c: &impl GenericClient,
    expected_generation: i64,
    root: &RootRow,
) -> Result<bool, tokio_postgres::Error> {
    let (shares, threshold, set) = root.seal.columns();
    let (label, sealed) = token_columns(root);
    let (r_shares, r_threshold, r_set, r_check) = recovery_columns(root);
    let n = prepared::execute(
        c,
        "UPDATE root_record SET generation = $2, root_version = $3, argon2_m_kib = $4, \
             argon2_t = $5, argon2_p = $6, salt = $7, sealed_root = $8, shares = $9, \
             threshold = $10, share_set = $11, token_key_label = $12, token_sealed = $13, \
             recovery_shares = $14, recovery_threshold = $15, recovery_set = $16, \
             recovery_check = $17, updated_at = now() WHERE generation = $1",
        &[
            &expected_generation,
            &root.generation,
            &root.root_version,
            &to_i32(root.params.m_kib),
            &to_i32(root.params.t),
            &to_i32(root.params.p),
            &root.salt,
            &root.sealed_root,
            &shares,
            &threshold,
            &set,
            &label,
            &sealed,
            &r_shares,
            &r_threshold,
            &r_set,
            &r_check,
        ],
    )
    .await?;
    Ok(n == 1)
}

/// Gives a token-sealed root record that has no recovery split `recovery`, if its generation is
/// still `expected`; returns the new root version and generation, `None` when the record
/// changed or has a split already.
pub async fn add_recovery(
    c: &impl GenericClient,
    expected_generation: i64,
    recovery: &Recovery,
) -> Result<Option<(i32, i64)>, tokio_postgres::Error> {
    let row = prepared::query_opt(
        c,
        "UPDATE root_record SET recovery_shares = $2, recovery_threshold = $3, \
             recovery_set = $4, recovery_check = $5, generation = generation + 1, \
             updated_at = now() \
         WHERE generation = $1 AND recovery_check IS NULL AND token_sealed IS NOT NULL \
         RETURNING root_version, generation",
        &[
            &expected_generation,
            &i16::from(recovery.shares),
            &i16::from(recovery.threshold),
            &recovery.set.as_slice(),
            &recovery.check,
        ],
    )
    .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// A stored KEK.
#[derive(Debug, Clone)]
pub struct KekRow {
    /// Its version.
    pub version: i32,
    /// The root version it is wrapped under.
    pub root_version: i32,
    /// Sealed under the root's KEK-wrapping subkey.
    pub wrapped: Vec<u8>,
}

fn kek_from_row(row: &tokio_postgres::Row) -> KekRow {
    KekRow { version: row.get(0), root_version: row.get(1), wrapped: row.get(2) }
}

/// Every KEK, oldest first.
pub async fn keks(c: &impl GenericClient) -> Result<Vec<KekRow>, tokio_postgres::Error> {
    let rows =
        prepared::query(c, "SELECT version, root_version, wrapped FROM keks ORDER BY version", &[])
            .await?;
    Ok(rows.iter().map(kek_from_row).collect())
}

/// Every KEK, locked for re-wrapping.
pub async fn keks_for_update(c: &impl GenericClient) -> Result<Vec<KekRow>, tokio_postgres::Error> {
    let rows = prepared::query(
        c,
        "SELECT version, root_version, wrapped FROM keks ORDER BY version FOR UPDATE",
        &[],
    )
    .await?;
    Ok(rows.iter().map(kek_from_row).collect())
}

/// One KEK.
pub async fn kek(
    c: &impl GenericClient,
    version: i32,
) -> Result<Option<KekRow>, tokio_postgres::Error> {
    let row = prepared::query_opt(
        c,
        "SELECT version, root_version, wrapped FROM keks WHERE version = $1",
        &[&version],
    )
    .await?;
    Ok(row.as_ref().map(kek_from_row))
}

/// The newest KEK.
pub async fn latest_kek(c: &impl GenericClient) -> Result<Option<KekRow>, tokio_postgres::Error> {
    let row = prepared::query_opt(
        c,
        "SELECT version, root_version, wrapped FROM keks ORDER BY version DESC LIMIT 1",
        &[],
    )
    .await?;
    Ok(row.as_ref().map(kek_from_row))
}

/// Inserts a KEK version. `false` when that version exists (a concurrent rotation won).
pub async fn insert_kek(
    c: &impl GenericClient,
    kek: &KekRow,
) -> Result<bool, tokio_postgres::Error> {
    let n = prepared::execute(
        c,
        "INSERT INTO keks (version, root_version, wrapped) VALUES ($1, $2, $3) \
             ON CONFLICT (version) DO NOTHING",
        &[&kek.version, &kek.root_version, &kek.wrapped],
    )
    .await?;
    Ok(n == 1)
}

/// The stored audit key: wrapped under root version `root_version`, keying the chain after
/// entry `keyed_after`.
#[derive(Debug, Clone)]
pub struct AuditKeyRow {
    /// The root version whose wrapping key wraps it.
    pub root_version: i32,
    /// The newest entry when it was made; every later entry by an unlocked replica is keyed.
    pub keyed_after: i64,
    /// The key, wrapped.
    pub wrapped: Vec<u8>,
}

impl AuditKeyRow {
    /// `keyed_after` as the wrapping binds it (the column refuses negative values).
    pub fn keyed_after(&self) -> u64 {
        u64::try_from(self.keyed_after).unwrap_or(0)
    }
}

/// The audit key, when one exists.
pub async fn audit_key(
    c: &impl GenericClient,
) -> Result<Option<AuditKeyRow>, tokio_postgres::Error> {
    Ok(prepared::query_opt(c, "SELECT root_version, keyed_after, wrapped FROM audit_key", &[])
        .await?
        .map(|r| AuditKeyRow { root_version: r.get(0), keyed_after: r.get(1), wrapped: r.get(2) }))
}

/// The newest audit entry's position (0 for an empty log), and whether any entry is keyed.
pub async fn audit_head(c: &impl GenericClient) -> Result<(i64, bool), tokio_postgres::Error> {
    let row = prepared::query_one(
        c,
        "SELECT coalesce(max(seq), 0), EXISTS (SELECT 1 FROM audit_log WHERE keyed) FROM audit_log",
        &[],
    )
    .await?;
    Ok((row.get(0), row.get(1)))
}

/// Stores the audit key unless one exists (replicas unlocking together make one); whether it
/// was stored.
pub async fn insert_audit_key(
    c: &impl GenericClient,
    key: &AuditKeyRow,
) -> Result<bool, tokio_postgres::Error> {
    let inserted = prepared::execute(
        c,
        "INSERT INTO audit_key (root_version, keyed_after, wrapped) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        &[&key.root_version, &key.keyed_after, &key.wrapped],
    )
    .await?;
    Ok(inserted == 1)
}

/// Re-wraps the audit key under a new root.
pub async fn rewrap_audit_key(
    c: &impl GenericClient,
    root_version: i32,
    wrapped: &[u8],
) -> Result<(), tokio_postgres::Error> {
    prepared::execute(
        c,
        "UPDATE audit_key SET root_version = $1, wrapped = $2",
        &[&root_version, &wrapped],
    )
    .await?;
    Ok(())
}

/// Re-wraps a KEK under a new root.
pub async fn rewrap_kek(c: &impl GenericClient, kek: &KekRow) -> Result<(), tokio_postgres::Error> {
    prepared::execute(
        c,
        "UPDATE keks SET root_version = $2, wrapped = $3 WHERE version = $1",
        &[&kek.version, &kek.root_version, &kek.wrapped],
    )
    .await?;
    Ok(())
}

/// A keyring's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyringRow {
    /// Newest DEK version: the one new encryptions use.
    pub latest_version: i32,
    /// Oldest version that still decrypts.
    pub min_decryption_version: i32,
    /// Versions below this were trimmed (deleted).
    pub trimmed_below: i32,
    /// Crypto-shredded.
    pub deleted: bool,
}

fn keyring_from_row(row: &tokio_postgres::Row) -> KeyringRow {
    KeyringRow {
        latest_version: row.get(0),
        min_decryption_version: row.get(1),
        trimmed_below: row.get(2),
        deleted: row.get(3),
    }
}

const KEYRING_COLUMNS: &str =
    "latest_version, min_decryption_version, trimmed_below, deleted_at IS NOT NULL";

/// A keyring's state.
pub async fn keyring(
    c: &impl GenericClient,
    name: &str,
) -> Result<Option<KeyringRow>, tokio_postgres::Error> {
    let row = prepared::query_opt(
        c,
        &format!("SELECT {KEYRING_COLUMNS} FROM keyrings WHERE name = $1"),
        &[&name],
    )
    .await?;
    Ok(row.as_ref().map(keyring_from_row))
}

/// A keyring's state, locked until the transaction ends.
pub async fn keyring_for_update(
    c: &impl GenericClient,
    name: &str,
) -> Result<Option<KeyringRow>, tokio_postgres::Error> {
    let row = prepared::query_opt(
        c,
        &format!("SELECT {KEYRING_COLUMNS} FROM keyrings WHERE name = $1 FOR UPDATE"),
        &[&name],
    )
    .await?;
    Ok(row.as_ref().map(keyring_from_row))
}

/// Names of every live keyring.
pub async fn keyring_names(c: &impl GenericClient) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows =
        prepared::query(c, "SELECT name FROM keyrings WHERE deleted_at IS NULL ORDER BY name", &[])
            .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Creates a keyring at version 1. `false` when the name exists (live or tombstoned).
pub async fn insert_keyring(
    c: &impl GenericClient,
    name: &str,
) -> Result<bool, tokio_postgres::Error> {
    let n = prepared::execute(
        c,
        "INSERT INTO keyrings (name, latest_version) VALUES ($1, 1) \
             ON CONFLICT (name) DO NOTHING",
        &[&name],
    )
    .await?;
    Ok(n == 1)
}

/// Sets the latest version.
pub async fn set_latest(
    c: &impl GenericClient,
    name: &str,
    version: i32,
) -> Result<(), tokio_postgres::Error> {
    prepared::execute(
        c,
        "UPDATE keyrings SET latest_version = $2, updated_at = now() WHERE name = $1",
        &[&name, &version],
    )
    .await?;
    Ok(())
}

/// Sets the oldest version that decrypts.
pub async fn set_min_decryption(
    c: &impl GenericClient,
    name: &str,
    version: i32,
) -> Result<(), tokio_postgres::Error> {
    prepared::execute(
        c,
        "UPDATE keyrings SET min_decryption_version = $2, updated_at = now() WHERE name = $1",
        &[&name, &version],
    )
    .await?;
    Ok(())
}

/// Deletes DEK versions below `min_decryption_version`; returns the deleted versions.
pub async fn trim(c: &impl GenericClient, name: &str) -> Result<Vec<i32>, tokio_postgres::Error> {
    let rows = prepared::query(
        c,
        "DELETE FROM deks d USING keyrings k WHERE d.keyring = $1 AND k.name = $1 \
             AND d.version < k.min_decryption_version RETURNING d.version",
        &[&name],
    )
    .await?;
    prepared::execute(
        c,
        "UPDATE keyrings SET trimmed_below = min_decryption_version, updated_at = now() \
         WHERE name = $1",
        &[&name],
    )
    .await?;
    let mut versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    versions.sort_unstable();
    Ok(versions)
}

/// Crypto-shreds a keyring: deletes every DEK and leaves a tombstone.
pub async fn shred(c: &impl GenericClient, name: &str) -> Result<u64, tokio_postgres::Error> {
    let deleted = prepared::execute(c, "DELETE FROM deks WHERE keyring = $1", &[&name]).await?;
    prepared::execute(
        c,
        "UPDATE keyrings SET deleted_at = now(), updated_at = now() WHERE name = $1",
        &[&name],
    )
    .await?;
    Ok(deleted)
}

/// Inserts a DEK version.
pub async fn insert_dek(
    c: &impl GenericClient,
    keyring: &str,
    version: i32,
    kek_version: i32,
    wrapped: &[u8],
) -> Result<(), tokio_postgres::Error> {
    prepared::execute(
        c,
        "INSERT INTO deks (keyring, version, kek_version, wrapped) VALUES ($1, $2, $3, $4)",
        &[&keyring, &version, &kek_version, &wrapped],
    )
    .await?;
    Ok(())
}

/// A DEK and the KEK that wraps it, read in one snapshot.
#[derive(Debug, Clone)]
pub struct DekRow {
    /// DEK version.
    pub version: i32,
    /// The KEK it is wrapped under.
    pub kek: KekRow,
    /// The wrapped DEK.
    pub wrapped: Vec<u8>,
}

/// DEKs `versions` of `keyring` with their KEKs, in one statement so a concurrent re-wrap
/// cannot pair a DEK with the wrong KEK.
pub async fn deks(
    c: &impl GenericClient,
    keyring: &str,
    versions: &[i32],
) -> Result<Vec<DekRow>, tokio_postgres::Error> {
    let rows = prepared::query(
        c,
        "SELECT d.version, k.version, k.root_version, k.wrapped, d.wrapped \
             FROM deks d JOIN keks k ON k.version = d.kek_version \
             WHERE d.keyring = $1 AND d.version = ANY($2)",
        &[&keyring, &versions],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| DekRow {
            version: r.get(0),
            kek: KekRow { version: r.get(1), root_version: r.get(2), wrapped: r.get(3) },
            wrapped: r.get(4),
        })
        .collect())
}

/// One version of a keyring, for `describe`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VersionInfo {
    /// DEK version.
    pub version: i32,
    /// KEK it is wrapped under.
    pub kek_version: i32,
    /// Encryptions leased against the 2^31 budget.
    pub encryptions: i64,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
}

/// The stored versions of a keyring, oldest first.
pub async fn versions(
    c: &impl GenericClient,
    keyring: &str,
) -> Result<Vec<VersionInfo>, tokio_postgres::Error> {
    let rows = prepared::query(
        c,
        "SELECT version, kek_version, encryptions_leased, created_at FROM deks \
             WHERE keyring = $1 ORDER BY version",
        &[&keyring],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| VersionInfo {
            version: r.get(0),
            kek_version: r.get(1),
            encryptions: r.get(2),
            created_at: r.get(3),
        })
        .collect())
}

/// Leases `block` encryptions of a DEK if that keeps it within `limit`. Returns the new total,
/// or `None` when the budget is spent.
pub async fn lease(
    c: &impl GenericClient,
    keyring: &str,
    version: i32,
    block: i64,
    limit: i64,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let row = prepared::query_opt(
        c,
        "UPDATE deks SET encryptions_leased = encryptions_leased + $3 \
             WHERE keyring = $1 AND version = $2 AND encryptions_leased + $3 <= $4 \
             RETURNING encryptions_leased",
        &[&keyring, &version, &block, &limit],
    )
    .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Tells every replica about a change; delivered when the transaction commits.
pub async fn notify(c: &impl GenericClient, payload: &str) -> Result<(), tokio_postgres::Error> {
    prepared::execute(c, "SELECT pg_notify($1, $2)", &[&CHANNEL, &payload]).await?;
    Ok(())
}

/// Age in seconds of the newest KEK.
pub async fn latest_kek_age(c: &impl GenericClient) -> Result<Option<f64>, tokio_postgres::Error> {
    let row = prepared::query_opt(c, "SELECT extract(epoch FROM now() - created_at)::float8 FROM keks ORDER BY version DESC LIMIT 1", &[])
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Live keyrings whose newest DEK is older than `seconds`, with that version.
pub async fn keyrings_older_than(
    c: &impl GenericClient,
    seconds: f64,
) -> Result<Vec<(String, i32)>, tokio_postgres::Error> {
    let rows = prepared::query(c,
            "SELECT k.name, k.latest_version FROM keyrings k JOIN deks d ON d.keyring = k.name AND d.version = k.latest_version \
             WHERE k.deleted_at IS NULL AND d.created_at < now() - make_interval(secs => $1) ORDER BY k.name",
            &[&seconds],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Up to `limit` DEKs wrapped under an older KEK than `latest`, locked for re-wrapping; rows
/// another replica is re-wrapping are skipped.
pub async fn deks_under_old_kek(
    c: &impl GenericClient,
    latest: i32,
    limit: i64,
) -> Result<Vec<(String, DekRow)>, tokio_postgres::Error> {
    let rows = prepared::query(c,
            "SELECT d.keyring, d.version, k.version, k.root_version, k.wrapped, d.wrapped \
             FROM deks d JOIN keks k ON k.version = d.kek_version \
             WHERE d.kek_version < $1 ORDER BY d.keyring, d.version LIMIT $2 FOR UPDATE OF d SKIP LOCKED",
            &[&latest, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                DekRow {
                    version: r.get(1),
                    kek: KekRow { version: r.get(2), root_version: r.get(3), wrapped: r.get(4) },
                    wrapped: r.get(5),
                },
            )
        })
        .collect())
}

/// Stores a DEK re-wrapped under another KEK.
pub async fn rewrap_dek(
    c: &impl GenericClient,
    keyring: &str,
    version: i32,
    kek_version: i32,
    wrapped: &[u8],
) -> Result<(), tokio_postgres::Error> {
    prepared::execute(
        c,
        "UPDATE deks SET kek_version = $3, wrapped = $4 WHERE keyring = $1 AND version = $2",
        &[&keyring, &version, &kek_version, &wrapped],
    )
    .await?;
    Ok(())
}

/// Deletes KEKs older than `latest` that no DEK uses; returns their versions.
pub async fn delete_unused_keks(
    c: &impl GenericClient,
    latest: i32,
) -> Result<Vec<i32>, tokio_postgres::Error> {
    let rows = prepared::query(c,
            "DELETE FROM keks k WHERE k.version < $1 AND NOT EXISTS (SELECT 1 FROM deks d WHERE d.kek_version = k.version) \
             RETURNING k.version",
            &[&latest],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
