//! The Elasticsearch sink against a real OpenSearch-compatible server (osmem-server, installed and started by
//! the harness through `integration-tests/peers/opensearch/`): volume with every field intact, resends that
//! never duplicate, kill -9 of the agent, the server killed mid-run, per-item mapping errors, data streams,
//! ECS, templates and config errors. Every assertion is an exact count.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use auditrail_integration_tests::*;

/// A Teleport-like event of one of four shapes: nested objects, arrays, nulls, dotted keys, `\u003c` escapes,
/// integers past 2^53, floats, booleans, raw and escaped non-ASCII. Every field has the same JSON type in every
/// event, so that dynamic mappings never conflict. Spread over four days (four daily indices).
fn es_event(prefix: &str, i: usize) -> String {
    let uid = format!("{prefix}{i}");
    let common = format!(
        r#""event":"session.start","uid":"{uid}","code":"T2000I","time":"2017-02-0{day}T06:54:05.{ms:03}Z","user":"user{u}@example.com","login":"dba","server_id":"f84f7386-5e22-45ff-8f7d-b8079742e63c","sid":"8d3895b6-e9dd-11e6-94e4-{i:012}","addr.local":"10.5.1.15:3022","addr.remote":"10.5.1.{r}:51234","cluster_name":"prod""#,
        day = 3 + i % 4,
        ms = i % 1000,
        u = i % 97,
        r = i % 250,
    );
    match i % 4 {
        0 => format!(
            r#"{{{common},"cmd":"a \u003c b \u0026\u0026 c \u003e d","big":{},"ratio":0.25,"ok":true}}"#,
            9_007_199_254_740_993u64 + i as u64
        ),
        1 => format!(
            r#"{{{common},"tags":{{"env":"prod","team":{{"name":"db","oncall":["ann","bo"]}}}},"exit":null,"argv":["-la","/var/log"]}}"#
        ),
        2 => format!(
            r#"{{{common},"note":"caf\u00e9 é 😀","empty":{{}},"none":[],"nested.dot":{{"k.v":"x"}}}}"#
        ),
        _ => format!(r#"{{"ei":{i},{common},"size":"80:24","interactive":true}}"#),
    }
}

fn write_es_events(path: &Path, prefix: &str, from: usize, n: usize) {
    let mut f = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap(),
    );
    for i in from..from + n {
        writeln!(f, "{}", es_event(prefix, i)).unwrap();
    }
    f.flush().unwrap();
}

fn config(d: &Path, data: &str, api: u16, url: &str, sink_extra: &str) -> String {
    format!(
        r#"
data_dir = "{d}/{data}"
shutdown_timeout = "20s"
[api]
address = "127.0.0.1:{api}"
[sources.teleport]
type = "file"
include = ["{d}/in/*.log"]
poll_interval = "20ms"
checkpoint_interval = "100ms"
[sinks.es]
type = "elasticsearch"
inputs = ["teleport"]
endpoint = "{url}"
batch = {{ max_events = 1000, timeout = "100ms" }}
retry = {{ initial_backoff = "50ms", max_backoff = "1s" }}
{sink_extra}
"#,
        d = d.display()
    )
}

/// Like [`wait_for`], checking every 250 ms: a `_count` over a large in-memory index is not free, and polling
/// it every 20 ms would slow the server down.
fn wait_slowly(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(timeout, what, || {
        cond() || {
            std::thread::sleep(Duration::from_millis(250));
            false
        }
    });
}

fn es_metric(agent: &Agent, name: &str, result: Option<&str>) -> u64 {
    let mut labels = vec![("sink", "es")];
    if let Some(r) = result {
        labels.push(("result", r));
    }
    agent.metric(name, &labels) as u64
}

/// The `_source` of the document whose `_id` (the event's `uid`) is `uid`, as the server wrote it.
fn source_of(os: &Osmem, index: &str, uid: &str) -> Option<String> {
    let q = serde_json::json!({ "query": { "ids": { "values": [uid] } } });
    let (status, body) = os.request("POST", &format!("/{index}/_search"), &q.to_string());
    assert_eq!(status, 200, "{body}");
    first_source(&body)
}

