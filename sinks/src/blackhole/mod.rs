//! The blackhole sink: acknowledges and counts every event, writes nothing. For benchmarks and for measuring
//! the pipeline without a destination.

mod config;

pub use config::BlackholeSinkConfig;

use auditrail_core::buffer::BufferReceiver;
use auditrail_core::{EventStatus, Sink, SinkContext, SinkFuture};

/// See the module documentation.
pub struct BlackholeSink {
    config: BlackholeSinkConfig,
}

impl BlackholeSink {
    /// A blackhole sink.
    pub fn new(config: BlackholeSinkConfig) -> BlackholeSink {
        BlackholeSink { config }
    }
}

impl Sink for BlackholeSink {
    fn run(self: Box<Self>, mut input: BufferReceiver, cx: SinkContext) -> SinkFuture {
        Box::pin(async move {
            let mut batch = Vec::with_capacity(self.config.batch_max_events);
            loop {
                batch.clear();
                if input
                    .recv_many(&mut batch, self.config.batch_max_events)
                    .await
                    == 0
                {
                    return Ok(());
                }
                let bytes: usize = batch.iter().map(|e| e.raw().len() + 1).sum();
                cx.metrics.events.increment(batch.len() as u64);
                cx.metrics.bytes.increment(bytes as u64);
                for e in batch.drain(..) {
                    e.finish(EventStatus::Delivered);
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditrail_core::buffer::{memory_buffer, MemoryBufferConfig};
    use auditrail_core::{AckBatch, Event};
    use bytes::Bytes;

    #[tokio::test]
    async fn acknowledges_everything() {
        let (tx, rx) = memory_buffer("bh", &MemoryBufferConfig::default());
        let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel();
        let batch = AckBatch::new(1, ack_tx);
        let mut e = Event::parse(
            Bytes::from_static(br#"{"event":"x","time":"2017-02-03T06:54:05Z"}"#),
            1024,
        )
        .unwrap();
        e.set_finalizer(batch.finalizer());
        drop(batch);
        tx.try_send(vec![e]).unwrap();
        drop(tx);
        let cx = SinkContext::new("bh", std::env::temp_dir());
        Box::new(BlackholeSink::new(BlackholeSinkConfig::default()))
            .run(rx, cx)
            .await
            .unwrap();
        assert_eq!(ack_rx.recv().await.unwrap().status, EventStatus::Delivered);
    }
}
