//! The file sink: events as NDJSON lines in files named by a template, acknowledged once written (and fsynced,
//! by default). A write that fails (disk full, directory not writable) is retried with backoff until it
//! succeeds; meanwhile the buffer fills and backpressure reaches the sources, so nothing is lost.
//!
//! An event whose path is its own fault (its fields make a component too long or `.`/`..`, or a name the
//! filesystem refuses) is never retried: it goes to the sink's dead-letter file with the reason, and the rest
//! of its batch is written, so that one crafted event cannot stall the sink.

mod config;
mod template;
mod writer;

pub use config::{FileSinkConfig, Fsync};
pub use template::PathTemplate;

use std::time::{Duration, Instant};

use auditrail_core::buffer::BufferReceiver;
use auditrail_core::retry::Backoff;
use auditrail_core::{EventStatus, Sink, SinkContext, SinkFuture};

use crate::SinkConfigError;
use writer::Writer;

/// How often a write that keeps failing is logged again.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// See the module documentation.
pub struct FileSink {
    config: FileSinkConfig,
    writer: Writer,
}

impl FileSink {
    /// A file sink; fails if the config does not validate.
    pub fn new(config: FileSinkConfig) -> Result<FileSink, SinkConfigError> {
        config.validate()?;
        let writer = Writer::new(&config).map_err(|message| SinkConfigError {
            field: "path",
            message,
        })?;
        Ok(FileSink { config, writer })
    }
}

impl Sink for FileSink {
    fn run(self: Box<Self>, mut input: BufferReceiver, cx: SinkContext) -> SinkFuture {
        Box::pin(async move {
            let FileSink { config, mut writer } = *self;
            let labels = [("sink", cx.name.to_string())];
            let blocked = metrics::gauge!("auditrail_sink_write_blocked", &labels);
            blocked.set(0.0);
            let replays = metrics::counter!("auditrail_sink_replays_skipped_total", &labels);
            replays.increment(0);
            let mut batch = Vec::with_capacity(config.batch_max_events);
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
            loop {
                if input.recv_many(&mut batch, config.batch_max_events).await == 0 {
                    writer.close_all();
                    return Ok(());
                }
                let mut failing_since: Option<Instant> = None;
                let mut last_log: Option<Instant> = None;
                loop {
                    let (w, b, result) = tokio::task::spawn_blocking(move || {
                        let r = writer.write(&batch);
                        (writer, batch, r)
                    })
                    .await?;
                    writer = w;
                    batch = b;
                    match result {
                        Ok(written) => {
                            if let Some(since) = failing_since {
                                blocked.set(0.0);
                                tracing::info!(sink = %cx.name, failed_for = ?since.elapsed(), "writes succeed again");
                            }
                            backoff.reset();
                            let skipped = writer.skipped();
                            if skipped > 0 {
                                replays.increment(skipped);
                                tracing::info!(sink = %cx.name, events = skipped, "events replayed after a crash were already written: not written again");
                            }
                            let refused = take_refused(&mut batch, written.refused, &cx.name);
                            if !refused.is_empty() {
                                cx.metrics.errors.increment(1);
                                // On failure the events are finished as failed (redelivered by their source)
                                // and the error is logged by `reject` itself.
                                let _ = cx.reject(refused);
                            }
                            cx.metrics.events.increment(batch.len() as u64);
                            cx.metrics.bytes.increment(written.bytes);
                            for e in batch.drain(..) {
                                e.finish(EventStatus::Delivered);
                            }
                            break;
                        }
                        Err(err) => {
                            cx.metrics.errors.increment(1);
                            cx.metrics.retries.increment(1);
                            blocked.set(1.0);
                            let since = *failing_since.get_or_insert_with(Instant::now);
                            if last_log.is_none_or(|t| t.elapsed() >= ERROR_LOG_INTERVAL) {
                                last_log = Some(Instant::now());
                                tracing::error!(
                                    sink = %cx.name,
                                    error = %err,
                                    events = batch.len(),
                                    failing_for = ?since.elapsed(),
                                    "cannot write; holding the batch and retrying (sources are held back when the buffer fills)"
                                );
                            }
                            tokio::time::sleep(backoff.next_delay(None)).await;
                        }
                    }
                }
            }
        })
    }
}

