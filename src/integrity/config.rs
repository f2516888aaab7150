//! `[integrity]`: the hash chain, its seals and the key that signs them.

use std::path::PathBuf;
use std::time::Duration;

use auditrail_core::units::Interval;
use serde::Deserialize;

/// `[integrity]`: when present, every event of every source is chained and the chains are sealed.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrityConfig {
    /// The secret key file (from `auditrail keygen`, mode 0600). If it does not exist at the first start, the
    /// agent creates the pair there (the public key beside it, `.pub`) and logs where. Required.
    pub key: PathBuf,
    /// This node's name in stream names (`node_id/source`). Default: `/etc/machine-id`, else the host name.
    #[serde(default)]
    pub node_id: Option<String>,
    /// How often every stream is sealed and the key moves to its next epoch. Default `"10s"`.
    #[serde(default = "default_seal_interval")]
    pub seal_interval: Interval,
    /// A stream is also sealed after this many events. Default `10000`.
    #[serde(default = "default_seal_events")]
    pub seal_events: u64,
}

fn default_seal_interval() -> Interval {
    Interval(Duration::from_secs(10))
}

fn default_seal_events() -> u64 {
    10_000
}

impl IntegrityConfig {
    /// Checks values serde cannot: returns the field and what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.seal_events == 0 {
            return Err(("seal_events", "must be at least 1".into()));
        }
        if self.seal_interval.0 < Duration::from_millis(100) {
            return Err(("seal_interval", "must be at least 100ms".into()));
        }
        if let Some(n) = &self.node_id {
            if n.is_empty() || n.contains('/') || n.chars().any(char::is_control) {
                return Err((
                    "node_id",
                    "must be non-empty, without '/' or control characters".into(),
                ));
            }
        }
        Ok(())
    }

    /// The configured node id, or this machine's id, or its host name.
    pub fn node_id(&self) -> String {
        if let Some(n) = &self.node_id {
            return n.clone();
        }
        if let Ok(id) = std::fs::read_to_string("/etc/machine-id") {
            let id = id.trim();
            if !id.is_empty() {
                return id.to_string();
            }
        }
        let mut buf = [0u8; 256];
        // SAFETY: gethostname writes at most buf.len() bytes into buf.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            if let Ok(h) = std::str::from_utf8(&buf[..end]) {
                if !h.is_empty() {
                    return h.replace('/', "_");
                }
            }
        }
        "unknown-node".into()
    }
}
