//! Sources: where events come from. Each folder holds one kind; they share [`ingest`] (parse, count, dead-letter)
//! and hand batches to the [`Fanout`] they are given, knowing nothing of the sinks behind it.

pub mod ebpf;
pub mod file;
pub mod http;
pub mod ingest;
pub mod kafka;
pub mod lines;
pub mod splunk_hec;
pub mod unix;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use auditrail_core::shutdown::Shutdown;
use auditrail_core::Fanout;
use serde::Deserialize;

use ingest::Ingest;

/// A `[sources.NAME]` table, chosen by its `type` key.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    /// Tail JSONL files.
    File(file::FileSourceConfig),
    /// `POST /v1/events`.
    Http(http::HttpSourceConfig),
    /// NDJSON over a unix stream socket.
    Unix(unix::UnixSourceConfig),
    /// Splunk's HTTP Event Collector protocol.
    SplunkHec(splunk_hec::SplunkHecSourceConfig),
    /// A Kafka consumer group member.
    Kafka(kafka::KafkaSourceConfig),
    /// Host events from the kernel (eBPF).
    Ebpf(ebpf::EbpfSourceConfig),
}

impl SourceConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            SourceConfig::File(c) => c.validate(),
            SourceConfig::Http(c) => c.validate(),
            SourceConfig::Unix(c) => c.validate(),
            SourceConfig::SplunkHec(c) => c.validate(),
            SourceConfig::Kafka(c) => c.validate(),
            SourceConfig::Ebpf(c) => c.validate(),
        }
    }

    /// Whether the source relays events that already carry their integrity chain (an aggregator reading what
    /// agents wrote): the pipeline then does not chain them again, and they keep their bytes.
    pub fn relays_chains(&self) -> bool {
        matches!(self, SourceConfig::Kafka(_))
    }

    /// The most bytes one event may have at this source.
    fn max_line_bytes(&self) -> usize {
        match self {
            SourceConfig::File(c) => c.max_line_bytes.as_usize(),
            SourceConfig::Http(c) => c.max_line_bytes.as_usize(),
            SourceConfig::Unix(c) => c.max_line_bytes.as_usize(),
            SourceConfig::SplunkHec(c) => c.max_line_bytes.as_usize(),
            SourceConfig::Kafka(c) => c.max_line_bytes.as_usize(),
            SourceConfig::Ebpf(_) => ebpf::MAX_EVENT_BYTES,
        }
    }
}

/// A source could not start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Binding a listener failed.
    #[error("source `{source_name}`: cannot listen on {address}: {error}")]
    Listen {
        /// The source.
        source_name: String,
        /// What it tried to listen on.
        address: String,
        /// Why not.
        error: std::io::Error,
    },
    /// Its state under data_dir is unusable.
    #[error("source `{source_name}`: {message}")]
    State {
        /// The source.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// What the source needs is missing on this host (eBPF without privilege, BTF or a hook). The agent
    /// runs without it: the source is marked failed in `/health` and `/ready`.
    #[error("source `{source_name}`: {message}")]
    Unavailable {
        /// The source.
        source_name: String,
        /// What is missing and what to do.
        message: String,
    },
}

/// What a source is given.
pub struct SourceContext {
    /// The source's name.
    pub name: Arc<str>,
    /// The agent's data_dir.
    pub data_dir: PathBuf,
    /// Where its events go.
    pub fanout: Fanout,
    /// Fires on SIGTERM.
    pub shutdown: Shutdown,
    /// Parsing, counting and dead-lettering shared by all sources.
    pub ingest: Arc<Ingest>,
    /// The cgroup → session directory (filled from the session events every source takes in).
    pub sessions: crate::sessions::directory::Directory,
}

/// A running source: completes after shutdown once its final checkpoint is written.
pub type SourceTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What every source of one agent shares.
#[derive(Clone)]
pub struct Shared {
    /// The agent's data_dir.
    pub data_dir: PathBuf,
    /// Fires on SIGTERM.
    pub shutdown: Shutdown,
    /// The agent's one cgroup → session directory, which every source's accepted events fill.
    pub sessions: crate::sessions::directory::Directory,
}

/// Prepares the source (binds sockets, loads checkpoints) and returns the task that runs it. `resume` is what the
/// sinks' disk buffers hold of a file source's files ([`file::resume::gather`]); other sources ignore it.
/// `dead_letter` is where its invalid input goes ([`ingest::dead_letter_path`], bounded by `[dead_letter]`).
pub async fn build(
    name: &str,
    config: &SourceConfig,
    shared: Shared,
    fanout: Fanout,
    resume: Option<file::ResumeHints>,
    dead_letter: Arc<auditrail_core::dead_letter::DeadLetter>,
) -> Result<SourceTask, SourceError> {
    let Shared {
        data_dir,
        shutdown,
        sessions,
    } = shared;
    let ingest = Arc::new(
        Ingest::new(name, config.max_line_bytes(), &data_dir)
            .with_dead_letter(dead_letter)
            .with_digests(fanout.chain().is_some())
            .with_sessions(sessions.clone()),
    );
    let cx = SourceContext {
        name: name.into(),
        data_dir,
        fanout,
        shutdown,
        ingest,
        sessions,
    };
    match config {
        SourceConfig::File(c) => file::build(c.clone(), cx, resume),
        SourceConfig::Http(c) => http::build(c.clone(), cx).await,
        SourceConfig::Unix(c) => unix::build(c.clone(), cx),
        SourceConfig::SplunkHec(c) => splunk_hec::build(c.clone(), cx).await,
        SourceConfig::Kafka(c) => kafka::build(c.clone(), cx),
        SourceConfig::Ebpf(c) => ebpf::build(c.clone(), cx),
    }
}
