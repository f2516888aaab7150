//! The committed `objects/events.bpf.o` is what `bpf/` compiles to. Without clang the test compares the
//! SHA-256 of every input with what `refresh-objects.sh` recorded in `objects/events.bpf.o.inputs` (and the
//! object with its recorded hash); with the clang the object was built with, it also rebuilds the object in
//! a scratch directory and compares the bytes (the compile is reproducible: see `build.rs`). Either fails
//! with what to run.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

const FIX: &str =
    "the committed eBPF object is stale: run ebpf/refresh-objects.sh and commit ebpf/objects/";

fn recorded() -> Vec<(String, String, String)> {
    std::fs::read_to_string(dir().join("objects/events.bpf.o.inputs"))
        .expect("objects/events.bpf.o.inputs is committed")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let mut p = l.splitn(3, ' ');
            let kind = p.next().unwrap().to_string();
            let a = p.next().unwrap_or_default().to_string();
            let b = p.next().unwrap_or_default().to_string();
            (kind, a, b)
        })
        .collect()
}

#[test]
fn inputs_match_what_the_object_was_built_from() {
    let rec = recorded();
    let mut files = 0;
    for (kind, hash, name) in &rec {
        match kind.as_str() {
            "sha256" => {
                files += 1;
                assert_eq!(
                    &sha256(&dir().join("bpf").join(name)),
                    hash,
                    "bpf/{name} changed: {FIX}"
                );
            }
            "object" => assert_eq!(
                &sha256(&dir().join("objects/events.bpf.o")),
                hash,
                "objects/events.bpf.o is not the object recorded: {FIX}"
            ),
            _ => {}
        }
    }
    // Every source in bpf/ is an input: a new header must be recorded too.
    let mut on_disk: Vec<String> = std::fs::read_dir(dir().join("bpf"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut names: Vec<String> = rec
        .iter()
        .filter(|r| r.0 == "sha256")
        .map(|r| r.2.clone())
        .collect();
    names.sort();
    assert_eq!(
        on_disk, names,
        "files in bpf/ vs the recorded inputs: {FIX}"
    );
    assert_eq!(files, names.len());
}

#[test]
fn rebuilding_gives_the_committed_bytes() {
    let clang = std::env::var("AUDITRAIL_CLANG").unwrap_or_else(|_| "clang".into());
    let Ok(out) = Command::new(&clang).arg("--version").output() else {
        println!("no clang: only the recorded input hashes are compared");
        assert!(
            std::env::var_os("AUDITRAIL_REQUIRE_EBPF_CLANG").is_none(),
            "clang is required but missing"
        );
        return;
    };
    let version = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let built_with = recorded()
        .into_iter()
        .find(|r| r.0 == "clang")
        .map(|r| format!("{} {}", r.1, r.2))
        .unwrap_or_default();
    if version != built_with {
        println!("clang is `{version}`, the object was built with `{built_with}`: bytes differ between versions, only the input hashes are compared");
        return;
    }
    // A copy of bpf/ elsewhere: the bytes must not depend on where the checkout is.
    let scratch = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(dir().join("bpf")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), scratch.path().join(e.file_name())).unwrap();
    }
    let flags = std::fs::read_to_string(dir().join("bpf/clang-flags")).unwrap();
    let status = Command::new(&clang)
        .current_dir(scratch.path())
        .args(flags.split_whitespace())
        .args(["-c", "events.bpf.c", "-o", "rebuilt.o"])
        .status()
        .unwrap();
    assert!(status.success(), "clang failed on bpf/events.bpf.c");
    let rebuilt = std::fs::read(scratch.path().join("rebuilt.o")).unwrap();
    let committed = std::fs::read(dir().join("objects/events.bpf.o")).unwrap();
    assert!(rebuilt == committed, "{FIX}");
}
