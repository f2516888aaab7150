#!/usr/bin/env bash
# Players on a long recording: a 1-hour, ~200 MB asciicast v2 (dense coloured output every 10 ms, the top
# line saying the second), played by `auditrail play` and by `asciinema play` (Debian asciinema 2.2) side by
# side in one run, each in a fresh 120x40 pseudo-terminal (benches/scripts/play_measure.py):
#   - first frame: wall time from the start until the first recorded text (`second 0000`) is on the terminal;
#   - seek to 90%: `auditrail play --at 90%` until the screen at 54:00 (`second 3239`, 90% of 3599.99 s) is drawn; asciinema's
#     player has no seek (nor a start time), so its column says so. Cold: no `<sid>.index` beside the
#     recording (removed before each run), so the play builds the index up to 90% (a .cast that
#     `auditrail record` did not write); warm: the index `auditrail record` leaves beside a recording after
#     its session ends (it starts `play --frame --at 100%` at nice 19; the script runs that same command once,
#     timed and measured, before the warm runs);
#   - dump: `auditrail play --raw` and `asciinema cat` of the whole file to the terminal, to the end;
#   - max RSS of the process for each (wait4's ru_maxrss).
# Prints a Markdown table on stdout (medians of --reps runs); progress on stderr.
#
#   benches/scripts/play.sh [--reps N] [--keep]
# Environment: AUDITRAIL_BIN (default <repo>/target/release/auditrail), TMPDIR.
set -euo pipefail
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
reps=3
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --reps) reps=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "play.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
bin=${AUDITRAIL_BIN:-$repo_root/target/release/auditrail}
[ -x "$bin" ] || { echo "play.sh: no binary at $bin (cargo build --release --bin auditrail)" >&2; exit 1; }
if ! command -v asciinema >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends asciinema >/dev/null 2>&1 \
        || echo "play.sh: asciinema not installable; its rows are left out" >&2
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/play-bench.XXXXXX")
[ "$keep" = 1 ] || trap 'rm -rf "$work"' EXIT
cast=$work/long.cast
python3 - "$cast" <<'PY'
import sys
filler = "\\u001b[32mlorem ipsum dolor sit amet\\u001b[0m " * 14
with open(sys.argv[1], "w", buffering=1 << 20) as f:
    f.write('{"version": 2, "width": 120, "height": 40}\n')
    for i in range(360000):
        t = i / 100
        if i % 100 == 0:
            f.write('[%.6f, "o", "\\u001b[1;1H\\u001b[Ksecond %04d\\r\\n"]\n' % (t, i // 100))
        else:
            f.write('[%.6f, "o", "\\u001b[5;1H%s %d\\r\\n"]\n' % (t, filler, i))
PY
size=$(stat -c %s "$cast")
echo "recording: $cast, $size bytes, 3600 s" >&2
measure() { python3 "$script_dir/play_measure.py" "$@"; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "n/a"; else print a[int((NR+1)/2)]}'; }
declare -A results
index=${cast%.cast}.index
cold=0
run() { # name [--to-end] marker -- cmd...
    local name=$1; shift
    local times=() rss=() walls=()
    for _ in $(seq "$reps"); do
        local j
        [ "$cold" = 0 ] || rm -f "$index"
        j=$(measure "$@")
        echo "  $name: $j" >&2
        times+=("$(echo "$j" | python3 -c 'import json,sys; v=json.load(sys.stdin)["marker_s"]; print("n/a" if v is None else "%.3f" % v)')")
        walls+=("$(echo "$j" | python3 -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["wall_s"])')")
        rss+=("$(echo "$j" | python3 -c 'import json,sys; print(json.load(sys.stdin)["max_rss_kib"] // 1024)')")
    done
    results[$name]="$(printf '%s\n' "${times[@]}" | grep -v n/a | median) $(printf '%s\n' "${walls[@]}" | median) $(printf '%s\n' "${rss[@]}" | median)"
}
cold=1
run auditrail-first "second 0000" -- "$bin" play "$cast"
run auditrail-seek "second 3239" -- "$bin" play --at 90% "$cast"
cold=0
echo "building the whole index once, as the recorder does after a session (play --frame --at 100%)" >&2
rm -f "$index"   # the cold runs kept a partial index; the recorder builds from nothing
build=$(measure --to-end "no such marker" -- nice -n 19 "$bin" play --frame --at 100% "$cast")
echo "  index build: $build" >&2
results[index-build]="n/a $(echo "$build" | python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.2f %d" % (j["wall_s"], j["max_rss_kib"] // 1024))')"
echo "index: $(stat -c %s "$index") bytes" >&2
run auditrail-first-warm "second 0000" -- "$bin" play "$cast"
run auditrail-seek-warm "second 3239" -- "$bin" play --at 90% "$cast"
run auditrail-dump --to-end "second 3599" -- "$bin" play --raw "$cast"
if command -v asciinema >/dev/null 2>&1; then
    run asciinema-first "second 0000" -- asciinema play "$cast"
    run asciinema-dump --to-end "second 3599" -- asciinema cat "$cast"
fi
row() { # label key column
    local v=${results[$2]:-} col=$3
    [ -n "$v" ] || { echo "n/a"; return; }
    set -- $v
    case $col in t) echo "$1";; w) echo "$2";; r) echo "$3";; esac
}
echo "recording: 1 h, $size bytes (asciicast v2, 120x40), medians of $reps runs"
echo
echo "| | auditrail play | asciinema play |"
echo "|---|---|---|"
echo "| first frame, no index yet (s) | $(row x auditrail-first t) | $(row x asciinema-first t) |"
echo "| first frame, index kept (s) | $(row x auditrail-first-warm t) | $(row x asciinema-first t) |"
echo "| max RSS to first frame (MiB, cold / warm) | $(row x auditrail-first r) / $(row x auditrail-first-warm r) | $(row x asciinema-first r) |"
echo "| seek to 90%, cold: first play builds the index (s) | $(row x auditrail-seek t) | no seek |"
echo "| seek to 90%, warm: the index the recorder left (s) | $(row x auditrail-seek-warm t) | no seek |"
echo "| max RSS of the seek (MiB, cold / warm) | $(row x auditrail-seek r) / $(row x auditrail-seek-warm r) | — |"
echo "| the recorder's index build after the session (nice 19; wall s, max RSS MiB, one run) | $(row x index-build w), $(row x index-build r) | — |"
echo "| whole file to the terminal (\`play --raw\` / \`asciinema cat\`, s) | $(row x auditrail-dump w) | $(row x asciinema-dump w) |"
echo "| max RSS of the dump (MiB) | $(row x auditrail-dump r) | $(row x asciinema-dump r) |"
