//! `[sinks.NAME] type = "splunk_hec"`: where the HTTP Event Collector is, the token, the envelope's metadata,
//! batching, indexer acknowledgements. The token is a [`Secret`], whose `Debug` never shows it; `"${VAR}"`
//! takes it from the environment, like every string of the config.

use std::path::PathBuf;
use std::time::Duration;

use auditrail_core::units::{ByteSize, Interval};
use auditrail_core::Secret;
use serde::Deserialize;

use crate::SinkConfigError;

/// Which HEC endpoint events are sent to.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EndpointTarget {
    /// `/services/collector/event` (default): one JSON envelope per event, with `time`, `host`, `source`,
    /// `sourcetype`, `index`, `fields` and the event itself as `event`.
    #[default]
    Event,
    /// `/services/collector/raw?channel=<guid>`: the events' bytes, one per line; `host`, `source`,
    /// `sourcetype` and `index` go in the query string and `fields` is not sent (Splunk indexes no fields
    /// on this endpoint).
    Raw,
}

/// How events are compressed on the wire.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// No compression (default, as Splunk's own clients).
    #[default]
    None,
    /// gzip, `Content-Encoding: gzip`.
    Gzip,
}

/// `tls = { ca_file = "...", verify = true }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// A PEM file with the CA certificate(s) that signed the collector's certificate, trusted besides the
    /// system's roots. Default: none.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Whether the server certificate is checked at all. Default `true`; `false` is for tests only and is
    /// warned about at start.
    #[serde(default = "default_true", alias = "verify_certificate")]
    pub verify: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            ca_file: None,
            verify: true,
        }
    }
}

/// `batch = { max_events = 1000, max_bytes = "1MiB", timeout = "1s" }`: a request is sent when any limit
/// is reached (the shared HTTP sink table, with this sink's default `max_bytes`).
pub type BatchConfig = crate::http::config::BatchConfig<1>;

/// `retry = { initial_backoff = "100ms", max_backoff = "30s" }`, the shared HTTP sink table.
pub use crate::http::config::RetryConfig;

/// `request = { concurrency = 4, timeout = "60s", rate_limit = 0 }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// Most event requests in flight at once. Default 4.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Longest wait for one request (connect, send, response). Default `"60s"`.
    #[serde(default = "default_request_timeout")]
    pub timeout: Interval,
    /// Most event requests per second (a token bucket with a burst of `concurrency`); 0 (default) is no limit.
    #[serde(default)]
    pub rate_limit: u32,
    /// Idle connections are kept open for reuse this long. Default `"90s"`.
    #[serde(default = "default_idle_timeout")]
    pub keepalive_idle_timeout: Interval,
}

impl Default for RequestConfig {
    fn default() -> Self {
        RequestConfig {
            concurrency: default_concurrency(),
            timeout: default_request_timeout(),
            rate_limit: 0,
            keepalive_idle_timeout: default_idle_timeout(),
        }
    }
}

