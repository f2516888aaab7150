//! Fault tests of the delivery promise with a disk buffer: kill -9 again and again, a sink outage, a full
//! disk, damaged segments, and a crash at every step of the acknowledgement path. Each asserts exact counts by
//! uid: nothing lost, duplicates only where a crash makes them unavoidable (counted and printed).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use auditrail_integration_tests::*;

fn config(d: &Path, api: u16, data_dir: &Path, sink_path: &str, extra: &str) -> String {
    format!(
        r#"
data_dir = "{data}"
shutdown_timeout = "20s"
[api]
address = "127.0.0.1:{api}"
[sources.teleport]
type = "file"
include = ["{d}/in/*.log"]
poll_interval = "20ms"
checkpoint_interval = "100ms"
[sinks.out]
type = "file"
inputs = ["teleport"]
path = "{sink_path}"
batch_max_events = 1000
buffer = {{ type = "disk", max_size = "256MiB", fsync_interval = "20ms" {extra} }}
"#,
        d = d.display(),
        data = data_dir.display()
    )
}

fn out_path(d: &Path) -> String {
    format!("{}/out/events.ndjson", d.display())
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn twenty_kill_9s_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    const N: usize = 200_000;
    write_events(&d.join("in/a.log"), "k-", N);
    let api = free_port();
    let cfg = config(d, api, &d.join("data"), &out_path(d), "");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..20 {
        let agent = Agent::start(d, &cfg, api);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(20 + seed % 150));
        agent.kill9();
        println!(
            "kill -9 #{round}: {} lines out so far",
            line_count(&d.join("out"))
        );
    }
    let (lost, dups, counts) = recover_and_tally(d, &cfg, api, "k-", N);
    println!("20 x kill -9, disk buffer: sent {N}, delivered {} distinct, duplicated {dups}, lost {lost}", counts.len());
    assert_eq!(lost, 0);
    assert_eq!(counts.len(), N);
}

#[test]
fn sink_outage_is_absorbed_on_disk_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    std::fs::create_dir_all(d.join("out")).unwrap();
    // The sink's directory is a regular file until the outage ends.
    std::fs::write(d.join("out/down"), b"").unwrap();
    const N: usize = 100_000;
    write_events(&d.join("in/a.log"), "o-", N);
    let api = free_port();
    let cfg = config(
        d,
        api,
        &d.join("data"),
        &format!("{}/out/down/events.ndjson", d.display()),
        "",
    );
    let agent = Agent::start(d, &cfg, api);
    // Every event reaches the disk buffer (and the source checkpoints past it) while the sink is down.
    wait_for(Duration::from_secs(60), "events buffered on disk", || {
        agent.metric("auditrail_buffer_events", &[("sink", "out")]) >= (N - 1_000) as f64
    });
    let rss = rss_kib(agent.pid());
    println!(
        "sink outage: {} events buffered on disk, agent RSS {} KiB",
        agent.metric("auditrail_buffer_events", &[("sink", "out")]),
        rss
    );
    assert!(
        rss < 64 * 1024,
        "memory stays bounded while the sink is down: {rss} KiB"
    );
    assert!(agent.metric("auditrail_sink_errors_total", &[("sink", "out")]) >= 1.0);
    std::fs::remove_file(d.join("out/down")).unwrap();
    wait_for(Duration::from_secs(60), "delivery after the outage", || {
        line_count(&d.join("out")) >= N
    });
    assert!(agent.terminate(Duration::from_secs(30)).success());
    let (lost, dups, counts) = tally(d, "o-", N);
    println!(
        "sink outage: sent {N}, delivered {}, duplicated {dups}, lost {lost}",
        counts.len()
    );
    assert_eq!((lost, dups), (0, 0));
}

