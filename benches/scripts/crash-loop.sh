#!/usr/bin/env bash
# Crash loop with the integrity chain on: what twenty kill -9s do to the stored chain.
#
# Generates N Teleport-like events once (gen-events.py), then per run, in a
# directory of its own: auditrail with a file source, a disk (or memory)
# buffer, a file sink and [integrity] (key under the run directory,
# seal_interval 300ms, seal_events 2000) is started on the events and killed
# with SIGKILL at a uniformly random moment 0.2-0.9 s after it first answered
# /health, K times; then started once more and left to run until every input
# uid is in the output, stopped with SIGTERM, and `auditrail verify --json`
# is run on the output. Prints one Markdown table row per run on stdout;
# progress (lines out at every kill) goes to stderr.
#
#   benches/scripts/crash-loop.sh [--kills K] [--runs R] [--buffer disk|memory]
#                                 [--checkpoint-interval D] [--seed S]
#                                 [--timeout S] [--keep] [--snapshots] [N]
#
# The file source keeps its default checkpoint_interval (1s) unless
# --checkpoint-interval is given: no life lasts long enough for a checkpoint,
# so every restart reads the input again from its first line, which is the
# scenario of the issue. With "100ms" (integration-tests/src/integrity.rs's
# config) restarts read far less again and the chain's crash windows are hit
# far less often.
#
# Columns: verify clean? (exit 0 and "ok"); gaps (missing seqs, summed over
# streams); conflicts (one seq, two contents); bad seals (count, first
# reason); duplicate deliveries (output event lines minus distinct input
# uids delivered); lost (input uids not in the output); crash_windows (the
# declared windows of the report, "n/a" when the verifier has no such key).
#
# Environment:
#   AUDITRAIL_BIN   auditrail binary (default: <repo>/target/release/auditrail)
#   TMPDIR          where the work directory is created (default /tmp)

set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)

usage() {
    cat >&2 <<EOF
usage: $(basename "$0") [options] [N]

  N                 number of events (default 200000)
  --kills K         kill -9s per run before the final life (default 20)
  --runs R          runs (default 5)
  --buffer B        disk or memory (default disk)
  --checkpoint-interval D
                    the file source's checkpoint_interval, e.g. 100ms
                    (default: not set, the source's default of 1s)
  --seed S          seed of the events and of the kill moments (default 1)
  --timeout S       seconds the final life gets to deliver every uid (default 600)
  --keep            keep every run's directory (input, output, data, logs);
                    otherwise only its config, agent log, verify.json and
                    summary.json are kept, and the work directory is removed
                    at the end unless a run failed
  --snapshots       with --keep: also copy data_dir as every kill left it
                    (runK/data-after-kill-N), to see what a restart found
  -h, --help        this text
EOF
}

die_usage() {
    echo "$(basename "$0"): $*" >&2
    usage
    exit 2
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

count=200000
kills=20
runs=5
buffer=disk
seed=1
timeout_s=600
keep=0
snapshots=0
checkpoint_interval=""
while (($#)); do
    case $1 in
        --kills) (($# >= 2)) || die_usage "--kills needs a value"; kills=$2; shift 2 ;;
        --kills=*) kills=${1#*=}; shift ;;
        --runs) (($# >= 2)) || die_usage "--runs needs a value"; runs=$2; shift 2 ;;
        --runs=*) runs=${1#*=}; shift ;;
        --buffer) (($# >= 2)) || die_usage "--buffer needs a value"; buffer=$2; shift 2 ;;
        --buffer=*) buffer=${1#*=}; shift ;;
        --seed) (($# >= 2)) || die_usage "--seed needs a value"; seed=$2; shift 2 ;;
        --seed=*) seed=${1#*=}; shift ;;
        --timeout) (($# >= 2)) || die_usage "--timeout needs a value"; timeout_s=$2; shift 2 ;;
        --timeout=*) timeout_s=${1#*=}; shift ;;
        --checkpoint-interval) (($# >= 2)) || die_usage "--checkpoint-interval needs a value"; checkpoint_interval=$2; shift 2 ;;
        --checkpoint-interval=*) checkpoint_interval=${1#*=}; shift ;;
        --keep) keep=1; shift ;;
        --snapshots) snapshots=1; shift ;;
        -h | --help) usage; exit 0 ;;
        -*) die_usage "unknown option: $1" ;;
        *)
            is_uint "$1" || die_usage "N must be a positive integer: $1"
            count=$1
            shift
            ;;
    esac
done
is_pos() { is_uint "$1" && (($1 > 0)); }
is_pos "$count" || die_usage "N must be a positive integer"
is_uint "$kills" || die_usage "--kills must be a non-negative integer"
is_pos "$runs" || die_usage "--runs must be a positive integer"
is_pos "$timeout_s" || die_usage "--timeout must be a positive integer"
is_uint "$seed" || die_usage "--seed must be a non-negative integer"
[[ -z $checkpoint_interval || $checkpoint_interval =~ ^[0-9]+(ms|s|m)$ ]] ||
    die_usage "--checkpoint-interval must look like 100ms, 1s or 1m: $checkpoint_interval"
((!snapshots || keep)) || die_usage "--snapshots needs --keep"
case $buffer in
    disk | memory) ;;
    *) die_usage "--buffer must be disk or memory: $buffer" ;;
esac
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }

auditrail_bin=${AUDITRAIL_BIN:-$repo_root/target/release/auditrail}
[[ -x $auditrail_bin ]] || { echo "binary not found: $auditrail_bin (cargo build --release --bin auditrail)" >&2; exit 1; }

log() { echo "[crash-loop] $*" >&2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/auditrail-crash-loop.XXXXXX")
ok=0
cleanup() {
    if ((keep)) || ((!ok)); then
        log "kept work directory: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "work directory: $work"
log "generating $count events (seed $seed)"
python3 "$script_dir/gen-events.py" --count "$count" --seed "$seed" --out "$work/in.ndjson"

py_args=(--bin "$auditrail_bin" --input "$work/in.ndjson" --work "$work" --kills "$kills" --runs "$runs"
    --buffer "$buffer" --seed "$seed" --timeout "$timeout_s")
[[ -z $checkpoint_interval ]] || py_args+=(--checkpoint-interval "$checkpoint_interval")
((keep)) && py_args+=(--keep)
((snapshots)) && py_args+=(--snapshots)
python3 "$script_dir/crash-loop.py" "${py_args[@]}"
ok=1
