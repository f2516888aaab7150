//! CI's verdict comes from the test runner: the real `scripts/test.sh`, run in a scratch tree where `cargo` and
//! everything else the script calls are stubs first on `PATH`, must fail when `cargo nextest run` dies with a
//! partial log (an OOM kill prints no summary), exits zero without a summary, or reports a failed test, and pass
//! when it reports success — so the test can fail both ways.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use auditrail_integration_tests::workspace_root;

/// Stands in for cargo: fmt, clippy, build and the doc tests succeed (build leaves an empty binary where the
/// script copies it from); `cargo nextest --version` says it is installed; `cargo nextest run` prints the log in
/// `$FAKE_CARGO_TEST_LOG` and exits with `$FAKE_CARGO_TEST_EXIT`. Every call is appended to `$FAKE_CARGO_CALLS`.
const FAKE_CARGO: &str = r#"#!/usr/bin/env bash
echo "$*" >> "$FAKE_CARGO_CALLS"
case "$1 $2" in
    "nextest --version") echo "cargo-nextest 0.9.0"; exit 0 ;;
    "nextest run"*) cat "$FAKE_CARGO_TEST_LOG"; exit "$FAKE_CARGO_TEST_EXIT" ;;
    "test --workspace") exit 0 ;;
esac
case "$1" in
    fmt | clippy) exit 0 ;;
    build) mkdir -p target/release && : > target/release/auditrail && chmod +x target/release/auditrail; exit 0 ;;
    *) echo "fake cargo: unexpected call: $*" >&2; exit 99 ;;
esac
"#;

/// Says rustfmt is installed, so the script adds no component.
const FAKE_RUSTUP: &str = "#!/usr/bin/env bash\necho rustfmt-x86_64-unknown-linux-gnu\necho clippy-x86_64-unknown-linux-gnu\n";

/// Must never run: everything the script would install is present.
const FAKE_APT: &str = "#!/usr/bin/env bash\necho \"apt-get must not run: $*\" >&2\nexit 97\n";

/// A log like nextest's when some tests passed and the runner was killed mid-way: no summary.
const KILLED: &str = "\
    Starting 43 tests across 2 binaries
        PASS [   0.010s] a a::one
        PASS [   0.011s] a a::two
        PASS [   0.012s] a a::three
";

/// A failure in the summary (whatever the exit status says).
const FAILED: &str = "\
    Starting 5 tests across 1 binary
        PASS [   0.010s] a a::one
        FAIL [   0.011s] a a::two
     Summary [   0.050s] 5 tests run: 4 passed, 1 failed, 0 skipped
";

const PASSED: &str = "\
    Starting 5 tests across 1 binary
        PASS [   0.010s] a a::one
     Summary [   0.050s] 5 tests run: 5 passed, 0 skipped
";

fn write_exe(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs a copy of `script` (the text of `scripts/test.sh`) in a scratch tree whose `cargo test` prints `log`
/// and exits with `exit`; returns the script's output and the cargo calls it made.
fn run_script(script: &str, log: &str, exit: i32) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    write_exe(&root.join("scripts/test.sh"), script);
    write_exe(
        &root.join("integration-tests/peers/opensearch/install"),
        "#!/usr/bin/env bash\necho /nonexistent/osmem-server\n",
    );
    write_exe(
        &root.join("integration-tests/peers/s3/install"),
        "#!/usr/bin/env bash\necho /nonexistent/moto-venv/bin\n",
    );
    for peer in ["tmux", "chromium"] {
        write_exe(
            &root.join(format!("integration-tests/peers/{peer}/install")),
            &format!("#!/usr/bin/env bash\necho /nonexistent/{peer}\n"),
        );
    }
    let bin = dir.path().join("bin");
    write_exe(&bin.join("cargo"), FAKE_CARGO);
    write_exe(&bin.join("rustup"), FAKE_RUSTUP);
    write_exe(&bin.join("apt-get"), FAKE_APT);
    for present in ["systemd-analyze", "cc", "make", "python3"] {
        write_exe(&bin.join(present), "#!/usr/bin/env bash\nexit 0\n");
    }
    std::fs::write(dir.path().join("test.log"), log).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(root.join("scripts/test.sh"))
        .env("PATH", path)
        .env("FAKE_CARGO_CALLS", dir.path().join("calls"))
        .env("FAKE_CARGO_TEST_LOG", dir.path().join("test.log"))
        .env("FAKE_CARGO_TEST_EXIT", exit.to_string())
        .output()
        .expect("running scripts/test.sh");
    let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap_or_default();
    (out, calls)
}

fn the_script() -> String {
    std::fs::read_to_string(workspace_root().join("scripts/test.sh")).unwrap()
}

fn describe(out: &Output, calls: &str) -> String {
    format!(
        "status {:?}\ncargo calls:\n{calls}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The script got as far as the test run (so its verdict is about the tests, not an earlier step).
fn ran_the_tests(calls: &str) -> bool {
    calls
        .lines()
        .any(|l| l.starts_with("nextest run") && l.contains("--workspace"))
}

#[test]
fn a_test_run_killed_with_a_partial_log_fails_the_run() {
    let (out, calls) = run_script(&the_script(), KILLED, 137);
    let what = describe(&out, &calls);
    assert!(ran_the_tests(&calls), "{what}");
    assert!(
        !out.status.success(),
        "an OOM-killed test run passed CI\n{what}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("137"),
        "the failure names the runner's status\n{what}"
    );
}

#[test]
fn a_failed_summary_fails_the_run_even_when_the_runner_exits_zero() {
    let (out, calls) = run_script(&the_script(), FAILED, 0);
    let what = describe(&out, &calls);
    assert!(ran_the_tests(&calls), "{what}");
    assert!(!out.status.success(), "a FAILED summary passed CI\n{what}");
}

#[test]
fn a_passing_run_passes() {
    let (out, calls) = run_script(&the_script(), PASSED, 0);
    let what = describe(&out, &calls);
    assert!(ran_the_tests(&calls), "{what}");
    assert!(out.status.success(), "a passing run failed CI\n{what}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("5 passed, 0 failed"),
        "{what}"
    );
}

#[test]
fn a_run_without_a_summary_fails_even_when_the_runner_exits_zero() {
    let (out, calls) = run_script(&the_script(), KILLED, 0);
    let what = describe(&out, &calls);
    assert!(ran_the_tests(&calls), "{what}");
    assert!(
        !out.status.success(),
        "a run that never printed its summary passed CI\n{what}"
    );
}
