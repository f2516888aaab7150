//! Compiles `bpf/events.bpf.c` with clang when clang is there (`$AUDITRAIL_CLANG`, else `clang` on PATH);
//! otherwise, or when `AUDITRAIL_EBPF_COMMITTED=1`, uses the committed `objects/events.bpf.o`, so that
//! building the agent never needs clang. The flags are in `bpf/clang-flags`, shared with
//! `refresh-objects.sh` and the staleness test, and the compile runs inside `bpf/` with
//! `-fdebug-compilation-dir=.`: the same clang then gives the same bytes in any checkout.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it")).join("events.bpf.o");
    let bpf = dir.join("bpf");
    for f in ["events.bpf.c", "events.h", "kernel.h", "clang-flags"] {
        println!("cargo:rerun-if-changed={}", bpf.join(f).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        dir.join("objects/events.bpf.o").display()
    );
    println!("cargo:rerun-if-env-changed=AUDITRAIL_CLANG");
    println!("cargo:rerun-if-env-changed=AUDITRAIL_EBPF_COMMITTED");
    let committed = || {
        std::fs::copy(dir.join("objects/events.bpf.o"), &out)
            .expect("ebpf/objects/events.bpf.o is committed");
        println!("cargo:rustc-env=AUDITRAIL_EBPF_OBJECT_ORIGIN=committed");
    };
    if std::env::var_os("AUDITRAIL_EBPF_COMMITTED").is_some_and(|v| v == "1") {
        return committed();
    }
    let clang = std::env::var("AUDITRAIL_CLANG").unwrap_or_else(|_| "clang".into());
    let version = match Command::new(&clang).arg("--version").output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string(),
        _ => return committed(),
    };
    let flags = std::fs::read_to_string(bpf.join("clang-flags")).expect("bpf/clang-flags");
    let status = Command::new(&clang)
        .current_dir(&bpf)
        .args(flags.split_whitespace())
        .args(["-c", "events.bpf.c", "-o"])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {
            println!("cargo:rustc-env=AUDITRAIL_EBPF_OBJECT_ORIGIN={version}");
        }
        other => {
            println!(
                "cargo:warning={clang} could not compile ebpf/bpf/events.bpf.c ({other:?}); using the committed object"
            );
            committed();
        }
    }
}
