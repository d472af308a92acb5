//! Unlocking with k-of-n shares: progress held in memory on one replica, a checksum that stops a
//! mistyped share before it counts, and a complete set that goes through the same throttled
//! evaluation as a server key.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde::Serialize;
use zeroize::Zeroizing;

use super::Vault;
use crate::crypto::shares::{self, Share, ShareError};
use crate::error::VaultError;
use crate::store::{self, Seal};

/// Shares given so far towards one unlock.
pub struct Progress {
    shares: Vec<Share>,
    started: Instant,
}

/// What `POST /v1/sys/unlock {"share"}` answers.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct UnlockProgress {
    /// This replica holds its keys.
    pub unlocked: bool,
    /// Distinct shares given towards the next unlock.
    pub progress: u8,
    /// Shares an unlock needs.
    pub threshold: u8,
}

impl From<ShareError> for VaultError {
    fn from(error: ShareError) -> Self {
        match error {
            ShareError::Random => Self::Internal(anyhow::anyhow!("{error}")),
            ShareError::Range => Self::InvalidRequest(error.to_string()),
            ShareError::Invalid(why) => Self::InvalidShare(why.to_owned()),
            ShareError::Mixed => Self::InvalidShare(error.to_string()),
        }
    }
}

/// Splits a fresh server key into `shares` shares, `threshold` of which rebuild it.
pub fn new_split(
    shares: u8,
    threshold: u8,
) -> Result<(SecretString, Seal, Vec<Zeroizing<String>>), VaultError> {
    let (secret, made) = shares::split(shares, threshold)?;
    let set = made.first().map(|s| s.set).unwrap_or_default();
    let printed = made.iter().map(Share::encode).collect();
    Ok((shares::server_key(&secret), Seal::Shares { shares, threshold, set }, printed))
}

/// The server key that `texts` (a complete set of the stored split) rebuild.
pub fn key_from(
    texts: &[SecretString],
    threshold: u8,
    set: [u8; 4],
) -> Result<SecretString, VaultError> {
    Ok(shares::server_key(&secret_from(texts, threshold, set)?))
}

/// The secret that `texts` (a complete set of the split `set`) rebuild.
pub fn secret_from(
    texts: &[SecretString],
    threshold: u8,
    set: [u8; 4],
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    use secrecy::ExposeSecret as _;
    if texts.len() > 4 * usize::from(shares::MAX_SHARES) {
        return Err(VaultError::InvalidShare(format!(
            "{} shares given; a split has at most {}",
            texts.len(),
            shares::MAX_SHARES
        )));
    }
    let mut given: Vec<Share> = Vec::new();
    for text in texts {
        let share = Share::decode(text.expose_secret())?;
        check_fits(&share, threshold, set)?;
        if !given.iter().any(|g| g.index == share.index) {
            given.push(share);
        }
    }
    if given.len() < usize::from(threshold) {
        return Err(VaultError::InvalidShare(format!(
            "{} distinct shares given; this vault needs {threshold}",
            given.len()
        )));
    }
    Ok(shares::combine(&given[..usize::from(threshold)])?)
}

/// A share belongs to the stored split: a share of an earlier split, or of another vault, is
/// refused before it counts.
fn check_fits(share: &Share, threshold: u8, set: [u8; 4]) -> Result<(), VaultError> {
    if share.set != set || share.threshold != threshold {
        return Err(VaultError::InvalidShare(
            "this share is not of this vault's current split (an earlier split, or another vault?)"
                .to_owned(),
        ));
    }
    Ok(())
}

impl Vault {
    /// The stored split's threshold and id; `InvalidRequest` when the vault holds one key.
    async fn split(&self) -> Result<(u8, [u8; 4]), VaultError> {
        let client = self.pool.get().await?;
        match store::root(&client).await?.ok_or(VaultError::NotInitialized)?.seal {
            Seal::Shares { threshold, set, .. } => Ok((threshold, set)),
            Seal::Key => Err(VaultError::InvalidRequest(
                "this vault unlocks with a server key, not shares: send {\"key\"}".to_owned(),
            )),
            Seal::Pkcs11 => Err(VaultError::InvalidRequest(
                "this vault unlocks itself through its PKCS#11 token, not with shares".to_owned(),
            )),
        }
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(self.settings.unlock.share_progress_ttl_seconds.max(1))
    }

