//! The console sink: each event as one line on stdout (or stderr), for trying auditrail out. An event counts as
//! delivered once the line is flushed to the stream.

mod config;

pub use config::{ConsoleSinkConfig, ConsoleTarget};

use std::io::Write;

use auditrail_core::buffer::BufferReceiver;
use auditrail_core::{EventStatus, Sink, SinkContext, SinkFuture};

/// See the module documentation.
pub struct ConsoleSink {
    config: ConsoleSinkConfig,
}

impl ConsoleSink {
    /// A console sink.
    pub fn new(config: ConsoleSinkConfig) -> ConsoleSink {
        ConsoleSink { config }
    }
}

impl Sink for ConsoleSink {
    fn run(self: Box<Self>, mut input: BufferReceiver, cx: SinkContext) -> SinkFuture {
        Box::pin(async move {
            let mut batch = Vec::new();
            loop {
                batch.clear();
                if input.recv_many(&mut batch, 1024).await == 0 {
                    return Ok(());
                }
                let mut buf = Vec::with_capacity(batch.iter().map(|e| e.raw().len() + 1).sum());
                for e in &batch {
                    buf.extend_from_slice(e.raw());
                    buf.push(b'\n');
                }
                let target = self.config.target;
                let written = tokio::task::spawn_blocking(move || match target {
                    ConsoleTarget::Stdout => write_all(std::io::stdout().lock(), &buf),
                    ConsoleTarget::Stderr => write_all(std::io::stderr().lock(), &buf),
                })
                .await?;
                match written {
                    Ok(n) => {
                        cx.metrics.events.increment(batch.len() as u64);
                        cx.metrics.bytes.increment(n as u64);
                        for e in batch.drain(..) {
                            e.finish(EventStatus::Delivered);
                        }
                    }
                    Err(e) => {
                        // A closed stdout will not come back: the events are left unfinished for redelivery.
                        cx.metrics.errors.increment(1);
                        return Err(
                            format!("sink `{}`: writing to {target:?}: {e}", cx.name).into()
                        );
                    }
                }
            }
        })
    }
}

fn write_all(mut w: impl Write, buf: &[u8]) -> std::io::Result<usize> {
    w.write_all(buf)?;
    w.flush()?;
    Ok(buf.len())
}
