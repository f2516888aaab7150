//! Ring buffer records → Teleport's host events: `session.command` (T4000I), `session.disk` (T4001I) and
//! `session.network` (T4002I), with Teleport's field names and the session's `sid`, `user`, `login` and
//! `server_id` from the session directory. Written as JSON text field by field, so the order is the one a
//! reader expects (`event` first), not a map's sorted order.
//!
//! `argv` is the arguments after the program name, as Teleport writes it. A path or argv the kernel cut at
//! its bound carries `"truncated":true`. Bytes that are not UTF-8 become U+FFFD.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use auditrail_ebpf::records::{self, c_bytes, Connect, Exec, Header, Open, Record};

use crate::sessions::directory::HostSession;

/// Turns CLOCK_MONOTONIC nanoseconds (what the programs stamp) into wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    offset_ns: i64,
}

fn clock_ns(id: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write to.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

impl Clock {
    /// The offset now.
    pub fn now() -> Clock {
        Clock {
            offset_ns: clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC),
        }
    }

    /// RFC 3339 UTC with nanoseconds.
    pub fn rfc3339(&self, ktime_ns: u64) -> String {
        let ns = self.offset_ns.saturating_add(ktime_ns as i64);
        chrono::DateTime::from_timestamp_nanos(ns)
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    }
}

/// A JSON object written member by member.
struct Obj(String);

impl Obj {
    fn new() -> Obj {
        Obj(String::with_capacity(512))
    }
    fn key(&mut self, k: &str) {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        self.0.push('"');
        self.0.push_str(k);
        self.0.push_str("\":");
    }
    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        self.0
            .push_str(&serde_json::to_string(v).expect("a str always serializes"));
    }
    fn bytes(&mut self, k: &str, v: &[u8]) {
        self.str(k, &String::from_utf8_lossy(v));
    }
    fn num(&mut self, k: &str, v: impl std::fmt::Display) {
        self.key(k);
        let _ = write!(self.0, "{v}");
    }
    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// What every event starts with.
fn head(
    o: &mut Obj,
    event: &str,
    code: &str,
    clock: &Clock,
    h: &Header,
    session: Option<&HostSession>,
    server_id: &str,
) {
    o.str("event", event);
    o.str("code", code);
    o.str("uid", &uuid::Uuid::now_v7().to_string());
    o.str("time", &clock.rfc3339(h.ktime_ns));
    match session {
        Some(s) => {
            o.str("sid", &s.sid);
            o.str("user", &s.user);
            o.str("login", &s.login);
            o.str(
                "server_id",
                if s.server_id.is_empty() {
                    server_id
                } else {
                    &s.server_id
                },
            );
        }
        None => o.str("server_id", server_id),
    }
}

fn tail(o: &mut Obj, h: &Header, truncated: bool) {
    o.num("pid", h.pid);
    o.num("cgroup_id", h.cgroup_id);
    if truncated {
        o.key("truncated");
        o.0.push_str("true");
    }
}

/// The event for one record, as a JSON line (without newline).
pub fn encode(r: &Record, clock: &Clock, session: Option<&HostSession>, server_id: &str) -> String {
    let mut o = Obj::new();
    match r {
        Record::Exec(e) => exec(&mut o, e, clock, session, server_id),
        Record::Open(e) => open(&mut o, e, clock, session, server_id),
        Record::Connect(e) => connect(&mut o, e, clock, session, server_id),
    }
    o.finish()
}

fn exec(o: &mut Obj, e: &Exec, clock: &Clock, session: Option<&HostSession>, server_id: &str) {
    head(
        o,
        "session.command",
        "T4000I",
        clock,
        &e.h,
        session,
        server_id,
    );
    o.bytes("program", c_bytes(&e.h.comm));
    o.bytes("path", c_bytes(&e.path));
    let argv = &e.argv[..(e.argv_len as usize).min(records::ARGV_MAX)];
    let argv = argv.strip_suffix(b"\0").unwrap_or(argv);
    o.key("argv");
    o.0.push('[');
    if !argv.is_empty() {
        for (i, a) in argv.split(|&b| b == 0).skip(1).enumerate() {
            if i > 0 {
                o.0.push(',');
            }
            o.0.push_str(
                &serde_json::to_string(&String::from_utf8_lossy(a)).expect("a str serializes"),
            );
        }
    }
    o.0.push(']');
    o.num("ppid", e.h.ppid);
    o.num("return_code", e.return_code);
    tail(
        o,
        &e.h,
        e.h.flags & (records::F_ARGV_TRUNCATED | records::F_PATH_TRUNCATED) != 0,
    );
}

fn open(o: &mut Obj, e: &Open, clock: &Clock, session: Option<&HostSession>, server_id: &str) {
    head(o, "session.disk", "T4001I", clock, &e.h, session, server_id);
    o.bytes("path", c_bytes(&e.path));
    o.num("flags", e.flags);
    o.num("return_code", e.return_code);
    o.bytes("program", c_bytes(&e.h.comm));
    tail(o, &e.h, e.h.flags & records::F_PATH_TRUNCATED != 0);
}

