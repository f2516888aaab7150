//! Forward-secure signing keys: the secret key file the agent evolves, and the public key auditors hold.
//!
//! Epoch 0's key pair is made by `auditrail keygen`; its public half (`auditrail.pub`) is what auditors trust.
//! Every epoch has its own Ed25519 key. During epoch `k` the agent holds `sk_k` and the already drawn `sk_{k+1}`
//! (its public half goes into every seal of epoch `k`). At the end of the epoch it signs the certificate of
//! `k+1` (`epoch`, public key, start time) with `sk_k`, writes the new key file, fsyncs it, then overwrites and
//! deletes the old one. Whoever takes the host afterwards finds only `sk_{k+1}` and `sk_{k+2}`: nothing that can
//! sign as an earlier epoch, and the verifier refuses an epoch's key outside its epoch.
//!
//! Files are JSON. The secret file must not be readable by group or others; one that is, is refused.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// `format` of the secret key file.
pub const SECRET_FORMAT: &str = "auditrail-secret-key-v1";
/// `format` of the public key file.
pub const PUBLIC_FORMAT: &str = "auditrail-public-key-v1";

const CERT_DOMAIN: &[u8] = b"auditrail.epoch.v1\0";

/// What can go wrong with a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Group or others may read the secret key.
    #[error("key file {path} has mode {mode:04o}: a secret key must not be accessible to group or others (chmod 600 {path})")]
    LoosePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not what it should be.
    #[error("key file {path}: {what}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// The secret key file's contents.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretFile {
    format: String,
    /// Epoch 0's public key: the one auditors hold.
    root: String,
    epoch: u64,
    epoch_start: String,
    secret: String,
    /// The certificate of this epoch's key, signed by the previous epoch's key (none for epoch 0).
    cert: Option<String>,
    next_secret: String,
}

/// The public key file's contents.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicFile {
    format: String,
    /// Epoch 0's public key, hex.
    root: String,
    /// When it was made.
    created: String,
}

/// The agent's current epoch key, with what it needs to seal and to move to the next epoch.
pub struct EpochKey {
    /// Epoch 0's public key.
    pub root: VerifyingKey,
    /// The epoch number.
    pub epoch: u64,
    /// When the epoch began (RFC 3339), as its certificate says.
    pub epoch_start: String,
    /// This epoch's secret key.
    secret: SigningKey,
    /// This epoch's certificate (a signature by the previous epoch's key); `None` for epoch 0.
    pub cert: Option<Signature>,
    /// The next epoch's secret key, drawn in advance so its public half can go into this epoch's seals.
    next: SigningKey,
}

impl std::fmt::Debug for EpochKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochKey")
            .field("epoch", &self.epoch)
            .field("public", &hex::encode(self.public().as_bytes()))
            .finish_non_exhaustive()
    }
}

fn random_key() -> SigningKey {
    let mut seed = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut seed);
    SigningKey::from_bytes(&seed)
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// The message an epoch certificate signs.
pub fn cert_message(epoch: u64, public: &VerifyingKey, start: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(CERT_DOMAIN.len() + 8 + 32 + 4 + start.len());
    m.extend_from_slice(CERT_DOMAIN);
    m.extend_from_slice(&epoch.to_be_bytes());
    m.extend_from_slice(public.as_bytes());
    m.extend_from_slice(&(start.len() as u32).to_be_bytes());
    m.extend_from_slice(start.as_bytes());
    m
}

/// Checks that `cert` certifies `public` as the key of `epoch` starting at `start`, signed by `previous`.
pub fn check_cert(
    previous: &VerifyingKey,
    epoch: u64,
    public: &VerifyingKey,
    start: &str,
    cert: &Signature,
) -> bool {
    previous
        .verify(&cert_message(epoch, public, start), cert)
        .is_ok()
}

impl EpochKey {
    /// A fresh epoch-0 key.
    pub fn generate() -> EpochKey {
        let secret = random_key();
        EpochKey {
            root: secret.verifying_key(),
            epoch: 0,
            epoch_start: now_rfc3339(),
            secret,
            cert: None,
            next: random_key(),
        }
    }

    /// This epoch's public key.
    pub fn public(&self) -> VerifyingKey {
        self.secret.verifying_key()
    }

    /// The next epoch's public key.
    pub fn next_public(&self) -> VerifyingKey {
        self.next.verifying_key()
    }

