//! `encoding = { schema = "ecs" }`: a Teleport event as an Elastic Common Schema document, so that Elastic
//! Security's dashboards and detection rules find `event.action`, `user.name`, `source.ip`, `host.id`…
//!
//! The ECS fields are copies; the original event is kept whole and verbatim (its bytes, not a re-encoding)
//! under `teleport.audit`, so nothing is lost and the forensic record can be read back byte for byte:
//!
//! | Teleport field | ECS field(s) | note |
//! | --- | --- | --- |
//! | `time` | `@timestamp` | the string as received |
//! | `event` | `event.action` | also sets `event.category` / `event.type`, see [`category`] |
//! | `code` | `event.code` | |
//! | `uid` | `event.id` | |
//! | — | `event.kind` | always `"event"` |
//! | `success` | `event.outcome` | `true` → `success`, `false` → `failure` |
//! | `user` | `user.name`, `related.user` | |
//! | `login` | `related.user` | the OS login; ECS has no field of its own for it |
//! | `server_id` | `host.id` | |
//! | `server_hostname` | `host.hostname`, `host.name` | |
//! | `addr.remote` | `source.address`, `source.ip`, `source.port`, `related.ip` | ip and port when it is `ip:port` |
//! | `addr.local` | `destination.address`, `destination.ip`, `destination.port`, `related.ip` | |
//! | `src_addr` / `dst_addr`, `dst_port` | `source.ip` / `destination.ip`, `destination.port` | host events (`session.network`) |
//! | `cluster_name` | `orchestrator.cluster.name` | |
//! | `proto` | `network.protocol` | |
//! | `program` | `process.name` | |
//! | `path` | `process.executable` (`session.command`), `file.path` (`session.disk`, `scp`) | |
//! | `argv` | `process.args` | |
//! | `command` | `process.command_line` | `exec` |
//! | `pid`, `ppid` | `process.pid`, `process.parent.pid` | |
//! | `return_code`, `exitCode` | `process.exit_code` | |
//! | (every field) | `teleport.audit.*` | the original event, verbatim |

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use auditrail_core::Event;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

/// The ECS version the documents follow.
pub const ECS_VERSION: &str = "8.11.0";

/// `event.category` and `event.type` for a Teleport event type.
pub fn category(event: &str) -> (Option<&'static str>, &'static str) {
    match event {
        "user.login" => (Some("authentication"), "start"),
        "session.start" => (Some("session"), "start"),
        "session.end" => (Some("session"), "end"),
        "session.join" | "session.leave" => (Some("session"), "info"),
        "exec" | "session.command" => (Some("process"), "start"),
        "session.disk" | "scp" => (Some("file"), "access"),
        "session.network" | "port" => (Some("network"), "connection"),
        _ => (None, "info"),
    }
}

/// Top-level fields of an event, borrowed as raw JSON.
struct Fields<'a>(HashMap<Cow<'a, str>, &'a RawValue>);

impl<'a> Fields<'a> {
    fn string(&self, name: &str) -> Option<String> {
        let raw = self.0.get(name)?.get();
        raw.starts_with('"')
            .then(|| serde_json::from_str::<String>(raw).ok())
            .flatten()
            .filter(|s| !s.is_empty())
    }

    fn integer(&self, name: &str) -> Option<Value> {
        let raw = self.0.get(name)?.get();
        raw.parse::<i64>().ok().map(Value::from)
    }

    fn boolean(&self, name: &str) -> Option<bool> {
        match self.0.get(name)?.get() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }

    fn string_array(&self, name: &str) -> Option<Value> {
        let raw = self.0.get(name)?.get();
        serde_json::from_str::<Vec<String>>(raw)
            .ok()
            .map(Value::from)
    }
}

/// Sets `path` (dotted) in `doc`, creating objects on the way.
fn set(doc: &mut Map<String, Value>, path: &str, value: Value) {
    let mut parts = path.split('.').peekable();
    let mut cur = doc;
    while let Some(p) = parts.next() {
        if parts.peek().is_none() {
            cur.insert(p.to_string(), value);
            return;
        }
        let next = cur
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        cur = next.as_object_mut().expect("made an object above");
    }
}

/// `address`, and its ip and port when it is `ip:port` or a bare ip.
fn endpoint(doc: &mut Map<String, Value>, side: &str, address: &str, related_ip: &mut Vec<Value>) {
    set(doc, &format!("{side}.address"), address.into());
    let (ip, port) = match address.parse::<SocketAddr>() {
        Ok(sa) => (Some(sa.ip()), Some(sa.port())),
        Err(_) => (address.parse::<IpAddr>().ok(), None),
    };
    if let Some(ip) = ip {
        set(doc, &format!("{side}.ip"), ip.to_string().into());
        related_ip.push(ip.to_string().into());
    }
    if let Some(port) = port {
        set(doc, &format!("{side}.port"), port.into());
    }
}

