#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine, then runs all of it:
# formatting, lints, unit and property tests, and the integration tests that run the real binary.
# Usage: scripts/test.sh            (the README's test command; .ci/run calls exactly this)
set -euo pipefail
cd "$(dirname "$0")/.."

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
osmem_server=$(integration-tests/peers/opensearch/install)
echo "osmem-server: $osmem_server"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== release build of the agent for the integration tests"
# First with the test-only crash hook (the crash-point tests abort it at named steps), copied aside; then the
# plain binary, the one that ships, which the other tests run and one checks has no hook.
cargo build --release --bin auditrail --features crash-points --quiet
cp target/release/auditrail target/release/auditrail-crash-points
export AUDITRAIL_CRASH_BIN="$PWD/target/release/auditrail-crash-points"
export AUDITRAIL_REQUIRE_CRASH_BIN=1
cargo build --release --bin auditrail --quiet
export AUDITRAIL_BIN="$PWD/target/release/auditrail"
export AUDITRAIL_REQUIRE_SYSTEMD=1
# The disk-full fault test mounts a size-limited tmpfs, which needs root (as CI has).
export AUDITRAIL_REQUIRE_ROOT=1
export AUDITRAIL_REQUIRE_OPENSEARCH=1
# The Kafka tests run librdkafka's mock cluster as this workspace's own kafka-mock binary: nothing to install.
export AUDITRAIL_REQUIRE_KAFKA=1
echo "== cargo test"
set +e
cargo test --workspace --no-fail-fast -- --nocapture 2>&1 | tee target/test-output.log | grep -Ev '^(running [0-9]+ tests?|)$' | grep -Ev '^test .* \.\.\. ok$'
cargo_status=${PIPESTATUS[0]}
set -e
# The pipe above keeps the log short; the verdict is cargo's exit status (a cargo killed before it printed a
# failure still fails the run) and its own summary lines.
if [ "$cargo_status" -ne 0 ]; then
    echo "cargo test exited with status $cargo_status (full output in target/test-output.log)"
    exit 1
fi
if grep -Eq '^test result: FAILED|^error(\[|:)' target/test-output.log; then
    echo "tests FAILED (full output in target/test-output.log)"
    exit 1
fi
passed=$(grep -Eo '^test result: ok\. [0-9]+ passed' target/test-output.log | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/test-output.log | awk '{s+=$1} END {print s+0}')
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