    /// Shares given so far on this replica (0 once they expired).
    pub fn share_progress(&self) -> u8 {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        if progress.as_ref().is_some_and(|p| p.started.elapsed() >= self.ttl()) {
            *progress = None;
        }
        progress.as_ref().map_or(0, |p| u8::try_from(p.shares.len()).unwrap_or(u8::MAX))
    }

    /// Discards the shares given so far.
    pub async fn reset_shares(&self) -> Result<UnlockProgress, VaultError> {
        let (threshold, _) = self.split().await?;
        crate::audit::note_detail("reset");
        self.forget_shares();
        Ok(UnlockProgress { unlocked: self.is_unlocked(), progress: 0, threshold })
    }

    /// Counts one share towards an unlock. A share that fails its checksum, or belongs to another
    /// split, is refused and not counted; the same share twice counts once. The K-th share
    /// rebuilds the server key and unlocks as a key would, throttle included; if the set does not
    /// open the root, the progress is discarded and the answer is `WRONG_KEY`.
    pub async fn unlock_share(
        &self,
        text: &SecretString,
        identity: &str,
        ip: IpAddr,
    ) -> Result<UnlockProgress, VaultError> {
        use secrecy::ExposeSecret as _;
        let (threshold, set) = self.split().await?;
        // A share answered while locked is audited as such: the replica may hold no audit key
        // yet, and the audit verifier expects a plain hash for exactly these entries.
        crate::audit::note_detail("share");
        if self.is_unlocked() {
            return Ok(UnlockProgress { unlocked: true, progress: 0, threshold });
        }
        let share = Share::decode(text.expose_secret())?;
        let complete = {
            let mut slot = self.progress.lock().unwrap_or_else(|e| e.into_inner());
            if slot.as_ref().is_some_and(|p| p.started.elapsed() >= self.ttl()) {
                *slot = None;
            }
            let progress = slot
                .get_or_insert_with(|| Progress { shares: Vec::new(), started: Instant::now() });
            check_fits(&share, threshold, set)?;
            match progress.shares.iter().find(|g| g.index == share.index) {
                Some(given) if given.same_as(&share) => {}
                Some(_) => {
                    return Err(VaultError::InvalidShare(format!(
                        "another share numbered {} was given already; reset to start over",
                        share.index
                    )));
                }
                None => progress.shares.push(share),
            }
            let count = u8::try_from(progress.shares.len()).unwrap_or(u8::MAX);
            if count < threshold {
                return Ok(UnlockProgress { unlocked: false, progress: count, threshold });
            }
            // Complete: the set is evaluated once, by this call.
            slot.take().map(|p| p.shares).unwrap_or_default()
        };
        let secret = shares::combine(&complete)?;
        match self.unlock_with(shares::server_key(&secret), identity, ip).await {
            Ok(()) => {
                self.forget_shares();
                Ok(UnlockProgress { unlocked: true, progress: 0, threshold })
            }
            // A wrong set is discarded: one of its shares is bad, and nobody can tell which.
            Err(wrong @ VaultError::WrongKey) => Err(wrong),
            // Anything else (the throttle's wait, a database fault) did not judge the set: it
            // stays, and giving any share of it again tries once more.
            Err(other) => {
                let mut slot = self.progress.lock().unwrap_or_else(|e| e.into_inner());
                if slot.is_none() {
                    *slot = Some(Progress { shares: complete, started: Instant::now() });
                }
                Err(other)
            }
        }
    }

    /// Drops any shares held towards an unlock (after one, and at a lock).
    pub fn forget_shares(&self) {
        *self.progress.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