#[test]
fn damaged_segments_are_skipped_counted_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    std::fs::create_dir_all(d.join("out")).unwrap();
    std::fs::write(d.join("out/down"), b"").unwrap();
    const N: usize = 20_000;
    write_events(&d.join("in/a.log"), "c-", N);
    let api = free_port();
    // Small segments, so damage can hit two different ones.
    let blocked = config(
        d,
        api,
        &d.join("data"),
        &format!("{}/out/down/events.ndjson", d.display()),
        ", max_segment_size = \"1MiB\"",
    );
    let agent = Agent::start(d, &blocked, api);
    wait_for(Duration::from_secs(60), "everything on disk", || {
        agent.metric("auditrail_buffer_events", &[("sink", "out")]) >= N as f64
    });
    assert!(agent.terminate(Duration::from_secs(30)).success());
    let mut segments: Vec<_> = std::fs::read_dir(d.join("data/buffers/out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    assert!(
        segments.len() >= 3,
        "want several segments, got {}",
        segments.len()
    );
    // Flip one byte in the middle of the first segment's first record payload (after the 8-byte header).
    let mut first = std::fs::read(&segments[0]).unwrap();
    first[8 + 40] ^= 0xff;
    std::fs::write(&segments[0], &first).unwrap();
    // Cut the last segment in the middle of a record.
    let last = segments.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    // `validate` reports what the start will skip, without changing anything.
    let before = std::fs::read(&segments[0]).unwrap();
    let out = Command::new(binary())
        .args(["validate", "--config"])
        .arg(d.join("auditrail.toml"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("1 corrupt records"),
        "validate names the damage: {text}"
    );
    let out = Command::new(binary())
        .args(["buffer", "inspect", "--config"])
        .arg(d.join("auditrail.toml"))
        .arg("out")
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{listing}");
    assert!(
        listing.contains("records pending: ")
            && listing.contains(".seg")
            && listing.contains("1 corrupt records"),
        "buffer inspect: {listing}"
    );
    assert_eq!(std::fs::read(&segments[0]).unwrap(), before);
    std::fs::remove_file(d.join("out/down")).unwrap();
    let agent = Agent::start(d, &blocked, api);
    wait_for(Duration::from_secs(60), "the rest delivered", || {
        line_count(&d.join("out")) >= N - 2
    });
    std::thread::sleep(Duration::from_millis(500));
    let corrupt = agent.metric("auditrail_buffer_corrupt_records_total", &[("sink", "out")]);
    assert!(agent.terminate(Duration::from_secs(30)).success());
    let (lost, dups, counts) = tally(d, "c-", N);
    let errors = lines_in(&d.join("out"))
        .iter()
        .filter(|l| l.contains("\"event\":\"auditrail.error\""))
        .count();
    println!("corruption: {N} buffered, delivered {}, lost {lost} (1 corrupt + 1 torn), duplicated {dups}, corrupt metric {corrupt}", counts.len());
    assert_eq!(lost, 2, "exactly the flipped record and the torn one");
    assert_eq!(corrupt, 1.0);
    assert!(errors >= 1, "an auditrail.error event reports the damage");
}

#[test]
fn a_crash_at_any_step_of_the_ack_path_loses_nothing_and_restarts() {
    let Some(bin) = crash_binary() else {
        return;
    };
    for point in auditrail_core::buffer::disk::CRASH_POINTS {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("in")).unwrap();
        const N: usize = 20_000;
        write_events(&d.join("in/a.log"), "p-", N);
        let api = free_port();
        let cfg = config(
            d,
            api,
            &d.join("data"),
            &out_path(d),
            ", max_segment_size = \"1MiB\"",
        );
        std::fs::write(d.join("auditrail.toml"), &cfg).unwrap();
        let status = Command::new(&bin)
            .args(["run", "--config"])
            .arg(d.join("auditrail.toml"))
            .env("AUDITRAIL_CRASH_AT", point)
            .env("AUDITRAIL_CRASH_AFTER", "3")
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "{point}: the hook must stop the agent");
        let (lost, dups, _) = recover_and_tally(d, &cfg, api, "p-", N);
        println!("crash at {point}: sent {N}, lost {lost}, duplicated {dups}");
        assert_eq!(lost, 0, "{point}");
    }
}

#[test]
fn a_full_disk_blocks_then_resumes_by_itself() {
    if unsafe { libc::geteuid() } != 0 {
        println!("not root: cannot mount a size-limited tmpfs; disk-full test not run");
        assert!(
            std::env::var_os("AUDITRAIL_REQUIRE_ROOT").is_none(),
            "root is required but missing"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("small");
    std::fs::create_dir_all(&data).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(ok.success(), "mounting a tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _guard = Unmount(data.clone());
    std::fs::create_dir_all(d.join("in")).unwrap();
    std::fs::create_dir_all(d.join("out")).unwrap();
    std::fs::write(d.join("out/down"), b"").unwrap();
    // Fill the small filesystem, leaving about 1 MiB.
    std::fs::write(data.join("filler"), vec![0u8; 7 * 1024 * 1024]).unwrap();
    const N: usize = 20_000; // about 7 MB of events: far more than fits
    write_events(&d.join("in/a.log"), "f-", N);
    let api = free_port();
    let cfg = config(
        d,
        api,
        &data,
        &format!("{}/out/down/events.ndjson", d.display()),
        "",
    );
    let mut agent = Agent::start(d, &cfg, api);
    wait_for(
        Duration::from_secs(30),
        "the buffer reports the full disk",
        || agent.metric("auditrail_buffer_write_blocked", &[("sink", "out")]) == 1.0,
    );
    assert!(agent.alive());
    // Space comes back and the sink too: everything arrives, nothing is corrupt.
    std::fs::remove_file(data.join("filler")).unwrap();
    std::fs::remove_file(d.join("out/down")).unwrap();
    wait_for(
        Duration::from_secs(60),
        "delivery after space returned",
        || line_count(&d.join("out")) >= N,
    );
    assert_eq!(
        agent.metric("auditrail_buffer_write_blocked", &[("sink", "out")]),
        0.0
    );
    assert_eq!(
        agent.metric("auditrail_buffer_corrupt_records_total", &[("sink", "out")]),
        0.0
    );
    assert!(agent.terminate(Duration::from_secs(30)).success());
    let (lost, dups, _) = tally(d, "f-", N);
    println!("disk full: sent {N}, lost {lost}, duplicated {dups}");
    assert_eq!(lost, 0);
}
