//! Helpers shared by the tests of the integrity chain: events whose canonical form is worth hashing, an agent
//! config that chains two sources into a file sink, and accessors for `auditrail verify --json` reports.

use std::io::Write;
use std::path::Path;

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

/// Asserts that a stream's report lists nothing wrong (honoured crash windows are not wrong).
pub fn assert_clean(s: &Value) {
    for key in [
        "gaps",
        "altered",
        "conflicts",
        "bad_seals",
        "broken_links",
        "bad_crash_windows",
    ] {
        assert!(
            s[key].as_array().is_none_or(|a| a.is_empty()),
            "{key} in {s}"
        );
    }
}
