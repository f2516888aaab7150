//! Helpers shared by the tests of the integrity chain: events whose canonical form is worth hashing, an agent
//! config that chains two sources into a file sink, `auditrail verify --json` and accessors for its reports.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// An event with nested objects, arrays, nulls, a Go escape and a dotted key, so the canonical form is exercised.
pub fn rich_event(prefix: &str, i: usize) -> String {
    format!(
        r#"{{"event":"session.command","uid":"{prefix}{i}","code":"T4000I","time":"2026-11-25T06:54:05.{:06}Z","user":"alice@example.com","login":"dba","sid":"s-{}","addr.remote":"10.0.0.{}:5000","argv":["ls","-l",null],"ctx":{{"pid":{i},"tty":null,"env":{{"LANG":"C"}}}},"cmd":"a \u003c b","big":123456789012345678901}}"#,
        i % 1_000_000,
        i / 100,
        i % 250
    )
}

/// Writes `n` [`rich_event`]s with uids `{prefix}0..n` to `path`, one per line.
pub fn write_rich(path: &Path, prefix: &str, n: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        writeln!(f, "{}", rich_event(prefix, i)).unwrap();
    }
    f.flush().unwrap();
}

/// An agent config with `[integrity]` (key under `d/keys`, node `node-1`, then `integrity_extra`), one file
/// source per name in `sources` (reading `d/in/NAME*.log`) and a file sink writing `d/out/all.ndjson` with
/// `buffer`.
pub fn config(d: &Path, api: u16, sources: &[&str], buffer: &str, integrity_extra: &str) -> String {
    let mut c = format!(
        r#"
data_dir = "{d}/data"
shutdown_timeout = "20s"
[api]
address = "127.0.0.1:{api}"
[sinks.out]
type = "file"
inputs = [{inputs}]
path = "{d}/out/all.ndjson"
batch_max_events = 1000
buffer = {buffer}
[integrity]
key = "{d}/keys/auditrail.key"
node_id = "node-1"
{integrity_extra}
"#,
        d = d.display(),
        inputs = sources
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", "),
    );
    for s in sources {
        c.push_str(&format!(
            "[sources.{s}]\ntype = \"file\"\ninclude = [\"{d}/in/{s}*.log\"]\npoll_interval = \"20ms\"\ncheckpoint_interval = \"100ms\"\n",
            d = d.display()
        ));
    }
    c
}

/// Runs `auditrail verify --key KEY --json INPUTS… [-]` (with `-` and `stdin` fed to it when given) and returns
/// its exit code and report; panics when it prints no JSON.
pub fn verify(key: &Path, inputs: &[&Path], stdin: Option<&[u8]>) -> (i32, Value) {
    let mut cmd = Command::new(crate::binary());
    cmd.arg("verify").arg("--key").arg(key).arg("--json");
    for i in inputs {
        cmd.arg(i);
    }
    if stdin.is_some() {
        cmd.arg("-");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

/// The report of stream `name` in a `verify --json` report; panics when there is none.
pub fn stream<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == name)
        .unwrap_or_else(|| panic!("no stream {name} in {report}"))
}

/// The seqs of a report list (plain numbers, or objects with a `seq` such as `bad_seals`).
pub fn seqs(v: &Value) -> Vec<u64> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_u64().or_else(|| x["seq"].as_u64()).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// A list of inclusive `[from, to]` ranges (`gaps`).
pub fn ranges(v: &Value) -> Vec<(u64, u64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_u64().unwrap(), r[1].as_u64().unwrap()))
        .collect()
}

/// The lists of a stream's report that must be empty for it to be clean (honoured crash windows are not wrong).
const FORBIDDEN: [&str; 6] = [
    "gaps",
    "altered",
    "conflicts",
    "bad_seals",
    "broken_links",
    "bad_crash_windows",
];

