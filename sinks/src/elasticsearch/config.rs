//! `[sinks.NAME] type = "elasticsearch"`: where the cluster is, how to log in, where events go and how they are
//! batched. Secrets (password, API key, token) are kept in [`Secret`], whose `Debug` never shows them.

use std::path::PathBuf;
use std::time::Duration;

use auditrail_core::units::{ByteSize, Interval};
use serde::Deserialize;

use super::index::IndexTemplate;
use crate::name_rules::UnsafeNames;
use crate::SinkConfigError;

/// Moved to `auditrail_core::Secret`; re-exported here so the sink's config types keep their path.
pub use auditrail_core::Secret;

/// Where documents are written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Plain indices named by `index` (default).
    #[default]
    Index,
    /// A data stream named by `data_stream`; every document gets `@timestamp` (from `time`) and is written
    /// with `op_type = "create"`, as data streams require.
    DataStream,
}

/// The bulk operation of each document.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OpType {
    /// `create` (default): a document whose `_id` exists is refused with 409, which the sink counts as
    /// delivered, so a resent event never overwrites or duplicates.
    #[default]
    Create,
    /// `index`: a resent event overwrites its earlier copy (same `_id`).
    Index,
}

impl OpType {
    /// The action name in the bulk body.
    pub fn as_str(self) -> &'static str {
        match self {
            OpType::Create => "create",
            OpType::Index => "index",
        }
    }
}

/// Which `_id` a document gets.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IdSource {
    /// The event's `uid` (default): retries and resends never make duplicates.
    #[default]
    Uid,
    /// No `_id`: the cluster assigns one. Faster to index, but a resent event is stored twice.
    Auto,
}

/// How events are compressed on the wire.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// gzip (default), `Content-Encoding: gzip`.
    #[default]
    Gzip,
    /// No compression.
    None,
}

/// The shape of the indexed documents.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Schema {
    /// The event exactly as received (default), plus `@timestamp` in data-stream mode.
    #[default]
    Teleport,
    /// Elastic Common Schema fields (`event.action`, `user.name`, `source.address`, `host.id`…) with the
    /// original event kept verbatim under `teleport.audit`; see the sink's documentation for the table.
    Ecs,
}

/// `encoding = { schema = "ecs" }`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodingConfig {
    /// `"teleport"` (default) or `"ecs"`, see [`Schema`].
    #[serde(default)]
    pub schema: Schema,
}

/// `auth = { strategy = "...", ... }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case")]
pub enum AuthConfig {
    /// HTTP basic authentication.
    Basic {
        /// User name.
        user: String,
        /// Password; use `"${VAR}"` to take it from the environment.
        password: Secret,
    },
    /// `Authorization: ApiKey <api_key>`: the base64 `id:api_key` value that Elasticsearch returns as
    /// `encoded` when the key is created.
    ApiKey {
        /// The encoded API key.
        api_key: Secret,
    },
    /// `Authorization: Bearer <token>` (a service-account or OAuth token).
    Bearer {
        /// The token.
        token: Secret,
    },
}

/// `tls = { ca_file = "...", verify_certificate = true }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// A PEM file with the CA certificate(s) that signed the cluster's certificate, trusted in addition to the
    /// system's roots. Default: none.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Whether the server certificate is checked at all. Default `true`; `false` is for tests only and is
    /// warned about at start.
    #[serde(default = "default_true")]
    pub verify_certificate: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            ca_file: None,
            verify_certificate: true,
        }
    }
}

/// `batch = { max_events = 1000, max_bytes = "5MiB", timeout = "1s" }`: a bulk request is sent when any limit
/// is reached (the shared HTTP sink table, with this sink's default `max_bytes`).
pub type BatchConfig = crate::http::config::BatchConfig<5>;

/// `retry = { initial_backoff = "100ms", max_backoff = "30s" }`, the shared HTTP sink table.
pub use crate::http::config::RetryConfig;

