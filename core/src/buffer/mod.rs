//! Per-sink buffers: where events wait between the fan-out and a sink.

mod config;
pub mod disk;
mod drops;
mod handles;
mod memory;

pub use config::{BufferConfig, MemoryBufferConfig, WhenFull};
pub use handles::{BufferReceiver, BufferSender, Reservation};
pub use memory::{MemoryReceiver, MemoryReservation, MemorySender};

/// A sink's buffer, ready: its two ends and, for a disk buffer, what its recovery found.
pub struct Built {
    /// The writing end.
    pub sender: BufferSender,
    /// The reading end.
    pub receiver: BufferReceiver,
    /// What opening a disk buffer replayed and skipped.
    pub recovery: Option<disk::Recovery>,
}

/// The directory of sink `sink`'s disk buffer.
pub fn disk_dir(data_dir: &std::path::Path, sink: &str) -> std::path::PathBuf {
    data_dir.join("buffers").join(sink)
}

/// Creates the buffer a sink's config asks for. A disk buffer is opened under `data_dir/buffers/<sink>`;
/// while a previous instance in this process is still closing it (a restart), opening waits for it.
pub async fn build(
    sink: &str,
    config: &BufferConfig,
    data_dir: &std::path::Path,
) -> Result<Built, disk::DiskBufferError> {
    match config {
        BufferConfig::Memory(m) => {
            let (sender, receiver) = memory_buffer(sink, m);
            Ok(Built {
                sender,
                receiver,
                recovery: None,
            })
        }
        BufferConfig::Disk(d) => {
            let dir = disk_dir(data_dir, sink);
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                match disk::open(&dir, sink, d) {
                    Ok((tx, rx, recovery)) => {
                        return Ok(Built {
                            sender: BufferSender::Disk(tx),
                            receiver: BufferReceiver::Disk(rx),
                            recovery: Some(recovery),
                        })
                    }
                    Err(disk::DiskBufferError::Locked { .. })
                        if tokio::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// A memory buffer for `sink`, as the two ends the pipeline uses.
pub fn memory_buffer(sink: &str, config: &MemoryBufferConfig) -> (BufferSender, BufferReceiver) {
    let (tx, rx) = memory::memory_buffer(sink, config);
    (tx.into(), rx.into())
}
