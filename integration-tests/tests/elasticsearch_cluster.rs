//! The Elasticsearch sink against a cluster of two nodes, and `/ready`, with real servers: two osmem-server
//! processes (installed and started as in `elasticsearch.rs`; `AUDITRAIL_REQUIRE_OPENSEARCH=1` makes a missing
//! one a failure). One node is killed (SIGKILL) mid-run: nothing is lost, everything after goes to the other
//! node, and the killed one, started again on its port, gets traffic again once its health check passes.
//! `/ready` answers 503 naming the sink while the sink has never reached its server, 200 once it has.
//!
//! osmem-server nodes are independent in-memory servers, not one cluster: what a node held is gone when it is
//! killed. So, as in `server_killed_mid_run_loses_nothing`, the agent is frozen (SIGSTOP) before the kill, the
//! servers settle, and what the doomed node holds is taken down first; an event counts as delivered when it is
//! in that record or on a node afterwards. A document may be on both nodes (indexed by the killed node, its
//! answer lost with it, and sent again to the other): at least once, as the delivery promise says, and never
//! twice on one node (`_id` = `uid` with `op_type = create`).

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use auditrail_integration_tests::*;

/// A Teleport-like event that every node maps the same way.
fn cluster_event(uid: &str, i: usize) -> String {
    format!(
        r#"{{"event":"session.start","uid":"{uid}","code":"T2000I","time":"2017-02-03T06:54:05.{:03}Z","user":"user{}@example.com","login":"dba","server_id":"f84f7386-5e22","sid":"8d3895b6-e9dd-11e6-94e4-{i:012}","addr.remote":"10.5.1.{}:51234","cluster_name":"prod"}}"#,
        i % 1000,
        i % 97,
        i % 250
    )
}

/// Appends events `{prefix}0..n` to `path`.
fn append_events(path: &Path, prefix: &str, n: usize) {
    let mut f = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap(),
    );
    for i in 0..n {
        writeln!(f, "{}", cluster_event(&format!("{prefix}{i}"), i)).unwrap();
    }
    f.flush().unwrap();
}

/// Which of `{prefix}0..n` `node` holds in index `cluster` (none while the index does not exist).
fn ids_on(node: &Osmem, prefix: &str, n: usize) -> HashSet<String> {
    if node.count("cluster") == 0 {
        return HashSet::new();
    }
    let all: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    let mut found = HashSet::new();
    for chunk in all.chunks(5000) {
        found.extend(node.existing_ids("cluster", chunk));
    }
    found
}

/// Like [`wait_for`], checking every 250 ms (a `_count` or an ids query is not free for the server).
fn wait_slowly(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(timeout, what, || {
        cond() || {
            std::thread::sleep(Duration::from_millis(250));
            false
        }
    });
}

fn node_up(agent: &Agent, node: &Osmem) -> f64 {
    let endpoint = format!("{}/", node.url());
    agent.metric(
        "auditrail_sink_node_up",
        &[("sink", "es"), ("endpoint", &endpoint)],
    )
}

fn removals(agent: &Agent, node: &Osmem) -> f64 {
    let endpoint = format!("{}/", node.url());
    agent.metric(
        "auditrail_sink_node_removals_total",
        &[("sink", "es"), ("endpoint", &endpoint)],
    )
}

fn config(d: &Path, api: u16, endpoints: &str) -> String {
    format!(
        r#"
data_dir = "{d}/data"
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
{endpoints}
index = "cluster"
concurrency = 4
batch = {{ max_events = 500, timeout = "100ms" }}
retry = {{ initial_backoff = "50ms", max_backoff = "1s" }}
"#,
        d = d.display()
    )
}

