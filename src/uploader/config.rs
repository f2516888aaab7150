//! `[uploader]`: the recording uploader's settings, a table of the agent's own TOML file (so one file serves
//! the agent, the recorder and the uploader). `auditrail upload --config F` reads only `data_dir` and
//! `[uploader]` ([`load`]), with `${VAR}` expanded (credentials usually come from the environment); a file
//! holding just those two is a valid uploader config. `auditrail validate` checks the same table as part of
//! the whole config. Every default is documented on its field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use auditrail_core::secret::Secret;
use auditrail_core::units::{ByteSize, Interval};
use serde::Deserialize;

use crate::config::ConfigError;

/// What happens to a session's local files once every one of its objects is verified in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterUpload {
    /// Leave them (the default): the operator's own rotation removes them.
    Keep,
    /// Remove them.
    Delete,
    /// Move them into this directory (same file system: a rename).
    Move(PathBuf),
}

impl<'de> Deserialize<'de> for AfterUpload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AfterUpload::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl AfterUpload {
    /// `"keep"`, `"delete"` or `"move:DIR"` (DIR absolute).
    pub fn parse(s: &str) -> Result<AfterUpload, String> {
        match s {
            "keep" => Ok(AfterUpload::Keep),
            "delete" => Ok(AfterUpload::Delete),
            _ => match s.strip_prefix("move:") {
                Some(dir) if Path::new(dir).is_absolute() => Ok(AfterUpload::Move(dir.into())),
                Some(dir) => Err(format!(
                    "`move:{dir}`: the directory must be an absolute path, e.g. \"move:/var/lib/auditrail/uploaded\""
                )),
                None => Err(format!(
                    "invalid value `{s}`: expected \"keep\", \"delete\" or \"move:/absolute/dir\""
                )),
            },
        }
    }
}

