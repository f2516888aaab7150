#!/usr/bin/env bash
# Splunk HEC throughput on loopback, both ends auditrail's: agent A (file source → splunk_hec sink) sends to
# agent B (splunk_hec source → blackhole sink), with indexer acknowledgements on and off.
#
# Generates N Teleport-like events once (benches/scripts/gen-events.py), then for each variant runs K times:
# a fresh B, then A with read_from = "beginning", until A's sink has delivered all N events
# (auditrail_sink_events_total{sink="hec"} on A's /metrics: with acks on, an event counts only once B said its
# ackId is indexed, i.e. once B's blackhole took it). Prints a Markdown table with the medians on stdout;
# progress goes to stderr.
#
#   benches/scripts/hec.sh [--runs K] [--timeout S] [N]
#
# events/s is N over the wall time from starting A until the last event was delivered. A's CPU s and max RSS
# come from GNU time over its whole life; B's CPU s from /proc/PID/stat and its max RSS from VmHWM, read just
# before it is stopped.
#
# Environment:
#   AUDITRAIL_BIN   auditrail binary (default: <repo>/target/release/auditrail)
#   TMPDIR          where the work directory is created (default /tmp)
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)

count=200000
runs=3
timeout_s=600
while (($#)); do
    case $1 in
        --runs) runs=$2; shift 2 ;;
        --timeout) timeout_s=$2; shift 2 ;;
        -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option: $1" >&2; exit 2 ;;
        *) count=$1; shift ;;
    esac
done
[[ $count =~ ^[0-9]+$ && $count -gt 0 ]] || { echo "N must be a positive integer" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "GNU time (/usr/bin/time) is required: apt-get install time" >&2; exit 1; }

auditrail_bin=${AUDITRAIL_BIN:-$repo_root/target/release/auditrail}
[[ -x $auditrail_bin ]] || { echo "not found: $auditrail_bin (cargo build --release --bin auditrail)" >&2; exit 1; }

log() { echo "[hec-bench] $*" >&2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/auditrail-hec-bench.XXXXXX")
a_tpid=""
b_pid=""
cleanup() {
    [[ -n $a_tpid ]] && pkill -TERM -P "$a_tpid" 2>/dev/null || true
    [[ -n $b_pid ]] && kill "$b_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# metric PORT NAME SINK: the sum of NAME{..sink="SINK"..} on that agent's /metrics.
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" -v k="sink=\"$3\"" '$1 ~ "^"m"\\{" && index($1, k) { s += $2 } END { printf "%d", s }'; }
cpu_s_of() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
hwm_mb_of() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo 0; }

input="$work/in.ndjson"
log "generating $count events"
python3 "$script_dir/gen-events.py" --count "$count" --seed 1 --out "$input"
input_bytes=$(stat -c %s "$input")
token="bench-token-0123456789"

# run_once DIR ACKS(true|false); writes "wall_s a_cpu_s a_rss_mb b_cpu_s b_rss_mb b_events" to DIR/result
run_once() {
    local dir=$1 acks=$2 hec_port a_api b_api
    hec_port=$(free_port); a_api=$(free_port); b_api=$(free_port)
    mkdir -p "$dir"
    cat >"$dir/b.toml" <<EOF
data_dir = "$dir/b-data"
[api]
address = "127.0.0.1:$b_api"
[sources.hec]
type = "splunk_hec"
address = "127.0.0.1:$hec_port"
tokens = ["$token"]
acknowledgements = { enabled = $acks }
[sinks.null]
type = "blackhole"
inputs = ["hec"]
EOF
    cat >"$dir/a.toml" <<EOF
data_dir = "$dir/a-data"
[api]
address = "127.0.0.1:$a_api"
[sources.in]
type = "file"
include = ["$input"]
read_from = "beginning"
[sinks.hec]
type = "splunk_hec"
inputs = ["in"]
endpoint = "http://127.0.0.1:$hec_port"
token = "$token"
acknowledgements = $acks
EOF
    "$auditrail_bin" run --config "$dir/b.toml" 2>"$dir/b.log" &
    b_pid=$!
    for _ in $(seq 1 200); do
        curl -sf "http://127.0.0.1:$hec_port/services/collector/health" >/dev/null && break
        sleep 0.05
    done
    local t0 t1 n
    t0=$(date +%s%N)
    /usr/bin/time -f '%U %S %M' -o "$dir/a-time.txt" "$auditrail_bin" run --config "$dir/a.toml" 2>"$dir/a.log" &
    a_tpid=$!
    while :; do
        n=$(metric "$a_api" auditrail_sink_events_total hec 2>/dev/null || echo 0)
        ((${n:-0} >= count)) && break
        if (($(date +%s%N) - t0 > timeout_s * 1000000000)); then log "timeout: $n/$count"; break; fi
        sleep 0.05
    done
    t1=$(date +%s%N)
    pkill -TERM -P "$a_tpid" 2>/dev/null || true
    wait "$a_tpid" || true
    a_tpid=""
    local b_events b_cpu b_rss
    b_events=$(metric "$b_api" auditrail_sink_events_total null 2>/dev/null || echo 0)
    b_cpu=$(cpu_s_of "$b_pid"); b_rss=$(hwm_mb_of "$b_pid")
    kill "$b_pid" 2>/dev/null || true
    wait "$b_pid" 2>/dev/null || true
    b_pid=""
    read -r u s m <"$dir/a-time.txt"
    echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }') $(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }') $(awk -v m="$m" 'BEGIN { printf "%.1f", m / 1024 }') $b_cpu $b_rss $b_events" >"$dir/result"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

rows=()
bench() {
    local name=$1 acks=$2 i eps=() acpu=() arss=() bcpu=() brss=() notes=""
    for ((i = 1; i <= runs; i++)); do
        log "$name: run $i/$runs"
        run_once "$work/${name// /_}-$i" "$acks"
        read -r wall ac ar bc br be <"$work/${name// /_}-$i/result"
        log "  ${wall} s, $(awk -v n="$count" -v w="$wall" 'BEGIN { printf "%.0f", n / w }') events/s; A: CPU ${ac} s, RSS ${ar} MB; B: CPU ${bc} s, RSS ${br} MB, ${be} events"
        notes="$notes run $i: B took $be;"
        eps+=("$(awk -v n="$count" -v w="$wall" 'BEGIN { printf "%.0f", n / w }')")
        acpu+=("$ac"); arss+=("$ar"); bcpu+=("$bc"); brss+=("$br")
        rm -rf "$work/${name// /_}-$i"
    done
    rows+=("| $name | $(printf '%s\n' "${eps[@]}" | median | xargs printf '%.0f') | $(printf '%s\n' "${acpu[@]}" | median) | $(printf '%s\n' "${arss[@]}" | median) | $(printf '%s\n' "${bcpu[@]}" | median) | $(printf '%s\n' "${brss[@]}" | median) | ${notes%;} |")
}

bench "indexer acks on" true
bench "acks off" false

echo "Machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), Linux $(uname -r)."
echo
echo "Job: $count events ($input_bytes bytes), file source → splunk_hec sink (A) → splunk_hec source → blackhole (B), loopback; median of $runs runs."
echo
echo "| variant | events/s | A CPU s | A max RSS MB | B CPU s | B max RSS MB | notes |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
printf '%s\n' "${rows[@]}"
