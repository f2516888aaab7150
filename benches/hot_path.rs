//! Micro-benchmarks of the hot path: parse one event, move batches through the fan-out and a memory buffer,
//! encode a batch as NDJSON the way the file sink does, and render the file sink's path per event.
//! `cargo bench --bench hot_path`.

use std::hint::black_box;

use auditrail_core::buffer::{memory_buffer, MemoryBufferConfig};
use auditrail_core::{Event, EventStatus, Fanout};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const LINE: &str = r#"{"event":"session.start","uid":"0192f1c4-8e3a-7b9c-a1d2-3e4f5a6b7c8d","code":"T2000I","time":"2017-02-03T06:54:05.123Z","user":"alice@example.com","login":"dba","server_id":"f84f7386-5e22-45ff-8f7d-b8079742e63c","sid":"8d3895b6-e9dd-11e6-94e4-0242ac110002","addr.local":"10.5.1.15:3022","addr.remote":"10.5.1.20:51234","cluster_name":"prod","size":"80:25","cmd":"a \u003c b"}"#;

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(LINE.len() as u64));
    let line = Bytes::from_static(LINE.as_bytes());
    g.bench_function("teleport_event", |b| {
        b.iter(|| Event::parse(black_box(line.clone()), 1 << 20).unwrap())
    });
    let no_uid = Bytes::from(LINE.replace(r#""uid":"0192f1c4-8e3a-7b9c-a1d2-3e4f5a6b7c8d","#, ""));
    g.bench_function("assign_uid", |b| {
        b.iter(|| Event::parse(black_box(no_uid.clone()), 1 << 20).unwrap())
    });
    g.finish();
}

fn route(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let events: Vec<Event> = (0..1000)
        .map(|_| Event::parse(Bytes::from_static(LINE.as_bytes()), 1 << 20).unwrap())
        .collect();
    let mut g = c.benchmark_group("route");
    g.throughput(Throughput::Elements(1000));
    for sinks in [1usize, 2] {
        let cfg = MemoryBufferConfig {
            max_events: 10_000,
            ..Default::default()
        };
        let (senders, mut receivers): (Vec<_>, Vec<_>) = (0..sinks)
            .map(|i| memory_buffer(&format!("b{i}"), &cfg))
            .unzip();
        let fanout = Fanout::new(senders);
        g.bench_function(format!("fanout_1000_to_{sinks}_sinks"), |b| {
            b.iter_batched(
                || events.clone(),
                |batch| {
                    rt.block_on(async {
                        fanout.send(batch).await;
                        let mut out = Vec::with_capacity(1000);
                        for r in &mut receivers {
                            out.clear();
                            while out.len() < 1000 {
                                r.recv_many(&mut out, 10_000).await;
                            }
                            for e in out.drain(..) {
                                e.finish(EventStatus::Delivered);
                            }
                        }
                    })
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let events: Vec<Event> = (0..1000)
        .map(|_| Event::parse(Bytes::from_static(LINE.as_bytes()), 1 << 20).unwrap())
        .collect();
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1000));
    let mut buf = Vec::with_capacity(1 << 20);
    g.bench_function("ndjson_1000", |b| {
        b.iter(|| {
            buf.clear();
            for e in &events {
                buf.extend_from_slice(e.raw());
                buf.push(b'\n');
            }
            black_box(buf.len())
        })
    });
    g.finish();
}

/// The file sink's per-event path: a template with strftime and two placeholders (each component checked),
/// and a static one (rendered once per batch, but measured per call here).
fn file_path(c: &mut Criterion) {
    use auditrail_sinks::file::PathTemplate;
    let events: Vec<Event> = (0..1000)
        .map(|i| {
            let line = LINE.replace("alice@example.com", &format!("user{}@example.com", i % 97));
            Event::parse(Bytes::from(line), 1 << 20).unwrap()
        })
        .collect();
    let mut g = c.benchmark_group("file_path");
    g.throughput(Throughput::Elements(1000));
    for (name, template) in [
        (
            "fields_1000",
            "/var/log/audit/%Y-%m-%d/{event}/{user}.ndjson",
        ),
        ("static_1000", "/var/log/audit/events.ndjson"),
    ] {
        let mut t = PathTemplate::parse(template).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                for e in &events {
                    let _ = black_box(t.render(black_box(e)));
                }
            })
        });
    }
    g.finish();
}

/// The integrity chain's per-event work: the canonical form, its digest, and linking (one SHA-256 over ~100
/// bytes plus the field's text appended to the event).
fn integrity(c: &mut Criterion) {
    use auditrail_core::integrity::canonical::canonicalize_object;
    use auditrail_core::integrity::chain::{
        content_digest, link, member_prefix, write_member_with,
    };
    let mut g = c.benchmark_group("integrity");
    g.throughput(Throughput::Bytes(LINE.len() as u64));
    let mut scratch = Vec::with_capacity(1024);
    g.bench_function("canonical", |b| {
        b.iter(|| {
            scratch.clear();
            canonicalize_object(
                black_box(LINE.as_bytes()),
                Some("auditrail.integrity"),
                &mut scratch,
            )
            .unwrap();
        })
    });
    g.bench_function("content_digest", |b| {
        b.iter(|| content_digest(black_box(LINE.as_bytes()), &mut scratch).unwrap())
    });
    // What a source does per event with integrity on: the event parsed and its digest taken, in two readings
    // of the text and in one.
    let line = Bytes::from_static(LINE.as_bytes());
    g.bench_function("parse_then_digest", |b| {
        b.iter(|| {
            let mut e = Event::parse(black_box(line.clone()), 1 << 20).unwrap();
            e.compute_digest(&mut scratch);
            e
        })
    });
    g.bench_function("parse_digested", |b| {
        b.iter(|| Event::parse_digested(black_box(line.clone()), 1 << 20, &mut scratch).unwrap())
    });
    let prefix = member_prefix("node-1/teleport");
    let event = Event::parse(Bytes::from_static(LINE.as_bytes()), 1 << 20).unwrap();
    g.bench_function("link_and_append", |b| {
        let mut member = Vec::with_capacity(256);
        b.iter_batched(
            || event.clone(),
            |mut e| {
                let h = link("node-1/teleport", 42, &[1; 32], &[2; 32]);
                member.clear();
                write_member_with(&prefix, 42, &[1; 32], &h, &mut member);
                e.append_member(&member);
                e
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, parse, route, encode, file_path, integrity);
criterion_main!(benches);