/// Which of `{prefix}{from..from+n}` the server has, as ids.
fn ids_present(os: &Osmem, index: &str, prefix: &str, n: usize) -> HashSet<String> {
    let mut found = HashSet::new();
    let all: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    for chunk in all.chunks(5000) {
        found.extend(os.existing_ids(index, chunk));
    }
    found
}

#[test]
fn two_hundred_thousand_events_indexed_once_intact_and_resends_never_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(os) = Osmem::start(d) else { return };
    std::fs::create_dir_all(d.join("in")).unwrap();
    const N: usize = 200_000;
    write_es_events(&d.join("in/a.log"), "e-", 0, N);
    let api = free_port();
    let cfg = config(d, "data", api, &os.url(), "manage_template = true");
    let started = std::time::Instant::now();
    let agent = Agent::start(d, &cfg, api);
    wait_slowly(Duration::from_secs(600), "200,000 events delivered", || {
        es_metric(&agent, "auditrail_sink_events_total", None) >= N as u64
    });
    let took = started.elapsed();
    println!(
        "200,000 events into osmem-server in {took:?} ({:.0} events/s)",
        N as f64 / took.as_secs_f64()
    );
    assert_eq!(os.count("auditrail-*"), N as u64);
    for day in 3..7 {
        assert_eq!(
            os.count(&format!("auditrail-2017.02.0{day}")),
            (N / 4) as u64
        );
    }
    assert_eq!(
        es_metric(&agent, "auditrail_sink_bulk_items_total", Some("created")),
        N as u64
    );
    assert_eq!(es_metric(&agent, "auditrail_sink_rejected_total", None), 0);
    assert!(agent.log_text().contains("installed the index template"));
    // Every field intact: `_source` is the line exactly, byte for byte, for a sample of every shape.
    for i in (0..N).step_by(N / 400).chain([1, 2, 3, N - 1]) {
        let uid = format!("e-{i}");
        let source =
            source_of(&os, "auditrail-*", &uid).unwrap_or_else(|| panic!("{uid} not found"));
        assert_eq!(source, es_event("e-", i), "{uid}");
    }
    // The template typed the Teleport fields.
    let mapping = os.json("GET", "/auditrail-2017.02.03/_mapping", "");
    let props = &mapping["auditrail-2017.02.03"]["mappings"]["properties"];
    assert_eq!(props["uid"]["type"], "keyword");
    assert_eq!(props["time"]["type"], "date");
    assert_eq!(props["addr"]["properties"]["remote"]["type"], "keyword");
    assert!(agent.terminate(Duration::from_secs(30)).success());

    // Resend every already-indexed batch: a fresh data_dir has no checkpoints, so the whole file is read
    // and sent again, as after a restart that lost its acknowledgements.
    let cfg = config(d, "data-again", api, &os.url(), "manage_template = true");
    let agent = Agent::start(d, &cfg, api);
    wait_slowly(Duration::from_secs(600), "every resend answered", || {
        es_metric(&agent, "auditrail_sink_events_total", None) == N as u64
    });
    assert_eq!(
        es_metric(&agent, "auditrail_sink_bulk_items_total", Some("duplicate")),
        N as u64
    );
    assert_eq!(
        es_metric(&agent, "auditrail_sink_bulk_items_total", Some("created")),
        0
    );
    assert!(agent
        .log_text()
        .contains("index template is installed and up to date"));
    assert!(agent.terminate(Duration::from_secs(30)).success());
    assert_eq!(os.count("auditrail-*"), N as u64);
    println!("resend of 200,000 indexed events: 200,000 answered 409, still 200,000 documents");
}