/// The `[uploader]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploaderConfig {
    /// Recording directories to watch. Default `["<data_dir>/recordings"]`.
    pub watch: Option<Vec<PathBuf>>,
    /// Where objects go, an object_store URL: `s3://bucket/prefix` (also `gs://`, `az://`, `file:///dir`;
    /// only S3 is tested against a server). Required.
    pub url: String,
    /// S3 endpoint (an S3-compatible server, e.g. `http://127.0.0.1:9000`). Default: `AWS_ENDPOINT_URL`, else
    /// AWS's regional endpoint.
    pub endpoint: Option<String>,
    /// S3 region. Default: `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), which most S3-compatible servers need. Default `true`;
    /// `false` uses virtual-hosted style (`bucket.endpoint/key`).
    #[serde(default = "default_true")]
    pub path_style: bool,
    /// Allow a plain-`http://` endpoint. Default `false` (also `AWS_ALLOW_HTTP=true`).
    #[serde(default)]
    pub allow_http: bool,
    /// Access key id. Default: `AWS_ACCESS_KEY_ID`, a profile's, or the instance's (IMDS).
    pub access_key_id: Option<Secret>,
    /// Secret access key. Default: `AWS_SECRET_ACCESS_KEY` (as for `access_key_id`).
    pub secret_access_key: Option<Secret>,
    /// Session token, with temporary credentials. Default: `AWS_SESSION_TOKEN`.
    pub session_token: Option<Secret>,
    /// Object key under the URL's prefix. Placeholders: `{server_id}`, `{hostname}`, `{yyyy}`, `{mm}`,
    /// `{dd}` (UTC date the session ended: `.done`'s mtime, else the newest file's), `{sid}`, `{file}`.
    /// Must hold `{sid}` and `{file}` (keys must never collide). Default
    /// `"{server_id}/{yyyy}/{mm}/{dd}/{sid}/{file}"`.
    #[serde(default = "default_key_template")]
    pub key_template: String,
    /// `server_id` in keys and events. Default the host name.
    pub server_id: Option<String>,
    /// Files at least this large go up as a multipart upload (resumable). Default `"16MiB"`.
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold: ByteSize,
    /// Part size of a multipart upload (5 MiB to 5 GiB, S3's bounds). Default `"8MiB"`.
    #[serde(default = "default_part_size")]
    pub part_size: ByteSize,
    /// Parts of one file in flight at once. Default `4`.
    #[serde(default = "default_part_concurrency")]
    pub part_concurrency: usize,
    /// Request bodies held in memory at once over all uploads (whole files below `multipart_threshold`,
    /// parts of larger ones): what bounds the uploader's memory, whatever `concurrency` and
    /// `part_concurrency` are. At least `part_size`. Default `"32MiB"`.
    #[serde(default = "default_max_buffered")]
    pub max_buffered: ByteSize,
    /// Sessions uploaded at once. Default `2`.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Upload bandwidth cap over all uploads, bytes per second. Default: none.
    pub max_bytes_per_sec: Option<ByteSize>,
    /// A session without `<sid>.done` whose files have not changed for this long is uploaded anyway (the
    /// recorder died), flagged incomplete. Default `"1h"`.
    #[serde(default = "default_stale_after")]
    pub stale_after: Interval,
    /// Full rescan of the watched directories (besides inotify). Default `"60s"`.
    #[serde(default = "default_rescan_interval")]
    pub rescan_interval: Interval,
    /// `"keep"` (default), `"delete"` or `"move:/dir"`, applied only after every object of the session is
    /// verified.
    #[serde(default = "default_after_upload")]
    pub after_upload: AfterUpload,
    /// Time a verified session's files stay before `after_upload` applies. Default `"0s"`.
    #[serde(default = "default_keep_for")]
    pub keep_for: Interval,
    /// Failures of a session's own (unreadable file, a key holding other content, a key the store refuses)
    /// before it is quarantined: moved to `<dir>/quarantine/<sid>/`, never deleted. Failures of the store
    /// itself (unreachable, 5xx, credentials) are retried without limit. Default `10`.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First retry delay; doubles per failure up to `retry_max`. Default `"1s"`.
    #[serde(default = "default_retry_initial")]
    pub retry_initial: Interval,
    /// Longest retry delay. Default `"5m"`.
    #[serde(default = "default_retry_max")]
    pub retry_max: Interval,
    /// A session that keeps failing is logged at most once per this interval (every failure is counted).
    /// Default `"5m"`.
    #[serde(default = "default_report_interval")]
    pub report_interval: Interval,
    /// The agent's unix source socket the `session.upload` events go to. Default `<data_dir>/events.sock`.
    pub socket: Option<PathBuf>,
    /// Where `/metrics` and `/health` are served. Default: not served.
    pub api_address: Option<SocketAddr>,
}

fn default_true() -> bool {
    true
}
fn default_key_template() -> String {
    "{server_id}/{yyyy}/{mm}/{dd}/{sid}/{file}".into()
}
fn default_multipart_threshold() -> ByteSize {
    ByteSize(16 << 20)
}
fn default_part_size() -> ByteSize {
    ByteSize(8 << 20)
}
fn default_part_concurrency() -> usize {
    4
}
fn default_max_buffered() -> ByteSize {
    ByteSize(32 << 20)
}
fn default_concurrency() -> usize {
    2
}
fn default_stale_after() -> Interval {
    Interval(Duration::from_secs(3600))
}
fn default_rescan_interval() -> Interval {
    Interval(Duration::from_secs(60))
}
fn default_after_upload() -> AfterUpload {
    AfterUpload::Keep
}
fn default_keep_for() -> Interval {
    Interval(Duration::ZERO)
}
fn default_max_attempts() -> u32 {
    10
}
fn default_retry_initial() -> Interval {
    Interval(Duration::from_secs(1))
}
fn default_retry_max() -> Interval {
    Interval(Duration::from_secs(300))
}
fn default_report_interval() -> Interval {
    Interval(Duration::from_secs(300))
}

/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 << 30;

impl UploaderConfig {
    /// The watched directories: `watch`, or `<data_dir>/recordings`.
    pub fn watch_dirs(&self, data_dir: &Path) -> Vec<PathBuf> {
        self.watch
            .clone()
            .unwrap_or_else(|| vec![data_dir.join("recordings")])
    }

