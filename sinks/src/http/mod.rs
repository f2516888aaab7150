//! The HTTP sink driver shared by every sink that POSTs batches to a server (Elasticsearch `_bulk`, Splunk
//! HEC), after Vector's split of a sink into a request builder, a service and a sink loop, as plain code:
//!
//! - [`driver`]: the loop: buffer → batches (events, bytes, timeout) → requests with bounded concurrency and
//!   backoff → each event's outcome (delivered / retry / reject to the dead-letter file), including outcomes
//!   known only later (indexer acknowledgements). A sink supplies a [`driver::Protocol`]: how a batch becomes
//!   a body, how a body is sent to one node, and how a 2xx response is judged event by event.
//! - [`pool`]: the endpoints, round robin, a failed one taken out until its health check passes.
//! - [`client`]: the reqwest client (TLS, keep-alive, timeouts) and bounded body reads.
//! - [`config`]: the `batch` and `retry` tables the sinks share.

pub mod client;
pub mod config;
pub mod driver;
pub mod pool;

pub use driver::{
    drive, BoxFuture, Built, Classified, Deliver, Limits, Outcome, Protocol, Reply, RequestMetrics,
};
pub use pool::{Node, Pool};
