//! `[sources.NAME] type = "ebpf"`: host events (exec, file open, network connect) from the kernel.

use auditrail_core::units::ByteSize;
use serde::Deserialize;

/// Which processes are watched.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Only processes in session cgroups and their descendants (filtered in the kernel), as Teleport does.
    #[default]
    Sessions,
    /// Every process on the host.
    All,
}

/// A hook to enable.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// Programs started: `session.command`.
    Exec,
    /// Files opened (open, openat, openat2): `session.disk`.
    Open,
    /// Connections made (connect, IPv4 and IPv6): `session.network`.
    Connect,
}

/// Which attach point to use.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Attach {
    /// The first that works, in the order tp_btf, raw_tp, tracepoint.
    #[default]
    Auto,
    /// BTF-typed raw tracepoints only.
    TpBtf,
    /// Raw tracepoints only.
    RawTp,
    /// Classic tracepoints only (tracefs must be mounted).
    Tracepoint,
}

/// Settings of the ebpf source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EbpfSourceConfig {
    /// `"sessions"` (default) or `"all"`.
    #[serde(default)]
    pub scope: Scope,
    /// Hooks to enable. Default all three: `["exec", "open", "connect"]`.
    #[serde(default = "default_events")]
    pub events: Vec<Hook>,
    /// Bytes of the kernel's ring buffer: a power of two, 4KiB to 1GiB. Default `"8MiB"` (what Teleport moved
    /// to after losing events with 256KiB). What does not fit is counted as lost, never dropped silently.
    #[serde(default = "default_ring")]
    pub ring_buffer_size: ByteSize,
    /// Path prefixes whose opens are not reported, filtered in the kernel (each at most 64 bytes; at most
    /// 64). Default `/proc/`, `/sys/`, `/dev/` and the shared libraries (`/lib/`, `/lib64/`, `/usr/lib/`,
    /// `/usr/lib64/`, `/etc/ld.so.cache`). Relative paths are matched as written.
    #[serde(default = "default_ignore")]
    pub ignore_paths: Vec<String>,
    /// Host events per second one session may produce; beyond it they are counted and reported in an
    /// `auditrail.dropped` event per second (with the sid), not sent. 0 turns the limit off. Default 2000.
    #[serde(default = "default_rate")]
    pub rate_limit: u32,
    /// Events a session may produce at once above the rate. Default 4000.
    #[serde(default = "default_burst")]
    pub rate_burst: u32,
    /// `"auto"` (default), `"tp_btf"`, `"raw_tp"` or `"tracepoint"`.
    #[serde(default)]
    pub attach: Attach,
    /// `server_id` of events outside every session (scope `"all"`). Default: the host name.
    #[serde(default)]
    pub server_id: Option<String>,
}

fn default_events() -> Vec<Hook> {
    vec![Hook::Exec, Hook::Open, Hook::Connect]
}

fn default_ring() -> ByteSize {
    ByteSize(8 << 20)
}

/// The default `ignore_paths`.
pub fn default_ignore() -> Vec<String> {
    [
        "/proc/",
        "/sys/",
        "/dev/",
        "/lib/",
        "/lib64/",
        "/usr/lib/",
        "/usr/lib64/",
        "/etc/ld.so.cache",
    ]
    .map(String::from)
    .to_vec()
}

fn default_rate() -> u32 {
    2000
}

fn default_burst() -> u32 {
    4000
}

impl EbpfSourceConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        let size = self.ring_buffer_size.0;
        if !size.is_power_of_two() || !(4096..=1 << 30).contains(&size) {
            return Err(format!(
                "`ring_buffer_size` must be a power of two from 4KiB to 1GiB (the kernel's rule for ring buffers), found {size} bytes"
            ));
        }
        if self.events.is_empty() {
            return Err(
                "`events` is empty: name at least one of \"exec\", \"open\", \"connect\"".into(),
            );
        }
        if self.ignore_paths.len() > 64 {
            return Err(format!(
                "`ignore_paths` has {} prefixes; at most 64",
                self.ignore_paths.len()
            ));
        }
        if let Some(p) = self
            .ignore_paths
            .iter()
            .find(|p| p.is_empty() || p.len() > auditrail_ebpf::records::PREFIX_MAX)
        {
            return Err(format!(
                "`ignore_paths` entry {p:?}: expected 1 to {} bytes",
                auditrail_ebpf::records::PREFIX_MAX
            ));
        }
        if self.rate_limit > 0 && self.rate_burst == 0 {
            return Err("`rate_burst` must be at least 1 when `rate_limit` is on".into());
        }
        Ok(())
    }

    /// The `records::HOOK_*` bits of `events`.
    pub fn hooks(&self) -> u32 {
        use auditrail_ebpf::records::{HOOK_CONNECT, HOOK_EXEC, HOOK_OPEN};
        self.events.iter().fold(0, |acc, h| {
            acc | match h {
                Hook::Exec => HOOK_EXEC,
                Hook::Open => HOOK_OPEN,
                Hook::Connect => HOOK_CONNECT,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<EbpfSourceConfig, String> {
        let c: EbpfSourceConfig = toml::from_str(toml).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn defaults_and_limits() {
        let c = parse("").unwrap();
        assert_eq!(c.scope, Scope::Sessions);
        assert_eq!(c.ring_buffer_size.0, 8 << 20);
        assert_eq!(c.hooks(), 7);
        assert!(c.ignore_paths.contains(&"/proc/".to_string()));
        assert!(parse("ring_buffer_size = \"12KiB\"")
            .unwrap_err()
            .contains("power of two"));
        assert!(parse("ring_buffer_size = 2048")
            .unwrap_err()
            .contains("power of two"));
        assert!(parse("events = []").unwrap_err().contains("at least one"));
        assert!(parse("scope = \"everything\"").is_err());
        assert!(parse("ring_bufer_size = 1")
            .unwrap_err()
            .contains("unknown field"));
        assert!(parse(&format!("ignore_paths = [\"/{}\"]", "x".repeat(64)))
            .unwrap_err()
            .contains("1 to 64 bytes"));
        let c = parse("scope = \"all\"\nevents = [\"exec\"]\nattach = \"raw_tp\"").unwrap();
        assert_eq!(
            (c.scope, c.hooks(), c.attach),
            (Scope::All, 1, Attach::RawTp)
        );
    }
}
