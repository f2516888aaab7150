//! The command line and operator files: `validate`, `--version`, the shipped configs (the systemd unit has its
//! own tests, in `systemd_unit.rs`).

use std::process::Command;

use auditrail_integration_tests::*;

fn auditrail(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .current_dir(workspace_root())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn shipped_configs_validate() {
    for f in ["config/auditrail.toml", "examples/teleport-node.toml"] {
        let (code, stdout, stderr) = Command::new(binary())
            .args(["validate", "--config", f])
            .env("AUDITRAIL_HTTP_TOKEN", "t")
            .current_dir(workspace_root())
            .output()
            .map(|o| {
                (
                    o.status.code().unwrap(),
                    String::from_utf8_lossy(&o.stdout).into_owned(),
                    String::from_utf8_lossy(&o.stderr).into_owned(),
                )
            })
            .unwrap();
        assert_eq!(code, 0, "{f}: {stderr}");
        assert!(stdout.contains(": ok ("), "{stdout}");
    }
}

#[test]
fn validate_reports_file_line_and_column_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[sources.a]\ntype = \"file\"\ninclude = [\"x\"]\n[sinks.b]\ntype = \"file\"\ninputs = [\"a\"]\npath = \"o\"\nfsync = \"sometimes\"\n").unwrap();
    let (code, _, stderr) = auditrail(&["validate", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!(
            "{}:8:9: unknown variant `sometimes`, expected `batch` or `none`",
            path.display()
        )),
        "{stderr}"
    );
    let (code, _, stderr) = auditrail(&["validate", "--config", "/nonexistent/auditrail.toml"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("/nonexistent/auditrail.toml: cannot read the config file"),
        "{stderr}"
    );
}

#[test]
fn version_is_printed() {
    let (code, stdout, _) = auditrail(&["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("auditrail "), "{stdout}");
}