#[test]
fn two_nodes_one_killed_mid_run_loses_nothing_and_gets_traffic_again_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(mut a) = Osmem::start(d) else { return };
    let b = Osmem::start_on(d, free_port());
    let a_port = a.port;
    std::fs::create_dir_all(d.join("in")).unwrap();
    let input = d.join("in/a.log");
    const N: usize = 60_000;
    append_events(&input, "f-", N);
    let api = free_port();
    let cfg = config(
        d,
        api,
        &format!("endpoints = [\"{}\", \"{}\"]", a.url(), b.url()),
    );
    let agent = Agent::start(d, &cfg, api);
    wait_slowly(Duration::from_secs(300), "a quarter indexed", || {
        a.count("cluster") + b.count("cluster") >= (N / 4) as u64
    });
    // Round robin: both nodes take documents.
    assert!(a.count("cluster") > 0 && b.count("cluster") > 0);

    // Freeze the agent with requests in flight, let both nodes finish what they fully received, and take down
    // what a holds: killing it loses exactly that.
    unsafe { libc::kill(agent.pid(), libc::SIGSTOP) };
    let mut last = (u64::MAX, u64::MAX);
    wait_for(Duration::from_secs(10), "the servers to settle", || {
        std::thread::sleep(Duration::from_millis(300));
        let c = (a.count("cluster"), b.count("cluster"));
        std::mem::replace(&mut last, c) == c
    });
    let on_a_before_kill = ids_on(&a, "f-", N);
    let on_b_before_kill = ids_on(&b, "f-", N).len();
    assert!(
        on_a_before_kill.len() + on_b_before_kill < N,
        "everything was indexed before the kill"
    );
    a.kill9();
    unsafe { libc::kill(agent.pid(), libc::SIGCONT) };

    // The agent finds a gone, takes it out and sends its batches to b.
    wait_for(Duration::from_secs(30), "a taken out", || {
        node_up(&agent, &a) == 0.0
    });
    assert_eq!(removals(&agent, &a), 1.0);
    assert_eq!(node_up(&agent, &b), 1.0);
    // Events written after the kill: all of them go to b.
    const LATER: usize = 5_000;
    append_events(&input, "g-", LATER);
    wait_slowly(Duration::from_secs(300), "the rest on b", || {
        b.count("cluster") as usize + on_a_before_kill.len() >= N + LATER
            && agent.metric("auditrail_buffer_events", &[("sink", "es")]) == 0.0
            && ids_on(&b, "g-", LATER).len() == LATER
            && {
                let on_b = ids_on(&b, "f-", N);
                (0..N)
                    .map(|i| format!("f-{i}"))
                    .all(|u| on_a_before_kill.contains(&u) || on_b.contains(&u))
            }
    });
    let on_b = ids_on(&b, "f-", N);
    let lost = (0..N)
        .map(|i| format!("f-{i}"))
        .filter(|u| !on_a_before_kill.contains(u) && !on_b.contains(u))
        .count();
    let both = on_a_before_kill.intersection(&on_b).count();
    assert_eq!(lost, 0);
    assert_eq!(ids_on(&b, "g-", LATER).len(), LATER);
    // Never twice on one node: b holds exactly one document per uid it has.
    assert_eq!(b.count("cluster") as usize, on_b.len() + LATER);
    assert!(
        agent.metric(
            "auditrail_sink_bulk_requests_total",
            &[("sink", "es"), ("result", "transient_error")]
        ) > 0.0
    );
    let log = agent.log_text();
    assert!(log.contains("node taken out of the rotation"), "{log}");
    // The batch of the request that failed on a went straight to b.
    assert!(
        log.contains("bulk request failed on this node; sending the batch to the next node now"),
        "{log}"
    );
    println!(
        "node a killed mid-run: {} documents on a before the kill, {on_b_before_kill} on b then, {} on b after, {both} on both, {lost} lost; {LATER} later events all on b",
        on_a_before_kill.len(),
        on_b.len()
    );

    // a again, empty, on its port: its health check passes and it takes its share of new events.
    let a = Osmem::start_on(d, a_port);
    wait_for(Duration::from_secs(30), "a back in the rotation", || {
        node_up(&agent, &a) == 1.0
    });
    assert!(agent
        .log_text()
        .contains("node passed its health check; back in the rotation"));
    const AFTER: usize = 5_000;
    append_events(&input, "h-", AFTER);
    wait_slowly(
        Duration::from_secs(120),
        "the events after the restart",
        || {
            agent.metric("auditrail_buffer_events", &[("sink", "es")]) == 0.0
                && ids_on(&a, "h-", AFTER)
                    .union(&ids_on(&b, "h-", AFTER))
                    .count()
                    == AFTER
        },
    );
    let h_on_a = ids_on(&a, "h-", AFTER).len();
    let h_on_b = ids_on(&b, "h-", AFTER).len();
    assert!(h_on_a > 0, "a got no traffic after its restart");
    assert!(h_on_b > 0, "b got no traffic after a came back");
    // a was empty when it came back and got nothing from before.
    assert_eq!(a.count("cluster") as usize, h_on_a);
    assert!(agent.terminate(Duration::from_secs(30)).success());
    println!("after a's restart: {h_on_a} of {AFTER} new events on a, {h_on_b} on b");
}

