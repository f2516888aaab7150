//! `[recording]`: the recorder's settings, a table of the agent's own TOML file so that one file serves both
//! (`auditrail run` ignores it beyond checking it; `auditrail record --config F` reads it).
//!
//! The recorder usually runs as the logged-in user, in the user's environment: it must not need the agent's
//! secrets. So [`load`] reads only `data_dir` and `[recording]` from the file, without `${VAR}` expansion and
//! without checking the agent's sources and sinks; `auditrail validate` checks the same table strictly as
//! part of the whole config. Every default is documented on its field; command-line flags override the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use auditrail_core::units::{ByteSize, Interval};
use serde::Deserialize;

use crate::config::ConfigError;

/// Teleport's two ways to record: on the node, or on the bastion in front of it.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `auditrail record` is the node's `ForceCommand` (handles `SSH_ORIGINAL_COMMAND`).
    #[default]
    Node,
    /// `auditrail record --mode proxy -- ssh target` on a bastion; `server_id` is the target.
    Proxy,
}

impl Mode {
    /// The name written in `session.start`'s `session_recording`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Node => "node",
            Mode::Proxy => "proxy",
        }
    }
}

/// Which asciicast version the `.cast` file is.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum CastFormat {
    /// asciicast v2: absolute event times, `width`/`height` in the header. Every player reads it.
    #[default]
    V2,
    /// asciicast v3: intervals since the previous event, `term` object in the header.
    V3,
}

/// What happens when a session reaches `max_bytes` or the disk reaches `min_free_bytes`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// The session goes on unrecorded from there; a cut event says where and why; the recording is marked
    /// truncated.
    #[default]
    #[value(name = "stop_recording")]
    StopRecording,
    /// The session is ended (a one-line message on the user's terminal, SIGHUP then SIGTERM to the program).
    Terminate,
}

impl WhenFull {
    /// The name written in the cut event's `action`.
    pub fn as_str(self) -> &'static str {
        match self {
            WhenFull::StopRecording => "stop_recording",
            WhenFull::Terminate => "terminate",
        }
    }
}

/// The `[recording]` table. Paths left out default to places under the agent's `data_dir`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    /// Recordings directory. Default `<data_dir>/recordings` (created `0700` when missing).
    pub dir: Option<PathBuf>,
    /// The agent's unix source socket the events go to. Default `<data_dir>/events.sock`.
    pub socket: Option<PathBuf>,
    /// The agent's sessions socket (session cgroups). Default `<data_dir>/sessions.sock`.
    pub sessions_socket: Option<PathBuf>,
    /// `server_id` in every event. Default the host name (proxy mode: the ssh target).
    pub server_id: Option<String>,
    /// `"node"` (default) or `"proxy"`.
    #[serde(default)]
    pub mode: Mode,
    /// `"v2"` (default) or `"v3"`.
    #[serde(default)]
    pub cast_format: CastFormat,
    /// Record keystrokes as `"i"` events. Default `false` (as in Teleport: passwords typed are not kept).
    #[serde(default)]
    pub record_input: bool,
    /// Most bytes one session may put on disk (`.raw` + `.cast`). Default `"1GiB"`.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// Free space the recordings directory's file system keeps; below it recording is cut. Default `"256MiB"`.
    #[serde(default = "default_min_free_bytes")]
    pub min_free_bytes: ByteSize,
    /// `"stop_recording"` (default) or `"terminate"`.
    #[serde(default)]
    pub when_full: WhenFull,
    /// Time between `auditrail.recording` checkpoints while output flows. Default `"10s"`.
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: Interval,
    /// Output between checkpoints. Default `"8MiB"`.
    #[serde(default = "default_checkpoint_bytes")]
    pub checkpoint_bytes: ByteSize,
    /// Whether host events (eBPF) are expected for these sessions. Default `false`. Proxy mode cannot give
    /// them (the session's processes run on another host), so `host_events = true` with `mode = "proxy"` is
    /// refused at start rather than silently ignored.
    #[serde(default)]
    pub host_events: bool,
}

fn default_max_bytes() -> ByteSize {
    ByteSize(1 << 30)
}

fn default_min_free_bytes() -> ByteSize {
    ByteSize(256 << 20)
}

fn default_checkpoint_interval() -> Interval {
    Interval(Duration::from_secs(10))
}

fn default_checkpoint_bytes() -> ByteSize {
    ByteSize(8 << 20)
}