/// Asserts that a stream's report lists nothing wrong (honoured crash windows are not wrong).
pub fn assert_clean(s: &Value) {
    for key in FORBIDDEN {
        assert!(
            s[key].as_array().is_none_or(|a| a.is_empty()),
            "{key} in {s}"
        );
    }
}

/// What a stream's lists hold that [`assert_clean`] forbids, plus its `crash_windows` (declared windows of a
/// memory buffer, when the verifier reports them), as one short line: counts and the first few entries of each
/// list, so an assertion message shows the relevant part of a report that can list a hundred thousand seqs.
pub fn findings(s: &Value) -> String {
    const SHOW: usize = 3;
    let mut parts = vec![format!(
        "{}: verified {}, duplicates {}, unsealed {}",
        s["stream"].as_str().unwrap_or("?"),
        s["verified"],
        s["duplicates"],
        s["unsealed"]
    )];
    for key in FORBIDDEN.into_iter().chain(["crash_windows"]) {
        let Some(list) = s[key].as_array() else {
            continue;
        };
        if list.is_empty() {
            continue;
        }
        let first: Vec<String> = list.iter().take(SHOW).map(Value::to_string).collect();
        let more = if list.len() > SHOW { ", …" } else { "" };
        let seqs = if key == "gaps" || key == "crash_windows" {
            let n: u64 = list
                .iter()
                .filter_map(|r| Some(r[1].as_u64()? - r[0].as_u64()? + 1))
                .sum();
            if n > 0 {
                format!(" ({n} seqs)")
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        parts.push(format!(
            "{key}: {}{seqs} [{}{more}]",
            list.len(),
            first.join(", ")
        ));
    }
    parts.join("; ")
}

/// [`findings`] of every stream of a report, one per line, with the report's unreadable lines and first problems.
pub fn report_findings(report: &Value) -> String {
    let mut lines: Vec<String> = report["streams"]
        .as_array()
        .map(|a| a.iter().map(findings).collect())
        .unwrap_or_default();
    lines.push(format!(
        "ok {}, unchained {}, unreadable {}, problems {}",
        report["ok"],
        report["unchained"],
        report["unreadable"],
        report["problems"]
            .as_array()
            .map(|p| p
                .iter()
                .take(3)
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    ));
    lines.join("\n")
}

/// Whether a stream's report lists nothing [`assert_clean`] forbids.
pub fn is_clean(s: &Value) -> bool {
    ["gaps", "altered", "conflicts", "bad_seals", "broken_links"]
        .iter()
        .all(|key| s[*key].as_array().is_none_or(|a| a.is_empty()))
}

/// An agent with an http source (`recordings`), a file sink at `d/out/all.ndjson` and `[integrity]` (key
/// `d/keys/auditrail.key`, node `node-1`, sealing every 200 ms), keeping its data under `data_dir`: the
/// agent and its http source's port. For tests that chain events made elsewhere and verify them.
pub fn sealing_http_agent(d: &Path, data_dir: &Path) -> (crate::Agent, u16) {
    let (api, port) = (crate::free_port(), crate::free_port());
    let cfg = format!(
        r#"
data_dir = "{data}"
[api]
address = "127.0.0.1:{api}"
[sources.recordings]
type = "http"
address = "127.0.0.1:{port}"
[sinks.out]
type = "file"
inputs = ["recordings"]
path = "{d}/out/all.ndjson"
[integrity]
key = "{d}/keys/auditrail.key"
node_id = "node-1"
seal_interval = "200ms"
"#,
        d = d.display(),
        data = data_dir.display(),
    );
    (crate::Agent::start(d, &cfg, api), port)
}

/// POSTs `events` as one NDJSON body to the agent's http source on `port`; panics unless it answers 200.
pub fn post_events(port: u16, events: &[Value]) {
    let body: String = events.iter().map(|e| format!("{e}\n")).collect();
    let (status, answer) = crate::http(
        "POST",
        port,
        "/v1/events",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 200, "{answer}");
}
