//! The Splunk HTTP Event Collector sink: events as HEC envelopes (their bytes verbatim under `event`), each
//! acknowledged upstream only once Splunk says it is indexed (indexer acknowledgement).
//!
//! ```toml
//! [sinks.splunk]
//! type = "splunk_hec"
//! inputs = ["teleport"]
//! endpoint = "https://splunk.example.com:8088"   # or endpoints = ["https://idx1:8088", "https://idx2:8088"]
//! token = "${SPLUNK_HEC_TOKEN}"
//! index = "audit"                                 # sourcetype defaults to "teleport:audit"
//! acknowledgements = true                         # the default
//! tls = { ca_file = "/etc/auditrail/splunk-ca.pem" }
//! ```
//!
//! - Envelopes ([`request_builder`]): `time` in epoch seconds with the event's own fraction, `host`, `source`,
//!   `sourcetype`, `index`, indexed `fields`, and the event's raw bytes as `event`; batches are concatenated
//!   envelopes bounded by `batch.max_events`, `batch.max_bytes`, `batch.timeout`; gzip with
//!   `compression = "gzip"`; `endpoint_target = "raw"` sends the events' lines to `/services/collector/raw`.
//! - Indexer acknowledgement ([`acks`]): one channel GUID per sink instance in `X-Splunk-Request-Channel`;
//!   each answer's `ackId` is polled in batches on `/services/collector/ack` of the indexer that took it, with
//!   that indexer's cookies (sticky load balancers); not confirmed within `ack_timeout` → sent again, counted.
//! - Answers by Splunk's documented codes ([`response`]): busy (9, 503) → backoff honouring `Retry-After`; data
//!   errors → the batch is split at Splunk's `invalid-event-number` and the bad event dead-lettered with
//!   Splunk's text; a refused token holds the events (`auditrail_sink_auth_failed`), losing nothing; code 14
//!   → an error naming the setting to change.
//! - Several indexers ([`crate::http::pool`]): round robin, a failed one skipped until
//!   `/services/collector/health` answers 200. The health of every indexer is checked at start: a warning, not
//!   a failure. Contact and errors go to `/ready` through the sink's
//!   [`auditrail_core::status::ComponentStatus`].
//! - TLS with the system's roots and an optional `tls.ca_file`; `tls.verify = false` only with a warning;
//!   keep-alive connections; at most `request.concurrency` requests in flight; `request.rate_limit` requests
//!   per second at most (governor's token bucket).
//!
//! Metrics, besides every sink's `auditrail_sink_*_total{sink}`: `auditrail_sink_hec_requests_total{sink,result}`,
//! `auditrail_sink_hec_request_bytes_total{sink}`, the gauge `auditrail_sink_hec_requests_in_flight{sink}`,
//! `auditrail_sink_hec_acks_total{sink,result="true"|"false"|"timeout"}`, `auditrail_sink_hec_resent_total{sink}`
//! (events sent again after `ack_timeout`: possible duplicates), `auditrail_sink_hec_unconfirmed_total{sink}`,
//! `auditrail_sink_hec_ack_queries_total{sink,result}`, the gauge `auditrail_sink_auth_failed{sink}` and
//! `auditrail_sink_auth_failed_total{sink}`.

mod acks;
mod config;
#[cfg(test)]
mod conformance;
pub mod cookies;
pub mod request_builder;
pub mod response;
pub mod service;
pub mod sink;
#[cfg(test)]
mod tests;

pub use config::{
    BatchConfig, Compression, EndpointTarget, RequestConfig, RetryConfig, SplunkHecSinkConfig,
    TlsConfig, DEFAULT_SOURCETYPE,
};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditrail_core::buffer::BufferReceiver;
use auditrail_core::retry::Backoff;
use auditrail_core::{Sink, SinkContext, SinkFuture};

use crate::http::{Deliver, Pool, RequestMetrics};
use crate::SinkConfigError;

/// Says yes at most once a minute: for errors that repeat on every retry.
#[derive(Debug, Default)]
pub struct EveryMinute(Mutex<Option<Instant>>);

impl EveryMinute {
    /// Whether to log now.
    pub fn due(&self) -> bool {
        let mut last = self.0.lock().expect("rate lock");
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(60)) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// See the module documentation.
pub struct SplunkHecSink {
    config: SplunkHecSinkConfig,
    /// This sink instance's channel GUID.
    channel: String,
}

impl SplunkHecSink {
    /// The sink for `config`; fails if the config does not validate or the CA file cannot be read.
    pub fn new(config: SplunkHecSinkConfig) -> Result<SplunkHecSink, SinkConfigError> {
        config.validate()?;
        let channel = uuid::Uuid::now_v7().hyphenated().to_string();
        // Built once here so that a bad CA file or token fails the config check, not the running sink.
        service::NodeParts::new(&config, "check", &channel)?;
        Ok(SplunkHecSink { config, channel })
    }

    /// The channel GUID of this sink instance.
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

impl Sink for SplunkHecSink {
    fn run(self: Box<Self>, input: BufferReceiver, cx: SinkContext) -> SinkFuture {
        Box::pin(async move {
            let c = &self.config;
            let parts = service::NodeParts::new(c, &cx.name, &self.channel)?;
            let unconfirmed_log = Arc::new(EveryMinute::default());
            let proto = sink::Hec::new(c, &cx.name, unconfirmed_log.clone());
            // Half the requests `max_pending_events` allows, spread over the indexers: past it, ask at once.
            let requests = c.max_pending_events / c.batch.max_events.max(1);
            let eager_at = requests / (2 * c.endpoints.len().max(1));
            let nodes = parts.nodes(|conn| {
                c.acknowledgements.then(|| {
                    acks::Acks::start(
                        conn.clone(),
                        c.ack_poll_interval.0,
                        eager_at,
                        c.ack_timeout.0,
                        proto.ack_metrics.clone(),
                        unconfirmed_log.clone(),
                    )
                })
            });
            let pool = Pool::new(
                nodes.clone(),
                cx.name.clone(),
                cx.status.clone(),
                (c.retry.initial_backoff.0, c.retry.max_backoff.0),
            );
            tracing::info!(
                sink = %cx.name,
                endpoints = ?pool.endpoints(),
                channel = %self.channel,
                acknowledgements = c.acknowledgements,
                endpoint_target = ?c.endpoint_target,
                concurrency = c.request.concurrency,
                "sending to Splunk HEC"
            );
            if !c.tls.verify {
                tracing::warn!(sink = %cx.name, "tls.verify = false: the collector's certificate is not checked");
            }
            // The health check at start: a warning, never a failure (the indexer may come up later).
            for node in &nodes {
                match node.check_health().await {
                    Ok(_) => {
                        pool.succeeded();
                        tracing::info!(sink = %cx.name, endpoint = %node.conn.base, "the collector is healthy");
                    }
                    Err(why) => {
                        pool.attempt_failed(&why);
                        tracing::warn!(sink = %cx.name, error = %why, "the collector's health check did not pass at start; sending anyway, with retries");
                    }
                }
            }
            let deliver = Deliver {
                pool,
                proto,
                metrics: RequestMetrics::new(&cx.name, "hec"),
                cx,
            };
            let backoff = Backoff::new(c.retry.initial_backoff.0, c.retry.max_backoff.0);
            crate::http::drive(input, deliver, sink::limits(c), backoff).await
        })
    }

    fn reports_contact(&self) -> bool {
        true
    }
}
