//! `auditrail-core`: the vocabulary every auditrail crate shares.
//!
//! [`Event`] (raw bytes plus what was parsed once), acknowledgements ([`AckBatch`], [`Finalizer`],
//! [`EventStatus`]), per-sink buffers, the fan-out, the [`Sink`] trait, dead-letter files, retry timing, the
//! shutdown signal, and the component state registry behind `/ready` ([`status`]). Sources and sinks know only
//! these types, never each other.

pub mod ack;
pub mod buffer;
pub mod crash;
pub mod dead_letter;
pub mod event;
pub mod fanout;
pub mod integrity;
pub mod private_fs;
pub mod retry;
pub mod secret;
pub mod shutdown;
pub mod sink;
pub mod status;
pub mod units;

pub use ack::{AckBatch, BatchOutcome, EventStatus, Finalizer};
pub use event::{Event, InvalidEvent, Origin};
pub use fanout::Fanout;
pub use secret::Secret;
pub use sink::{BoxError, Sink, SinkContext, SinkFuture};
