//! Session cgroups and the unix source's spool and socket modes, through the real agent: real cgroup v2
//! directories, real client processes (python3 scripts, some as the unprivileged user `nobody`), real spool
//! files and flocks.
//!
//! Needs root (cgroups, setuid for `nobody`): not root and `AUDITRAIL_REQUIRE_ROOT` unset, the tests print why
//! and return; with it set, they fail.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use auditrail_integration_tests::*;

/// The uid/gid of `nobody`.
const NOBODY: u32 = 65534;

/// The system python (readable by `nobody`, unlike a pyenv under /root).
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Asks for `sid` on `socket`, prints `reply=`, then (when joined) its own cgroup (`self=`), the inode of the
/// reply's path (`ino=`) and a child's cgroup (`child=`), then `ready`, and holds the connection until stdin
/// closes.
const CLIENT: &str = r#"
import json, os, socket, subprocess, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall((json.dumps({"sid": sys.argv[2]}) + "\n").encode())
reply = b""
while not reply.endswith(b"\n"):
    c = s.recv(4096)
    if not c:
        break
    reply += c
print("reply=" + reply.decode().strip(), flush=True)
r = json.loads(reply)
if "error" not in r:
    own = [l for l in open("/proc/self/cgroup").read().splitlines() if l.startswith("0::")][0][3:]
    print("self=" + own)
    print("ino=%d" % os.stat(r["path"]).st_ino)
    out = subprocess.run(["cat", "/proc/self/cgroup"], capture_output=True, text=True).stdout
    print("child=" + [l for l in out.splitlines() if l.startswith("0::")][0][3:])
print("ready", flush=True)
sys.stdin.read()
"#;

struct Client {
    child: Child,
    lines: Vec<String>,
}

impl Client {
    /// Starts the client (as `uid` when given) and reads until it says `ready`.
    fn start(socket: &Path, sid: &str, uid: Option<u32>) -> Client {
        let mut cmd = Command::new(python());
        cmd.arg("-c")
            .arg(CLIENT)
            .arg(socket)
            .arg(sid)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(u) = uid {
            cmd.uid(u).gid(u).current_dir("/");
        }
        let mut child = cmd.spawn().expect("running python3");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            assert!(
                out.read_line(&mut l).unwrap() > 0,
                "client ended early: {lines:?}"
            );
            let l = l.trim_end().to_string();
            if l == "ready" {
                break;
            }
            lines.push(l);
        }
        Client { child, lines }
    }

    fn get(&self, key: &str) -> &str {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {:?}", self.lines))
    }

    fn reply(&self) -> serde_json::Value {
        serde_json::from_str(self.get("reply")).unwrap()
    }

    /// Closes its stdin and waits for it to exit.
    fn finish(mut self) {
        drop(self.child.stdin.take());
        assert!(self.child.wait().unwrap().success());
    }
}

fn config(d: &Path, api: u16, extra: &str) -> String {
    format!(
        "data_dir = \"{d}/data\"\n[api]\naddress = \"127.0.0.1:{api}\"\n[sources.local]\ntype = \"unix\"\npath = \"{d}/data/events.sock\"\n[sinks.out]\ntype = \"file\"\ninputs = [\"local\"]\npath = \"{d}/out/e.ndjson\"\n{extra}",
        d = d.display()
    )
}

/// Sends one raw request line and returns the reply line.
fn raw_request(socket: &Path, bytes: &[u8]) -> serde_json::Value {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut reply = String::new();
    BufReader::new(&mut s).read_line(&mut reply).unwrap();
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{e}: {reply:?}"))
}

#[test]
fn a_session_gets_its_own_cgroup_and_it_is_removed_after() {
    if !root_or_skip("session cgroup test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let api = free_port();
    let cg = CgroupParent::new("own");
    let agent = Agent::start(
        d,
        &config(
            d,
            api,
            &format!("[sessions]\n{}sweep_interval = \"1s\"\n", cg.toml()),
        ),
        api,
    );
    let socket = d.join("data/sessions.sock");
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o666
    );
    let sid = format!("it-{}-a", std::process::id());
    let client = Client::start(&socket, &sid, None);
    let reply = client.reply();
    let path = PathBuf::from(reply["path"].as_str().expect("a path in the reply"));
    assert_eq!(path, cg.path().join(&sid), "{reply}");
    assert_eq!(client.get("self"), format!("/{}/{sid}", cg.name()));
    assert_eq!(
        client.get("child"),
        format!("/{}/{sid}", cg.name()),
        "children are born in it"
    );
    let ino: u64 = client.get("ino").parse().unwrap();
    assert_eq!(reply["cgroup_id"].as_u64().unwrap(), ino);
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino);
    assert_eq!(agent.metric("auditrail_sessions_active", &[]), 1.0);
    // The same sid cannot be taken twice at once.
    let again = raw_request(&socket, format!("{{\"sid\":\"{sid}\"}}\n").as_bytes());
    assert!(
        again["error"]
            .as_str()
            .unwrap()
            .contains("already has a cgroup"),
        "{again}"
    );
    client.finish();
    wait_for(
        Duration::from_secs(15),
        "the session's cgroup removed",
        || !path.exists(),
    );
    assert_eq!(agent.metric("auditrail_sessions_active", &[]), 0.0);
    assert!(agent.terminate(Duration::from_secs(30)).success());
}

