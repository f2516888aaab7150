//! The ebpf source against the real kernel: real programs attached, real processes in real session cgroups,
//! real sockets. Each test makes its own session cgroup where the agent keeps them (`<cgroup v2 mount>/
//! <[sessions] cgroup_parent>/<sid>`, a parent of the test's own) and announces it with a `session.start`
//! through the agent's unix source, as the recorder does; the agent checks the id against that directory and
//! mirrors it into its kernel filter.
//!
//! Needs root (bpf(), cgroups): not root and `AUDITRAIL_REQUIRE_EBPF` unset, the tests print why and return;
//! with it set (CI), they fail. Nothing here needs clang or bpftool: the agent carries its compiled object.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use auditrail_integration_tests::*;
use serde_json::Value;

fn ebpf_or_skip(what: &str) -> bool {
    root_or_skip_as(what, "AUDITRAIL_REQUIRE_EBPF")
}

/// A session cgroup (`<parent>/<sid>`), removed when dropped (once its processes are gone).
struct TestCgroup {
    path: PathBuf,
    id: u64,
    /// A process parked inside, so that the agent's sweep (which removes empty session cgroups no live
    /// session of its own holds, first right at its start) leaves the cgroup alone.
    parked: Option<std::process::Child>,
}

impl TestCgroup {
    fn new(parent: &CgroupParent, sid: &str) -> TestCgroup {
        let mut cg = TestCgroup::at(&parent.path().join(sid));
        let mut sleeper = Command::new("/bin/sleep");
        sleeper.arg("600");
        cg.enter(&mut sleeper);
        let child = sleeper.spawn().unwrap();
        wait_for(
            Duration::from_secs(5),
            "the parked process in the cgroup",
            || {
                std::fs::read_to_string(cg.path.join("cgroup.procs"))
                    .is_ok_and(|p| p.lines().any(|l| l == child.id().to_string()))
            },
        );
        cg.parked = Some(child);
        cg
    }

    /// A cgroup anywhere (a session cgroup only when under the test's parent).
    fn at(path: &Path) -> TestCgroup {
        let _ = std::fs::remove_dir(path);
        std::fs::create_dir_all(path).unwrap();
        let id = std::fs::metadata(path).unwrap().ino();
        TestCgroup {
            path: path.to_path_buf(),
            id,
            parked: None,
        }
    }

