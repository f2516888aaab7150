//! Per-sink buffers: where events wait between the fan-out and a sink.

mod config;
mod handles;
mod memory;

pub use config::{BufferConfig, MemoryBufferConfig, WhenFull};
pub use handles::{BufferReceiver, BufferSender, Reservation};
pub use memory::{MemoryReceiver, MemoryReservation, MemorySender};

/// Creates the buffer a sink's config asks for.
pub fn build(sink: &str, config: &BufferConfig) -> (BufferSender, BufferReceiver) {
    match config {
        BufferConfig::Memory(m) => memory_buffer(sink, m),
    }
}

/// A memory buffer for `sink`, as the two ends the pipeline uses.
pub fn memory_buffer(sink: &str, config: &MemoryBufferConfig) -> (BufferSender, BufferReceiver) {
    let (tx, rx) = memory::memory_buffer(sink, config);
    (tx.into(), rx.into())
}