/// Settings of the Splunk HEC sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplunkHecSinkConfig {
    /// Base URL of the collector, e.g. `"https://splunk.example.com:8088"` (a path prefix is kept). The one
    /// indexer shorthand of `endpoints`: exactly one of the two is required.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Base URLs of several indexers (at most [`MAX_ENDPOINTS`]): requests go round robin to the ones in
    /// service; one whose request fails (connection, timeout, 5xx) is skipped until its health check
    /// (`/services/collector/health`) passes. Each indexer's acknowledgements are asked of that indexer.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// The HEC token, sent as `Authorization: Splunk <token>`. Required; write `"${SPLUNK_HEC_TOKEN}"` to take
    /// it from the environment.
    pub token: Secret,
    /// `"event"` (default) or `"raw"`, see [`EndpointTarget`].
    #[serde(default)]
    pub endpoint_target: EndpointTarget,
    /// The envelope's `host`. Default: none (Splunk then uses the sender's address).
    #[serde(default)]
    pub host: Option<String>,
    /// The envelope's `source`. Default: none (Splunk then uses the token's).
    #[serde(default)]
    pub source: Option<String>,
    /// The envelope's `sourcetype`. Default `"teleport:audit"`.
    #[serde(default = "default_sourcetype")]
    pub sourcetype: String,
    /// The envelope's `index`. Default: none (the token's default index).
    #[serde(default)]
    pub index: Option<String>,
    /// Top-level event fields sent as indexed `fields` (event endpoint only), e.g. `["user", "cluster_name"]`;
    /// a field the event does not have is left out. Default: none.
    #[serde(default)]
    pub indexed_fields: Vec<String>,
    /// Indexer acknowledgement: an event counts as delivered only once Splunk says its request's `ackId` is
    /// indexed. Default `true`; the token must have indexer acknowledgement enabled. `false`: HTTP 200 with
    /// `code: 0` counts as delivered.
    #[serde(default = "default_true")]
    pub acknowledgements: bool,
    /// How often pending `ackId`s are asked about on `/services/collector/ack`. Default `"200ms"`. While half
    /// of `max_pending_events` waits on an indexer, it is asked at once instead (at most every 10 ms).
    #[serde(default = "default_ack_poll_interval")]
    pub ack_poll_interval: Interval,
    /// An `ackId` not confirmed within this time is given up and its events are sent again (duplicates
    /// possible, counted in `auditrail_sink_hec_resent_total`; the event's `uid` lets searches dedupe).
    /// Default `"60s"`.
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout: Interval,
    /// Most events sent and awaiting their acknowledgement; the sink stops reading while this many wait.
    /// Default 50000.
    #[serde(default = "default_max_pending_events")]
    pub max_pending_events: usize,
    /// TLS settings for an `https://` endpoint, see [`TlsConfig`].
    #[serde(default)]
    pub tls: TlsConfig,
    /// When a request is sent, see [`BatchConfig`].
    #[serde(default)]
    pub batch: BatchConfig,
    /// `"none"` (default) or `"gzip"`.
    #[serde(default)]
    pub compression: Compression,
    /// gzip level, 1 (fastest, default) to 9 (smallest).
    #[serde(default = "default_compression_level")]
    pub compression_level: u32,
    /// Concurrency, timeout, rate limit, see [`RequestConfig`].
    #[serde(default)]
    pub request: RequestConfig,
    /// Waits between attempts, see [`RetryConfig`].
    #[serde(default)]
    pub retry: RetryConfig,
    /// Most bytes of one response body the sink reads. Default `"1MiB"` (HEC answers are a few dozen bytes;
    /// an ack answer for 10,000 ids is under 200KiB).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: ByteSize,
}

fn default_true() -> bool {
    true
}
fn default_sourcetype() -> String {
    DEFAULT_SOURCETYPE.into()
}
fn default_compression_level() -> u32 {
    1
}
fn default_concurrency() -> usize {
    4
}
fn default_request_timeout() -> Interval {
    Interval(Duration::from_secs(60))
}
fn default_idle_timeout() -> Interval {
    Interval(Duration::from_secs(90))
}
fn default_ack_poll_interval() -> Interval {
    Interval(Duration::from_millis(200))
}
fn default_ack_timeout() -> Interval {
    Interval(Duration::from_secs(60))
}
fn default_max_pending_events() -> usize {
    50_000
}
fn default_max_response_bytes() -> ByteSize {
    ByteSize(1 << 20)
}

/// Default `sourcetype`.
pub const DEFAULT_SOURCETYPE: &str = "teleport:audit";
/// Most indexers in `endpoints`.
pub const MAX_ENDPOINTS: usize = 64;

fn err(field: &'static str, message: impl Into<String>) -> SinkConfigError {
    SinkConfigError {
        field,
        message: message.into(),
    }
}

