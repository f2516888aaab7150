#!/usr/bin/env bash
# Recording overhead: `cat` of a file of terminal output (mixed text with ANSI escape sequences) through a
# PTY that a harness drains as fast as it can, with no recorder, inside `script -q` (util-linux), inside
# `asciinema rec` (Debian asciinema) and inside `auditrail record`, side by side in one run. Prints a
# Markdown table (MB/s, ratio to no recorder, CPU s of the whole process tree; medians) on stdout; progress
# on stderr. See benches/scripts/pty_drain.py for how each run is measured.
#
#   benches/scripts/record-overhead.sh [--reps N] [--mib M] [--keep]
#
# Defaults: 3 repetitions, a 100 MiB file (generated deterministically, seed 1, once per work directory).
# Environment:
#   AUDITRAIL_BIN   auditrail binary (default: <repo>/target/release/auditrail)
#   TMPDIR          where the work directory is created (default /tmp)
# asciinema is installed with `apt-get install -y asciinema` when missing (needs root and the network); a
# recorder that is not available is reported and left out, the others still run.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
reps=3
mib=100
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --reps) reps=$2; shift 2 ;;
        --mib) mib=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "record-overhead.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

work=$(mktemp -d "${TMPDIR:-/tmp}/record-overhead.XXXXXX")
cleanup() { if [ "$keep" = 0 ]; then rm -rf "$work"; else echo "kept $work" >&2; fi; }
trap cleanup EXIT

bin=${AUDITRAIL_BIN:-$repo_root/target/release/auditrail}
input=$work/input.txt
echo "generating $mib MiB of terminal output in $input" >&2
python3 "$script_dir/pty_drain.py" gen "$input" "$mib"

variants=(--variant "no recorder (cat)=cat '$input'")
if command -v script >/dev/null; then
    variants+=(--variant "script -q=script -q -c \"cat '$input'\" '$work/script.out'")
else
    echo "script (util-linux) not found: left out" >&2
fi
if ! command -v asciinema >/dev/null; then
    echo "asciinema not found: apt-get install -y asciinema" >&2
    apt-get install -y asciinema >&2 || echo "asciinema could not be installed: left out" >&2
fi
if command -v asciinema >/dev/null; then
    variants+=(--variant "asciinema rec ($(asciinema --version 2>&1 | head -1))=asciinema rec -q -c \"cat '$input'\" --overwrite '$work/x.cast'")
fi
if [ -x "$bin" ] && "$bin" record --help >/dev/null 2>&1; then
    mkdir -p "$work/rec"
    variants+=(--variant "auditrail record=AUDITRAIL_USER=bench '$bin' record --dir '$work/rec' --socket /nonexistent -- cat '$input'")
else
    echo "auditrail: record not available in this binary ($bin)" >&2
fi

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr); $(date -u +%Y-%m-%dT%H:%MZ)" >&2
python3 "$script_dir/pty_drain.py" table --file "$input" --reps "$reps" "${variants[@]}"