#[test]
fn a_process_left_behind_keeps_the_cgroup_until_it_exits() {
    if !root_or_skip("session cgroup sweep test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let api = free_port();
    // Its own parent: the sweep this test waits for is this agent's, and no other test's agent sweeps here.
    let cg = CgroupParent::new("linger");
    let agent = Agent::start(
        d,
        &config(
            d,
            api,
            &format!("[sessions]\n{}sweep_interval = \"1s\"\n", cg.toml()),
        ),
        api,
    );
    let socket = d.join("data/sessions.sock");
    let sid = format!("it-{}-linger", std::process::id());
    let client = Client::start(&socket, &sid, None);
    let path = PathBuf::from(client.reply()["path"].as_str().unwrap());
    // A process of the session that outlives it (a daemon started from the shell).
    let mut lingering = Command::new("sleep").arg("60").spawn().unwrap();
    std::fs::write(path.join("cgroup.procs"), format!("{}\n", lingering.id())).unwrap();
    client.finish();
    std::thread::sleep(Duration::from_secs(6));
    assert!(path.exists(), "a populated cgroup is not removed");
    lingering.kill().unwrap();
    lingering.wait().unwrap();
    wait_for(
        Duration::from_secs(10),
        "the sweep to remove the emptied cgroup",
        || !path.exists(),
    );
    // The sweep logs after its rmdir: the directory can be gone a moment before the line is written.
    wait_for(Duration::from_secs(10), "the sweep's log line", || {
        agent.log_text().contains("removed empty session cgroups")
    });
    assert!(agent.terminate(Duration::from_secs(30)).success());
}

#[test]
fn bad_requests_get_an_error_and_limits_hold() {
    if !root_or_skip("sessions socket bad-input test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let api = free_port();
    // nobody connects too (below): the path to data_dir must be passable.
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)).unwrap();
    let cg = CgroupParent::new("limits");
    let mut agent = Agent::start(
        d,
        &config(
            d,
            api,
            &format!("[sessions]\n{}max_per_uid = 2\n", cg.toml()),
        ),
        api,
    );
    let socket = d.join("data/sessions.sock");
    let bad = raw_request(&socket, b"{\"sid\":\"../../etc\"}\n");
    assert!(
        bad["error"].as_str().unwrap().contains("[A-Za-z0-9_-]"),
        "{bad}"
    );
    let long = raw_request(&socket, &vec![b'x'; 5000]);
    assert!(
        long["error"].as_str().unwrap().contains("longer than 4096"),
        "{long}"
    );
    let junk = raw_request(&socket, b"not json\n");
    assert!(
        junk["error"]
            .as_str()
            .unwrap()
            .contains("expected one JSON line"),
        "{junk}"
    );
    let extra = raw_request(&socket, b"{\"sid\":\"a\",\"pid\":1}\n");
    assert!(
        extra["error"].as_str().unwrap().contains("unknown field"),
        "{extra}"
    );
    assert!(agent.alive());
    let base = format!("it-{}-lim", std::process::id());
    let one = Client::start(&socket, &format!("{base}1"), None);
    let two = Client::start(&socket, &format!("{base}2"), None);
    assert!(one.reply()["cgroup_id"].is_u64() && two.reply()["cgroup_id"].is_u64());
    let three = Client::start(&socket, &format!("{base}3"), None);
    let e = three.reply();
    assert!(
        e["error"].as_str().unwrap().contains("max_per_uid = 2"),
        "{e}"
    );
    three.finish();
    one.finish();
    let four = Client::start(&socket, &format!("{base}4"), None);
    assert!(
        four.reply()["cgroup_id"].is_u64(),
        "a slot is free again: {:?}",
        four.lines
    );
    let refused = agent.metric("auditrail_sessions_refused_total", &[]);
    assert!(
        refused >= 5.0,
        "bad sid, long line, junk, unknown field, max_per_uid: {refused}"
    );
    two.finish();
    four.finish();
    // One user holding connections open without asking is cut off at 8; others' requests are not starved.
    let held: Vec<UnixStream> = (0..8)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let busy = raw_request(&socket, b"{\"sid\":\"x\"}\n");
    assert!(busy["error"].as_str().unwrap().contains("busy"), "{busy}");
    let nobody = Client::start(&socket, &format!("{base}n"), Some(NOBODY));
    assert!(
        nobody.reply()["cgroup_id"].is_u64(),
        "another uid is admitted: {:?}",
        nobody.lines
    );
    nobody.finish();
    drop(held);
    assert!(agent.alive());
    assert!(agent.terminate(Duration::from_secs(30)).success());
}