#[test]
fn kill_9_before_acknowledgements_never_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(os) = Osmem::start(d) else { return };
    std::fs::create_dir_all(d.join("in")).unwrap();
    const N: usize = 100_000;
    write_es_events(&d.join("in/a.log"), "k-", 0, N);
    let api = free_port();
    let cfg = config(d, "data", api, &os.url(), "");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..5 {
        let agent = Agent::start(d, &cfg, api);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(200 + seed % 600));
        agent.kill9();
        println!(
            "kill -9 #{round}: {} documents so far",
            os.count("auditrail-*")
        );
    }
    let agent = Agent::start(d, &cfg, api);
    wait_slowly(Duration::from_secs(600), "every document", || {
        os.count("auditrail-*") >= N as u64
    });
    // Let the last acknowledgements reach the source, then stop cleanly.
    wait_for(Duration::from_secs(30), "the source acknowledged", || {
        es_metric(&agent, "auditrail_sink_events_total", None) > 0
            && agent.metric("auditrail_buffer_events", &[("sink", "es")]) == 0.0
    });
    let resent = es_metric(&agent, "auditrail_sink_bulk_items_total", Some("duplicate"));
    assert!(agent.terminate(Duration::from_secs(30)).success());
    assert_eq!(os.count("auditrail-*"), N as u64);
    let present = ids_present(&os, "auditrail-*", "k-", N);
    assert_eq!(present.len(), N, "lost {}", N - present.len());
    println!("5 x kill -9: {N} events, {N} documents, {resent} resent documents answered 409 after the last restart");
}

#[test]
fn server_killed_mid_run_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(mut os) = Osmem::start(d) else {
        return;
    };
    std::fs::create_dir_all(d.join("in")).unwrap();
    const N: usize = 100_000;
    write_es_events(&d.join("in/a.log"), "s-", 0, N);
    let api = free_port();
    let cfg = config(
        d,
        "data",
        api,
        &os.url(),
        "concurrency = 4\nbatch = { max_events = 500, timeout = \"100ms\" }",
    )
    .replace("batch = { max_events = 1000, timeout = \"100ms\" }\n", "");
    let agent = Agent::start(d, &cfg, api);
    wait_slowly(Duration::from_secs(300), "a quarter indexed", || {
        os.count("auditrail-*") >= (N / 4) as u64
    });
    // Freeze the agent with requests in flight, let the server finish what it fully received, and take
    // what it holds: the in-memory server loses exactly that when it is killed.
    unsafe { libc::kill(agent.pid(), libc::SIGSTOP) };
    let mut last = u64::MAX;
    wait_for(Duration::from_secs(10), "the server to settle", || {
        std::thread::sleep(Duration::from_millis(300));
        let c = os.count("auditrail-*");
        std::mem::replace(&mut last, c) == c
    });
    let before = ids_present(&os, "auditrail-*", "s-", N);
    assert!(
        before.len() < N,
        "the server got everything before the kill"
    );
    os.kill9();
    unsafe { libc::kill(agent.pid(), libc::SIGCONT) };
    // The agent finds the server gone and holds its events, retrying.
    wait_for(Duration::from_secs(30), "failed requests", || {
        es_metric(
            &agent,
            "auditrail_sink_bulk_requests_total",
            Some("transient_error"),
        ) > 0
    });
    std::thread::sleep(Duration::from_millis(500));
    let os = Osmem::start_on(d, os.port);
    wait_slowly(Duration::from_secs(300), "the rest indexed", || {
        os.count("auditrail-*") as usize + before.len() >= N
    });
    wait_for(Duration::from_secs(30), "the buffer emptied", || {
        agent.metric("auditrail_buffer_events", &[("sink", "es")]) == 0.0
    });
    assert!(agent.terminate(Duration::from_secs(30)).success());
    let after = ids_present(&os, "auditrail-*", "s-", N);
    let lost = (0..N)
        .map(|i| format!("s-{i}"))
        .filter(|u| !before.contains(u) && !after.contains(u))
        .count();
    let both = before.intersection(&after).count();
    println!(
        "server killed mid-run: {} documents before the kill, {} after the restart, {both} in both (acknowledged by neither before the kill), {lost} lost",
        before.len(),
        after.len()
    );
    assert_eq!(lost, 0);
    assert_eq!(before.len() + after.len() - both, N);
    assert_eq!(os.count("auditrail-*") as usize, after.len());
}