/// Writes the ECS document of `event` (one line of JSON) to `out`.
pub fn encode(event: &Event, out: &mut Vec<u8>) -> Result<(), String> {
    let raw = event.raw();
    let fields = Fields(
        serde_json::from_slice(raw).map_err(|e| format!("cannot read the event's fields: {e}"))?,
    );
    let kind = event.kind();
    let mut doc = Map::new();
    doc.insert("@timestamp".into(), time_text(event).into());
    set(&mut doc, "ecs.version", ECS_VERSION.into());
    set(&mut doc, "event.kind", "event".into());
    set(&mut doc, "event.action", kind.as_ref().into());
    set(&mut doc, "event.id", event.uid().as_ref().into());
    if let Some(code) = fields.string("code") {
        set(&mut doc, "event.code", code.into());
    }
    let (cat, typ) = category(&kind);
    if let Some(cat) = cat {
        set(&mut doc, "event.category", json!([cat]));
    }
    set(&mut doc, "event.type", json!([typ]));
    if let Some(ok) = fields.boolean("success") {
        set(
            &mut doc,
            "event.outcome",
            if ok { "success" } else { "failure" }.into(),
        );
    }
    let mut related_user = Vec::new();
    if let Some(user) = fields.string("user") {
        set(&mut doc, "user.name", user.clone().into());
        related_user.push(Value::from(user));
    }
    if let Some(login) = fields.string("login") {
        if !related_user.iter().any(|u| u == login.as_str()) {
            related_user.push(login.into());
        }
    }
    if !related_user.is_empty() {
        set(&mut doc, "related.user", Value::Array(related_user));
    }
    if let Some(id) = fields.string("server_id") {
        set(&mut doc, "host.id", id.into());
    }
    if let Some(h) = fields.string("server_hostname") {
        set(&mut doc, "host.hostname", h.clone().into());
        set(&mut doc, "host.name", h.into());
    }
    let mut related_ip = Vec::new();
    if let Some(a) = fields.string("addr.remote") {
        endpoint(&mut doc, "source", &a, &mut related_ip);
    } else if let Some(a) = fields.string("src_addr") {
        endpoint(&mut doc, "source", &a, &mut related_ip);
    }
    if let Some(a) = fields.string("addr.local") {
        endpoint(&mut doc, "destination", &a, &mut related_ip);
    } else if let Some(a) = fields.string("dst_addr") {
        endpoint(&mut doc, "destination", &a, &mut related_ip);
        if let Some(port) = fields.integer("dst_port") {
            set(&mut doc, "destination.port", port);
        }
    }
    related_ip.dedup();
    if !related_ip.is_empty() {
        set(&mut doc, "related.ip", Value::Array(related_ip));
    }
    if let Some(c) = fields.string("cluster_name") {
        set(&mut doc, "orchestrator.cluster.name", c.into());
    }
    if let Some(p) = fields.string("proto") {
        set(&mut doc, "network.protocol", p.into());
    }
    if let Some(p) = fields.string("program") {
        set(&mut doc, "process.name", p.into());
    }
    if let Some(path) = fields.string("path") {
        match kind.as_ref() {
            "session.command" => set(&mut doc, "process.executable", path.into()),
            "session.disk" | "scp" => set(&mut doc, "file.path", path.into()),
            _ => {}
        }
    }
    if let Some(args) = fields.string_array("argv") {
        set(&mut doc, "process.args", args);
    }
    if let Some(c) = fields.string("command") {
        set(&mut doc, "process.command_line", c.into());
    }
    if let Some(pid) = fields.integer("pid") {
        set(&mut doc, "process.pid", pid);
    }
    if let Some(ppid) = fields.integer("ppid") {
        set(&mut doc, "process.parent.pid", ppid);
    }
    if let Some(code) = fields
        .integer("return_code")
        .or_else(|| fields.integer("exitCode"))
    {
        set(&mut doc, "process.exit_code", code);
    }
    doc.remove("teleport");
    let start = out.len();
    serde_json::to_writer(&mut *out, &doc).map_err(|e| e.to_string())?;
    // The original goes in as its own bytes, last: `…,"teleport":{"audit":<raw>}}`.
    debug_assert_eq!(out.last(), Some(&b'}'));
    out.pop();
    if out.len() > start + 1 {
        out.push(b',');
    }
    out.extend_from_slice(br#""teleport":{"audit":"#);
    out.extend_from_slice(raw);
    out.extend_from_slice(b"}}");
    Ok(())
}

/// `time` as a decoded string (real timestamps never hold escapes).
pub fn time_text(event: &Event) -> String {
    let t = event.time_raw();
    if t.contains('\\') {
        serde_json::from_str(&format!("\"{t}\"")).unwrap_or_else(|_| t.to_string())
    } else {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn ecs(json: &str) -> (Value, Vec<u8>) {
        let e = Event::parse(Bytes::copy_from_slice(json.as_bytes()), 1 << 20).unwrap();
        let mut out = Vec::new();
        encode(&e, &mut out).unwrap();
        (serde_json::from_slice(&out).unwrap(), out)
    }

    #[test]
    fn session_start_maps_to_ecs() {
        let input = r#"{"event":"session.start","uid":"u-1","code":"T2000I","time":"2017-02-03T06:54:05.000Z","user":"alice@example.com","login":"dba","server_id":"f84f7386-5e22","server_hostname":"db-1","sid":"8d3895b6","addr.local":"10.5.1.15:3022","addr.remote":"10.5.1.20:51234","cluster_name":"prod","proto":"ssh","cmd":"a \u003c b","n":123456789012345678901}"#;
        let (v, bytes) = ecs(input);
        assert_eq!(v["@timestamp"], "2017-02-03T06:54:05.000Z");
        assert_eq!(v["ecs"]["version"], ECS_VERSION);
        assert_eq!(v["event"]["action"], "session.start");
        assert_eq!(v["event"]["code"], "T2000I");
        assert_eq!(v["event"]["id"], "u-1");
        assert_eq!(v["event"]["kind"], "event");
        assert_eq!(v["event"]["category"], json!(["session"]));
        assert_eq!(v["event"]["type"], json!(["start"]));
        assert_eq!(v["user"]["name"], "alice@example.com");
        assert_eq!(v["related"]["user"], json!(["alice@example.com", "dba"]));
        assert_eq!(v["host"]["id"], "f84f7386-5e22");
        assert_eq!(v["host"]["hostname"], "db-1");
        assert_eq!(v["source"]["address"], "10.5.1.20:51234");
        assert_eq!(v["source"]["ip"], "10.5.1.20");
        assert_eq!(v["source"]["port"], 51234);
        assert_eq!(v["destination"]["ip"], "10.5.1.15");
        assert_eq!(v["destination"]["port"], 3022);
        assert_eq!(v["related"]["ip"], json!(["10.5.1.20", "10.5.1.15"]));
        assert_eq!(v["orchestrator"]["cluster"]["name"], "prod");
        assert_eq!(v["network"]["protocol"], "ssh");
        // The original is there byte for byte, escapes and big numbers included.
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.ends_with(&format!(r#""teleport":{{"audit":{input}}}}}"#)));
    }

    #[test]
    fn login_outcome_and_host_events() {
        let (v, _) = ecs(
            r#"{"event":"user.login","time":"2017-02-03T06:54:05Z","uid":"x","user":"bob","success":false}"#,
        );
        assert_eq!(v["event"]["outcome"], "failure");
        assert_eq!(v["event"]["category"], json!(["authentication"]));
        let (v, _) = ecs(
            r#"{"event":"session.command","time":"2017-02-03T06:54:05Z","uid":"x","program":"ls","path":"/bin/ls","argv":["-la"],"pid":42,"ppid":1,"return_code":0}"#,
        );
        assert_eq!(v["process"]["name"], "ls");
        assert_eq!(v["process"]["executable"], "/bin/ls");
        assert_eq!(v["process"]["args"], json!(["-la"]));
        assert_eq!(v["process"]["pid"], 42);
        assert_eq!(v["process"]["parent"]["pid"], 1);
        assert_eq!(v["process"]["exit_code"], 0);
        let (v, _) = ecs(
            r#"{"event":"session.network","time":"2017-02-03T06:54:05Z","uid":"x","src_addr":"10.0.0.1","dst_addr":"2001:db8::1","dst_port":443}"#,
        );
        assert_eq!(v["source"]["ip"], "10.0.0.1");
        assert_eq!(v["destination"]["ip"], "2001:db8::1");
        assert_eq!(v["destination"]["port"], 443);
        assert_eq!(v["event"]["category"], json!(["network"]));
        let (v, _) = ecs(
            r#"{"event":"session.disk","time":"2017-02-03T06:54:05Z","uid":"x","path":"/etc/passwd"}"#,
        );
        assert_eq!(v["file"]["path"], "/etc/passwd");
        assert!(v.get("process").is_none());
    }

    #[test]
    fn an_own_teleport_field_is_kept_inside_the_original_only() {
        let (v, _) = ecs(r#"{"event":"x","time":"2017-02-03T06:54:05Z","uid":"x","teleport":1}"#);
        assert_eq!(v["teleport"]["audit"]["teleport"], 1);
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[ -~\\u{80}-\\u{10ffff}]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-z._]{1,10}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_event_gives_valid_json_with_the_original_inside(
            extra in prop::collection::btree_map(
                prop_oneof![Just("user".to_string()), Just("addr.remote".to_string()), Just("argv".to_string()), Just("pid".to_string()), Just("success".to_string()), "[a-z._]{1,10}"],
                json_value(), 0..8),
            kind in prop_oneof![Just("session.command"), Just("user.login"), Just("x")],
        ) {
            let mut obj = Map::new();
            obj.insert("event".into(), kind.into());
            obj.insert("time".into(), "2017-02-03T06:54:05Z".into());
            obj.insert("uid".into(), "u".into());
            for (k, v) in extra {
                if !matches!(k.as_str(), "event" | "time" | "uid") { obj.insert(k, v); }
            }
            let input = serde_json::to_string(&obj).unwrap();
            let (v, _) = ecs(&input);
            let original: Value = serde_json::from_str(&input).unwrap();
            prop_assert_eq!(&v["teleport"]["audit"], &original);
            prop_assert_eq!(&v["event"]["action"], &Value::from(kind));
        }
    }
}