#[test]
fn an_unprivileged_user_gets_a_cgroup_and_writes_events() {
    if !root_or_skip("unprivileged client test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The operator's part: the path to data_dir must be passable (as /var/lib is); the agent does the rest.
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)).unwrap();
    let api = free_port();
    let cg = CgroupParent::new("nobody");
    let cfg = config(d, api, &format!("[sessions]\n{}", cg.toml()))
        .replace("type = \"unix\"\n", "type = \"unix\"\nmode = \"0666\"\n");
    let agent = Agent::start(d, &cfg, api);
    let events = d.join("data/events.sock");
    assert_eq!(
        std::fs::metadata(&events).unwrap().permissions().mode() & 0o777,
        0o666
    );
    assert_eq!(
        std::fs::metadata(d.join("data"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o711,
        "data_dir gains search only"
    );
    // nobody gets a cgroup: it could not create one itself.
    let sid = format!("it-{}-nobody", std::process::id());
    let client = Client::start(&d.join("data/sessions.sock"), &sid, Some(NOBODY));
    assert_eq!(
        client.get("self"),
        format!("/{}/{sid}", cg.name()),
        "{:?}",
        client.lines
    );
    client.finish();
    // And writes an event to the 0666 events socket.
    let script = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(b'{"event":"session.start","uid":"from-nobody","time":"2026-01-01T00:00:00.000Z"}\nnot json\n')
s.close()
"#;
    let status = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(&events)
        .uid(NOBODY)
        .gid(NOBODY)
        .current_dir("/")
        .status()
        .unwrap();
    assert!(status.success());
    wait_for(
        Duration::from_secs(10),
        "nobody's event in the sink",
        || uids_so_far(&d.join("out")).contains_key("from-nobody"),
    );
    wait_for(Duration::from_secs(5), "the bad line dead-lettered", || {
        std::fs::read_to_string(d.join("data/dead-letter/sources/local.ndjson"))
            .is_ok_and(|t| t.contains(&format!("(uid {NOBODY} pid")))
    });
    assert!(agent.terminate(Duration::from_secs(30)).success());
}

fn good(uid: &str) -> String {
    format!(
        "{{\"event\":\"session.start\",\"uid\":\"{uid}\",\"time\":\"2026-01-01T00:00:00.000Z\"}}\n"
    )
}

#[test]
fn spooled_events_are_drained_damage_is_counted_and_locked_files_wait() {
    if !root_or_skip("spool test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spool = d.join("data/recordings/spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::write(
        spool.join("a.ndjson"),
        [good("a1"), good("a2"), good("a3")].concat(),
    )
    .unwrap();
    std::fs::write(
        spool.join("b.ndjson"),
        format!("{}not json\n{{\"event\":\"torn", good("b1")),
    )
    .unwrap();
    std::fs::write(spool.join("c.ndjson"), [good("c1"), good("c2")].concat()).unwrap();
    let held = std::fs::File::open(spool.join("c.ndjson")).unwrap();
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&held), libc::LOCK_EX) },
        0
    );
    // Over the 16 MiB bound (sparse), and a symlink to a file root can read: both set aside unread.
    std::fs::File::create(spool.join("big.ndjson"))
        .unwrap()
        .set_len(17 << 20)
        .unwrap();
    std::fs::write(d.join("secret"), good("secret")).unwrap();
    std::os::unix::fs::symlink(d.join("secret"), spool.join("link.ndjson")).unwrap();
    let api = free_port();
    let extra = format!(
        "spool_dirs = [\"{}\"]\nspool_scan_interval = \"1s\"\n",
        spool.display()
    );
    let cfg = config(d, api, "").replace("[sinks.out]", &format!("{extra}[sinks.out]"));
    let agent = Agent::start(d, &cfg, api);
    wait_for(Duration::from_secs(10), "a and b drained", || {
        let u = uids_so_far(&d.join("out"));
        ["a1", "a2", "a3", "b1"].iter().all(|k| u.contains_key(*k))
    });
    wait_for(Duration::from_secs(5), "a and b unlinked", || {
        !spool.join("a.ndjson").exists() && !spool.join("b.ndjson").exists()
    });
    assert_eq!(
        agent.metric(
            "auditrail_source_spool_damaged_total",
            &[("source", "local")]
        ),
        2.0,
        "one non-JSON line and one torn line"
    );
    let dl = std::fs::read_to_string(d.join("data/dead-letter/sources/local.ndjson")).unwrap();
    assert!(dl.contains("b.ndjson (owner uid 0) line 2"), "{dl}");
    assert!(
        dl.contains("\"reason\":\"torn_line\"") && dl.contains("line 3"),
        "{dl}"
    );
    assert!(spool.join("big.ndjson.rejected").exists() && !spool.join("big.ndjson").exists());
    assert!(spool.join("link.ndjson.rejected").exists());
    assert!(d.join("secret").exists());
    // The locked file waits through several scans.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(spool.join("c.ndjson").exists());
    let u = uids_so_far(&d.join("out"));
    assert!(!u.contains_key("c1") && !u.contains_key("secret"), "{u:?}");
    drop(held);
    wait_for(Duration::from_secs(10), "c drained once unlocked", || {
        let u = uids_so_far(&d.join("out"));
        u.contains_key("c1") && u.contains_key("c2")
    });
    wait_for(Duration::from_secs(5), "c unlinked", || {
        !spool.join("c.ndjson").exists()
    });
    assert_eq!(
        lines_so_far(&d.join("out")).len(),
        6,
        "each spooled event once"
    );
    assert!(agent.terminate(Duration::from_secs(30)).success());
}

