//! Config loader tests: shapes, defaults, and the exact wording and position of errors.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("test.toml"), text, &|name| match name {
        "HEC_TOKEN" => Some("hunter2-secret".into()),
        "PORT" => Some("8686".into()),
        _ => None,
    })
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

const GOOD: &str = r#"
data_dir = "/tmp/x"

[api]
address = "127.0.0.1:9598"

[sources.teleport]
type = "file"
include = ["/var/lib/teleport/log/events/*.log"]

[sources.local]
type = "http"
address = "127.0.0.1:${PORT}"
token = "${HEC_TOKEN}"

[sinks.archive]
type = "file"
inputs = ["teleport", "local"]
path = "/var/log/audit/%Y-%m-%d/{event}.ndjson"
buffer = { type = "memory", max_events = 500, when_full = "drop_newest" }
"#;

#[test]
fn loads_a_full_config() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
    let SourceConfig::Http(h) = &c.sources["local"] else {
        panic!()
    };
    assert_eq!(h.address.port(), 8686);
    assert_eq!(h.token.as_ref().map(|t| t.expose()), Some("hunter2-secret"));
    let s = &c.sinks["archive"];
    assert_eq!(s.inputs, ["teleport", "local"]);
    assert_eq!(
        s.buffer.when_full(),
        auditrail_core::buffer::WhenFull::DropNewest
    );
}

#[test]
fn embedded_default_is_valid() {
    Config::parse(Path::new(EMBEDDED_NAME), EMBEDDED_DEFAULT, &|_| None).unwrap();
}

#[test]
fn unknown_key_points_at_the_key_and_lists_valid_ones() {
    let text = GOOD.replace("path = \"/var/log", "pth = \"/var/log");
    let e = err(&text);
    assert!(
        e.starts_with("test.toml:19:1: unknown field `pth`, expected one of `path`"),
        "{e}"
    );
    assert!(e.contains("`type`, `inputs`, `buffer`"), "{e}");
    let text = GOOD.replace("include =", "includes =");
    let e = err(&text);
    assert!(
        e.starts_with(
            "test.toml:9:1: unknown field `includes`, expected one of `include`, `exclude`"
        ),
        "{e}"
    );
    let e = err(&GOOD.replace("max_events = 500", "max_evnts = 500"));
    assert!(
        e.starts_with(
            "test.toml:20:29: unknown field `max_evnts`, expected `max_events` or `when_full`"
        ),
        "{e}"
    );
    let e = err(&GOOD.replace("data_dir =", "datadir ="));
    assert!(
        e.starts_with("test.toml:2:1: unknown field `datadir`"),
        "{e}"
    );
}

#[test]
fn unknown_type_lists_the_types() {
    let e = err(&GOOD.replace("type = \"http\"", "type = \"htp\""));
    assert!(e.starts_with("test.toml:12:8:"), "{e}");
    assert!(
        e.contains("unknown variant `htp`, expected one of `file`, `http`, `unix`"),
        "{e}"
    );
}

#[test]
fn missing_input_names_the_sources() {
    let e = err(&GOOD.replace(
        "inputs = [\"teleport\", \"local\"]",
        "inputs = [\"teleport\", \"lokal\", \"local\"]",
    ));
    assert_eq!(
        e.lines().next().unwrap(),
        "test.toml:18:23: sink `archive` reads from `lokal`, which is not a source; the sources are `local`, `teleport`"
    );
}

#[test]
fn unread_source_is_an_error() {
    let e = err(&GOOD.replace(
        "inputs = [\"teleport\", \"local\"]",
        "inputs = [\"teleport\"]",
    ));
    assert!(e.contains("source `local` is not read by any sink"), "{e}");
    assert!(e.starts_with("test.toml:11:"), "{e}");
}

#[test]
fn missing_env_var_is_an_error_at_its_place() {
    let e = err(&GOOD.replace("${HEC_TOKEN}", "${NOT_SET}"));
    assert!(
        e.starts_with("test.toml:14:10: environment variable `NOT_SET` is not set"),
        "{e}"
    );
}

#[test]
fn comments_may_mention_variables() {
    parse(&format!("# token = \"${{UNSET_IN_COMMENT}}\"\n{GOOD}")).unwrap();
}

#[test]
fn expanded_secrets_never_appear_in_errors() {
    let text = GOOD.replace("max_events = 500", "max_events = \"${HEC_TOKEN}\"");
    let e = err(&text);
    assert!(!e.contains("hunter2"), "{e}");
    assert!(e.contains("test.toml:20:"), "{e}");
}

