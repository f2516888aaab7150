//! The shipped systemd units, `config/auditrail.service` and `config/auditrail-uploader.service`, checked by
//! systemd's own tools: each verifies (no unknown
//! directive, the binary it names runs) and its hardening scores an exposure of at most 2.0 in
//! `systemd-analyze security` (the "OK" band), so that a change that loosens it fails here, not in a customer's
//! security review.
//!
//! Without `systemd-analyze` the tests say so and pass, unless `AUDITRAIL_REQUIRE_SYSTEMD` is set
//! (`scripts/test.sh` sets it and installs systemd), where a missing tool is a failure.

use std::path::PathBuf;
use std::process::Command;

use auditrail_integration_tests::*;

/// The highest overall exposure `systemd-analyze security` may give the unit.
const MAX_EXPOSURE: f64 = 2.0;

/// Whether `systemd-analyze` can be run; panics when it cannot but is required.
fn systemd_analyze_present() -> bool {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        return true;
    }
    // scripts/test.sh installs systemd and sets this, so CI never passes without checking the unit.
    assert!(
        std::env::var_os("AUDITRAIL_REQUIRE_SYSTEMD").is_none(),
        "systemd-analyze is required (AUDITRAIL_REQUIRE_SYSTEMD is set) but missing: apt-get install systemd"
    );
    println!("systemd-analyze is not installed here: unit not checked");
    false
}

/// The units shipped in `config/`.
const UNITS: [&str; 2] = ["auditrail.service", "auditrail-uploader.service"];

/// The shipped unit `name`, pointed at the binary under test, written to a temporary directory.
fn unit_under_test(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    let unit = std::fs::read_to_string(workspace_root().join("config").join(name)).unwrap();
    // Everything but the binary's path is checked as shipped.
    let unit = unit.replace("/usr/local/bin/auditrail", binary().to_str().unwrap());
    let path = dir.path().join(name);
    std::fs::write(&path, unit).unwrap();
    path
}

#[test]
fn systemd_unit_verifies() {
    if !systemd_analyze_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in UNITS {
        let path = unit_under_test(&dir, name);
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ours: Vec<&str> = stderr.lines().filter(|l| l.contains(name)).collect();
        assert!(
            out.status.success() && ours.is_empty(),
            "systemd-analyze verify {name}: {stderr}"
        );
    }
}

/// The number in `→ Overall exposure level for auditrail.service: 1.8 OK 🙂`.
fn overall_exposure(report: &str) -> Option<f64> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    let (_, after) = line.rsplit_once(": ")?;
    after.split_whitespace().next()?.parse().ok()
}

#[test]
fn systemd_unit_exposure_is_at_most_2() {
    assert_eq!(
        overall_exposure("→ Overall exposure level for auditrail.service: 1.8 OK 🙂"),
        Some(1.8)
    );
    assert_eq!(overall_exposure("no such line"), None);
    if !systemd_analyze_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in UNITS {
        let path = unit_under_test(&dir, name);
        // --offline: judge the file itself, not a unit loaded into a running systemd (there may be none).
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let exposure = overall_exposure(&stdout).unwrap_or_else(|| {
            panic!("no overall exposure for {name} in the output of systemd-analyze security (status {}):\n{stdout}\n{stderr}", out.status)
        });
        // What still counts against the unit, for the log of a passing run and the message of a failing one.
        let open: Vec<&str> = stdout.lines().filter(|l| l.starts_with('✗')).collect();
        println!(
            "systemd-analyze security {name}: exposure {exposure} (at most {MAX_EXPOSURE}); not hardened:\n{}",
            open.join("\n")
        );
        assert!(
            exposure <= MAX_EXPOSURE,
            "config/{name} scores an exposure of {exposure}, above {MAX_EXPOSURE}; not hardened:\n{}",
            open.join("\n")
        );
    }
}