#[test]
fn without_cgroups_the_agent_runs_and_says_why() {
    if !root_or_skip("no-cgroup test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let api = free_port();
    // A directory that is not a cgroup2 filesystem stands in for a host without one.
    let not_cg = d.join("not-a-cgroup");
    std::fs::create_dir_all(&not_cg).unwrap();
    let agent = Agent::start(
        d,
        &config(
            d,
            api,
            &format!("[sessions]\ncgroup_root = \"{}\"\n", not_cg.display()),
        ),
        api,
    );
    let r = raw_request(&d.join("data/sessions.sock"), b"{\"sid\":\"nocg\"}\n");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("is not a cgroup2 filesystem"),
        "{r}"
    );
    let mut s = UnixStream::connect(d.join("data/events.sock")).unwrap();
    s.write_all(good("still-works").as_bytes()).unwrap();
    drop(s);
    wait_for(Duration::from_secs(10), "events still flow", || {
        uids_so_far(&d.join("out")).contains_key("still-works")
    });
    let mut log = String::new();
    std::fs::File::open(&agent.log)
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("without cgroups"), "{log}");
    assert!(agent.terminate(Duration::from_secs(30)).success());
}

#[test]
fn a_group_socket_admits_its_group_only() {
    if !root_or_skip("socket group test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)).unwrap();
    let api = free_port();
    let cfg = config(d, api, "").replace(
        "type = \"unix\"\n",
        &format!("type = \"unix\"\nmode = 0o660\ngroup = {NOBODY}\n"),
    );
    let agent = Agent::start(d, &cfg, api);
    let events = d.join("data/events.sock");
    let meta = std::fs::metadata(&events).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), NOBODY);
    assert_eq!(
        std::fs::metadata(d.join("data"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o711,
        "search only"
    );
    let send = |uid: u32, gid: u32, event_uid: &str| {
        let script = format!(
            "import socket, sys\ns = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\ns.connect(sys.argv[1])\ns.sendall(b'{}\\n')\ns.close()\n",
            good(event_uid).trim_end()
        );
        Command::new(python())
            .arg("-c")
            .arg(script)
            .arg(&events)
            .uid(uid)
            .gid(gid)
            .current_dir("/")
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };
    // A member of the group (by its primary gid) may write; a user outside it may not connect.
    assert!(send(NOBODY, NOBODY, "member").success());
    assert!(!send(12345, 12345, "outsider").success());
    wait_for(Duration::from_secs(10), "the member's event", || {
        uids_so_far(&d.join("out")).contains_key("member")
    });
    assert!(!uids_so_far(&d.join("out")).contains_key("outsider"));
    assert!(agent.terminate(Duration::from_secs(30)).success());
}
