//! The agent's configuration: one TOML file turned into typed, checked settings.
//!
//! Loading goes: read the file → expand `${VAR}` inside string values (see [`env`]) → deserialize with
//! `deny_unknown_fields` everywhere → check what types cannot say (every sink's `inputs` name existing sources,
//! every source is read by some sink, templates parse). Every error names file:line:column, the key, and what was
//! expected; an error in a value that came from the environment never shows that value.

pub mod env;
mod error;

pub use error::{ConfigError, Located};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use auditrail_core::buffer::BufferConfig;
use auditrail_core::dead_letter::DeadLetterConfig;
use auditrail_core::units::Interval;
use auditrail_sinks::SinkConfig;
use serde::Deserialize;
use toml::Spanned;
use toml_edit::visit::Visit;

use crate::sources::SourceConfig;

/// The default config, compiled in: `auditrail run` without `--config` uses it.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/auditrail.toml");

/// The name under which the embedded default is reported in errors.
pub const EMBEDDED_NAME: &str = "<embedded config/auditrail.toml>";

/// A loaded, checked config.
#[derive(Debug)]
pub struct Config {
    /// Where buffers, checkpoints and dead-letter files live.
    pub data_dir: PathBuf,
    /// How long SIGTERM waits for sinks to drain.
    pub shutdown_timeout: Duration,
    /// The HTTP API (`/metrics`, `/health`), if configured.
    pub api: Option<ApiConfig>,
    /// Sources by name.
    pub sources: BTreeMap<String, SourceConfig>,
    /// Sinks by name.
    pub sinks: BTreeMap<String, SinkEntry>,
    /// The integrity chain, if configured.
    pub integrity: Option<crate::integrity::IntegrityConfig>,
    /// `[dead_letter]`: the bounds of every component's dead-letter files.
    pub dead_letter: DeadLetterConfig,
    /// `[sessions]`: the sessions socket and session cgroups, if configured.
    pub sessions: Option<crate::sessions::SessionsConfig>,
    /// `[recording]`: the session recorder's settings (`auditrail record --config` reads them; the agent
    /// only checks them).
    pub recording: Option<crate::recording::config::RecordingConfig>,
    /// `[uploader]`: the recording uploader's settings (`auditrail upload --config` reads them; the agent
    /// only checks them).
    pub uploader: Option<crate::uploader::config::UploaderConfig>,
}

/// `[api]`: where `/metrics` and `/health` are served.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Listen address. Default `127.0.0.1:9598`.
    #[serde(default = "default_api_address")]
    pub address: SocketAddr,
}

fn default_api_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9598))
}

/// A sink with the keys every sink has.
#[derive(Debug)]
pub struct SinkEntry {
    /// The sources it reads.
    pub inputs: Vec<String>,
    /// Its buffer.
    pub buffer: BufferConfig,
    /// Its type-specific settings.
    pub kind: SinkConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    /// Default `/var/lib/auditrail`.
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    /// Default `"30s"`.
    #[serde(default = "default_shutdown_timeout")]
    shutdown_timeout: Interval,
    #[serde(default)]
    api: Option<ApiConfig>,
    #[serde(default)]
    sources: BTreeMap<String, Spanned<SourceConfig>>,
    #[serde(default)]
    sinks: BTreeMap<String, Spanned<SinkTable>>,
    #[serde(default)]
    integrity: Option<Spanned<crate::integrity::IntegrityConfig>>,
    /// Default: `max_size = "16MiB"`, `max_files = 4`.
    #[serde(default)]
    dead_letter: Option<Spanned<DeadLetterConfig>>,
    #[serde(default)]
    sessions: Option<Spanned<crate::sessions::SessionsConfig>>,
    recording: Option<Spanned<crate::recording::config::RecordingConfig>>,
    #[serde(default)]
    uploader: Option<Spanned<crate::uploader::config::UploaderConfig>>,
}

/// The keys every sink has; `type` and the rest go to [`SinkConfig`].
#[derive(Deserialize)]
struct SinkTable {
    inputs: Vec<Spanned<String>>,
    #[serde(default)]
    buffer: BufferConfig,
    #[serde(flatten)]
    kind: SinkConfig,
}

const SINK_COMMON_KEYS: &str = "`type`, `inputs`, `buffer`";

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/auditrail")
}

fn default_shutdown_timeout() -> Interval {
    Interval(Duration::from_secs(30))
}

impl Config {
    /// Loads the config file at `path`, expanding `${VAR}` from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text, &|name| std::env::var(name).ok())
    }

    /// Parses config `text`; `path` names it in errors; `lookup` resolves `${VAR}`.
    pub fn parse(
        path: &Path,
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let expanded = Expanded::new(path, text, lookup)?;
        let file: ConfigFile = toml::from_str(&expanded.text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let (offset, message) = refine(&expanded.text, span, e.message());
            ConfigError::at(
                path,
                text,
                expanded.original_offset(offset),
                expanded.redact(&message),
            )
        })?;
        let check = Checker {
            path,
            text,
            expanded: &expanded,
        };
        check.file(file)
    }
}