    /// Signs `message` with this epoch's key.
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.secret.sign(message)
    }

    /// The key of the next epoch, certified by this one. The caller persists it before dropping `self`.
    pub fn evolve(&self) -> EpochKey {
        let epoch = self.epoch + 1;
        let start = now_rfc3339();
        let public = self.next.verifying_key();
        let cert = self.secret.sign(&cert_message(epoch, &public, &start));
        EpochKey {
            root: self.root,
            epoch,
            epoch_start: start,
            secret: self.next.clone(),
            cert: Some(cert),
            next: random_key(),
        }
    }

    fn to_file(&self) -> SecretFile {
        SecretFile {
            format: SECRET_FORMAT.into(),
            root: hex::encode(self.root.as_bytes()),
            epoch: self.epoch,
            epoch_start: self.epoch_start.clone(),
            secret: hex::encode(self.secret.to_bytes()),
            cert: self.cert.map(|c| hex::encode(c.to_bytes())),
            next_secret: hex::encode(self.next.to_bytes()),
        }
    }

    /// Reads the secret key file at `path`, refusing it if group or others can access it.
    ///
    /// A key evolution that a crash interrupted is finished or forgotten here: when the next epoch's file
    /// (`<key>.key.tmp`, written and synced before the old file is wiped) is sound and follows the current one —
    /// or the current one was already wiped — it is renamed into place; a torn one is removed.
    pub fn load(path: &Path) -> Result<EpochKey, KeyError> {
        let tmp = path.with_extension("key.tmp");
        if !tmp.exists() {
            return EpochKey::load_file(path);
        }
        let finish = |key: EpochKey| -> Result<EpochKey, KeyError> {
            fs::rename(&tmp, path).map_err(|source| KeyError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            sync_parent(path)?;
            tracing::warn!(key = %path.display(), epoch = key.epoch, "finished a key evolution that a crash interrupted");
            Ok(key)
        };
        match (EpochKey::load_file(path), EpochKey::load_file(&tmp)) {
            (Ok(old), Ok(new)) if new.epoch == old.epoch + 1 && new.root == old.root => finish(new),
            (Err(KeyError::Invalid { .. }), Ok(new)) => finish(new),
            (Ok(old), _) => {
                let _ = fs::remove_file(&tmp);
                Ok(old)
            }
            (Err(e), _) => Err(e),
        }
    }

    fn load_file(path: &Path) -> Result<EpochKey, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let invalid = |what: String| KeyError::Invalid {
            path: path.to_path_buf(),
            what,
        };
        let mut f = File::open(path).map_err(io)?;
        let mode = f.metadata().map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::LoosePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let mut text = String::new();
        f.read_to_string(&mut text).map_err(io)?;
        if let Ok(p) = serde_json::from_str::<PublicFile>(&text) {
            if p.format == PUBLIC_FORMAT {
                return Err(invalid(
                    "this is a public key (auditrail.pub): the agent needs the secret key file (auditrail.key) to seal"
                        .into(),
                ));
            }
        }
        let s: SecretFile = serde_json::from_str(&text)
            .map_err(|e| invalid(format!("not an auditrail secret key file: {e}")))?;
        if s.format != SECRET_FORMAT {
            return Err(invalid(format!(
                "format is {:?}, expected {SECRET_FORMAT:?}",
                s.format
            )));
        }
        let secret = parse_secret(&s.secret).ok_or_else(|| invalid("bad `secret`".into()))?;
        let next =
            parse_secret(&s.next_secret).ok_or_else(|| invalid("bad `next_secret`".into()))?;
        let root = parse_public(&s.root).ok_or_else(|| invalid("bad `root`".into()))?;
        let cert = match &s.cert {
            None => None,
            Some(c) => Some(parse_signature(c).ok_or_else(|| invalid("bad `cert`".into()))?),
        };
        if s.epoch == 0 && secret.verifying_key() != root {
            return Err(invalid("epoch 0's key is not the root key".into()));
        }
        if (s.epoch == 0) != cert.is_none() {
            return Err(invalid("only epoch 0 has no certificate".into()));
        }
        Ok(EpochKey {
            root,
            epoch: s.epoch,
            epoch_start: s.epoch_start,
            secret,
            cert,
            next,
        })
    }

    /// Writes this key to `path` for good: a new file is written and fsynced beside it, the old file's bytes are
    /// overwritten with zeros and synced, then the new file replaces it and the directory is synced. Only then
    /// is the previous epoch's secret gone from the disk (as far as the file system overwrites in place).
    pub fn store(&self, path: &Path) -> Result<(), KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("key.tmp");
        let text = serde_json::to_vec_pretty(&self.to_file()).expect("serializable");
        {
            let _ = fs::remove_file(&tmp);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(&text).map_err(io)?;
            f.write_all(b"\n").map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        crate::crash::point(crate::crash::CrashPoint::KeyAfterWrite);
        match OpenOptions::new().write(true).open(path) {
            Ok(mut old) => {
                let len = old.metadata().map_err(io)?.len();
                old.write_all(&vec![0u8; len as usize]).map_err(io)?;
                old.sync_all().map_err(io)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        crate::crash::point(crate::crash::CrashPoint::KeyAfterWipe);
        fs::rename(&tmp, path).map_err(io)?;
        crate::crash::point(crate::crash::CrashPoint::KeyAfterRename);
        sync_parent(path)
    }
}

/// Syncs the directory holding `path`.
fn sync_parent(path: &Path) -> Result<(), KeyError> {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| KeyError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
    }
    Ok(())
}

