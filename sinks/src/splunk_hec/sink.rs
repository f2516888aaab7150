//! The HEC side of the shared HTTP driver ([`crate::http::driver`]): a batch becomes one body
//! ([`super::request_builder`]), goes to one indexer ([`super::service`], after the `request.rate_limit` token
//! bucket), and the answer is judged ([`super::response`]): with acknowledgements on, a `code: 0` answer hands the
//! batch to its indexer's ack poller ([`super::acks`]) and the events are delivered once their `ackId` is
//! indexed, or sent again after `ack_timeout`; with them off, `code: 0` is delivered.
//!
//! A refused token (codes 1–4, 401, 403) holds the events (retried with the backoff, nothing lost), sets the
//! gauge `auditrail_sink_auth_failed{sink}` to 1, counts `auditrail_sink_auth_failed_total{sink}`, and is logged
//! at most once a minute; the first accepted request sets the gauge back to 0.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use auditrail_core::Event;
use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use metrics::{Counter, Gauge};

use super::acks::{AckMetrics, AckResult};
use super::config::SplunkHecSinkConfig;
use super::request_builder::RequestBuilder;
use super::response::parse_answer;
use super::service::HecNode;
use super::EveryMinute;
use crate::http::{Built, Classified, Limits, Outcome, Protocol, Reply};

/// The state of the token, shared by every request of the sink.
pub struct AuthState {
    failed: AtomicBool,
    gauge: Gauge,
    counter: Counter,
    log: EveryMinute,
}

impl AuthState {
    /// Registers `auditrail_sink_auth_failed{sink}` (0) and `auditrail_sink_auth_failed_total{sink}`.
    pub fn new(name: &str) -> AuthState {
        let gauge = metrics::gauge!("auditrail_sink_auth_failed", "sink" => name.to_string());
        gauge.set(0.0);
        let counter =
            metrics::counter!("auditrail_sink_auth_failed_total", "sink" => name.to_string());
        counter.increment(0);
        AuthState {
            failed: AtomicBool::new(false),
            gauge,
            counter,
            log: EveryMinute::default(),
        }
    }
}

/// Event requests: the request builder, service and classifier of the HEC sink.
#[derive(Clone)]
pub struct Hec {
    /// Batch → body.
    pub builder: RequestBuilder,
    /// `acknowledgements`.
    pub acks_on: bool,
    /// `request.rate_limit`.
    pub limiter: Option<Arc<DefaultDirectRateLimiter>>,
    /// The token's state.
    pub auth: Arc<AuthState>,
    /// The ack path's counters.
    pub ack_metrics: AckMetrics,
    /// Rate of the "acknowledgements cannot be had" error.
    pub unconfirmed_log: Arc<EveryMinute>,
}

impl Hec {
    /// The protocol of `config` (validated) for sink `name`.
    pub fn new(config: &SplunkHecSinkConfig, name: &str, unconfirmed_log: Arc<EveryMinute>) -> Hec {
        let limiter = NonZeroU32::new(config.request.rate_limit).map(|rate| {
            let burst =
                NonZeroU32::new(config.request.concurrency as u32).unwrap_or(NonZeroU32::MIN);
            Arc::new(RateLimiter::direct(
                Quota::per_second(rate).allow_burst(burst),
            ))
        });
        Hec {
            builder: RequestBuilder::new(config),
            acks_on: config.acknowledgements,
            limiter,
            auth: Arc::new(AuthState::new(name)),
            ack_metrics: AckMetrics::new(name),
            unconfirmed_log,
        }
    }
}

impl Protocol for Hec {
    type Node = HecNode;

    fn request_name(&self) -> &'static str {
        "HEC request"
    }

    fn build(&mut self, events: Vec<Event>) -> Built {
        self.builder.build(events)
    }

    async fn send(&self, node: &HecNode, body: Bytes) -> Reply {
        if let Some(l) = &self.limiter {
            l.until_ready().await;
        }
        node.send(body).await
    }

    fn classify(&self, node: &HecNode, body: Bytes, events: Vec<Event>) -> Classified {
        let Some(answer) = parse_answer(&body) else {
            return Classified::Unreadable {
                events,
                why: format!(
                    "not a HEC answer: {}",
                    crate::http::client::cut(&String::from_utf8_lossy(&body))
                ),
            };
        };
        if answer.code.is_some_and(|c| c != 0) {
            return Classified::Unreadable {
                events,
                why: format!(
                    "HEC code {} on HTTP 2xx: {}",
                    answer.code.unwrap_or(0),
                    answer.text
                ),
            };
        }
        let delivered = |events: Vec<Event>| {
            events
                .into_iter()
                .map(|e| (e, Outcome::Delivered))
                .collect::<Vec<_>>()
        };
        if !self.acks_on {
            return Classified::Now(delivered(events));
        }
        match (&node.acks, answer.ack_id) {
            (Some(acks), Some(id)) => {
                let acks = acks.clone();
                let m = self.ack_metrics.clone();
                Classified::Later(Box::pin(async move {
                    match acks.wait(id).await {
                        AckResult::Indexed => delivered(events),
                        AckResult::Unconfirmable(_) => {
                            // Logged by the poller, once a minute.
                            m.unconfirmed.increment(events.len() as u64);
                            delivered(events)
                        }
                        AckResult::TimedOut => {
                            m.resent.increment(events.len() as u64);
                            events.into_iter().map(|e| (e, Outcome::Resend)).collect()
                        }
                    }
                }))
            }
            _ => {
                // Splunk answers without an ackId when the token has indexer acknowledgement off.
                self.ack_metrics.unconfirmed.increment(events.len() as u64);
                if self.unconfirmed_log.due() {
                    tracing::error!(sink = %node.conn.sink, endpoint = %node.conn.base, "acknowledgements = true but the answer holds no ackId: {}; events are counted delivered on HTTP 200 meanwhile", super::response::ACK_DISABLED_HINT);
                }
                Classified::Now(delivered(events))
            }
        }
    }

    fn auth_failed(&self, sink: &str, endpoint: &str, why: &str) {
        self.auth.counter.increment(1);
        self.auth.gauge.set(1.0);
        self.auth.failed.store(true, Ordering::Release);
        if self.auth.log.due() {
            tracing::error!(sink = %sink, endpoint = %endpoint, error = %why, "the HEC token is rejected; holding events and retrying, nothing is lost (fix `token`; this is logged once a minute)");
        }
    }

    fn auth_ok(&self) {
        if self.auth.failed.swap(false, Ordering::AcqRel) {
            self.auth.gauge.set(0.0);
            tracing::info!("the HEC token is accepted again");
        }
    }
}

/// The batching limits of `config`.
pub fn limits(config: &SplunkHecSinkConfig) -> Limits {
    Limits {
        max_events: config.batch.max_events,
        max_bytes: config.batch.max_bytes.as_usize(),
        timeout: config.batch.timeout.0,
        concurrency: config.request.concurrency,
        initial_backoff: config.retry.initial_backoff.0,
        max_awaiting: if config.acknowledgements {
            config.max_pending_events
        } else {
            usize::MAX
        },
    }
}
