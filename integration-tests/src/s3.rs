//! The S3 peer of the uploader's tests: moto_server (PyPI `moto[server]`, installed by
//! `integration-tests/peers/s3/install`) on a free 127.0.0.1 port per test, a small S3 REST client for
//! checking what is stored (ListObjectsV2, HEAD, GET, ListMultipartUploads; PUT for buckets and foreign
//! objects), and the `auditrail upload` process.
//!
//! moto does not check signatures, but it refuses object requests without an `Authorization` header, so
//! the client sends a well-formed SigV4 header with a dummy signature.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::peer_process::{install_peer, peer_required, PeerProcess};
use crate::{binary, free_port};

/// Whether a missing moto fails the test rather than skips it: `AUDITRAIL_REQUIRE_S3=1` (scripts/test.sh) or CI.
pub fn s3_required() -> bool {
    peer_required("AUDITRAIL_REQUIRE_S3")
}

/// The venv bin directory holding `moto_server` and `aws`, installed on first use. `None` when it cannot be
/// installed and is not required; panics when it is required.
pub fn moto_bin_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = DIR.get_or_init(|| {
        let dir = install_peer("s3")?;
        if dir.join("moto_server").is_file() {
            Ok(dir)
        } else {
            Err(format!(
                "install printed {dir:?}, which holds no moto_server"
            ))
        }
    });
    match found {
        Ok(d) => Some(d.clone()),
        Err(e) => {
            assert!(
                !s3_required(),
                "moto is required (CI or AUDITRAIL_REQUIRE_S3) but cannot be installed: {e}"
            );
            println!("moto not available, test not run: {e}");
            None
        }
    }
}

/// A running moto_server, killed when dropped. In-memory: a restart starts empty.
pub struct Moto {
    process: PeerProcess,
    /// Its port.
    pub port: u16,
}

const AUTH: &str = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0000";

impl Moto {
    /// Starts a server on a free port; `None` when moto is not available (and not required).
    pub fn start(dir: &Path) -> Option<Moto> {
        moto_bin_dir()?;
        Some(Moto::start_on(dir, free_port()))
    }

