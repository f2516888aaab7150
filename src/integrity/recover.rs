//! What each sink's buffer tells the integrity chain at start: for a disk buffer, the chain tails it holds or
//! held (read by the buffer at open, before its sink takes anything out of it, so nothing is deleted under the
//! reading); for a memory buffer, nothing.

use std::collections::BTreeMap;

use auditrail_core::buffer::disk::{ChainTails, Recovery, TailsFile};
use auditrail_core::integrity::resume::SinkView;

use crate::config::Config;

/// One sink's buffer, as the chain of a source it reads sees it.
#[derive(Clone, Debug)]
pub enum SinkBuffer {
    /// A disk buffer, with what it found at open.
    Disk {
        /// The sink.
        sink: String,
        /// The chain tails of every stream it holds or held.
        tails: ChainTails,
        /// Whether its history is known (its tails file was there and sound).
        known: bool,
    },
    /// A memory buffer.
    Memory {
        /// The sink.
        sink: String,
    },
}

impl SinkBuffer {
    /// What this buffer tells about `stream`.
    pub fn view(&self, stream: &str) -> SinkView {
        match self {
            SinkBuffer::Disk { tails, known, .. } => SinkView::Disk {
                tail: tails
                    .streams
                    .get(stream)
                    .map(|t| (t.seq, t.hash, t.last_seal)),
                known: *known,
            },
            SinkBuffer::Memory { .. } => SinkView::Memory,
        }
    }

    /// The newest record of any segment of `stream` (the stream itself or one of its reset segments
    /// `stream~…`) this buffer holds or held: proof that the chain ran before.
    pub fn newest_of(&self, stream: &str) -> Option<(String, u64)> {
        let SinkBuffer::Disk { tails, .. } = self else {
            return None;
        };
        tails
            .streams
            .iter()
            .filter(|(s, _)| {
                *s == stream || s.strip_prefix(stream).is_some_and(|r| r.starts_with('~'))
            })
            .max_by_key(|(_, t)| t.seq)
            .map(|(s, t)| (s.clone(), t.seq))
    }
}

/// For each source, what the buffers of the sinks reading it tell; `recoveries` holds what each disk buffer
/// found at open, by sink.
pub fn sink_buffers(
    config: &Config,
    recoveries: &BTreeMap<String, Recovery>,
) -> BTreeMap<String, Vec<SinkBuffer>> {
    let mut out: BTreeMap<String, Vec<SinkBuffer>> = BTreeMap::new();
    for source in config.sources.keys() {
        let buffers = config
            .sinks
            .iter()
            .filter(|(_, s)| s.inputs.iter().any(|i| i == source))
            .map(|(sink, _)| match recoveries.get(sink) {
                Some(r) => SinkBuffer::Disk {
                    sink: sink.clone(),
                    tails: r.chain_tails.clone(),
                    known: r.tails_file == TailsFile::Sound,
                },
                None => SinkBuffer::Memory { sink: sink.clone() },
            })
            .collect();
        out.insert(source.clone(), buffers);
    }
    out
}