    /// Makes `cmd` join this cgroup between fork and exec, so its exec is already inside.
    fn enter(&self, cmd: &mut Command) {
        let procs = self.path.join("cgroup.procs");
        unsafe {
            cmd.pre_exec(move || std::fs::write(&procs, b"0"));
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Some(mut p) = self.parked.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
        for _ in 0..100 {
            if std::fs::remove_dir(&self.path).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn config(d: &Path, api: u16, ebpf: &str, parent: &CgroupParent) -> String {
    format!(
        "data_dir = \"{d}/data\"\n[api]\naddress = \"127.0.0.1:{api}\"\n[sources.local]\ntype = \"unix\"\npath = \"{d}/data/events.sock\"\n[sources.host]\ntype = \"ebpf\"\nserver_id = \"this-host\"\n{ebpf}\n[sinks.out]\ntype = \"file\"\ninputs = [\"local\", \"host\"]\npath = \"{d}/out/e.ndjson\"\n[sessions]\n{parent}sweep_interval = \"1h\"\n",
        d = d.display(),
        parent = parent.toml()
    )
}

fn events(d: &Path) -> Vec<Value> {
    lines_so_far(&d.join("out"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Sends a `session.start` for `sid` in cgroup `id` and waits until it is in the sink (by then the agent's
/// kernel filter has the cgroup).
fn start_session(d: &Path, sid: &str, id: u64) {
    let mut s = UnixStream::connect(d.join("data/events.sock")).unwrap();
    writeln!(
        s,
        "{{\"event\":\"session.start\",\"code\":\"T2000I\",\"time\":\"2026-01-01T00:00:00Z\",\"sid\":\"{sid}\",\"user\":\"alice\",\"login\":\"root\",\"server_id\":\"node-1\",\"cgroup_id\":{id}}}"
    )
    .unwrap();
    wait_for(
        Duration::from_secs(10),
        "the session.start in the sink",
        || {
            events(d)
                .iter()
                .any(|e| e["event"] == "session.start" && e["sid"] == sid)
        },
    );
}

fn of_session<'a>(all: &'a [Value], sid: &str, kind: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|e| e["event"] == kind && e["sid"] == sid)
        .collect()
}

const PY: &str = "import socket, sys\nfor fam, host, port in ((socket.AF_INET, '127.0.0.1', int(sys.argv[1])), (socket.AF_INET6, '::1', int(sys.argv[2])), (socket.AF_INET, '127.0.0.1', int(sys.argv[3]))):\n    s = socket.socket(fam)\n    try:\n        s.connect((host, port))\n    except OSError:\n        pass\n    s.close()\n";

fn session_events_are_exact(scope: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let api = free_port();
    let parent = CgroupParent::new("ebpf");
    let agent = Agent::start(
        d,
        &config(
            d,
            api,
            &format!("scope = \"{scope}\"\nrate_limit = 0"),
            &parent,
        ),
        api,
    );
    let sid = format!("sid-exact-{scope}");
    let cg = TestCgroup::new(&parent, &sid);
    start_session(d, &sid, cg.id);

    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let v6 = TcpListener::bind("[::1]:0").unwrap();
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (p4, p6) = (
        v4.local_addr().unwrap().port(),
        v6.local_addr().unwrap().port(),
    );
    let script = format!("cat /etc/hostname; /usr/bin/python3 -c \"$0\" {p4} {p6} {closed}");
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(&script)
        .arg(PY)
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    cg.enter(&mut cmd);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let sh_pid_events = |all: &[Value]| of_session(all, &sid, "session.network").len();
    wait_for(
        Duration::from_secs(10),
        "three session.network events",
        || sh_pid_events(&events(d)) >= 3,
    );
    std::thread::sleep(Duration::from_millis(300));
    let all = events(d);

    for e in all
        .iter()
        .filter(|e| e["sid"] == sid && e["event"] != "session.start")
    {
        assert_eq!(e["user"], "alice", "{e}");
        assert_eq!(e["login"], "root", "{e}");
        assert_eq!(e["server_id"], "node-1", "{e}");
        assert_eq!(e["cgroup_id"], cg.id, "{e}");
        assert!(e["uid"].is_string() && e["time"].is_string(), "{e}");
    }
    let commands: Vec<(String, Value, Value)> = of_session(&all, &sid, "session.command")
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_string(),
                e["argv"].clone(),
                e["return_code"].clone(),
            )
        })
        .collect();
    assert_eq!(
        commands,
        vec![
            (
                "/bin/sh".to_string(),
                serde_json::json!(["-c", script, PY]),
                0.into()
            ),
            (
                "/usr/bin/cat".to_string(),
                serde_json::json!(["/etc/hostname"]),
                0.into()
            ),
            (
                "/usr/bin/python3".to_string(),
                serde_json::json!(["-c", PY, p4.to_string(), p6.to_string(), closed.to_string()]),
                0.into()
            ),
        ],
        "session.command events of the session"
    );
    let cmd = of_session(&all, &sid, "session.command");
    assert_eq!(cmd[0]["code"], "T4000I");
    assert_eq!(cmd[1]["program"], "cat");
    assert_eq!(cmd[1]["ppid"], cmd[0]["pid"], "cat's parent is the shell");

    let disk: Vec<&Value> = of_session(&all, &sid, "session.disk")
        .into_iter()
        .filter(|e| e["path"] == "/etc/hostname")
        .collect();
    assert_eq!(disk.len(), 1, "one open of /etc/hostname: {disk:?}");
    assert_eq!(disk[0]["code"], "T4001I");
    assert_eq!(disk[0]["program"], "cat");
    assert_eq!(disk[0]["flags"].as_u64().unwrap() & 3, 0, "O_RDONLY");
    assert!(disk[0]["return_code"].as_i64().unwrap() >= 0);
    assert_eq!(disk[0]["pid"], cmd[1]["pid"]);
    let ignored = of_session(&all, &sid, "session.disk")
        .iter()
        .filter(|e| {
            let p = e["path"].as_str().unwrap();
            p.starts_with("/usr/lib/") || p.starts_with("/proc/") || p == "/etc/ld.so.cache"
        })
        .count();
    assert_eq!(ignored, 0, "ignored prefixes are filtered in the kernel");

    let net: Vec<(String, u64, u64, i64)> = of_session(&all, &sid, "session.network")
        .iter()
        .map(|e| {
            assert_eq!(e["code"], "T4002I");
            assert_eq!(e["program"], "python3");
            assert_eq!(e["pid"], cmd[2]["pid"]);
            (
                e["dst_addr"].as_str().unwrap().to_string(),
                e["dst_port"].as_u64().unwrap(),
                e["version"].as_u64().unwrap(),
                e["return_code"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        net,
        vec![
            ("127.0.0.1".into(), p4 as u64, 4, 0),
            ("::1".into(), p6 as u64, 6, 0),
            (
                "127.0.0.1".into(),
                closed as u64,
                4,
                -(libc::ECONNREFUSED as i64)
            ),
        ]
    );
    let conns = of_session(&all, &sid, "session.network");
    assert_eq!(
        conns[0]["src_addr"], "127.0.0.1",
        "the kernel's source address"
    );
    assert_eq!(conns[1]["src_addr"], "::1");
    drop(agent);
}

#[test]
fn session_events_are_exact_in_sessions_scope() {
    if ebpf_or_skip("session_events_are_exact_in_sessions_scope") {
        session_events_are_exact("sessions");
    }
}

#[test]
fn session_events_are_exact_in_all_scope() {
    if ebpf_or_skip("session_events_are_exact_in_all_scope") {
        session_events_are_exact("all");
    }
}

#[test]
fn outside_processes_are_not_reported_in_sessions_scope_but_their_children_inside_are() {
    if !ebpf_or_skip("outside_processes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let api = free_port();
    let parent = CgroupParent::new("ebpf");
    let agent = Agent::start(d, &config(d, api, "rate_limit = 0", &parent), api);
    let sid = "sid-outside";
    let cg = TestCgroup::new(&parent, sid);
    start_session(d, sid, cg.id);
    // A forged start: a cgroup that is not a session cgroup (outside the parent), claimed for a sid. Its
    // processes must stay unreported, and it must not be taken as the session's.
    let forged = TestCgroup::at(&cgroup2_mount().join(format!("{}-forged", parent.name())));
    start_session(d, "sid-forged", forged.id);
    let outside = d.join("outside-marker");
    let inside = d.join("inside-marker");
    std::fs::write(&outside, "o").unwrap();
    std::fs::write(&inside, "i").unwrap();
    // The parent stays outside; its child moves itself into the session cgroup and then runs cat.
    let script = format!(
        "cat {o} >/dev/null; /bin/sh -c 'echo $$ > {procs}; exec /usr/bin/cat {i}' >/dev/null; cat {o} >/dev/null",
        o = outside.display(),
        i = inside.display(),
        procs = cg.path.join("cgroup.procs").display()
    );
    let st = Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .env("PATH", "/usr/bin:/bin")
        .status()
        .unwrap();
    assert!(st.success());
    let mut in_forged = Command::new("/usr/bin/cat");
    in_forged.arg(&outside).stdout(std::process::Stdio::null());
    forged.enter(&mut in_forged);
    assert!(in_forged.status().unwrap().success());
    let inside_s = inside.display().to_string();
    wait_for(Duration::from_secs(10), "the inside open", || {
        events(d)
            .iter()
            .any(|e| e["event"] == "session.disk" && e["path"] == inside_s.as_str())
    });
    std::thread::sleep(Duration::from_millis(300));
    let all = events(d);
    let host: Vec<&Value> = all
        .iter()
        .filter(|e| {
            e["event"].as_str().unwrap().starts_with("session.") && e["event"] != "session.start"
        })
        .collect();
    assert!(
        host.iter().all(|e| e["sid"] == sid),
        "every host event is the session's: {host:?}"
    );
    let outside_s = outside.display().to_string();
    assert!(
        !all.iter().any(|e| e.to_string().contains(&outside_s)),
        "nothing of the outside process, nor of the forged session's cgroup"
    );
    assert!(
        metric_sum(
            &agent.metrics(),
            "auditrail_sessions_directory_refused_total",
            &[("reason", "no_cgroup")]
        ) >= 1.0,
        "the forged start was refused"
    );
    let cmds = of_session(&all, sid, "session.command");
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert_eq!(cmds[0]["argv"], serde_json::json!([inside_s]));
    drop(agent);
}

#[test]
fn without_capabilities_the_source_fails_clearly_and_the_agent_runs_on() {
    if !ebpf_or_skip("without_capabilities") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let api = free_port();
    let parent = CgroupParent::new("ebpf");
    // setpriv (util-linux) runs the agent as root with every capability dropped.
    let wrapper = d.join("unprivileged.sh");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec setpriv --bounding-set -all --inh-caps -all --ambient-caps -all -- {} \"$@\"\n", binary().display()),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut agent = Agent::start_binary(&wrapper, d, &config(d, api, "", &parent), api, |_| {});
    wait_for(Duration::from_secs(10), "the source marked failed", || {
        http("GET", api, "/ready", &[], b"").is_ok_and(|(_, b)| b.contains("\"failed\""))
    });
    let log = agent.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("not allowed to load eBPF programs"))
        .collect();
    assert_eq!(lines.len(), 1, "one clear line:\n{log}");
    assert!(
        lines[0].contains("CAP_BPF") && lines[0].contains("source `host`"),
        "{}",
        lines[0]
    );
    let (status, ready) = http("GET", api, "/ready", &[], b"").unwrap();
    assert_eq!(status, 503);
    let ready: Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["sources"]["host"]["state"], "failed");
    assert_eq!(ready["sources"]["local"]["state"], "running");
    let (status, health) = http("GET", api, "/health", &[], b"").unwrap();
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&health).unwrap();
    assert!(
        health["failed"]["source host"]
            .as_str()
            .unwrap()
            .contains("CAP_BPF"),
        "{health}"
    );
    // The other source still delivers.
    let mut s = UnixStream::connect(d.join("data/events.sock")).unwrap();
    writeln!(
        s,
        "{{\"event\":\"user.login\",\"time\":\"2026-01-01T00:00:00Z\",\"uid\":\"u-1\"}}"
    )
    .unwrap();
    wait_for(Duration::from_secs(10), "the unix event delivered", || {
        events(d).iter().any(|e| e["uid"] == "u-1")
    });
    assert!(agent.alive());
    // `validate` says the same without starting anything.
    let out = Command::new("setpriv")
        .args([
            "--bounding-set",
            "-all",
            "--inh-caps",
            "-all",
            "--ambient-caps",
            "-all",
            "--",
        ])
        .arg(binary())
        .args(["validate", "--config"])
        .arg(d.join("auditrail.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("source `host`: not allowed to load eBPF programs"),
        "{stderr}"
    );
}

#[test]
fn an_exec_storm_with_a_tiny_ring_buffer_loses_nothing_uncounted() {
    if !ebpf_or_skip("exec storm") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let api = free_port();
    let parent = CgroupParent::new("ebpf");
    let agent = Agent::start(
        d,
        &config(
            d,
            api,
            "events = [\"exec\"]\nring_buffer_size = \"4KiB\"\nrate_limit = 0",
            &parent,
        ),
        api,
    );
    let sid = "sid-storm";
    let cg = TestCgroup::new(&parent, sid);
    start_session(d, sid, cg.id);
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("i=0; while [ $i -lt 10000 ]; do /bin/true; i=$((i+1)); done");
    cg.enter(&mut cmd);
    let mut storm = cmd.spawn().unwrap();
    // Stopping the reader for a while makes the 4 KiB ring overflow for certain, whatever the machine's speed.
    std::thread::sleep(Duration::from_millis(500));
    unsafe { libc::kill(agent.pid(), libc::SIGSTOP) };
    std::thread::sleep(Duration::from_millis(1500));
    unsafe { libc::kill(agent.pid(), libc::SIGCONT) };
    assert!(storm.wait().unwrap().success());
    // The shell's own exec (inside the cgroup already) and its 10,000 children.
    let expected = 10_001.0;
    let labels = [("source", "host"), ("kind", "exec")];
    wait_for(
        Duration::from_secs(20),
        "the kernel's counters to settle",
        || {
            let m = agent.metrics();
            metric_sum(&m, "auditrail_ebpf_seen_events_total", &labels) == expected
                && metric_sum(&m, "auditrail_ebpf_events_total", &labels)
                    + metric_sum(&m, "auditrail_ebpf_lost_events_total", &labels)
                    == expected
        },
    );
    let m = agent.metrics();
    let delivered = metric_sum(&m, "auditrail_ebpf_events_total", &labels) as usize;
    let lost = metric_sum(&m, "auditrail_ebpf_lost_events_total", &labels) as u64;
    assert!(lost > 0, "the stopped reader made the ring overflow");
    assert!(delivered > 0);
    wait_for(
        Duration::from_secs(20),
        "every delivered event and the loss reports in the sink",
        || {
            let all = events(d);
            let reported: u64 = all
                .iter()
                .filter(|e| {
                    e["event"] == "auditrail.dropped" && e["reason"] == "ebpf_ring_buffer_full"
                })
                .map(|e| e["count"].as_u64().unwrap())
                .sum();
            of_session(&all, sid, "session.command").len() == delivered && reported == lost
        },
    );
    let all = events(d);
    assert_eq!(
        of_session(&all, sid, "session.command").len() as u64 + lost,
        10_001,
        "delivered + counted lost = the execs that ran"
    );
    drop(agent);
}