    /// Starts a server on `port` and waits until it answers.
    pub fn start_on(dir: &Path, port: u16) -> Moto {
        let bin = moto_bin_dir()
            .expect("moto is available")
            .join("moto_server");
        let log = dir.join(format!("moto-{port}.log"));
        let mut cmd = Command::new(bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let process = PeerProcess::start("moto_server", cmd, log, Duration::from_secs(30), || {
            matches!(request_on(port, "GET", "/", &[], b""), Ok((200, _, _)))
        });
        Moto { process, port }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// One S3 request; returns status, headers (lower-cased names) and body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<(u16, HashMap<String, String>, Vec<u8>)> {
        request_on(self.port, method, path, headers, body)
    }

    /// Creates `bucket`.
    pub fn create_bucket(&self, bucket: &str) {
        let (status, _, body) = self
            .request("PUT", &format!("/{bucket}"), &[], b"")
            .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }

    /// Puts an object (someone else's: no metadata).
    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        let (status, _, b) = self
            .request(
                "PUT",
                &format!("/{bucket}/{key}"),
                &[("Content-Type", "application/octet-stream")],
                body,
            )
            .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&b));
    }

    /// The object's bytes, or `None` when there is none.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let (status, _, body) = self
            .request("GET", &format!("/{bucket}/{key}"), &[], b"")
            .unwrap();
        (status == 200).then_some(body)
    }

    /// HEAD: the object's headers, or `None`.
    pub fn head(&self, bucket: &str, key: &str) -> Option<HashMap<String, String>> {
        let (status, h, _) = self
            .request("HEAD", &format!("/{bucket}/{key}"), &[], b"")
            .unwrap();
        (status == 200).then_some(h)
    }

    /// Every (key, size) in `bucket` (ListObjectsV2, all pages).
    pub fn list(&self, bucket: &str) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/{bucket}?list-type=2");
            if let Some(t) = &token {
                path.push_str(&format!("&continuation-token={}", urlencode(t)));
            }
            let (status, _, body) = self.request("GET", &path, &[], b"").unwrap();
            let body = String::from_utf8_lossy(&body).into_owned();
            assert_eq!(status, 200, "{body}");
            for c in elements(&body, "Contents") {
                let key = elements(c, "Key")
                    .first()
                    .map(|k| xml_unescape(k))
                    .unwrap_or_default();
                let size = elements(c, "Size")
                    .first()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                out.push((key, size));
            }
            token = elements(&body, "NextContinuationToken")
                .first()
                .map(|s| s.to_string());
            if token.is_none() {
                break;
            }
        }
        out.sort();
        out
    }

    /// The multipart uploads in progress in `bucket` (ListMultipartUploads): (key, upload id).
    pub fn multipart_uploads(&self, bucket: &str) -> Vec<(String, String)> {
        let (status, _, body) = self
            .request("GET", &format!("/{bucket}?uploads"), &[], b"")
            .unwrap();
        let body = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(status, 200, "{body}");
        elements(&body, "Upload")
            .iter()
            .map(|u| {
                (
                    elements(u, "Key")
                        .first()
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                    elements(u, "UploadId")
                        .first()
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// One S3 request to the server on `port`; returns status, headers (lower-cased names) and body.
fn request_on(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, HashMap<String, String>, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\nAuthorization: {AUTH}\r\n",
        port,
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut hdrs = HashMap::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            hdrs.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut raw = Vec::new();
    if method != "HEAD" {
        r.read_to_end(&mut raw)?;
    }
    Ok((status, hdrs, raw))
}

/// The contents of every `<tag>…</tag>` in `xml` (no nesting of the same tag).
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(a) = rest.find(&open) {
        let after = &rest[a + open.len()..];
        let Some(b) = after.find(&close) else { break };
        out.push(&after[..b]);
        rest = &after[b + close.len()..];
    }
    out
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// SHA-256 (hex) of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `len` pseudo-random bytes from `seed` (xorshift: fast, reproducible, incompressible enough).
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The `[uploader]` config every test starts from: `dir/data` as data_dir, `dir/rec` watched, the bucket
/// under `moto`'s endpoint, keys `node1/{sid}/{file}`, quick rescans and retries; `extra` is appended to the
/// `[uploader]` table.
pub fn config(dir: &Path, port: u16, bucket: &str, extra: &str) -> String {
    format!(
        r#"data_dir = "{d}/data"
[uploader]
watch = ["{d}/rec"]
url = "s3://{bucket}/pre"
endpoint = "http://127.0.0.1:{port}"
region = "us-east-1"
allow_http = true
access_key_id = "test"
secret_access_key = "test"
server_id = "node1"
key_template = "{{server_id}}/{{sid}}/{{file}}"
rescan_interval = "1s"
retry_initial = "100ms"
retry_max = "1s"
socket = "{d}/no-agent.sock"
{extra}
"#,
        d = dir.display()
    )
}

/// A running `auditrail upload`. Killed (SIGKILL) when dropped.
pub struct UploaderProc {
    child: Option<Child>,
    log: PathBuf,
}

impl UploaderProc {
    /// Writes `config` to `dir/upload.toml` and starts `auditrail upload --config` on it.
    pub fn start(dir: &Path, config: &str) -> UploaderProc {
        std::fs::create_dir_all(dir.join("rec")).unwrap();
        let path = dir.join("upload.toml");
        std::fs::write(&path, config).unwrap();
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let log = dir.join(format!(
            "upload-{}.log",
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let child = Command::new(binary())
            .args(["upload", "--config"])
            .arg(&path)
            .env("AUDITRAIL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting auditrail upload");
        UploaderProc {
            child: Some(child),
            log,
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// SIGKILL and wait.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for UploaderProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Writes a finished session into `rec`: `<sid>.raw` of `raw` bytes, a small `<sid>.cast`, then `<sid>.done`.
/// Returns (name, bytes) of the recording files.
pub fn write_session(rec: &Path, sid: &str, raw: Vec<u8>) -> Vec<(String, Vec<u8>)> {
    let cast = format!("{{\"version\":2,\"width\":80,\"height\":24}}\n[0.1,\"o\",\"{sid}\"]\n")
        .into_bytes();
    let files = vec![(format!("{sid}.raw"), raw), (format!("{sid}.cast"), cast)];
    for (name, bytes) in &files {
        std::fs::write(rec.join(name), bytes).unwrap();
    }
    let done = rec.join(format!("{sid}.done.tmp"));
    std::fs::write(&done, format!("{{\"sid\":\"{sid}\"}}")).unwrap();
    std::fs::rename(&done, rec.join(format!("{sid}.done"))).unwrap();
    files
}

/// The `session.upload` events the uploader spooled (no agent runs in these tests), as JSON.
pub fn spooled_events(rec: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(rec.join("spool")) else {
        return out;
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for f in files {
        for line in std::fs::read_to_string(&f).unwrap_or_default().lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                if v["event"] == "session.upload" {
                    out.push(v);
                }
            }
        }
    }
    out
}