    /// Checks what types cannot say; the error names the field and what to do.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        crate::uploader::key::Template::parse(&self.key_template)
            .map_err(|e| ("key_template", e))?;
        url_scheme(&self.url).map_err(|e| ("url", e))?;
        let part = self.part_size.0;
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part) {
            return Err((
                "part_size",
                "must be 5MiB to 5GiB (S3's bounds for a part)".into(),
            ));
        }
        if self.multipart_threshold.0 < MIN_PART_SIZE {
            return Err(("multipart_threshold", "must be at least 5MiB".into()));
        }
        if self.multipart_threshold.0 > MAX_PART_SIZE {
            return Err((
                "multipart_threshold",
                "must be at most 5GiB (a single PUT's bound)".into(),
            ));
        }
        if !(1..=64).contains(&self.part_concurrency) {
            return Err(("part_concurrency", "must be 1 to 64".into()));
        }
        if self.max_buffered.0 < part || self.max_buffered.0 > (1 << 40) {
            return Err((
                "max_buffered",
                "must be at least part_size (one part in memory) and at most 1TiB".into(),
            ));
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err(("concurrency", "must be 1 to 256".into()));
        }
        if let Some(b) = self.max_bytes_per_sec {
            if b.0 < 1024 || b.0 > (1 << 40) {
                return Err((
                    "max_bytes_per_sec",
                    "must be 1KiB to 1TiB per second (or left out for no limit)".into(),
                ));
            }
        }
        if self.max_attempts == 0 {
            return Err(("max_attempts", "must be at least 1".into()));
        }
        if self.retry_initial.0 < Duration::from_millis(10)
            || self.retry_max.0 < self.retry_initial.0
        {
            return Err((
                "retry_initial",
                "must be at least 10ms and at most `retry_max`".into(),
            ));
        }
        if self.rescan_interval.0 < Duration::from_millis(100) {
            return Err(("rescan_interval", "must be at least 100ms".into()));
        }
        if let Some(id) = &self.server_id {
            if id.is_empty() || id.len() > 256 || id.contains('/') {
                return Err((
                    "server_id",
                    "must be 1 to 256 characters, without `/` (it is part of object keys)".into(),
                ));
            }
        }
        for (field, s) in [
            ("access_key_id", &self.access_key_id),
            ("secret_access_key", &self.secret_access_key),
            ("session_token", &self.session_token),
        ] {
            if s.as_ref().is_some_and(|s| s.is_empty()) {
                return Err((
                    field,
                    "is empty: set it, or leave it out to use the AWS environment".into(),
                ));
            }
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err((
                "access_key_id",
                "`access_key_id` and `secret_access_key` go together: set both or neither".into(),
            ));
        }
        Ok(())
    }
}

/// The scheme of an object_store URL the uploader serves, or why it is refused.
pub fn url_scheme(url: &str) -> Result<&'static str, String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        format!("`{url}` is not a URL: expected s3://bucket/prefix (or gs://, az://, file:///dir)")
    })?;
    let scheme = match scheme {
        "s3" | "s3a" => "s3",
        "gs" => "gs",
        "az" | "abfs" | "abfss" | "azure" => "az",
        "file" => "file",
        other => {
            return Err(format!(
                "unsupported scheme `{other}://`: expected s3://, gs://, az:// or file://"
            ))
        }
    };
    if scheme != "file" && rest.split('/').next().is_none_or(str::is_empty) {
        return Err(format!(
            "`{url}` names no bucket: expected {scheme}://bucket/prefix"
        ));
    }
    Ok(scheme)
}

/// What the uploader reads from the file: `data_dir` and `[uploader]`; other tables are the agent's.
#[derive(Deserialize)]
struct UploaderView {
    data_dir: Option<PathBuf>,
    uploader: Option<toml::Spanned<UploaderConfig>>,
}

/// Reads `data_dir` and `[uploader]` from the config file at `path`, `${VAR}` expanded from the environment.
pub fn load(path: &Path) -> Result<(PathBuf, UploaderConfig), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text, &|n| std::env::var(n).ok())
}

