//! Offline recovery, the disaster-recovery path: read the vault database directly, open the
//! root record with the server key, and decrypt ciphertexts exported from the api database
//! (`strongbox-api export-encrypted`). No running vault, no TLS. It needs all three parts of the
//! secrecy promise at once: the api's ciphertexts, the vault database and the server key.

use std::collections::HashMap;
use std::io::{BufRead, Write};

use anyhow::{Context as _, bail};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;
use strongbox_shared::db::DatabaseConfig;

use crate::crypto::envelope::Ciphertext;
use crate::crypto::{SecretKey, hierarchy};
use crate::store;

/// One line of `export-encrypted`.
#[derive(Debug, Deserialize)]
pub struct Exported {
    /// The key the ciphertext recovers.
    pub key_id: String,
    /// The keyring (workspace id).
    pub keyring: String,
    /// The context it was sealed for (the key id).
    pub context: String,
    /// The vault ciphertext.
    pub ciphertext: String,
}

/// Decrypts every line of `input`, writing `{key_id, plaintext}` (or `{key_id, error}`) lines
/// to `output`. Returns how many were recovered.
pub async fn recover(
    vault_db: &DatabaseConfig,
    server_key: SecretString,
    input: impl BufRead,
    mut output: impl Write,
) -> anyhow::Result<(usize, usize)> {
    // It holds the root key and every DEK it needs while it runs.
    crate::hardening::disable_core_dumps();
    let pool = strongbox_shared::db::pool(vault_db)?;
    let client = pool.get().await.context("connecting to the vault database")?;
    let record = store::root(&client).await?.context("the vault database holds no root record")?;
    if !record.params.within_ceiling() {
        anyhow::bail!(
            "the root record asks for argon2 parameters above the ceiling (m 1 GiB, t 10, p 8): \
             the vault database was altered; refusing to derive"
        );
    }
    let unlock = tokio::task::spawn_blocking(move || {
        hierarchy::derive_unlock_key(&server_key, record.params, &record.salt).map(|k| (k, record))
    })
    .await??;
    let (unlock, record) = unlock;
    let root = hierarchy::open_root(&unlock, record.params, &record.salt, &record.sealed_root)
        .map_err(|_| anyhow::anyhow!("the server key does not open this vault's root record"))?;
    let wrapping = hierarchy::kek_wrapping_key(&root)?;
    let mut deks: HashMap<(String, i32), Option<SecretKey>> = HashMap::new();
    let (mut recovered, mut failed) = (0, 0);
    for (number, line) in input.lines().enumerate() {
        let line = line.context("reading the input")?;
        if line.trim().is_empty() {
            continue;
        }
        let item: Exported =
            serde_json::from_str(&line).with_context(|| format!("input line {}", number + 1))?;
        let result = open_one(&client, &wrapping, &mut deks, &item).await;
        let out = match result {
            Ok(plaintext) => {
                recovered += 1;
                json!({"key_id": item.key_id, "plaintext": plaintext})
            }
            Err(error) => {
                failed += 1;
                json!({"key_id": item.key_id, "error": error})
            }
        };
        writeln!(output, "{out}")?;
    }
    pool.close();
    Ok((recovered, failed))
}

async fn open_one(
    client: &deadpool_postgres::Object,
    wrapping: &SecretKey,
    deks: &mut HashMap<(String, i32), Option<SecretKey>>,
    item: &Exported,
) -> Result<String, &'static str> {
    let ct = Ciphertext::parse(&item.ciphertext).map_err(|_| "MALFORMED_CIPHERTEXT")?;
    let version = i32::try_from(ct.dek_version()).map_err(|_| "VERSION_NOT_FOUND")?;
    let slot = (item.keyring.clone(), version);
    if !deks.contains_key(&slot) {
        let rows =
            store::deks(client, &item.keyring, &[version]).await.map_err(|_| "DATABASE_ERROR")?;
        let dek = rows.first().and_then(|row| {
            let kek = hierarchy::unwrap_kek(
                wrapping,
                u32::try_from(row.kek.version).ok()?,
                &row.kek.wrapped,
            )
            .ok()?;
            hierarchy::unwrap_dek(&kek, &item.keyring, ct.dek_version(), &row.wrapped).ok()
        });
        deks.insert(slot.clone(), dek);
    }
    let Some(Some(dek)) = deks.get(&slot) else { return Err("DEK_NOT_FOUND") };
    let plaintext = ct.open(dek, &item.keyring, &item.context).map_err(|_| "DECRYPTION_FAILED")?;
    String::from_utf8(plaintext.to_vec()).map_err(|_| "NOT_UTF8")
}

/// Checks an input file exists before asking for the server key.
pub fn check_input(path: &std::path::Path) -> anyhow::Result<()> {
    if !path.is_file() {
        bail!("--input {} is not a readable file", path.display());
    }
    Ok(())
}
