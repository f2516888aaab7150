//! Every fuzz target's body over its committed seed corpus (`fuzz/corpus/<target>/`), then over seeded random
//! inputs: fresh random bytes and mutations of the seeds (bit flips, inserted, deleted and overwritten bytes,
//! truncations, splices of two seeds). On stable, under plain `cargo test`, so the targets never rot. A failing
//! input is written to `target/fuzz-failures/<target>-<n>` to replay with `cargo fuzz run <target> FILE`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use auditrail_fuzz_bodies::TARGETS;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Random inputs per target after the seeds (half fresh, half mutated seeds).
const RANDOM_INPUTS: usize = 3_000;
/// A target with fewer committed seeds than this fails: an empty corpus would test nothing.
const MIN_SEEDS: usize = 4;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = repo().join("fuzz/corpus").join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn mutate(rng: &mut StdRng, seeds: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut v = seeds[rng.random_range(0..seeds.len())].1.clone();
    for _ in 0..rng.random_range(1..=4) {
        let len = v.len();
        match rng.random_range(0..6) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let i = rng.random_range(0..=len);
                let b = *[
                    b'\n', b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', 0, 0xff,
                ]
                .get(rng.random_range(0..11))
                .unwrap();
                v.insert(i, b);
            }
            2 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(16));
                v.drain(i..i + n);
            }
            3 if len > 0 => {
                let i = rng.random_range(0..len);
                v[i] = rng.random();
            }
            4 => v.truncate(rng.random_range(0..=len)),
            _ => {
                let other = &seeds[rng.random_range(0..seeds.len())].1;
                let from = rng.random_range(0..=other.len());
                let at = rng.random_range(0..=len);
                v.splice(at..at, other[from..].iter().copied());
            }
        }
    }
    v
}

fn run(target: &str, body: fn(&[u8]), what: &str, input: &[u8], failures: &mut Vec<String>) {
    if let Err(e) = catch_unwind(AssertUnwindSafe(|| body(input))) {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let dir = repo().join("target/fuzz-failures");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{target}-{}", failures.len()));
        std::fs::write(&file, input).unwrap();
        failures.push(format!("{target} on {what} ({}): {msg}", file.display()));
    }
}

#[test]
fn every_target_holds_on_its_corpus_and_random_inputs() {
    let mut failures = Vec::new();
    for (i, (target, body)) in TARGETS.into_iter().enumerate() {
        let t = Instant::now();
        let seeds = seeds(target);
        assert!(
            seeds.len() >= MIN_SEEDS,
            "fuzz/corpus/{target}/ has {} seeds, fewer than {MIN_SEEDS}",
            seeds.len()
        );
        for (name, data) in &seeds {
            run(target, body, &format!("seed {name}"), data, &mut failures);
        }
        let mut rng = StdRng::seed_from_u64(0x5eed_0000 + i as u64);
        for n in 0..RANDOM_INPUTS {
            let input = if n % 2 == 0 {
                let len = rng.random_range(0..256);
                (0..len).map(|_| rng.random()).collect()
            } else {
                mutate(&mut rng, &seeds)
            };
            run(
                target,
                body,
                &format!("random input {n}"),
                &input,
                &mut failures,
            );
        }
        println!(
            "{target}: {} seeds + {RANDOM_INPUTS} random inputs in {:.2} s",
            seeds.len(),
            t.elapsed().as_secs_f64()
        );
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