impl SplunkHecSinkConfig {
    /// A config with defaults for everything but the endpoint and the token.
    pub fn with_endpoint(endpoint: impl Into<String>, token: &str) -> SplunkHecSinkConfig {
        SplunkHecSinkConfig {
            endpoint: Some(endpoint.into()),
            endpoints: Vec::new(),
            token: Secret::new(token),
            endpoint_target: EndpointTarget::default(),
            host: None,
            source: None,
            sourcetype: default_sourcetype(),
            index: None,
            indexed_fields: Vec::new(),
            acknowledgements: true,
            ack_poll_interval: default_ack_poll_interval(),
            ack_timeout: default_ack_timeout(),
            max_pending_events: default_max_pending_events(),
            tls: TlsConfig::default(),
            batch: BatchConfig::default(),
            compression: Compression::default(),
            compression_level: default_compression_level(),
            request: RequestConfig::default(),
            retry: RetryConfig::default(),
            max_response_bytes: default_max_response_bytes(),
        }
    }

    /// The indexers' base URLs, checked, in the order given: `endpoints`, or `endpoint` alone.
    pub fn endpoint_urls(&self) -> Result<Vec<reqwest::Url>, SinkConfigError> {
        match (&self.endpoint, self.endpoints.is_empty()) {
            (Some(_), false) => Err(err(
                "endpoints",
                "`endpoint` and `endpoints` are both set: keep one (`endpoint = \"...\"` is the shorthand of `endpoints = [\"...\"]`)",
            )),
            (None, true) => Err(err(
                "endpoint",
                "missing: expected endpoint = \"https://splunk.example.com:8088\" or endpoints = [\"https://idx1:8088\", \"https://idx2:8088\"]",
            )),
            (Some(one), true) => Ok(vec![parse_endpoint(one).map_err(|m| err("endpoint", m))?]),
            (None, false) => {
                if self.endpoints.len() > MAX_ENDPOINTS {
                    return Err(err(
                        "endpoints",
                        format!("{} indexers listed: at most {MAX_ENDPOINTS}", self.endpoints.len()),
                    ));
                }
                let mut urls: Vec<reqwest::Url> = Vec::with_capacity(self.endpoints.len());
                for (i, text) in self.endpoints.iter().enumerate() {
                    let url = parse_endpoint(text)
                        .map_err(|m| err("endpoints", format!("endpoints[{i}] = {text:?}: {m}")))?;
                    if urls.contains(&url) {
                        return Err(err("endpoints", format!("endpoints[{i}] = {text:?} is listed twice")));
                    }
                    urls.push(url);
                }
                Ok(urls)
            }
        }
    }

    /// Checks what serde cannot, without touching the outside world.
    pub fn validate(&self) -> Result<(), SinkConfigError> {
        self.endpoint_urls()?;
        if self.token.is_empty() {
            return Err(err(
                "token",
                "empty: give the HEC token, e.g. token = \"${SPLUNK_HEC_TOKEN}\"",
            ));
        }
        if self
            .token
            .expose()
            .chars()
            .any(|c| c.is_control() || c == ' ')
        {
            return Err(err(
                "token",
                "holds spaces or control characters; a HEC token is a GUID",
            ));
        }
        if self.sourcetype.is_empty() {
            return Err(err("sourcetype", "must not be empty"));
        }
        if self.endpoint_target == EndpointTarget::Raw && !self.indexed_fields.is_empty() {
            return Err(err(
                "indexed_fields",
                "Splunk indexes no `fields` sent to the raw endpoint: remove indexed_fields or use endpoint_target = \"event\"",
            ));
        }
        if self.indexed_fields.len() > 64 {
            return Err(err("indexed_fields", "at most 64 fields"));
        }
        if self.batch.max_events == 0 {
            return Err(err("batch", "max_events must be at least 1"));
        }
        if self.batch.max_bytes.0 < 1024 {
            return Err(err("batch", "max_bytes must be at least 1KiB"));
        }
        if self.batch.timeout.0.is_zero() {
            return Err(err("batch", "timeout must be more than 0s"));
        }
        if !(1..=9).contains(&self.compression_level) {
            return Err(err("compression_level", "must be between 1 and 9"));
        }
        if self.request.concurrency == 0 || self.request.concurrency > 256 {
            return Err(err("request", "concurrency must be between 1 and 256"));
        }
        if self.request.timeout.0.is_zero() {
            return Err(err("request", "timeout must be more than 0s"));
        }
        if self.retry.initial_backoff.0.is_zero()
            || self.retry.initial_backoff.0 > self.retry.max_backoff.0
        {
            return Err(err(
                "retry",
                "initial_backoff must be more than 0s and at most max_backoff",
            ));
        }
        if self.ack_poll_interval.0 < Duration::from_millis(10) {
            return Err(err("ack_poll_interval", "must be at least 10ms"));
        }
        if self.ack_timeout.0 <= self.ack_poll_interval.0 {
            return Err(err("ack_timeout", "must be longer than ack_poll_interval"));
        }
        if self.max_pending_events < self.batch.max_events {
            return Err(err(
                "max_pending_events",
                "must be at least batch.max_events",
            ));
        }
        if self.max_response_bytes.0 < 4096 || self.max_response_bytes.0 > 1 << 30 {
            return Err(err("max_response_bytes", "must be between 4KiB and 1GiB"));
        }
        Ok(())
    }
}

