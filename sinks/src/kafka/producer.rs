//! The librdkafka producer and its context: delivery reports become [`Report`]s on a channel the sink's loop
//! reads, librdkafka's log lines become `tracing` events, and a fatal error (an idempotence sequence broken
//! beyond repair) raises a flag the loop acts on by building a new producer.
//!
//! Each record carries its [`Event`] as the delivery opaque, so the event travels with its record through
//! librdkafka and comes back with its outcome: nothing is looked up, nothing can be mismatched.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use auditrail_core::Event;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use tokio::sync::{mpsc, Notify};

use super::config::{is_sensitive, KafkaSinkConfig};

/// A producer of this sink.
pub type Producer = ThreadedProducer<Context>;

/// What librdkafka said about one record.
pub enum Report {
    /// Written to its partition with acks=all.
    Delivered(Box<Event>, i32),
    /// Refused for good (too large): to the dead-letter file.
    Refused(Box<Event>, String),
    /// Not written (timed out, purged, failed): to be sent again.
    Failed(Box<Event>, String),
}

/// The producer's context: where reports go, and the fatal-error flag.
pub struct Context {
    sink: Arc<str>,
    reports: mpsc::UnboundedSender<Report>,
    fatal: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(sink = %self.sink, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(sink = %self.sink, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(sink = %self.sink, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(sink = %self.sink, facility = fac, "librdkafka: {message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            tracing::error!(sink = %self.sink, error = %error, reason, "the Kafka producer failed for good; building a new one");
            self.fatal.store(true, Ordering::Release);
            self.wake.notify_one();
        } else {
            tracing::warn!(sink = %self.sink, error = %error, reason, "Kafka client error");
        }
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = Box<Event>;

    fn delivery(&self, result: &DeliveryResult<'_>, event: Box<Event>) {
        let report = match result {
            Ok(m) => Report::Delivered(event, m.partition()),
            Err((e, _)) if is_refusal(e) => Report::Refused(event, e.to_string()),
            Err((e, _)) => Report::Failed(event, e.to_string()),
        };
        // A loop that has stopped listening drops the event, which then counts as failed (never delivered).
        let _ = self.reports.send(report);
    }
}

/// Whether the cluster refused a record for what it is, so that sending it again cannot help.
pub fn is_refusal(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

/// A producer built, with the flag its context raises on a fatal error.
pub struct Built {
    /// The producer (its own thread polls for delivery reports).
    pub producer: Producer,
    /// Raised when the producer failed for good.
    pub fatal: Arc<AtomicBool>,
}

/// Builds a producer of `config` whose reports go to `reports`; `wake` is notified on a fatal error.
pub fn build(
    sink: &Arc<str>,
    config: &KafkaSinkConfig,
    reports: mpsc::UnboundedSender<Report>,
    wake: Arc<Notify>,
) -> Result<Built, String> {
    let mut cc = ClientConfig::new();
    let settings = config.client_settings();
    for (k, v) in &settings {
        cc.set(k, v);
    }
    // librdkafka's own messages are forwarded to tracing by the context.
    cc.set_log_level(RDKafkaLogLevel::Warning);
    let fatal = Arc::new(AtomicBool::new(false));
    let context = Context {
        sink: sink.clone(),
        reports,
        fatal: fatal.clone(),
        wake,
    };
    let producer: Producer = cc
        .create_with_context(context)
        .map_err(|e| redact(&e.to_string(), &settings))?;
    Ok(Built { producer, fatal })
}

/// `text` with the value of every sensitive setting replaced, for an error librdkafka made of the config.
pub fn redact(text: &str, settings: &[(String, String)]) -> String {
    let mut out = text.to_string();
    for (k, v) in settings {
        if is_sensitive(k) && !v.is_empty() {
            out = out.replace(v.as_str(), "<redacted>");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_sensitive_values_only() {
        let s = vec![
            ("sasl.password".to_string(), "hunter2".to_string()),
            ("security.protocol".to_string(), "sasl_ssl".to_string()),
        ];
        assert_eq!(
            redact("bad hunter2 with sasl_ssl", &s),
            "bad <redacted> with sasl_ssl"
        );
    }

    #[test]
    fn too_large_is_a_refusal_a_timeout_is_not() {
        assert!(is_refusal(&KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
        )));
        assert!(!is_refusal(&KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageTimedOut
        )));
        assert!(!is_refusal(&KafkaError::MessageProduction(
            RDKafkaErrorCode::Fatal
        )));
    }
}
