//! The Elasticsearch side of the shared HTTP driver ([`crate::http::driver`]): a batch becomes one `_bulk`
//! body ([`super::encoder`]), goes to one node ([`super::service`]), and each document of the answer is judged
//! on its own ([`super::response`]): a delivered one (201, or 409 on `create`) is acknowledged upstream right
//! away, a refused one goes to the dead-letter file with the server's reason, and only the ones to retry go back
//! to the front of the next batch (after a backoff). Batching, concurrency, backoff, node failover, splitting
//! a request refused as a whole and the idle probe are the driver's.

use auditrail_core::Event;
use bytes::Bytes;
use metrics::Counter;

use super::config::ElasticsearchSinkConfig;
use super::encoder::Encoder;
use super::response::{classify, ItemClass};
use super::service::Service;
use crate::http::{Built, Classified, Outcome, Protocol, Reply};

pub use crate::http::driver::REASON_REQUEST_REFUSED;
pub use crate::http::driver::{
    drive, Deliver, Limits, RequestMetrics, PROBE_AFTER, REQUEST_RESULTS,
};

/// `auditrail_sink_bulk_items_total{sink,result}`, registered at zero.
#[derive(Clone)]
pub struct ItemMetrics {
    items: Vec<(&'static str, Counter)>,
}

impl ItemMetrics {
    /// Registers the counters of sink `name`.
    pub fn new(name: &str) -> ItemMetrics {
        let items = ItemClass::LABELS
            .iter()
            .map(|r| {
                let c = metrics::counter!("auditrail_sink_bulk_items_total", "sink" => name.to_string(), "result" => *r);
                c.increment(0);
                (*r, c)
            })
            .collect();
        ItemMetrics { items }
    }

    fn item(&self, label: &str, n: u64) {
        if let Some((_, c)) = self.items.iter().find(|(l, _)| *l == label) {
            c.increment(n);
        }
    }
}

/// The driver's counters of sink `name`: `auditrail_sink_bulk_requests_total{result}`,
/// `auditrail_sink_bulk_request_bytes_total`, `auditrail_sink_bulk_requests_in_flight`.
pub fn request_metrics(name: &str) -> RequestMetrics {
    RequestMetrics::new(name, "bulk")
}

/// Bulk requests: the request builder, service and classifier of the Elasticsearch sink.
#[derive(Clone)]
pub struct Bulk {
    /// Batch → body.
    pub encoder: Encoder,
    /// Per-document counters.
    pub items: ItemMetrics,
}

impl Protocol for Bulk {
    type Node = Service;

    fn request_name(&self) -> &'static str {
        "bulk request"
    }

    fn build(&mut self, events: Vec<Event>) -> Built {
        let encoded = self.encoder.encode(events);
        Built {
            body: encoded.body,
            events: encoded.events,
            refused: encoded.refused,
        }
    }

    async fn send(&self, node: &Service, body: Bytes) -> Reply {
        node.bulk(body).await
    }

    fn classify(&self, node: &Service, body: Bytes, events: Vec<Event>) -> Classified {
        match classify(&body, events.len()) {
            Ok(classes) => Classified::Now(
                events
                    .into_iter()
                    .zip(classes)
                    .map(|(e, class)| {
                        self.items.item(class.label(), 1);
                        let outcome = match class {
                            ItemClass::Created | ItemClass::Duplicate => Outcome::Delivered,
                            ItemClass::Retry(_) => Outcome::Retry,
                            ItemClass::Reject { cause, message } => Outcome::Reject {
                                reason: cause.reason(),
                                message,
                            },
                        };
                        (e, outcome)
                    })
                    .collect(),
            ),
            Err(err) => Classified::Unreadable {
                events,
                why: format!(
                    "{}: {err} (already indexed documents answer 409 and count once)",
                    node.base()
                ),
            },
        }
    }
}

/// The batching limits of `config`.
pub fn limits(config: &ElasticsearchSinkConfig) -> Limits {
    Limits {
        max_events: config.batch.max_events,
        max_bytes: config.batch.max_bytes.as_usize(),
        timeout: config.batch.timeout.0,
        concurrency: config.concurrency,
        initial_backoff: config.retry.initial_backoff.0,
        // Every outcome is known from the bulk response: nothing waits for a later confirmation.
        max_awaiting: usize::MAX,
    }
}