fn connect(
    o: &mut Obj,
    e: &Connect,
    clock: &Clock,
    session: Option<&HostSession>,
    server_id: &str,
) {
    head(
        o,
        "session.network",
        "T4002I",
        clock,
        &e.h,
        session,
        server_id,
    );
    let (src, dst, version) = if e.family == libc::AF_INET6 as u16 {
        (
            Ipv6Addr::from(e.src_addr).to_string(),
            Ipv6Addr::from(e.dst_addr).to_string(),
            6,
        )
    } else {
        let v4 = |a: &[u8; 16]| Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string();
        (v4(&e.src_addr), v4(&e.dst_addr), 4)
    };
    o.str("src_addr", &src);
    o.str("dst_addr", &dst);
    o.num("dst_port", e.dst_port);
    o.num("version", version);
    o.bytes("program", c_bytes(&e.h.comm));
    // Teleport's enum: 0 = connect; action 0 = allowed (auditrail observes, it does not block).
    o.num("operation", 0);
    o.num("action", 0);
    o.num("return_code", e.return_code);
    tail(o, &e.h, false);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: u32) -> Header {
        let mut comm = [0u8; 16];
        comm[..2].copy_from_slice(b"sh");
        Header {
            kind,
            flags: 0,
            ktime_ns: 0,
            cgroup_id: 77,
            session_cgroup_id: 77,
            pid: 10,
            tid: 10,
            ppid: 9,
            uid: 0,
            gid: 0,
            reserved: 0,
            comm,
        }
    }

    #[test]
    fn exec_has_teleports_fields_in_order() {
        let mut e = Exec {
            h: header(records::KIND_EXEC),
            return_code: 0,
            argv_len: 0,
            argc: 3,
            reserved: 0,
            path: [0; records::PATH_MAX],
            argv: [0; records::ARGV_MAX],
        };
        e.path[..7].copy_from_slice(b"/bin/sh");
        let argv = b"sh\0-c\0echo \"hi\"\0";
        e.argv[..argv.len()].copy_from_slice(argv);
        e.argv_len = argv.len() as u32;
        let s = HostSession {
            sid: "s1".into(),
            user: "alice".into(),
            login: "root".into(),
            server_id: "n1".into(),
        };
        let line = encode(
            &Record::Exec(Box::new(e)),
            &Clock { offset_ns: 0 },
            Some(&s),
            "host",
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(line.starts_with("{\"event\":\"session.command\",\"code\":\"T4000I\",\"uid\":"));
        assert_eq!(v["argv"], serde_json::json!(["-c", "echo \"hi\""]));
        assert_eq!(v["path"], "/bin/sh");
        assert_eq!(v["program"], "sh");
        assert_eq!(
            (
                v["sid"].as_str(),
                v["user"].as_str(),
                v["server_id"].as_str()
            ),
            (Some("s1"), Some("alice"), Some("n1"))
        );
        assert_eq!(
            (
                v["pid"].as_u64(),
                v["ppid"].as_u64(),
                v["cgroup_id"].as_u64()
            ),
            (Some(10), Some(9), Some(77))
        );
        assert_eq!(v["time"], "1970-01-01T00:00:00.000000000Z");
        assert!(v.get("truncated").is_none());
        e.h.flags = records::F_ARGV_TRUNCATED;
        let line = encode(
            &Record::Exec(Box::new(e)),
            &Clock { offset_ns: 0 },
            None,
            "host",
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["truncated"], true);
        assert_eq!(v["server_id"], "host");
        assert!(v.get("sid").is_none());
    }

    #[test]
    fn network_addresses_v4_and_v6() {
        let mut c = Connect {
            h: header(records::KIND_CONNECT),
            return_code: -111,
            family: libc::AF_INET as u16,
            dst_port: 8080,
            src_port: 0,
            reserved: 0,
            fd: 3,
            reserved2: 0,
            src_addr: [0; 16],
            dst_addr: [0; 16],
        };
        c.dst_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let encoded = |c| -> serde_json::Value {
            serde_json::from_str(&encode(
                &Record::Connect(Box::new(c)),
                &Clock { offset_ns: 0 },
                None,
                "h",
            ))
            .unwrap()
        };
        let v = encoded(c);
        assert_eq!(
            (
                v["dst_addr"].as_str(),
                v["version"].as_u64(),
                v["return_code"].as_i64()
            ),
            (Some("127.0.0.1"), Some(4), Some(-111))
        );
        c.family = libc::AF_INET6 as u16;
        c.dst_addr = Ipv6Addr::LOCALHOST.octets();
        let v = encoded(c);
        assert_eq!(
            (v["dst_addr"].as_str(), v["version"].as_u64()),
            (Some("::1"), Some(6))
        );
    }
}
