#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine, then runs all of it:
# formatting, lints, unit and property tests, and the integration tests that run the real binary.
# Usage: scripts/test.sh            (the README's test command; .ci/run calls exactly this)
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase prints the seconds since the start, so a slow CI run shows where its time went.
phase() { echo "== $* (at ${SECONDS} s)"; }

need_apt=()
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
# rdkafka builds its bundled librdkafka with librdkafka's own configure script and make.
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing: ${need_apt[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_apt[@]}" >/dev/null; then
        apt-get update >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_apt[@]}" >/dev/null
    fi
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy
# The Elasticsearch sink's tests start osmem-server (PyPI), an in-memory OpenSearch-compatible server.
phase "test peers"
osmem_server=$(integration-tests/peers/opensearch/install)
echo "osmem-server: $osmem_server"
# The uploader's tests start moto_server (PyPI moto[server]), an in-memory S3-compatible server.
moto_bin=$(integration-tests/peers/s3/install)
echo "moto: $moto_bin"

phase "cargo fmt --check"
cargo fmt --all -- --check
phase "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
phase "release build of the agent for the integration tests"
# First with the test-only crash hook (the crash-point tests abort it at named steps) and the splunk_hec
# source's fault switch (busy answers, held acks), copied aside; then the
# plain binary, the one that ships, which the other tests run and one checks has no hook.
cargo build --release --bin auditrail --features crash-points,test-faults --quiet
cp target/release/auditrail target/release/auditrail-crash-points
export AUDITRAIL_CRASH_BIN="$PWD/target/release/auditrail-crash-points"
export AUDITRAIL_REQUIRE_CRASH_BIN=1
cargo build --release --bin auditrail --quiet
export AUDITRAIL_BIN="$PWD/target/release/auditrail"
export AUDITRAIL_REQUIRE_SYSTEMD=1
# The disk-full fault test mounts a size-limited tmpfs, which needs root (as CI has).
export AUDITRAIL_REQUIRE_ROOT=1
export AUDITRAIL_REQUIRE_OPENSEARCH=1
export AUDITRAIL_REQUIRE_S3=1
# The ebpf tests load the committed eBPF object into the running kernel (root, BTF): no clang or bpftool.
export AUDITRAIL_REQUIRE_EBPF=1
# The Kafka tests run librdkafka's mock cluster as this workspace's own kafka-mock binary: nothing to install.
export AUDITRAIL_REQUIRE_KAFKA=1
# The splunk_hec tests use curl (Debian's) as the HEC client; integration-tests/peers/curl/install gets it.
export AUDITRAIL_REQUIRE_CURL=1
# The players' tests: `auditrail play` in tmux, the web player and the export in Debian's Chromium driven by
# playwright-core (npm); each installed by its integration-tests/peers/<name>/install.
integration-tests/peers/tmux/install >/dev/null
export AUDITRAIL_REQUIRE_TMUX=1
integration-tests/peers/chromium/install >/dev/null
export AUDITRAIL_REQUIRE_BROWSER=1
# The tests run under cargo-nextest (.config/nextest.toml says why); a machine without it gets it built once.
cargo nextest --version >/dev/null 2>&1 || cargo install --locked cargo-nextest
phase "cargo nextest run"
set +e
cargo nextest run --workspace --no-fail-fast 2>&1 | tee target/test-output.log | grep -Ev '^ +PASS \['
test_status=${PIPESTATUS[0]}
set -e
# The pipe above keeps the log short; the verdict is nextest's exit status (a runner killed before it printed
# a failure still fails the run), then its own summary line, which must show tests run and none failed.
if [ "$test_status" -ne 0 ]; then
    echo "cargo nextest exited with status $test_status (full output in target/test-output.log)"
    exit 1
fi
summary=$(grep -E '^ *Summary \[.*\] [0-9]+ tests? run: ' target/test-output.log | tail -n 1)
if [ -z "$summary" ]; then
    echo "no nextest summary line: the test run did not finish (full output in target/test-output.log)"
    exit 1
fi
# (grep finds no "failed" in a clean summary: `|| true` keeps pipefail from ending the script there.)
passed=$( (echo "$summary" | grep -Eo '[0-9]+ passed' || true) | awk '{s+=$1} END {print s+0}')
failed=$( (echo "$summary" | grep -Eo '[0-9]+ (failed|timed out)' || true) | awk '{s+=$1} END {print s+0}')
# nextest does not run doc tests; cargo does, and exits non-zero if one fails.
phase "cargo test --doc"
cargo test --workspace --doc --quiet
echo "$passed passed, $failed failed (in ${SECONDS} s)"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