/// Maps an offset in the `${VAR}`-expanded text to the same place in the original text.
pub type OffsetMap = Box<dyn Fn(usize) -> usize>;

/// Parses `text` the way [`Config::parse`] does (`${VAR}` expanded, errors located in the original text,
/// values from the environment kept out of messages) into `T`, a view of the file that reads only some of its
/// tables, without the agent's checks: `auditrail upload` reads `data_dir` and `[uploader]` this way. Also
/// returns the map from an offset in the expanded text (a `Spanned` value's) to the original text.
pub fn parse_view<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(T, OffsetMap), ConfigError> {
    let expanded = Expanded::new(path, text, lookup)?;
    let view: T = toml::from_str(&expanded.text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let (offset, message) = refine(&expanded.text, span, e.message());
        ConfigError::at(
            path,
            text,
            expanded.original_offset(offset),
            expanded.redact(&message),
        )
    })?;
    Ok((view, Box::new(move |o| expanded.original_offset(o))))
}

/// Points "unknown field" errors at the key, and lists the keys every sink has next to the type's own.
fn refine(text: &str, span: Range<usize>, message: &str) -> (usize, String) {
    let mut message = message.trim_end().to_string();
    let mut offset = span.start;
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some(key) = rest.split('`').next() {
            if let Some(at) = error::find_key(text, span.clone(), key) {
                offset = at;
            }
        }
    } else if let Some(value) = quoted_value(&message) {
        // Values inside a tagged table reach serde without their position; find the literal in the table.
        if let Some(at) = text.get(span.clone()).and_then(|r| r.find(&value)) {
            offset = span.start + at;
        }
    }
    if message.starts_with("unknown field")
        && is_sink_table(text, span.start)
        && !message.contains("`inputs`")
    {
        message.push_str(&format!(
            ", or one of the keys every sink has: {SINK_COMMON_KEYS}"
        ));
    }
    (offset, message)
}

/// The TOML literal a serde message quotes, for `unknown variant `x`` and `invalid value: string "x"`.
fn quoted_value(message: &str) -> Option<String> {
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        return rest.split('`').next().map(|v| format!("\"{v}\""));
    }
    let rest = message.split_once("string \"")?.1;
    rest.split('"')
        .next()
        .filter(|v| !v.is_empty())
        .map(|v| format!("\"{v}\""))
}

/// Whether the table starting at `offset` is a `[sinks.NAME]` table.
fn is_sink_table(text: &str, offset: usize) -> bool {
    let line_start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |p| p + 1);
    text[line_start..].trim_start().starts_with("[sinks.")
}

/// The config text after `${VAR}` expansion, with what is needed to map positions back and to keep expanded
/// values out of messages.
struct Expanded {
    text: String,
    /// (range in `text`, range in the original) of each rewritten string value, in order.
    replaced: Vec<(Range<usize>, Range<usize>)>,
    /// Values that came from the environment, longest first.
    secrets: Vec<String>,
}

impl Expanded {
    fn new(
        path: &Path,
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Expanded, ConfigError> {
        let doc = toml_edit::ImDocument::parse(text).map_err(|e| {
            ConfigError::at(
                path,
                text,
                e.span().map_or(0, |s| s.start),
                e.message().trim_end(),
            )
        })?;
        struct Strings<'a> {
            found: Vec<(Range<usize>, &'a str)>,
        }
        impl<'doc> Visit<'doc> for Strings<'doc> {
            fn visit_string(&mut self, node: &'doc toml_edit::Formatted<String>) {
                if let Some(span) = node.span() {
                    if node.value().contains('$') {
                        self.found.push((span, node.value()));
                    }
                }
            }
        }
        let mut strings = Strings { found: Vec::new() };
        strings.visit_table(&doc);
        strings.found.sort_by_key(|(span, _)| span.start);
        let mut out = String::with_capacity(text.len());
        let mut replaced = Vec::new();
        let mut secrets = Vec::new();
        let mut copied = 0;
        for (span, value) in strings.found {
            let Some(expanded) = env::expand(value, lookup).map_err(|e| {
                // Point into the literal when it is a plain one-line string, else at its start.
                let literal = &text[span.clone()];
                let offset = if literal.starts_with('"') && !literal.contains('\\') {
                    span.start + 1 + e.offset
                } else {
                    span.start
                };
                ConfigError::at(path, text, offset, e.message)
            })?
            else {
                continue;
            };
            out.push_str(&text[copied..span.start]);
            let start = out.len();
            out.push_str(&toml::Value::String(expanded.clone()).to_string());
            replaced.push((start..out.len(), span.clone()));
            copied = span.end;
            if expanded.len() >= 3 && expanded != value {
                secrets.push(expanded);
            }
        }
        out.push_str(&text[copied..]);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Ok(Expanded {
            text: out,
            replaced,
            secrets,
        })
    }

