//! The unix source through the real binary: socket mode, NDJSON, bad lines, stale sockets.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use auditrail_integration_tests::*;

#[test]
fn ndjson_over_a_private_socket() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let api = free_port();
    let sock = d.join("run/auditrail.sock");
    // A stale socket from a crashed run is replaced.
    std::fs::create_dir_all(d.join("run")).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let cfg = format!(
        "data_dir = \"{d}/data\"\n[api]\naddress = \"127.0.0.1:{api}\"\n[sources.local]\ntype = \"unix\"\npath = \"{s}\"\n[sinks.out]\ntype = \"file\"\ninputs = [\"local\"]\npath = \"{d}/out/e.ndjson\"\n",
        d = d.display(),
        s = sock.display()
    );
    let agent = Agent::start(d, &cfg, api);
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut s = UnixStream::connect(&sock).unwrap();
    for i in 0..5_000 {
        writeln!(s, "{}", event(&format!("u-{i}"), i)).unwrap();
        if i == 100 {
            s.write_all(b"garbage line\n").unwrap();
        }
    }
    drop(s);
    wait_for(Duration::from_secs(20), "5,000 events", || {
        line_count(&d.join("out")) >= 5_000
    });
    wait_for(Duration::from_secs(5), "the bad line counted", || {
        agent.metric("auditrail_source_invalid_total", &[("source", "local")]) == 1.0
    });
    let dl = std::fs::read_to_string(d.join("data/dead-letter/sources/local.ndjson")).unwrap();
    assert!(dl.contains("connection 1 line 102"), "{dl}");
    assert_eq!(uids_in(&d.join("out")).len(), 5_000);
    assert!(agent.terminate(Duration::from_secs(30)).success());
    assert!(!sock.exists(), "the socket is removed on exit");
}