#[test]
fn mixed_item_errors_dead_letter_exactly_the_bad_documents() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(os) = Osmem::start(d) else { return };
    // `detail` is a keyword: an event with an object there is a mapping error.
    os.json(
        "PUT",
        "/mixed",
        r#"{"mappings":{"properties":{"detail":{"type":"keyword"}}}}"#,
    );
    std::fs::create_dir_all(d.join("in")).unwrap();
    const N: usize = 5_000;
    let mut f = std::fs::File::create(d.join("in/a.log")).unwrap();
    let (mut objects, mut bigs, mut long_ids) = (HashSet::new(), HashSet::new(), HashSet::new());
    for i in 0..N {
        let mut uid = format!("m-{i}");
        let detail = if i % 10 == 3 {
            objects.insert(uid.clone());
            r#"{"nested":"object"}"#.to_string()
        } else {
            format!(r#""text {i}""#)
        };
        // A number past the range of `long`: refused by the dynamic mapping, as Elasticsearch does.
        let big = if i % 250 == 7 {
            bigs.insert(uid.clone());
            r#","n":123456789012345678901"#
        } else {
            ""
        };
        if i == 4242 {
            uid = format!("m-{}", "x".repeat(600));
            long_ids.insert(uid.clone());
        }
        writeln!(
            f,
            r#"{{"event":"exec","uid":"{uid}","time":"2017-02-03T06:54:05Z","detail":{detail}{big}}}"#
        )
        .unwrap();
    }
    drop(f);
    let bad = objects.len() + bigs.len() + long_ids.len();
    let api = free_port();
    let agent = Agent::start(
        d,
        &config(d, "data", api, &os.url(), "index = \"mixed\""),
        api,
    );
    wait_for(Duration::from_secs(60), "every event handled", || {
        es_metric(&agent, "auditrail_sink_events_total", None)
            + es_metric(&agent, "auditrail_sink_rejected_total", None)
            >= N as u64
    });
    assert_eq!(
        es_metric(&agent, "auditrail_sink_events_total", None),
        (N - bad) as u64
    );
    assert_eq!(
        es_metric(&agent, "auditrail_sink_rejected_total", None),
        bad as u64
    );
    assert_eq!(
        es_metric(
            &agent,
            "auditrail_sink_bulk_items_total",
            Some("mapping_error")
        ),
        (objects.len() + bigs.len()) as u64
    );
    assert!(agent.terminate(Duration::from_secs(30)).success());
    assert_eq!(os.count("mixed"), (N - bad) as u64);
    let text = std::fs::read_to_string(d.join("data/dead-letter/es.ndjson")).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), bad);
    let mut seen = HashSet::new();
    for r in &records {
        let raw: serde_json::Value = serde_json::from_str(r["raw"].as_str().unwrap()).unwrap();
        let uid = raw["uid"].as_str().unwrap().to_string();
        let message = r["message"].as_str().unwrap();
        if objects.contains(&uid) {
            assert_eq!(r["reason"], "mapping_error");
            assert!(
                message.contains("mapper_parsing_exception")
                    && message.contains("failed to parse field [detail]"),
                "{message}"
            );
        } else if bigs.contains(&uid) {
            assert_eq!(r["reason"], "mapping_error");
            assert!(
                message.contains("failed to parse field [n]") && message.contains("out of range"),
                "{message}"
            );
        } else {
            assert!(long_ids.contains(&uid), "unexpected dead letter {uid}");
            assert_eq!(r["reason"], "id_too_long");
        }
        assert!(seen.insert(uid));
    }
    println!(
        "mixed bulk: {} indexed, {} object-for-keyword and {} out-of-range numbers refused by the server, {} id too long refused locally",
        N - bad,
        objects.len(),
        bigs.len(),
        long_ids.len()
    );
}