    fn original_offset(&self, offset: usize) -> usize {
        let mut delta: isize = 0;
        for (new, orig) in &self.replaced {
            if offset < new.start {
                break;
            }
            if offset < new.end {
                return orig.start;
            }
            delta = orig.end as isize - new.end as isize;
        }
        (offset as isize + delta).max(0) as usize
    }

    fn redact(&self, message: &str) -> String {
        let mut m = message.to_string();
        for s in &self.secrets {
            m = m.replace(s.as_str(), "<value from the environment>");
        }
        m
    }

    fn original_span(&self, span: Range<usize>) -> Range<usize> {
        self.original_offset(span.start)..self.original_offset(span.end)
    }
}

struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
    expanded: &'a Expanded,
}

impl Checker<'_> {
    /// An optional top-level table, checked by its own `validate` (which names the bad field); the error
    /// points at the table in the file.
    fn table<T>(
        &self,
        table: Option<Spanned<T>>,
        name: &str,
        validate: impl FnOnce(&T) -> Result<(), (&'static str, String)>,
    ) -> Result<Option<T>, ConfigError> {
        let Some(table) = table else { return Ok(None) };
        let span = table.span();
        let table = table.into_inner();
        validate(&table)
            .map_err(|(field, message)| self.err(span, format!("[{name}] `{field}`: {message}")))?;
        Ok(Some(table))
    }

    fn err(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::at_span(
            self.path,
            self.text,
            self.expanded.original_span(span),
            message,
        )
    }

    fn file(&self, file: ConfigFile) -> Result<Config, ConfigError> {
        let eof = self.expanded.text.len()..self.expanded.text.len();
        if file.sources.is_empty() {
            return Err(self.err(
                eof,
                "no sources: add a [sources.NAME] table (type = \"file\", \"http\" or \"unix\")",
            ));
        }
        if file.sinks.is_empty() {
            let types = auditrail_sinks::SINK_TYPES
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(self.err(
                eof,
                format!("no sinks: add a [sinks.NAME] table (type = one of {types}) with inputs = [...]"),
            ));
        }
        for (name, s) in file
            .sources
            .iter()
            .map(|(n, s)| (n, s.span()))
            .chain(file.sinks.iter().map(|(n, s)| (n, s.span())))
        {
            if !valid_name(name) {
                return Err(self.err(s, format!("`{name}` is not a valid component name: use letters, digits, `_` and `-` (it names files under data_dir)")));
            }
        }
        let source_list = || {
            file.sources
                .keys()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (name, source) in &file.sources {
            source
                .get_ref()
                .validate()
                .map_err(|e| self.err(source.span(), format!("source `{name}`: {e}")))?;
            if !file
                .sinks
                .values()
                .any(|s| s.get_ref().inputs.iter().any(|i| i.get_ref() == name))
            {
                return Err(self.err(
                    source.span(),
                    format!("source `{name}` is not read by any sink: add it to some sink's `inputs`, or remove it"),
                ));
            }
        }
        let mut sinks = BTreeMap::new();
        for (name, table) in file.sinks {
            let span = table.span();
            let table = table.into_inner();
            if table.inputs.is_empty() {
                return Err(self.err(
                    span,
                    format!(
                        "sink `{name}` has no inputs: expected inputs = [one or more of {}]",
                        source_list()
                    ),
                ));
            }
            for input in &table.inputs {
                if !file.sources.contains_key(input.get_ref()) {
                    return Err(self.err(
                        input.span(),
                        format!("sink `{name}` reads from `{}`, which is not a source; the sources are {}", input.get_ref(), source_list()),
                    ));
                }
            }
            table.kind.validate().map_err(|e| {
                self.err(
                    span.clone(),
                    format!("sink `{name}`: `{}`: {}", e.field, e.message),
                )
            })?;
            let mut inputs: Vec<String> =
                table.inputs.into_iter().map(Spanned::into_inner).collect();
            inputs.dedup();
            sinks.insert(
                name,
                SinkEntry {
                    inputs,
                    buffer: table.buffer,
                    kind: table.kind,
                },
            );
        }
        let integrity = self.table(file.integrity, "integrity", |i| i.validate())?;
        let dead_letter = match file.dead_letter {
            None => DeadLetterConfig::default(),
            Some(d) => {
                let span = d.span();
                let d = d.into_inner();
                d.validate()
                    .map_err(|message| self.err(span, format!("[dead_letter] {message}")))?;
                d
            }
        };
        let sessions = self.table(file.sessions, "sessions", |c| c.validate())?;
        let recording = self.table(file.recording, "recording", |r| r.validate())?;
        let uploader = self.table(file.uploader, "uploader", |u| u.validate())?;
        Ok(Config {
            uploader,
            integrity,
            dead_letter,
            sessions,
            recording,
            data_dir: file.data_dir,
            shutdown_timeout: file.shutdown_timeout.0,
            api: file.api,
            sources: file
                .sources
                .into_iter()
                .map(|(k, v)| (k, v.into_inner()))
                .collect(),
            sinks,
        })
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests;