/// `/ready` as (status, parsed body).
fn ready(api: u16) -> (u16, serde_json::Value) {
    let (status, body) = http("GET", api, "/ready", &[], b"").expect("GET /ready");
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("/ready body {body:?}: {e}"));
    (status, v)
}

#[test]
fn ready_is_503_naming_the_sink_until_it_reaches_its_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    if osmem_binary().is_none() {
        return;
    }
    std::fs::create_dir_all(d.join("in")).unwrap();
    // Nobody listens there yet.
    let port = free_port();
    let api = free_port();
    let cfg = config(d, api, &format!("endpoint = \"http://127.0.0.1:{port}\""));
    let agent = Agent::start(d, &cfg, api);
    assert_eq!(
        http("GET", api, "/health", &[], b"").unwrap().0,
        200,
        "alive, whatever the sink"
    );
    // The idle sink probes its server and records why it cannot reach it.
    wait_for(
        Duration::from_secs(30),
        "the sink's first failed probe",
        || ready(api).1["sinks"]["es"]["last_error"].is_string(),
    );
    let (status, v) = ready(api);
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["status"], "not_ready", "{v}");
    assert_eq!(v["sources"]["teleport"]["state"], "running", "{v}");
    assert_eq!(v["sinks"]["es"]["state"], "starting", "{v}");
    assert_eq!(v["sinks"]["es"]["contacted"], false, "{v}");
    let error = v["sinks"]["es"]["last_error"].as_str().unwrap();
    assert!(
        error.contains(&format!("127.0.0.1:{port}")) && error.to_lowercase().contains("connect"),
        "{error}"
    );
    // Still 503 a while later: a sink that never made contact is not ready, however long it tries.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(ready(api).0, 503);

    let os = Osmem::start_on(d, port);
    wait_for(Duration::from_secs(30), "/ready 200", || {
        ready(api).0 == 200
    });
    let (_, v) = ready(api);
    assert_eq!(v["status"], "ready", "{v}");
    assert_eq!(v["sinks"]["es"]["state"], "running", "{v}");
    assert_eq!(v["sinks"]["es"]["contacted"], true, "{v}");
    // And it does deliver.
    append_events(&d.join("in/a.log"), "r-", 10);
    wait_slowly(Duration::from_secs(30), "10 documents", || {
        os.count("cluster") == 10
    });
    assert!(agent.terminate(Duration::from_secs(30)).success());
}

#[test]
fn endpoint_and_endpoints_together_are_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("both.toml");
    std::fs::write(
        &path,
        "[sources.t]\ntype = \"http\"\naddress = \"127.0.0.1:1\"\n[sinks.es]\ntype = \"elasticsearch\"\ninputs = [\"t\"]\nendpoint = \"https://es1:9200\"\nendpoints = [\"https://es1:9200\", \"https://es2:9200\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(binary())
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("both.toml:"), "{text}");
    assert!(
        text.contains("`endpoint` and `endpoints` are both set"),
        "{text}"
    );
}
