//! The Elasticsearch / OpenSearch sink: events as documents through the `_bulk` API, each acknowledged upstream
//! only when its own bulk item succeeded.
//!
//! ```toml
//! [sinks.siem]
//! type = "elasticsearch"
//! inputs = ["teleport"]
//! endpoint = "https://es.example.com:9200"   # or endpoints = ["https://es1:9200", "https://es2:9200"]
//! index = "auditrail-%Y.%m.%d"            # or mode = "data_stream" (data_stream = "logs-teleport.audit-default")
//! auth = { strategy = "api_key", api_key = "${ES_API_KEY}" }
//! tls = { ca_file = "/etc/auditrail/es-ca.pem" }
//! manage_template = true
//! ```
//!
//! - Idempotent: `op_type = "create"` with `_id` = the event's `uid`, so a resent event (after a retry, a
//!   crash, a restart before the acknowledgement) is answered 409 and counted as delivered, never stored
//!   twice.
//! - Verbatim: a document is the event's raw bytes ([`encoder`]); in data-stream mode `@timestamp` (from
//!   `time`) is put in front; with `encoding = { schema = "ecs" }` ECS fields are added around the original
//!   ([`ecs`], with the mapping table).
//! - Per-item results ([`response`]): 201 and 409-on-create are delivered; 429 / `es_rejected_execution` /
//!   5xx items are retried, alone; mapping and other 4xx errors go to `data_dir/dead-letter/<sink>.ndjson` with
//!   the server's reason. Whole-request failures are retried with backoff ([`service`], [`sink`], on the shared
//!   HTTP driver [`crate::http`]).
//! - Batching by events, bytes and time; gzip; at most `concurrency` requests in flight over keep-alive
//!   connections; basic, API-key or bearer credentials, never logged; TLS with an extra CA file.
//! - Several nodes ([`pool`]): `endpoints = [..]` spreads requests round robin; a node that fails (no
//!   connection, timeout, 5xx) is taken out, its batch goes to another node at once, and it is put back after a
//!   health check (`GET /`) passes. Response bodies are read up to `max_response_bytes` (default 16MiB).
//! - Contact with the cluster (any 2xx) and each failed attempt are reported to `/ready` through the sink's
//!   [`auditrail_core::status::ComponentStatus`]; an idle sink that has not reached its cluster probes it.
//! - `manage_template = true` installs a composable index template at start ([`template`]).
//!
//! Metrics, besides every sink's `auditrail_sink_*_total{sink}`: `auditrail_sink_bulk_items_total{sink,result}`
//! (`created`, `duplicate`, `rejected_execution`, `server_error`, `mapping_error`, `index_error`,
//! `client_error`), `auditrail_sink_bulk_requests_total{sink,result}` (`ok`, `transient_error`, `auth_error`,
//! `refused`, `unexpected_status`, `bad_response`), `auditrail_sink_bulk_request_bytes_total{sink}` (on the
//! wire) and the gauge `auditrail_sink_bulk_requests_in_flight{sink}`. `auditrail_sink_errors_total` counts
//! each failed request and each failed document, `auditrail_sink_retries_total` each event sent again.
//!
//! The HTTP client is reqwest (rustls) used directly rather than the `elasticsearch` crate: the sink needs
//! its own raw-bytes bodies, gzip level, connection-pool and connect-timeout settings, and transport error
//! kinds, and speaks to Elasticsearch and OpenSearch alike through three endpoints.

mod config;
pub mod ecs;
pub mod encoder;
mod index;
pub mod pool;
pub mod response;
pub mod service;
pub mod sink;
pub mod template;
#[cfg(test)]
mod tests;

pub use config::{
    AuthConfig, BatchConfig, Compression, ElasticsearchSinkConfig, EncodingConfig, IdSource, Mode,
    OpType, RetryConfig, Schema, Secret, TlsConfig,
};
pub use index::IndexTemplate;

use auditrail_core::buffer::BufferReceiver;
use auditrail_core::retry::Backoff;
use auditrail_core::{Sink, SinkContext, SinkFuture};
use std::sync::Arc;

use crate::SinkConfigError;
use encoder::Encoder;
use pool::Pool;
use service::Service;
use template::TemplateOutcome;

/// See the module documentation.
pub struct ElasticsearchSink {
    config: ElasticsearchSinkConfig,
    /// One per node, in config order.
    nodes: Vec<Service>,
    encoder: Encoder,
}

impl ElasticsearchSink {
    /// The sink for `config`; fails if the config does not validate or the CA file cannot be read.
    pub fn new(config: ElasticsearchSinkConfig) -> Result<ElasticsearchSink, SinkConfigError> {
        config.validate()?;
        let nodes = Service::nodes(&config)?;
        let (field, _) = config.target();
        let encoder =
            Encoder::new(&config).map_err(|message| SinkConfigError { field, message })?;
        Ok(ElasticsearchSink {
            config,
            nodes,
            encoder,
        })
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(
            self.config.retry.initial_backoff.0,
            self.config.retry.max_backoff.0,
        )
    }

    async fn manage_template(&self, pool: &Arc<Pool>, cx: &SinkContext) {
        let name = &self.config.template_name;
        let pattern = match self.config.template_pattern() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(sink = %cx.name, error = %e, "no index template installed");
                return;
            }
        };
        let body = template::body(&self.config, &pattern);
        match template::install(pool, &cx.name, name, &body, self.backoff()).await {
            Ok(TemplateOutcome::Installed) => {
                tracing::info!(sink = %cx.name, template = %name, pattern = %pattern, "installed the index template (manage_template = true)")
            }
            Ok(TemplateOutcome::AlreadyInstalled) => {
                tracing::info!(sink = %cx.name, template = %name, pattern = %pattern, "the index template is installed and up to date")
            }
            Ok(TemplateOutcome::LeftAlone) => {
                tracing::warn!(sink = %cx.name, template = %name, "an index template of this name exists with a different body; leaving it alone (delete it to have auditrail install its own, or set manage_template = false)")
            }
            Err(e) => {
                tracing::error!(sink = %cx.name, template = %name, error = %e, "the cluster refused the index template; sending events without it (indices get dynamic mappings)")
            }
        }
    }
}

impl Sink for ElasticsearchSink {
    fn run(self: Box<Self>, input: BufferReceiver, cx: SinkContext) -> SinkFuture {
        Box::pin(async move {
            let (key, target) = self.config.target();
            let pool = Pool::new(
                self.nodes.clone(),
                cx.name.clone(),
                cx.status.clone(),
                (
                    self.config.retry.initial_backoff.0,
                    self.config.retry.max_backoff.0,
                ),
            );
            tracing::info!(
                sink = %cx.name,
                endpoints = ?pool.endpoints(),
                %key,
                target,
                op_type = self.config.op_type.as_str(),
                concurrency = self.config.concurrency,
                "sending to Elasticsearch / OpenSearch"
            );
            if !self.config.tls.verify_certificate {
                tracing::warn!(sink = %cx.name, "tls.verify_certificate = false: the cluster's certificate is not checked");
            }
            if self.config.manage_template {
                self.manage_template(&pool, &cx).await;
            }
            let deliver = sink::Deliver {
                pool,
                proto: sink::Bulk {
                    encoder: self.encoder.clone(),
                    items: sink::ItemMetrics::new(&cx.name),
                },
                metrics: sink::request_metrics(&cx.name),
                cx,
            };
            sink::drive(input, deliver, sink::limits(&self.config), self.backoff()).await
        })
    }

    fn reports_contact(&self) -> bool {
        true
    }
}
