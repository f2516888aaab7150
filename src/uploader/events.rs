//! The uploader's audit events: Teleport's `session.upload` (T2005I: `sid`, `url`) when every object of a
//! session is verified, with each object's key, size and sha256 so that the chain proves what was stored;
//! and `session.upload` with code T2005W and an `error` when a session is quarantined — never a
//! success-looking event for a recording that is not stored (Teleport does that, gravitational/teleport#65895).
//!
//! They go to the agent's unix socket through the recorder's sender (spooled under `<dir>/spool/` when the
//! agent is down, drained by the agent), so no event is lost while the agent restarts.

use serde_json::{json, Value};

use super::upload::Uploaded;
use crate::recording::events::{EventLine, Identity};

/// Who is uploading: the identity fields of every event (`sid` set per event).
#[derive(Clone, Debug)]
pub struct Who {
    /// The OS account the uploader runs as.
    pub login: String,
    /// `server_id`.
    pub server_id: String,
    /// This host's name.
    pub hostname: String,
}

impl Who {
    fn id(&self, sid: &str) -> Identity {
        Identity {
            sid: sid.to_string(),
            user: self.login.clone(),
            login: self.login.clone(),
            server_id: self.server_id.clone(),
            server_hostname: self.hostname.clone(),
            addr: None,
        }
    }
}

/// Teleport's success code for `session.upload`.
pub const CODE_UPLOADED: &str = "T2005I";
/// auditrail's failure code for `session.upload` (quarantined: not stored).
pub const CODE_FAILED: &str = "T2005W";

fn objects(objects: &[Uploaded]) -> Value {
    Value::Array(
        objects
            .iter()
            .map(|o| {
                json!({"file": o.file, "url": o.url, "key": o.key, "size": o.size, "sha256": o.sha256,
                       "etag": o.etag, "already_present": o.already_present})
            })
            .collect(),
    )
}

/// `session.upload` T2005I for a session whose objects are all verified.
pub fn uploaded(
    who: &Who,
    sid: &str,
    objs: &[Uploaded],
    incomplete: bool,
    reupload: Option<&str>,
) -> Vec<u8> {
    let url = objs
        .iter()
        .find(|o| o.file.ends_with(".raw"))
        .or(objs.first())
        .map_or(String::new(), |o| o.url.clone());
    let mut e = EventLine::new("session.upload", CODE_UPLOADED, &who.id(sid))
        .field("url", url)
        .field("objects", objects(objs))
        .field("incomplete", incomplete);
    if let Some(reason) = reupload {
        e = e.field("reupload", true).field("reupload_reason", reason);
    }
    e.line()
}

/// `session.upload` T2005W for a session quarantined after `attempts` failures.
pub fn quarantined(
    who: &Who,
    sid: &str,
    error: &str,
    attempts: u32,
    moved_to: &str,
    stored: &[Uploaded],
) -> Vec<u8> {
    EventLine::new("session.upload", CODE_FAILED, &who.id(sid))
        .field("success", false)
        .field("error", error)
        .field("attempts", attempts)
        .field("quarantined", moved_to)
        .field("objects", objects(stored))
        .line()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> Who {
        Who {
            login: "auditrail".into(),
            server_id: "n1".into(),
            hostname: "h".into(),
        }
    }

    #[test]
    fn success_and_failure_are_distinct() {
        let o = Uploaded {
            path: "/r/s.raw".into(),
            file: "s.raw".into(),
            key: "n1/s/s.raw".into(),
            url: "s3://b/n1/s/s.raw".into(),
            size: 3,
            sha256: "ab".into(),
            etag: "\"e\"".into(),
            mtime_ns: 0,
            sent: 3,
            already_present: false,
            replaced: false,
        };
        let v: Value = serde_json::from_slice(&uploaded(
            &who(),
            "s",
            &[o],
            false,
            Some("appended after .done"),
        ))
        .unwrap();
        assert_eq!(v["event"], "session.upload");
        assert_eq!(v["code"], "T2005I");
        assert_eq!(v["sid"], "s");
        assert_eq!(v["url"], "s3://b/n1/s/s.raw");
        assert_eq!(v["objects"][0]["sha256"], "ab");
        assert_eq!(v["reupload"], true);
        let v: Value =
            serde_json::from_slice(&quarantined(&who(), "s", "boom", 3, "/q/s", &[])).unwrap();
        assert_eq!(v["code"], "T2005W");
        assert_eq!(v["error"], "boom");
        assert!(v.get("url").is_none(), "a failure names no stored url");
    }
}
