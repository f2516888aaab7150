//! Per-sink buffers: where events wait between the fan-out and a sink.

mod config;
mod memory;

pub use config::{BufferConfig, MemoryBufferConfig, WhenFull};
pub use memory::{memory_buffer, BufferReceiver, BufferSender, Reservation};

/// Creates the buffer a sink's config asks for.
pub fn build(sink: &str, config: &BufferConfig) -> (BufferSender, BufferReceiver) {
    match config {
        BufferConfig::Memory(m) => memory_buffer(sink, m),
    }
}