impl RecordingConfig {
    /// The recordings directory: `dir`, or `<data_dir>/recordings`. The agent's sessions socket prepares the
    /// same directory for users' recorders, so both read it from here.
    pub fn dir_in(&self, data_dir: &Path) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| data_dir.join("recordings"))
    }

    /// A table with every default, as when the file has no `[recording]`.
    pub fn defaults() -> RecordingConfig {
        RecordingConfig {
            dir: None,
            socket: None,
            sessions_socket: None,
            server_id: None,
            mode: Mode::default(),
            cast_format: CastFormat::default(),
            record_input: false,
            max_bytes: default_max_bytes(),
            min_free_bytes: default_min_free_bytes(),
            when_full: WhenFull::default(),
            checkpoint_interval: default_checkpoint_interval(),
            checkpoint_bytes: default_checkpoint_bytes(),
            host_events: false,
        }
    }

    /// Checks what types cannot say; the error names the field and what to do.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.host_events && self.mode == Mode::Proxy {
            return Err(("host_events", "host events cannot be recorded in proxy mode: the session's processes run on the target host, not here (teleport#66853); record in node mode on the target, or set host_events = false".into()));
        }
        if self.max_bytes.0 < 4096 {
            return Err((
                "max_bytes",
                "must be at least 4KiB (a recording needs room for its header)".into(),
            ));
        }
        if self.checkpoint_bytes.0 == 0 {
            return Err(("checkpoint_bytes", "must be at least 1".into()));
        }
        if self.checkpoint_interval.0 < Duration::from_millis(100) {
            return Err(("checkpoint_interval", "must be at least 100ms".into()));
        }
        if let Some(id) = &self.server_id {
            if id.is_empty() || id.len() > 256 {
                return Err(("server_id", "must be 1 to 256 characters".into()));
            }
        }
        Ok(())
    }
}

/// What the recorder reads from the agent's file: `data_dir` and `[recording]`; other tables are the agent's.
#[derive(Deserialize)]
struct RecorderView {
    data_dir: Option<PathBuf>,
    recording: Option<toml::Spanned<RecordingConfig>>,
}

/// The agent's default `data_dir`.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/auditrail";

/// Reads `data_dir` and `[recording]` from the config file at `path` (defaults for what is absent).
pub fn load(path: &Path) -> Result<(PathBuf, RecordingConfig), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// [`load`] on `text`; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<(PathBuf, RecordingConfig), ConfigError> {
    let view: RecorderView = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        ConfigError::at(path, text, offset, e.message().trim_end())
    })?;
    let data_dir = view
        .data_dir
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let recording = match view.recording {
        None => RecordingConfig::defaults(),
        Some(r) => {
            let span = r.span();
            let r = r.into_inner();
            r.validate().map_err(|(field, message)| {
                ConfigError::at(
                    path,
                    text,
                    span.start,
                    format!("[recording] `{field}`: {message}"),
                )
            })?;
            r
        }
    };
    Ok((data_dir, recording))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let (d, r) = parse(Path::new("t.toml"), "[sinks.x]\ntype = \"file\"\n").unwrap();
        assert_eq!(d, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(r.max_bytes.0, 1 << 30);
        assert_eq!(r.checkpoint_bytes.0, 8 << 20);
        assert_eq!(r.when_full, WhenFull::StopRecording);
        let (d, r) = parse(
            Path::new("t.toml"),
            "data_dir = \"/d\"\n[recording]\nmode = \"proxy\"\ncast_format = \"v3\"\nmax_bytes = \"1MiB\"\nwhen_full = \"terminate\"\n",
        )
        .unwrap();
        assert_eq!(d, PathBuf::from("/d"));
        assert_eq!(r.mode, Mode::Proxy);
        assert_eq!(r.cast_format, CastFormat::V3);
        assert_eq!(r.max_bytes.0, 1 << 20);
        assert_eq!(r.when_full, WhenFull::Terminate);
    }

    #[test]
    fn typos_and_impossible_combinations_name_the_line() {
        let e = parse(Path::new("t.toml"), "\n[recording]\nmax_byte = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.toml:3"), "{e}");
        assert!(e.contains("max_bytes"), "{e}");
        let e = parse(
            Path::new("t.toml"),
            "[recording]\nmode = \"proxy\"\nhost_events = true\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("proxy mode"), "{e}");
    }
}
