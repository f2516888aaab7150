//! The agent's current epoch key, shared by every stream: it signs seals and moves to the next epoch.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::chain::Hash;
use super::keys::{EpochKey, KeyError};
use super::seal::Seal;

/// The epoch key in use and the file it lives in.
pub struct KeyRing {
    key: Mutex<EpochKey>,
    path: PathBuf,
    epoch_gauge: metrics::Gauge,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("path", &self.path).finish()
    }
}

impl KeyRing {
    /// The ring over `key`, which was read from (and is evolved in) `path`.
    pub fn new(key: EpochKey, path: &Path) -> KeyRing {
        let epoch_gauge = metrics::gauge!("auditrail_integrity_epoch");
        epoch_gauge.set(key.epoch as f64);
        KeyRing {
            key: Mutex::new(key),
            path: path.to_path_buf(),
            epoch_gauge,
        }
    }

    /// Signs a seal of `stream` over `from..=to` ending in `last_hash` with the current epoch's key.
    pub fn seal(&self, stream: &str, from: u64, to: u64, last_hash: Hash) -> Seal {
        let key = self.key.lock().unwrap_or_else(|e| e.into_inner());
        Seal::sign(&key, stream, from, to, last_hash)
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.key.lock().unwrap_or_else(|e| e.into_inner()).epoch
    }

    /// Moves to the next epoch: the next key is certified by this one, stored and fsynced, and only then is the
    /// old secret overwritten (on disk, by [`EpochKey::store`]) and dropped (in memory). Returns the new epoch.
    pub fn evolve(&self) -> Result<u64, KeyError> {
        let mut key = self.key.lock().unwrap_or_else(|e| e.into_inner());
        let next = key.evolve();
        next.store(&self.path)?;
        *key = next;
        self.epoch_gauge.set(key.epoch as f64);
        Ok(key.epoch)
    }
}