/// Takes the events at `refused`'s indices out of `batch` (keeping the others in order), with their reason and
/// a message naming the sink.
fn take_refused(
    batch: &mut Vec<auditrail_core::Event>,
    mut refused: Vec<(usize, &'static str, String)>,
    sink: &str,
) -> Vec<(auditrail_core::Event, &'static str, String)> {
    if refused.is_empty() {
        return Vec::new();
    }
    refused.sort_unstable_by_key(|r| r.0);
    let mut out = Vec::with_capacity(refused.len());
    let mut kept = Vec::with_capacity(batch.len() - refused.len());
    let mut next = refused.into_iter().peekable();
    for (i, e) in batch.drain(..).enumerate() {
        match next.next_if(|r| r.0 == i) {
            Some((_, reason, message)) => {
                out.push((e, reason, format!("file sink `{sink}`: {message}")))
            }
            None => kept.push(e),
        }
    }
    *batch = kept;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditrail_core::buffer::{memory_buffer, MemoryBufferConfig};
    use auditrail_core::{AckBatch, Event};
    use bytes::Bytes;

    fn ev(i: usize, kind: &str) -> Event {
        Event::parse(
            Bytes::from(format!(r#"{{"event":"{kind}","uid":"{i}","time":"2017-02-03T06:54:05Z","n":12345678901234567890}}"#)),
            4096,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn writes_verbatim_lines_and_acknowledges() {
        let dir = tempfile::tempdir().unwrap();
        let path = format!("{}/%Y/{{event}}.ndjson", dir.path().display());
        let sink = FileSink::new(FileSinkConfig::with_path(path)).unwrap();
        let (tx, rx) = memory_buffer("f", &MemoryBufferConfig::default());
        let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel();
        let batch = AckBatch::new(1, ack_tx);
        let mut events = Vec::new();
        for i in 0..10 {
            let mut e = ev(i, if i % 2 == 0 { "a" } else { "b" });
            e.set_finalizer(batch.finalizer());
            events.push(e);
        }
        drop(batch);
        let expected_a: Vec<u8> = events
            .iter()
            .filter(|e| e.kind() == "a")
            .flat_map(|e| [e.raw().as_ref(), b"\n"].concat())
            .collect();
        tx.try_send(events).unwrap();
        drop(tx);
        Box::new(sink)
            .run(rx, SinkContext::new("f", dir.path().into()))
            .await
            .unwrap();
        assert_eq!(ack_rx.recv().await.unwrap().status, EventStatus::Delivered);
        assert_eq!(
            std::fs::read(dir.path().join("2017/a.ndjson")).unwrap(),
            expected_a
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("2017/b.ndjson"))
                .unwrap()
                .lines()
                .count(),
            5
        );
    }

    #[test]
    fn lines_a_crash_replays_are_not_written_twice() {
        let dir = tempfile::tempdir().unwrap();
        let line = |i: usize| [ev(i, "a").raw().as_ref(), b"\n"].concat();
        // A previous life wrote 0-2, and a torn piece of 3, before the crash stopped the buffer's cursor at 0.
        let mut before: Vec<u8> = (0..3).flat_map(line).collect();
        before.extend_from_slice(&line(3)[..10]);
        // A static path, and a template rendering `{event}` (= "a") per event: both compare.
        let cases = [
            (
                dir.path().join("static.ndjson"),
                dir.path().join("static.ndjson").display().to_string(),
            ),
            (
                dir.path().join("a.ndjson"),
                format!("{}/{{event}}.ndjson", dir.path().display()),
            ),
        ];
        for (path, template) in cases {
            std::fs::write(&path, &before).unwrap();
            let mut w = writer::Writer::new(&FileSinkConfig::with_path(template)).unwrap();
            let replay: Vec<Event> = (1..5).map(|i| ev(i, "a")).collect();
            w.write(&replay).unwrap();
            assert_eq!(
                w.skipped(),
                2,
                "{}: 1 and 2 were there already",
                path.display()
            );
            let expected: Vec<u8> = (0..5).flat_map(line).collect();
            assert_eq!(
                std::fs::read(&path).unwrap(),
                expected,
                "{}",
                path.display()
            );
            // Caught up: from here on every event is written, even one whose bytes are an earlier line.
            w.write(&[ev(0, "a")]).unwrap();
            assert_eq!(w.skipped(), 0);
            assert!(std::fs::read(&path).unwrap().ends_with(&line(0)));
        }
    }

    /// Runs a file sink on `template` over one batch of `events` until its buffer is closed and drained.
    async fn write_all(template: &std::path::Path, data_dir: &std::path::Path, events: Vec<Event>) {
        let sink =
            FileSink::new(FileSinkConfig::with_path(template.display().to_string())).unwrap();
        let (tx, rx) = memory_buffer("f", &MemoryBufferConfig::default());
        tx.try_send(events).unwrap();
        drop(tx);
        Box::new(sink)
            .run(rx, SinkContext::new("f", data_dir.into()))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn directories_are_0750_and_files_0640_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // The test process's umask (022 as a rule) would give 0755 to a plain create_dir_all.
        let path = dir.path().join("out/{user}/events.ndjson");
        write_all(&path, dir.path(), vec![ev(1, "a")]).await;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let out = dir.path().join("out");
        let user_dir = std::fs::read_dir(&out)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert_eq!(mode(&out), 0o750, "{}", out.display());
        assert_eq!(mode(&user_dir), 0o750, "{}", user_dir.display());
        assert_eq!(mode(&user_dir.join("events.ndjson")), 0o640);
    }

    #[tokio::test]
    async fn a_partial_last_line_from_a_crash_is_removed_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        std::fs::write(&path, b"{\"whole\":1}\n{\"torn\":").unwrap();
        write_all(&path, dir.path(), vec![ev(1, "a")]).await;
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], "{\"whole\":1}");
        assert!(lines[1].contains("\"uid\":\"1\""));
    }

    #[tokio::test]
    async fn failing_writes_hold_events_until_they_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        // A regular file where the sink wants a directory fails for everyone, root included.
        std::fs::write(out.join("sub"), b"").unwrap();
        let sink = FileSink::new(FileSinkConfig::with_path(format!(
            "{}/sub/events.ndjson",
            out.display()
        )))
        .unwrap();
        let (tx, rx) = memory_buffer("f", &MemoryBufferConfig::default());
        let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel();
        let batch = AckBatch::new(1, ack_tx);
        let mut e = ev(1, "a");
        e.set_finalizer(batch.finalizer());
        drop(batch);
        tx.try_send(vec![e]).unwrap();
        let task = tokio::spawn(Box::new(sink).run(rx, SinkContext::new("f", dir.path().into())));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            ack_rx.try_recv().is_err(),
            "nothing acknowledged while the write fails"
        );
        std::fs::remove_file(out.join("sub")).unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(40), ack_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(outcome.status, EventStatus::Delivered);
        drop(tx);
        task.await.unwrap().unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("sub/events.ndjson"))
                .unwrap()
                .lines()
                .count(),
            1
        );
    }

    fn with_user(i: u64, user: &str) -> Event {
        let v = serde_json::json!({"event":"login","uid":i.to_string(),"time":"2017-02-03T06:54:05Z","user":user});
        Event::parse(Bytes::from(v.to_string()), 1 << 20).unwrap()
    }

    #[tokio::test]
    async fn events_whose_path_is_their_fault_are_dead_lettered_and_the_rest_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        // A field-named directory that is a regular file: the OS refuses, and it is the event's path.
        std::fs::write(out.join("taken"), b"").unwrap();
        let template = format!("{}/{{user}}/{{event}}.ndjson", out.display());
        let sink = FileSink::new(FileSinkConfig::with_path(template)).unwrap();
        let (tx, rx) = memory_buffer("f", &MemoryBufferConfig::default());
        let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel();
        let users = ["a", &"x".repeat(10_000), "..", "taken", "b", "."];
        let mut events = Vec::new();
        for (i, user) in users.iter().enumerate() {
            let batch = AckBatch::new(i as u64, ack_tx.clone());
            let mut e = with_user(i as u64, user);
            e.set_finalizer(batch.finalizer());
            events.push(e);
        }
        tx.try_send(events).unwrap();
        drop(tx);
        let cx = SinkContext::new("f", dir.path().into());
        Box::new(sink).run(rx, cx).await.unwrap();
        let mut status = std::collections::HashMap::new();
        for _ in 0..users.len() {
            let o = ack_rx.recv().await.unwrap();
            status.insert(o.id, o.status);
        }
        let expected = [
            EventStatus::Delivered,
            EventStatus::Rejected,
            EventStatus::Rejected,
            EventStatus::Rejected,
            EventStatus::Delivered,
            EventStatus::Rejected,
        ];
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(
                status[&(i as u64)],
                *want,
                "event {i} (user {:.10})",
                users[i]
            );
        }
        for u in ["a", "b"] {
            let text = std::fs::read_to_string(out.join(u).join("login.ndjson")).unwrap();
            assert_eq!(text.lines().count(), 1);
        }
        // Nothing escaped the template's directories.
        assert!(!dir.path().join("login.ndjson").exists());
        assert!(!out.join("login.ndjson").exists());
        let dl = std::fs::read_to_string(dir.path().join("dead-letter/f.ndjson")).unwrap();
        let records: Vec<serde_json::Value> = dl
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let reasons: Vec<(&str, &str)> = records
            .iter()
            .map(|r| {
                (
                    r["location"].as_str().unwrap(),
                    r["reason"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            reasons,
            [
                ("uid 1", template::REASON_TOO_LONG),
                ("uid 2", template::REASON_UNSAFE_COMPONENT),
                ("uid 3", writer::REASON_UNWRITABLE),
                ("uid 5", template::REASON_UNSAFE_COMPONENT),
            ]
        );
        for r in &records {
            let m = r["message"].as_str().unwrap();
            assert!(m.starts_with("file sink `f`: "), "{m}");
        }
        assert!(records[0]["message"].as_str().unwrap().contains("`user`"));
    }

    #[test]
    fn more_files_than_max_open_files_are_written_and_synced_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut config =
            FileSinkConfig::with_path(format!("{}/{{user}}.ndjson", dir.path().display()));
        config.max_open_files = 4;
        let mut w = writer::Writer::new(&config).unwrap();
        for round in 0..3 {
            let batch: Vec<Event> = (0..50)
                .map(|i| with_user(round * 50 + i, &format!("u{i}")))
                .collect();
            let written = w.write(&batch).unwrap();
            assert!(written.refused.is_empty());
            assert!(w.open_files() <= 4, "{} open", w.open_files());
        }
        for i in 0..50 {
            let text = std::fs::read_to_string(dir.path().join(format!("u{i}.ndjson"))).unwrap();
            assert_eq!(text.lines().count(), 3, "u{i}");
        }
    }
}