#[test]
fn data_streams_ecs_and_templates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(os) = Osmem::start(d) else { return };
    // A template of that name exists with another body: it must be left as it is.
    let theirs = r#"{"index_patterns":["keep-*"],"priority":5,"template":{"mappings":{"properties":{"x":{"type":"keyword"}}}}}"#;
    os.json("PUT", "/_index_template/keep", theirs);
    std::fs::create_dir_all(d.join("in")).unwrap();
    const N: usize = 40;
    write_es_events(&d.join("in/a.log"), "d-", 0, N);
    let api = free_port();
    let url = os.url();
    let cfg = format!(
        r#"
data_dir = "{d}/data"
[api]
address = "127.0.0.1:{api}"
[sources.teleport]
type = "file"
include = ["{d}/in/*.log"]
poll_interval = "20ms"
[sinks.ds]
type = "elasticsearch"
inputs = ["teleport"]
endpoint = "{url}"
mode = "data_stream"
batch = {{ timeout = "50ms" }}
[sinks.ecs]
type = "elasticsearch"
inputs = ["teleport"]
endpoint = "{url}"
index = "ecs-%Y.%m"
encoding = {{ schema = "ecs" }}
manage_template = true
template_name = "auditrail-ecs"
compression = "none"
batch = {{ timeout = "50ms" }}
[sinks.keep]
type = "elasticsearch"
inputs = ["teleport"]
endpoint = "{url}"
index = "keep-%Y"
manage_template = true
template_name = "keep"
batch = {{ timeout = "50ms" }}
"#,
        d = d.display()
    );
    let agent = Agent::start(d, &cfg, api);
    let handled = |s: &str| {
        agent.metric("auditrail_sink_events_total", &[("sink", s)])
            + agent.metric("auditrail_sink_rejected_total", &[("sink", s)])
    };
    wait_for(Duration::from_secs(30), "the first events", || {
        ["ds", "ecs", "keep"].iter().all(|s| handled(s) == N as f64)
    });
    // Then Teleport's port event: a plain `addr` after `addr.local` / `addr.remote` (Teleport's field order).
    // The cluster expands the dotted names into an `addr` object, so as it is the document cannot be mapped.
    let port_event = r#"{"event":"port","uid":"d-port","code":"T3003I","time":"2017-02-03T06:54:05Z","user":"alice","addr.local":"10.5.1.15:3022","addr.remote":"10.5.1.77:51234","addr":"127.0.0.1:5432"}"#;
    writeln!(
        std::fs::OpenOptions::new()
            .append(true)
            .open(d.join("in/a.log"))
            .unwrap(),
        "{port_event}"
    )
    .unwrap();
    wait_for(Duration::from_secs(30), "every sink done", || {
        ["ds", "ecs", "keep"]
            .iter()
            .all(|s| handled(s) == (N + 1) as f64)
    });
    // As it is, the port event cannot be mapped where `addr` is an object (Elasticsearch refuses it;
    // osmem-server's answer for it varies), so only the ECS sink, whose template stores
    // `teleport.audit.addr` unindexed, is sure to index it. None of the three loses it silently.
    assert_eq!(
        agent.metric("auditrail_sink_events_total", &[("sink", "ecs")]),
        (N + 1) as f64
    );
    let log = agent.log_text();
    assert!(agent.terminate(Duration::from_secs(30)).success());

    // Data stream: `@timestamp` in front, the event's own bytes after it.
    assert!(os.count("logs-teleport.audit-default") >= N as u64);
    for i in [0, 1, 2, 3] {
        let line = es_event("d-", i);
        let got = source_of(&os, "logs-teleport.audit-default", &format!("d-{i}")).unwrap();
        let time = serde_json::from_str::<serde_json::Value>(&line).unwrap()["time"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(got, format!(r#"{{"@timestamp":"{time}",{}"#, &line[1..]));
    }

    // ECS: searchable by ECS fields, the original verbatim under teleport.audit.
    assert_eq!(os.count("ecs-*"), (N + 1) as u64);
    let q = |field: &str, value: &str| {
        let body = serde_json::json!({ "query": { "term": { field: value } }, "size": 100 });
        let v = os.json("POST", "/ecs-*/_search", &body.to_string());
        v["hits"]["total"]["value"].as_u64().unwrap()
    };
    assert_eq!(q("event.action", "session.start"), N as u64);
    assert_eq!(q("event.action", "port"), 1);
    assert_eq!(q("source.ip", "10.5.1.77"), 1);
    assert_eq!(q("event.id", "d-5"), 1);
    assert_eq!(q("user.name", "user5@example.com"), 1);
    assert_eq!(q("source.ip", "10.5.1.5"), 1);
    assert_eq!(
        q("host.id", "f84f7386-5e22-45ff-8f7d-b8079742e63c"),
        N as u64
    );
    let body = serde_json::json!({ "query": { "term": { "event.id": "d-6" } } });
    let (_, resp) = os.request("POST", "/ecs-*/_search", &body.to_string());
    let source = first_source(&resp).unwrap();
    assert!(
        source.ends_with(&format!(
            r#""teleport":{{"audit":{}}}}}"#,
            es_event("d-", 6)
        )),
        "{source}"
    );
    let mapping = os.json("GET", "/ecs-2017.02/_mapping", "");
    let props = &mapping["ecs-2017.02"]["mappings"]["properties"];
    assert_eq!(props["event"]["properties"]["action"]["type"], "keyword");
    assert_eq!(props["source"]["properties"]["ip"]["type"], "ip");
    assert!(log.contains("installed the index template"), "{log}");

    // The foreign template is untouched, and the log says so.
    let kept = os.json("GET", "/_index_template/keep", "");
    assert_eq!(kept["index_templates"][0]["index_template"]["priority"], 5);
    assert!(
        log.contains("exists with a different body; leaving it alone"),
        "{log}"
    );
    assert!(os.count("keep-*") >= N as u64);
}

#[test]
fn bad_settings_are_reported_by_validate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (sink, expected) in [
        ("index = \"Audit-%Y\"", "index names are lower-case"),
        ("mode = \"data_stream\"\nop_type = \"index\"", "data streams accept only op_type = \"create\""),
        ("auth = { strategy = \"basic\", user = \"elastic\", password = \"${AUDITRAIL_TEST_UNSET_PW}\" }", "AUDITRAIL_TEST_UNSET_PW"),
        ("batch = { max_event = 5 }", "unknown field `max_event`"),
    ] {
        let path = d.join("bad.toml");
        std::fs::write(
            &path,
            format!(
                "[sources.t]\ntype = \"http\"\naddress = \"127.0.0.1:1\"\n[sinks.es]\ntype = \"elasticsearch\"\ninputs = [\"t\"]\nendpoint = \"https://es.example.com:9200\"\n{sink}\n"
            ),
        )
        .unwrap();
        let out = std::process::Command::new(binary())
            .args(["validate", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{sink}: {text}");
        assert!(text.contains("bad.toml:"), "{sink}: {text}");
        assert!(text.contains(expected), "{sink}: {text}");
    }
    // A password from the environment never shows in validate's output, even in an error about that table.
    let path = d.join("secret.toml");
    std::fs::write(
        &path,
        "[sources.t]\ntype = \"http\"\naddress = \"127.0.0.1:1\"\n[sinks.es]\ntype = \"elasticsearch\"\ninputs = [\"t\"]\nendpoint = \"https://es.example.com:9200\"\nauth = { strategy = \"basic\", user = \"elastic\", password = \"${AUDITRAIL_TEST_PW}\" }\nconcurrency = 0\n",
    )
    .unwrap();
    let out = std::process::Command::new(binary())
        .args(["validate", "--config"])
        .arg(&path)
        .env("AUDITRAIL_TEST_PW", "s3cr3t-hunter2")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(text.contains("concurrency"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}