/// Settings of the Elasticsearch sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchSinkConfig {
    /// Base URL of the cluster, e.g. `"https://es.example.com:9200"` (a path prefix is kept, for clusters
    /// behind a proxy). Credentials go in `auth`, never in the URL. The one-node shorthand of `endpoints`:
    /// exactly one of the two is required.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Base URLs of several nodes of one cluster (same rules as `endpoint`, at most [`MAX_ENDPOINTS`]):
    /// requests go round robin to the nodes in service; a node whose request fails (connection, timeout, 5xx)
    /// is taken out, its batch is sent to another node at once, and it is put back once a health check
    /// (`GET /` answered 2xx) passes, checked with the `retry` backoff. See the sink's documentation.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Most bytes of one response body the sink reads (bulk, template, health check); a longer one fails that
    /// request as a transient error naming the node, and it is retried. Default `"16MiB"` (a bulk response
    /// of 1000 items with `filter_path` is well under 1MiB).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: ByteSize,
    /// `"index"` (default) or `"data_stream"`, see [`Mode`].
    #[serde(default)]
    pub mode: Mode,
    /// Index name template for `mode = "index"`: strftime (`%Y`, `%m`, `%d`…) takes the event's `time` (UTC),
    /// `{field}` a top-level field, lower-cased with characters an index name cannot hold replaced by `_`
    /// (`_` for a missing field). Default `"auditrail-%Y.%m.%d"`.
    #[serde(default)]
    pub index: Option<String>,
    /// What happens to an event whose fields would make the index (or data stream) name longer than 255
    /// bytes: `"dead_letter"` (default: the event goes to the dead-letter file with the reason, the rest of its
    /// batch is sent) or `"rewrite"` (the name is cut and suffixed with a hash of its full text).
    #[serde(default)]
    pub unsafe_index: UnsafeNames,
    /// Data stream name for `mode = "data_stream"` (same placeholders as `index`). Default
    /// `"logs-teleport.audit-default"`.
    #[serde(default)]
    pub data_stream: Option<String>,
    /// `"create"` (default) or `"index"`, see [`OpType`].
    #[serde(default)]
    pub op_type: OpType,
    /// `"uid"` (default) or `"auto"`, see [`IdSource`].
    #[serde(default)]
    pub id: IdSource,
    /// Document shape, see [`EncodingConfig`]. Default `{ schema = "teleport" }`.
    #[serde(default)]
    pub encoding: EncodingConfig,
    /// Login, see [`AuthConfig`]. Default: none.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// TLS settings for an `https://` endpoint, see [`TlsConfig`].
    #[serde(default)]
    pub tls: TlsConfig,
    /// When a bulk request is sent, see [`BatchConfig`].
    #[serde(default)]
    pub batch: BatchConfig,
    /// `"gzip"` (default) or `"none"`.
    #[serde(default)]
    pub compression: Compression,
    /// gzip level, 1 (fastest, default) to 9 (smallest).
    #[serde(default = "default_compression_level")]
    pub compression_level: u32,
    /// Most bulk requests in flight at once. Default 4.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Longest wait for one request (connect, send, response). Default `"60s"`.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Interval,
    /// Idle connections are kept open for reuse this long. Default `"90s"`.
    #[serde(default = "default_idle_timeout")]
    pub keepalive_idle_timeout: Interval,
    /// Waits between attempts, see [`RetryConfig`].
    #[serde(default)]
    pub retry: RetryConfig,
    /// Install a composable index template at start (if no template of that name exists). Default `false`.
    #[serde(default)]
    pub manage_template: bool,
    /// Name of the managed index template. Default `"auditrail"`.
    #[serde(default = "default_template_name")]
    pub template_name: String,
    /// Index pattern of the managed template. Default: the literal start of `index` (or `data_stream`)
    /// followed by `*`, e.g. `"auditrail-*"`.
    #[serde(default)]
    pub template_pattern: Option<String>,
}