/// [`load`] on `text`; `path` names it in errors; `lookup` resolves `${VAR}`.
pub fn parse(
    path: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(PathBuf, UploaderConfig), ConfigError> {
    let (view, at): (UploaderView, _) = crate::config::parse_view(path, text, lookup)?;
    let data_dir = view
        .data_dir
        .unwrap_or_else(|| PathBuf::from(crate::recording::config::DEFAULT_DATA_DIR));
    let Some(u) = view.uploader else {
        return Err(ConfigError::at(
            path,
            text,
            text.len(),
            "no [uploader] table: add one with at least url = \"s3://bucket/prefix\"",
        ));
    };
    let span = u.span();
    let u = u.into_inner();
    u.validate().map_err(|(field, message)| {
        ConfigError::at(
            path,
            text,
            at(span.start),
            format!("[uploader] `{field}`: {message}"),
        )
    })?;
    Ok((data_dir, u))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<(PathBuf, UploaderConfig), String> {
        parse(Path::new("u.toml"), text, &|n| {
            (n == "KEY").then(|| "AKIAEXAMPLESECRET".to_string())
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_file_with_only_uploader_and_data_dir_is_valid() {
        let (d, u) = p("data_dir = \"/d\"\n[uploader]\nurl = \"s3://b/p\"\n").unwrap();
        assert_eq!(d, PathBuf::from("/d"));
        assert_eq!(u.watch_dirs(&d), vec![PathBuf::from("/d/recordings")]);
        assert_eq!(u.multipart_threshold.0, 16 << 20);
        assert_eq!(u.after_upload, AfterUpload::Keep);
        assert_eq!(u.stale_after.0, Duration::from_secs(3600));
        assert!(u.path_style);
    }

    #[test]
    fn secrets_expand_from_the_environment_and_never_show() {
        let (_, u) = p("[uploader]\nurl = \"s3://b\"\naccess_key_id = \"${KEY}\"\nsecret_access_key = \"${KEY}\"\n").unwrap();
        assert_eq!(
            u.access_key_id.as_ref().unwrap().expose(),
            "AKIAEXAMPLESECRET"
        );
        assert!(!format!("{u:?}").contains("AKIAEXAMPLESECRET"));
        let e = p("[uploader]\nurl = \"s3://b\"\naccess_key_id = \"${KEY}\"\n").unwrap_err();
        assert!(e.contains("go together"), "{e}");
        assert!(!e.contains("AKIAEXAMPLESECRET"), "{e}");
    }

    #[test]
    fn bad_values_name_the_field_and_line() {
        let e = p("\n[uploader]\nurl = \"s3://b\"\nafter_upload = \"move:rel\"\n").unwrap_err();
        assert!(e.contains("u.toml:4") && e.contains("absolute"), "{e}");
        let e =
            p("[uploader]\nurl = \"s3://b\"\nkey_template = \"{server_id}/{file}\"\n").unwrap_err();
        assert!(e.contains("key_template") && e.contains("{sid}"), "{e}");
        let e = p("[uploader]\nurl = \"ftp://b\"\n").unwrap_err();
        assert!(e.contains("unsupported scheme"), "{e}");
        let e = p("[uploader]\nurl = \"s3://\"\n").unwrap_err();
        assert!(e.contains("no bucket"), "{e}");
        let e = p("[uploader]\nurl = \"s3://b\"\npart_size = \"1MiB\"\n").unwrap_err();
        assert!(e.contains("part_size"), "{e}");
        let e = p("[uploader]\nurl = \"s3://b\"\nurll = 1\n").unwrap_err();
        assert!(e.contains("urll") && e.contains("u.toml:3"), "{e}");
        let e = p("data_dir = \"/d\"\n").unwrap_err();
        assert!(e.contains("no [uploader]"), "{e}");
    }

    #[test]
    fn after_upload_forms() {
        assert_eq!(AfterUpload::parse("delete"), Ok(AfterUpload::Delete));
        assert_eq!(
            AfterUpload::parse("move:/x/y"),
            Ok(AfterUpload::Move("/x/y".into()))
        );
        assert!(AfterUpload::parse("rm").is_err());
    }
}