fn parse_endpoint(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| {
        format!("not a URL ({e}): expected e.g. \"https://splunk.example.com:8088\"")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme `{}` is not supported: expected http:// or https://",
            url.scheme()
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL would end up in logs: remove them and set token = \"${SPLUNK_HEC_TOKEN}\"".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(
            "a query or fragment is not allowed: give the base URL of the collector".into(),
        );
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    if url.path().contains("/services/collector") {
        return Err("give the base URL (e.g. https://splunk.example.com:8088): the sink adds /services/collector/... itself".into());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<SplunkHecSinkConfig, String> {
        let c: SplunkHecSinkConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        c.validate()
            .map_err(|e| format!("{}: {}", e.field, e.message))?;
        Ok(c)
    }

    #[test]
    fn defaults() {
        let c = parse(
            "endpoint = \"https://splunk:8088\"\ntoken = \"00000000-0000-0000-0000-000000000000\"",
        )
        .unwrap();
        assert_eq!(c.sourcetype, "teleport:audit");
        assert!(c.acknowledgements);
        assert_eq!(c.endpoint_target, EndpointTarget::Event);
        assert_eq!(c.compression, Compression::None);
        assert_eq!(c.batch.max_events, 1000);
        assert_eq!(c.batch.max_bytes.0, 1 << 20);
        assert_eq!(c.request.concurrency, 4);
        assert_eq!(c.request.rate_limit, 0);
        assert_eq!(c.ack_timeout.0, Duration::from_secs(60));
        assert!(c.tls.verify);
        assert!(!format!("{c:?}").contains("00000000-0000"));
    }

    #[test]
    fn mistakes_are_named() {
        let t = "token = \"t\"\n";
        for (text, field) in [
            ("token = \"t\"", "endpoint"),
            ("endpoint = \"https://s:8088\"\ntoken = \"\"", "token"),
            ("endpoint = \"https://u:p@s:8088\"\ntoken = \"t\"", "endpoint"),
            ("endpoint = \"https://s:8088/services/collector/event\"\ntoken = \"t\"", "endpoint"),
            ("endpoint = \"ftp://s\"\ntoken = \"t\"", "endpoint"),
            ("endpoint = \"https://s:8088\"\nendpoints = [\"https://t:8088\"]\ntoken = \"t\"", "endpoints"),
            ("endpoint = \"https://s:8088\"\ntoken = \"t\"\nendpoint_target = \"raw\"\nindexed_fields = [\"user\"]", "indexed_fields"),
            ("endpoint = \"https://s:8088\"\ntoken = \"t\"\nack_timeout = \"100ms\"", "ack_timeout"),
            ("endpoint = \"https://s:8088\"\ntoken = \"t\"\nrequest = { concurrency = 0 }", "request"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(field), "{text}: {e}");
        }
        let e = parse(&format!("{t}endpoint = \"https://s\"\ntokn = \"x\"")).unwrap_err();
        assert!(e.contains("unknown field `tokn`"), "{e}");
        let e = parse(&format!(
            "{t}endpoint = \"https://s\"\ntls = {{ verfy = false }}"
        ))
        .unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        let c = parse(&format!(
            "{t}endpoint = \"https://s\"\ntls = {{ verify_certificate = false }}"
        ))
        .unwrap();
        assert!(!c.tls.verify);
    }
}