/// Writes a new key pair: the secret file at `secret_path` (mode 0600, refused if it exists) and the public
/// file at `public_path`. Returns the key.
pub fn keygen(secret_path: &Path, public_path: &Path) -> Result<EpochKey, KeyError> {
    if secret_path.exists() {
        return Err(KeyError::Invalid {
            path: secret_path.to_path_buf(),
            what: "already exists; remove it first if a new key is really wanted".into(),
        });
    }
    let key = EpochKey::generate();
    // The public half first: a crash between the two leaves no secret, so the next start makes a new pair
    // (and a new public file), never a secret whose public half auditors cannot get.
    write_public(&key.root, public_path)?;
    key.store(secret_path)?;
    Ok(key)
}

/// Writes the public key file auditors use.
pub fn write_public(root: &VerifyingKey, path: &Path) -> Result<(), KeyError> {
    let p = PublicFile {
        format: PUBLIC_FORMAT.into(),
        root: hex::encode(root.as_bytes()),
        created: now_rfc3339(),
    };
    let mut text = serde_json::to_vec_pretty(&p).expect("serializable");
    text.push(b'\n');
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)
        .map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    f.write_all(&text)
        .and_then(|()| f.sync_all())
        .map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Reads a public key file (or a secret one, whose root key it takes).
pub fn load_public(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |what: &str| KeyError::Invalid {
        path: path.to_path_buf(),
        what: what.into(),
    };
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|_| invalid("not an auditrail public key file (JSON expected)"))?;
    let root = v
        .get("root")
        .and_then(|r| r.as_str())
        .ok_or_else(|| invalid("no `root` key"))?;
    parse_public(root).ok_or_else(|| invalid("`root` is not an Ed25519 public key in hex"))
}

/// The public key file that goes with secret key file `key` (`auditrail.key` → `auditrail.pub`).
pub fn public_path_for(key: &Path) -> PathBuf {
    key.with_extension("pub")
}

/// Decodes a hex Ed25519 public key.
pub fn parse_public(s: &str) -> Option<VerifyingKey> {
    let mut b = [0u8; 32];
    hex::decode_to_slice(s, &mut b).ok()?;
    VerifyingKey::from_bytes(&b).ok()
}

fn parse_secret(s: &str) -> Option<SigningKey> {
    let mut b = [0u8; 32];
    hex::decode_to_slice(s, &mut b).ok()?;
    Some(SigningKey::from_bytes(&b))
}

/// Decodes a hex Ed25519 signature.
pub fn parse_signature(s: &str) -> Option<Signature> {
    let mut b = [0u8; 64];
    hex::decode_to_slice(s, &mut b).ok()?;
    Some(Signature::from_bytes(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_store_load_evolve() {
        let dir = tempfile::tempdir().unwrap();
        let (sk, pk) = (
            dir.path().join("auditrail.key"),
            dir.path().join("auditrail.pub"),
        );
        let k0 = keygen(&sk, &pk).unwrap();
        assert_eq!(
            fs::metadata(&sk).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            keygen(&sk, &pk).is_err(),
            "an existing key is never replaced"
        );
        assert_eq!(load_public(&pk).unwrap(), k0.public());
        let k1 = EpochKey::load(&sk).unwrap().evolve();
        assert_eq!(k1.public(), k0.next_public());
        assert!(check_cert(
            &k0.public(),
            1,
            &k1.public(),
            &k1.epoch_start,
            &k1.cert.unwrap()
        ));
        assert!(!check_cert(
            &k0.public(),
            2,
            &k1.public(),
            &k1.epoch_start,
            &k1.cert.unwrap()
        ));
        k1.store(&sk).unwrap();
        let text = fs::read_to_string(&sk).unwrap();
        assert!(
            !text.contains(&hex::encode(k0.secret.to_bytes())),
            "epoch 0's secret is gone"
        );
        let back = EpochKey::load(&sk).unwrap();
        assert_eq!((back.epoch, back.public()), (1, k1.public()));
        assert_eq!(
            load_public(&sk).unwrap(),
            k0.public(),
            "root survives evolution"
        );
    }

    #[test]
    fn loose_permissions_and_public_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (sk, pk) = (dir.path().join("a.key"), dir.path().join("a.pub"));
        keygen(&sk, &pk).unwrap();
        fs::set_permissions(&sk, fs::Permissions::from_mode(0o640)).unwrap();
        let e = EpochKey::load(&sk).unwrap_err();
        assert!(
            matches!(e, KeyError::LoosePermissions { mode: 0o640, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("chmod 600"), "{e}");
        fs::set_permissions(&pk, fs::Permissions::from_mode(0o600)).unwrap();
        let e = EpochKey::load(&pk).unwrap_err();
        assert!(e.to_string().contains("public key"), "{e}");
    }
}
