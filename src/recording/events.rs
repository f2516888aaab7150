//! The events the recorder emits (`session.start`, `session.end`, `exec`, `auditrail.recording`), built as
//! flat JSON lines with Teleport's names and codes, and who the session belongs to.
//!
//! Every event starts with the common fields (`event, code, uid, time, sid, user, login, server_id,
//! server_hostname`) in that order; fields keep the order they are added in (serde_json's map would sort
//! them), since a human reading the audit trail reads `event` first.

use std::ffi::CStr;

use serde_json::Value;

/// Who and where: the fields every event carries.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The session id.
    pub sid: String,
    /// `$AUDITRAIL_USER`, else the login name.
    pub user: String,
    /// The OS login of the real uid.
    pub login: String,
    /// `--server-id`/config; default the host name (proxy: the target).
    pub server_id: String,
    /// This host's name.
    pub server_hostname: String,
    /// `addr.local` / `addr.remote` from `SSH_CONNECTION`.
    pub addr: Option<(String, String)>,
}

/// The passwd entry of the real uid: login name and shell.
pub struct Account {
    /// Login name (the uid as a number when there is no entry).
    pub login: String,
    /// Login shell (`/bin/sh` when unknown).
    pub shell: String,
}

/// Reads the passwd entry of the real uid.
pub fn account() -> Account {
    let uid = unsafe { libc::getuid() };
    let mut buf = vec![0u8; 16 * 1024];
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: the buffer outlives the call and the strings are copied out before it is dropped.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pw,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc == 0 && !result.is_null() {
        let text = |p: *const libc::c_char| {
            if p.is_null() {
                String::new()
            } else {
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        let shell = text(pw.pw_shell);
        return Account {
            login: text(pw.pw_name),
            shell: if shell.is_empty() {
                "/bin/sh".into()
            } else {
                shell
            },
        };
    }
    Account {
        login: uid.to_string(),
        shell: "/bin/sh".into(),
    }
}

/// This host's name.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// `SSH_CONNECTION` = "client_ip client_port server_ip server_port" → (local "sip:sport", remote "cip:cport").
pub fn ssh_addresses(ssh_connection: Option<&str>) -> Option<(String, String)> {
    let parts: Vec<&str> = ssh_connection?.split_whitespace().collect();
    if parts.len() != 4 {
        return None;
    }
    let addr = |ip: &str, port: &str| {
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    Some((addr(parts[2], parts[3]), addr(parts[0], parts[1])))
}

/// The current time as the events write it: RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    rfc3339(chrono::Utc::now())
}

/// `t` as RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An event being built: the common fields first, then what [`EventLine::field`] adds.
pub struct EventLine {
    buf: Vec<u8>,
}

impl EventLine {
    /// Starts an event of type `event` with `code` and the common fields.
    pub fn new(event: &str, code: &str, id: &Identity) -> EventLine {
        let mut e = EventLine {
            buf: Vec::with_capacity(512),
        };
        e.buf.push(b'{');
        e.push_str("event", event);
        e.push_str("code", code);
        e.push_str("uid", &uuid::Uuid::now_v7().to_string());
        e.push_str("time", &now());
        e.push_str("sid", &id.sid);
        e.push_str("user", &id.user);
        e.push_str("login", &id.login);
        e.push_str("server_id", &id.server_id);
        e.push_str("server_hostname", &id.server_hostname);
        if let Some((local, remote)) = &id.addr {
            if event != "session.end" {
                e.push_str("addr.local", local);
                e.push_str("addr.remote", remote);
            }
        }
        e
    }

    fn key(&mut self, key: &str) {
        if self.buf.len() > 1 {
            self.buf.push(b',');
        }
        self.buf.push(b'"');
        super::cast::escape_str(key, &mut self.buf);
        self.buf.extend_from_slice(b"\":");
    }

    fn push_str(&mut self, key: &str, value: &str) {
        self.key(key);
        self.buf.push(b'"');
        super::cast::escape_str(value, &mut self.buf);
        self.buf.push(b'"');
    }

    /// Adds `key: value`.
    pub fn field(mut self, key: &str, value: impl Into<Value>) -> EventLine {
        self.key(key);
        serde_json::to_writer(&mut self.buf, &value.into()).expect("writing JSON into a Vec");
        self
    }

    /// The event as one NDJSON line (with its `\n`).
    pub fn line(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(b"}\n");
        self.buf
    }
}

/// The four digest fields of a checkpoint, a cut or `session.end`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Digests {
    /// Bytes of `.raw` covered.
    pub raw_bytes: u64,
    /// SHA-256 (hex) of `.raw` bytes `[0, raw_bytes)`.
    pub raw_sha256: String,
    /// Bytes of `.cast` covered.
    pub cast_bytes: u64,
    /// SHA-256 (hex) of `.cast` bytes `[0, cast_bytes)`.
    pub cast_sha256: String,
}

impl EventLine {
    /// Adds the four digest fields.
    pub fn digests(self, d: &Digests) -> EventLine {
        self.field("raw_bytes", d.raw_bytes)
            .field("raw_sha256", d.raw_sha256.as_str())
            .field("cast_bytes", d.cast_bytes)
            .field("cast_sha256", d.cast_sha256.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_connection_gives_both_addresses() {
        assert_eq!(
            ssh_addresses(Some("10.5.1.20 51234 10.5.1.15 22")),
            Some(("10.5.1.15:22".into(), "10.5.1.20:51234".into()))
        );
        assert_eq!(
            ssh_addresses(Some("::1 5 fe80::1 22")).unwrap().0,
            "[fe80::1]:22"
        );
        assert_eq!(ssh_addresses(Some("garbage")), None);
        assert_eq!(ssh_addresses(None), None);
    }

    #[test]
    fn an_event_is_one_flat_json_line_in_order() {
        let id = Identity {
            sid: "s1".into(),
            user: "alice\"x".into(),
            login: "alice".into(),
            server_id: "n1".into(),
            server_hostname: "h".into(),
            addr: Some(("1.2.3.4:22".into(), "5.6.7.8:9".into())),
        };
        let line = EventLine::new("session.start", "T2000I", &id)
            .field("size", "80:24")
            .field("cgroup_id", Value::Null)
            .line();
        assert_eq!(*line.last().unwrap(), b'\n');
        let v: serde_json::Map<String, Value> = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["user"], "alice\"x");
        assert_eq!(v["addr.remote"], "5.6.7.8:9");
        assert!(v["cgroup_id"].is_null());
        assert!(std::str::from_utf8(&line)
            .unwrap()
            .starts_with("{\"event\":\"session.start\",\"code\":\"T2000I\",\"uid\":"));
        let t = v["time"].as_str().unwrap();
        assert!(t.ends_with('Z') && t.len() == 24, "{t}");
    }
}
