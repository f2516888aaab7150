//! Finding, in the disk buffers, the newest chained event of each stream, so a restarted chain resumes right
//! after it.

use std::collections::BTreeMap;

use auditrail_core::buffer::{self, disk, BufferConfig};
use auditrail_core::integrity::chain::{read_field, Hash};
use auditrail_core::integrity::seal::SEAL_EVENT;

use super::IntegrityError;
use crate::config::Config;

/// The newest chained events of one source found in the disk buffers of all its sinks.
#[derive(Clone, Debug, Default)]
pub struct BufferedTail {
    /// Per stream name (a source has several after a chain reset), the event with the highest seq.
    pub last: BTreeMap<String, Buffered>,
    /// Per stream name, the seqs of the seals found, ascending.
    pub seals: BTreeMap<String, Vec<u64>>,
}

/// One chained event found in a buffer.
#[derive(Clone, Debug)]
pub struct Buffered {
    /// Its stream.
    pub stream: String,
    /// Its seq.
    pub seq: u64,
    /// Its hash.
    pub hash: Hash,
}

/// For each source whose sinks all have disk buffers, what those buffers hold of its chain. Sources with a
/// memory-buffered sink are left out: what such a sink got cannot be read back, so their chain never rolls
/// back.
pub fn scan_buffers(config: &Config) -> Result<BTreeMap<String, BufferedTail>, IntegrityError> {
    let mut out: BTreeMap<String, BufferedTail> = BTreeMap::new();
    for source in config.sources.keys() {
        let sinks: Vec<(&String, &BufferConfig)> = config
            .sinks
            .iter()
            .filter(|(_, s)| s.inputs.iter().any(|i| i == source))
            .map(|(n, s)| (n, &s.buffer))
            .collect();
        if sinks.is_empty()
            || !sinks
                .iter()
                .all(|(_, b)| matches!(b, BufferConfig::Disk(_)))
        {
            continue;
        }
        out.insert(source.clone(), BufferedTail::default());
    }
    if out.is_empty() {
        return Ok(out);
    }
    for (sink, entry) in &config.sinks {
        if !matches!(entry.buffer, BufferConfig::Disk(_))
            || !entry.inputs.iter().any(|i| out.contains_key(i))
        {
            continue;
        }
        let dir = buffer::disk_dir(&config.data_dir, sink);
        let seal_prefix = format!("{{\"event\":\"{SEAL_EVENT}\"");
        disk::for_each_record(&dir, |source, raw| {
            let Some(tail) = out.get_mut(source) else {
                return;
            };
            let Ok(field) = read_field(raw) else {
                return; // unchained (e.g. an auditrail.error report)
            };
            if raw.starts_with(seal_prefix.as_bytes()) {
                tail.seals
                    .entry(field.stream.clone())
                    .or_default()
                    .push(field.seq);
            }
            let newer = tail
                .last
                .get(&field.stream)
                .is_none_or(|l| field.seq > l.seq);
            if newer {
                tail.last.insert(
                    field.stream.clone(),
                    Buffered {
                        stream: field.stream,
                        seq: field.seq,
                        hash: field.hash,
                    },
                );
            }
        })
        .map_err(|e| IntegrityError::Buffer {
            sink: sink.clone(),
            message: e.to_string(),
        })?;
    }
    for t in out.values_mut() {
        for s in t.seals.values_mut() {
            s.sort_unstable();
            s.dedup();
        }
    }
    Ok(out)
}