fn default_true() -> bool {
    true
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
fn default_max_response_bytes() -> ByteSize {
    ByteSize(16 << 20)
}
fn default_template_name() -> String {
    "auditrail".into()
}

/// Most nodes in `endpoints`.
pub const MAX_ENDPOINTS: usize = 64;

/// Default index name template.
pub const DEFAULT_INDEX: &str = "auditrail-%Y.%m.%d";
/// Default data stream name (Elastic's `type-dataset-namespace` naming).
pub const DEFAULT_DATA_STREAM: &str = "logs-teleport.audit-default";

fn err(field: &'static str, message: impl Into<String>) -> SinkConfigError {
    SinkConfigError {
        field,
        message: message.into(),
    }
}

impl ElasticsearchSinkConfig {
    /// A config with defaults for everything but the endpoint.
    pub fn with_endpoint(endpoint: impl Into<String>) -> ElasticsearchSinkConfig {
        ElasticsearchSinkConfig {
            endpoint: Some(endpoint.into()),
            endpoints: Vec::new(),
            max_response_bytes: default_max_response_bytes(),
            mode: Mode::default(),
            index: None,
            unsafe_index: UnsafeNames::default(),
            data_stream: None,
            op_type: OpType::default(),
            id: IdSource::default(),
            encoding: EncodingConfig::default(),
            auth: None,
            tls: TlsConfig::default(),
            batch: BatchConfig::default(),
            compression: Compression::default(),
            compression_level: default_compression_level(),
            concurrency: default_concurrency(),
            request_timeout: default_request_timeout(),
            keepalive_idle_timeout: default_idle_timeout(),
            retry: RetryConfig::default(),
            manage_template: false,
            template_name: default_template_name(),
            template_pattern: None,
        }
    }

    /// The index or data stream template in force and the key it came from.
    pub fn target(&self) -> (&'static str, &str) {
        match self.mode {
            Mode::Index => ("index", self.index.as_deref().unwrap_or(DEFAULT_INDEX)),
            Mode::DataStream => (
                "data_stream",
                self.data_stream.as_deref().unwrap_or(DEFAULT_DATA_STREAM),
            ),
        }
    }

    /// The managed template's index pattern.
    pub fn template_pattern(&self) -> Result<String, SinkConfigError> {
        if let Some(p) = &self.template_pattern {
            return Ok(p.clone());
        }
        let (field, text) = self.target();
        let t = IndexTemplate::parse(text).map_err(|m| err(field, m))?;
        Ok(if t.is_static() {
            t.literal_prefix()
        } else {
            format!("{}*", t.literal_prefix())
        })
    }

    /// The nodes' base URLs, checked, in the order given: `endpoints`, or `endpoint` alone.
    pub fn endpoint_urls(&self) -> Result<Vec<reqwest::Url>, SinkConfigError> {
        match (&self.endpoint, self.endpoints.is_empty()) {
            (Some(_), false) => Err(err(
                "endpoints",
                "`endpoint` and `endpoints` are both set: keep one (`endpoint = \"...\"` is the shorthand of `endpoints = [\"...\"]`)",
            )),
            (None, true) => Err(err(
                "endpoint",
                "missing: expected endpoint = \"https://es.example.com:9200\" or endpoints = [\"https://es1:9200\", \"https://es2:9200\"]",
            )),
            (Some(one), true) => Ok(vec![parse_endpoint(one).map_err(|m| err("endpoint", m))?]),
            (None, false) => {
                if self.endpoints.len() > MAX_ENDPOINTS {
                    return Err(err(
                        "endpoints",
                        format!("{} nodes listed: at most {MAX_ENDPOINTS}", self.endpoints.len()),
                    ));
                }
                let mut urls: Vec<reqwest::Url> = Vec::with_capacity(self.endpoints.len());
                for (i, text) in self.endpoints.iter().enumerate() {
                    let url = parse_endpoint(text)
                        .map_err(|m| err("endpoints", format!("endpoints[{i}] `{text}`: {m}")))?;
                    if urls.contains(&url) {
                        return Err(err(
                            "endpoints",
                            format!("endpoints[{i}] `{text}` is listed twice"),
                        ));
                    }
                    urls.push(url);
                }
                Ok(urls)
            }
        }
    }

    /// Checks what serde cannot, without touching the network.
    pub fn validate(&self) -> Result<(), SinkConfigError> {
        self.endpoint_urls()?;
        if self.max_response_bytes.0 < 4096 || self.max_response_bytes.0 > 1 << 30 {
            return Err(err("max_response_bytes", "must be between 4KiB and 1GiB"));
        }
        match self.mode {
            Mode::Index if self.data_stream.is_some() => {
                return Err(err(
                    "data_stream",
                    "only used with mode = \"data_stream\"; use `index` for mode = \"index\"",
                ))
            }
            Mode::DataStream if self.index.is_some() => return Err(err(
                "index",
                "only used with mode = \"index\"; with mode = \"data_stream\" use `data_stream`",
            )),
            Mode::DataStream if self.op_type != OpType::Create => {
                return Err(err(
                    "op_type",
                    "data streams accept only op_type = \"create\"",
                ))
            }
            _ => {}
        }
        let (field, text) = self.target();
        IndexTemplate::parse(text).map_err(|m| err(field, m))?;
        if self.batch.max_events == 0 {
            return Err(err("batch", "max_events must be at least 1"));
        }
        if self.batch.max_bytes.0 < 1024 {
            return Err(err("batch", "max_bytes must be at least 1KiB"));
        }
        if self.concurrency == 0 || self.concurrency > 128 {
            return Err(err("concurrency", "must be between 1 and 128"));
        }
        if !(1..=9).contains(&self.compression_level) {
            return Err(err(
                "compression_level",
                "must be between 1 (fastest) and 9 (smallest)",
            ));
        }
        if self.request_timeout.0 < Duration::from_millis(100) {
            return Err(err("request_timeout", "must be at least 100ms"));
        }
        if self.retry.initial_backoff.0.is_zero()
            || self.retry.max_backoff.0 < self.retry.initial_backoff.0
        {
            return Err(err(
                "retry",
                "initial_backoff must be above zero and at most max_backoff",
            ));
        }
        if let Some(auth) = &self.auth {
            let empty = match auth {
                AuthConfig::Basic { user, password } => {
                    user.is_empty() || password.expose().is_empty()
                }
                AuthConfig::ApiKey { api_key } => api_key.expose().is_empty(),
                AuthConfig::Bearer { token } => token.expose().is_empty(),
            };
            if empty {
                return Err(err(
                    "auth",
                    "a credential is empty (is the environment variable set?)",
                ));
            }
        }
        if self.manage_template {
            if self.template_name.is_empty()
                || self.template_name.starts_with(['_', '-', '+'])
                || self.template_name.contains(|c: char| {
                    c.is_ascii_uppercase() || super::index::FORBIDDEN.contains(&c)
                })
            {
                return Err(err("template_name", "must be a lower-case name such as \"auditrail\" without spaces or any of \\ / * ? \" < > | , #"));
            }
            let pattern = self.template_pattern()?;
            if pattern.is_empty() || pattern == "*" {
                return Err(err(
                    "template_pattern",
                    "the template would apply to every index: start the index name with a literal prefix or set template_pattern",
                ));
            }
        }
        if let Some(ca) = &self.tls.ca_file {
            if ca.as_os_str().is_empty() {
                return Err(err("tls", "ca_file is empty"));
            }
        }
        Ok(())
    }
}

/// `text` as a node's base URL: http(s), a host, no credentials, query or fragment.
fn parse_endpoint(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text)
        .map_err(|e| format!("not a URL ({e}): expected e.g. \"https://es.example.com:9200\""))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme `{}` is not supported: expected http:// or https://",
            url.scheme()
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL would end up in logs: remove them and use auth = { strategy = \"basic\", user = \"...\", password = \"${ES_PASSWORD}\" }".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a query or fragment is not allowed: give the base URL of the cluster".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<ElasticsearchSinkConfig, String> {
        let c: ElasticsearchSinkConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        c.validate()
            .map_err(|e| format!("{}: {}", e.field, e.message))?;
        Ok(c)
    }

    #[test]
    fn defaults() {
        let c = parse("endpoint = \"http://127.0.0.1:9200\"").unwrap();
        assert_eq!(c.mode, Mode::Index);
        assert_eq!(c.target(), ("index", "auditrail-%Y.%m.%d"));
        assert_eq!(c.op_type, OpType::Create);
        assert_eq!(c.id, IdSource::Uid);
        assert_eq!(c.encoding.schema, Schema::Teleport);
        assert_eq!(c.batch.max_events, 1000);
        assert_eq!(c.batch.max_bytes, ByteSize(5 << 20));
        assert_eq!(c.compression, Compression::Gzip);
        assert_eq!(c.concurrency, 4);
        assert!(!c.manage_template);
        assert_eq!(c.template_pattern().unwrap(), "auditrail-*");
    }

    #[test]
    fn data_stream_mode() {
        let c = parse("endpoint = \"http://h:9200\"\nmode = \"data_stream\"").unwrap();
        assert_eq!(c.target(), ("data_stream", "logs-teleport.audit-default"));
        assert_eq!(c.template_pattern().unwrap(), "logs-teleport.audit-default");
    }

    #[test]
    fn full_table() {
        let c = parse(
            r#"
endpoint = "https://es.example.com:9200/prefix"
index = "audit-{cluster_name}-%Y.%m"
op_type = "index"
id = "auto"
encoding = { schema = "ecs" }
auth = { strategy = "api_key", api_key = "c2VjcmV0" }
tls = { ca_file = "/etc/ssl/es.pem", verify_certificate = true }
batch = { max_events = 10, max_bytes = "1MiB", timeout = "200ms" }
compression = "none"
concurrency = 2
request_timeout = "5s"
retry = { initial_backoff = "10ms", max_backoff = "1s" }
manage_template = true
template_name = "audit"
"#,
        )
        .unwrap();
        assert_eq!(c.encoding.schema, Schema::Ecs);
        assert_eq!(c.template_pattern().unwrap(), "audit-*");
        assert_eq!(c.batch.timeout.0, Duration::from_millis(200));
    }

    #[test]
    fn errors_name_the_key_and_what_is_expected() {
        let cases = [
            ("endpoint = \"not a url\"", "endpoint: not a URL"),
            ("endpoint = \"ftp://h\"", "scheme `ftp`"),
            (
                "endpoint = \"https://u:p@h:9200\"",
                "credentials in the URL",
            ),
            ("endpoint = \"http://h\"\nindex = \"a-{x\"", "index: `{` at byte"),
            ("endpoint = \"http://h\"\nindex = \"Audit\"", "lower-case"),
            ("endpoint = \"http://h\"\nindex = \"_a\"", "must not start with"),
            ("endpoint = \"http://h\"\nindex = \"a b\"", "cannot contain"),
            (
                "endpoint = \"http://h\"\nmode = \"data_stream\"\nop_type = \"index\"",
                "op_type: data streams accept only",
            ),
            (
                "endpoint = \"http://h\"\nmode = \"data_stream\"\nindex = \"x\"",
                "index: only used with mode = \"index\"",
            ),
            (
                "endpoint = \"http://h\"\ndata_stream = \"x\"",
                "data_stream: only used with",
            ),
            (
                "endpoint = \"http://h\"\nbatch = { max_events = 0 }",
                "batch: max_events",
            ),
            ("endpoint = \"http://h\"\nconcurrency = 0", "concurrency"),
            ("endpoint = \"http://h\"\ncompression_level = 10", "compression_level"),
            (
                "endpoint = \"http://h\"\nauth = { strategy = \"basic\", user = \"u\", password = \"\" }",
                "auth: a credential is empty",
            ),
            (
                "endpoint = \"http://h\"\nauth = { strategy = \"kerberos\" }",
                "unknown variant `kerberos`",
            ),
            ("endpoint = \"http://h\"\nindx = \"a\"", "unknown field `indx`"),
            (
                "endpoint = \"http://h\"\nbatch = { max_event = 1 }",
                "unknown field `max_event`",
            ),
            (
                "endpoint = \"http://h\"\nmanage_template = true\ntemplate_pattern = \"*\"",
                "template_pattern: the template would apply to every index",
            ),
            ("endpoint = \"http://h\"\nmode = \"stream\"", "unknown variant `stream`"),
            (
                "endpoint = \"http://h\"\nencoding = { schema = \"otel\" }",
                "unknown variant `otel`",
            ),
        ];
        for (text, expected) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(expected), "{text}: {e}");
        }
    }

    #[test]
    fn endpoints_a_list_or_the_one_node_shorthand() {
        let one = parse("endpoint = \"http://a:9200\"").unwrap();
        let urls: Vec<String> = one
            .endpoint_urls()
            .unwrap()
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(urls, vec!["http://a:9200/"]);
        let two = parse("endpoints = [\"http://a:9200\", \"https://b:9200/es\"]").unwrap();
        let urls: Vec<String> = two
            .endpoint_urls()
            .unwrap()
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(urls, vec!["http://a:9200/", "https://b:9200/es"]);
        assert_eq!(two.max_response_bytes, ByteSize(16 << 20));
        let many = (0..=MAX_ENDPOINTS)
            .map(|i| format!("\"http://n{i}:9200\""))
            .collect::<Vec<_>>()
            .join(", ");
        for (text, expected) in [
            (
                "endpoint = \"http://a\"\nendpoints = [\"http://b\"]".to_string(),
                "endpoints: `endpoint` and `endpoints` are both set",
            ),
            (
                "index = \"x\"".to_string(),
                "endpoint: missing: expected endpoint = ",
            ),
            ("endpoints = []".to_string(), "endpoint: missing"),
            (
                "endpoints = [\"http://a\", \"ftp://b\"]".to_string(),
                "endpoints: endpoints[1] `ftp://b`: scheme `ftp`",
            ),
            (
                "endpoints = [\"http://a\", \"http://a/\"]".to_string(),
                "endpoints[1] `http://a/` is listed twice",
            ),
            (
                "endpoints = [\"http://u:p@a\"]".to_string(),
                "credentials in the URL",
            ),
            (format!("endpoints = [{many}]"), "at most 64"),
            (
                "endpoint = \"http://a\"\nmax_response_bytes = \"1KiB\"".to_string(),
                "max_response_bytes: must be between 4KiB and 1GiB",
            ),
        ] {
            let e = parse(&text).unwrap_err();
            assert!(e.contains(expected), "{text}: {e}");
        }
    }

    #[test]
    fn secrets_never_show_in_debug() {
        for auth in [
            r#"{ strategy = "basic", user = "elastic", password = "hunter2-pw" }"#,
            r#"{ strategy = "api_key", api_key = "hunter2-key" }"#,
            r#"{ strategy = "bearer", token = "hunter2-token" }"#,
        ] {
            let c = parse(&format!("endpoint = \"http://h\"\nauth = {auth}")).unwrap();
            let shown = format!(
                "{c:?} {:?}",
                crate::SinkConfig::Elasticsearch(Box::new(c.clone()))
            );
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
    }
}