#[test]
fn positions_after_an_expansion_are_those_of_the_file() {
    let text = GOOD
        .replace("path = \"/var/log", "path = \"${HEC_TOKEN}/var/log")
        .replace("[sinks.archive]", "[sinks.archive]\nbogus = 1");
    let e = err(&text);
    assert!(
        e.starts_with("test.toml:17:1: unknown field `bogus`"),
        "{e}"
    );
}

#[test]
fn bad_values_say_what_is_expected() {
    let e = err(&GOOD.replace("address = \"127.0.0.1:9598\"", "address = \"localhost\""));
    assert!(e.starts_with("test.toml:5:11:"), "{e}");
    assert!(e.contains("invalid socket address"), "{e}");
    let e = err(&GOOD.replace("{event}.ndjson", "{event.ndjson"));
    assert!(e.contains("sink `archive`: `path`:"), "{e}");
    let e = err(&format!("shutdown_timeout = \"soon\"\n{GOOD}"));
    assert!(e.contains("`soon` is not a duration"), "{e}");
    let e = err("[sources.a]\ntype = \"file\"\ninclude = []\n[sinks.b]\ntype = \"console\"\ninputs = [\"a\"]\n");
    assert!(e.contains("`include` is empty"), "{e}");
}

#[test]
fn syntax_errors_have_positions() {
    let e = err("data_dir = \n");
    assert!(e.starts_with("test.toml:1:"), "{e}");
}

#[test]
fn empty_config_says_what_to_add() {
    assert!(err("").contains("no sources"));
}

#[test]
fn names_must_be_file_safe() {
    let e = err(&GOOD
        .replace("[sources.local]", "[sources.\"lo/cal\"]")
        .replace("\"local\"]", "\"lo/cal\"]"));
    assert!(e.contains("`lo/cal` is not a valid component name"), "{e}");
}

#[test]
fn values_inside_tagged_tables_are_located() {
    let e = err(&GOOD.replace(
        "path = \"/var/log",
        "fsync = \"sometimes\"\npath = \"/var/log",
    ));
    assert!(
        e.starts_with("test.toml:19:9: unknown variant `sometimes`, expected `batch` or `none`"),
        "{e}"
    );
    let e = err(&GOOD.replace("include = [", "read_from = \"middle\"\ninclude = ["));
    assert!(
        e.starts_with("test.toml:9:13: unknown variant `middle`"),
        "{e}"
    );
}

#[test]
fn dead_letter_limits_have_safe_defaults_and_are_checked() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.dead_letter, DeadLetterConfig::default());
    assert_eq!(c.dead_letter.max_size.0, 16 << 20);
    assert_eq!(c.dead_letter.max_files, 4);
    let c = parse(&format!(
        "{GOOD}\n[dead_letter]\nmax_size = \"1MiB\"\nmax_files = 2\n"
    ))
    .unwrap();
    assert_eq!(c.dead_letter.max_size.0, 1 << 20);
    assert_eq!(c.dead_letter.max_files, 2);
    let e = err(&format!("{GOOD}\n[dead_letter]\nmax_files = 0\n"));
    let line = GOOD.lines().count() + 2;
    assert!(e.starts_with(&format!("test.toml:{line}:")), "{e}");
    assert!(
        e.contains("[dead_letter] `max_files` must be at least 1"),
        "{e}"
    );
    let e = err(&format!("{GOOD}\n[dead_letter]\nmax_size = 100\n"));
    assert!(
        e.contains("[dead_letter] `max_size` must be at least 4096"),
        "{e}"
    );
    let e = err(&format!("{GOOD}\n[dead_letter]\nmax_sise = 100\n"));
    assert!(e.contains("unknown field `max_sise`"), "{e}");
}

#[test]
fn sessions_table_defaults_and_errors() {
    let c = parse(GOOD).unwrap();
    assert!(c.sessions.is_none());
    let c = parse(&format!("{GOOD}\n[sessions]\n")).unwrap();
    let s = c.sessions.unwrap();
    assert_eq!(
        s.socket_path(&c.data_dir),
        Path::new("/tmp/x/sessions.sock")
    );
    assert_eq!(s.mode.0, 0o666);
    assert_eq!((s.max_sessions, s.max_per_uid), (4096, 64));
    assert_eq!(s.cgroup_root, "auto");
    assert_eq!(s.cgroup_parent, "auditrail");
    let e = err(&format!("{GOOD}\n[sessions]\ncgroup_parent = \"../x\"\n"));
    assert!(
        e.contains("[sessions] `cgroup_parent`: expected one directory name"),
        "{e}"
    );
    let e = err(&format!("{GOOD}\n[sessions]\nmax_per_uid = 0\n"));
    assert!(
        e.contains("[sessions] `max_per_uid`: must be at least 1"),
        "{e}"
    );
    let e = err(&format!("{GOOD}\n[sessions]\ncgroup_root = \"rel/path\"\n"));
    assert!(e.contains("expected \"auto\" or an absolute path"), "{e}");
    let e = err(&format!("{GOOD}\n[sessions]\nsockett = \"/x\"\n"));
    assert!(e.contains("unknown field `sockett`"), "{e}");
    assert!(e.contains("test.toml:"), "{e}");
}

#[test]
fn unix_source_mode_group_and_spool() {
    let text = r#"
[sources.local]
type = "unix"
path = "/tmp/x/events.sock"
mode = "0666"
group = "adm"
spool_dirs = ["/tmp/x/recordings/spool"]
spool_scan_interval = "5s"
[sinks.out]
type = "file"
inputs = ["local"]
path = "/tmp/out.ndjson"
"#;
    let c = parse(text).unwrap();
    let SourceConfig::Unix(u) = &c.sources["local"] else {
        panic!("not a unix source")
    };
    assert_eq!(u.mode.0, 0o666);
    assert_eq!(
        u.group,
        Some(crate::sources::unix::SocketGroup::Name("adm".into()))
    );
    assert_eq!(u.spool_dirs, [PathBuf::from("/tmp/x/recordings/spool")]);
    assert_eq!(u.spool_scan_interval.0, Duration::from_secs(5));
    let e = err(&text.replace("mode = \"0666\"", "mode = 666"));
    assert!(e.contains("a plain integer like 660 is decimal"), "{e}");
    let plain = parse(&text.replace("mode = \"0666\"\n", "")).unwrap();
    let SourceConfig::Unix(u) = &plain.sources["local"] else {
        panic!()
    };
    assert_eq!(u.mode.0, 0o600, "the default stays private");
}

#[test]
fn the_recording_table_is_checked_with_the_agent_config() {
    let c = parse(&format!(
        "{GOOD}\n[recording]\nmode = \"proxy\"\nmax_bytes = \"2GiB\"\n"
    ))
    .unwrap();
    let r = c.recording.unwrap();
    assert_eq!(r.mode, crate::recording::config::Mode::Proxy);
    assert_eq!(r.max_bytes.0, 2 << 30);
    let e = err(&format!("{GOOD}\n[recording]\nmax_bytez = 1\n"));
    assert!(e.contains("unknown field `max_bytez`"), "{e}");
    let e = err(&format!(
        "{GOOD}\n[recording]\nmode = \"proxy\"\nhost_events = true\n"
    ));
    assert!(e.contains("[recording] `host_events`"), "{e}");
}

#[test]
fn the_uploader_table_is_checked_with_the_agent_config() {
    let c = parse(&format!(
        "{GOOD}\n[uploader]\nurl = \"s3://rec/nodes\"\nafter_upload = \"delete\"\n"
    ))
    .unwrap();
    let u = c.uploader.unwrap();
    assert_eq!(u.url, "s3://rec/nodes");
    assert_eq!(u.after_upload, crate::uploader::config::AfterUpload::Delete);
    let e = err(&format!(
        "{GOOD}\n[uploader]\nurl = \"s3://rec\"\nmax_attempt = 3\n"
    ));
    assert!(e.contains("unknown field `max_attempt`"), "{e}");
    let e = err(&format!(
        "{GOOD}\n[uploader]\nurl = \"s3://rec\"\nmax_attempts = 0\n"
    ));
    assert!(e.contains("[uploader] `max_attempts`"), "{e}");
}

#[test]
fn a_splunk_hec_sink_takes_its_token_from_the_environment_and_never_shows_it() {
    let text = format!(
        "{GOOD}\n[sinks.splunk]\ntype = \"splunk_hec\"\ninputs = [\"teleport\"]\nendpoint = \"https://splunk.example.com:8088\"\ntoken = \"${{HEC_TOKEN}}\"\nindex = \"audit\"\n"
    );
    let c = parse(&text).unwrap();
    let auditrail_sinks::SinkConfig::SplunkHec(h) = &c.sinks["splunk"].kind else {
        panic!()
    };
    assert_eq!(h.token.expose(), "hunter2-secret");
    assert!(h.acknowledgements);
    assert_eq!(h.sourcetype, "teleport:audit");
    assert!(!format!("{c:?}").contains("hunter2"));
    let e = err(&text.replace("index = \"audit\"", "indx = \"audit\""));
    assert!(e.contains("unknown field `indx`"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}
