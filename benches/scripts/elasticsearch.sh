#!/usr/bin/env bash
# File → Elasticsearch sink throughput on loopback, against osmem-server (an
# in-memory OpenSearch-compatible server, installed by
# integration-tests/peers/opensearch/install).
#
# Generates N Teleport-like events once (benches/scripts/gen-events.py), then
# for every variant runs K times: a fresh osmem-server, auditrail with a file
# source (read_from = "beginning") and an elasticsearch sink, until the sink
# has delivered all N events (auditrail_sink_events_total from /metrics) and
# the server counts N documents. Prints a Markdown table with the median of
# the runs on stdout; progress goes to stderr.
#
#   benches/scripts/elasticsearch.sh [--runs K] [--timeout S] [N]
#
# events/s is N divided by the wall time from starting auditrail until every
# event was acknowledged by the server. auditrail's CPU s (user+sys) and max
# RSS come from GNU time over its whole life; the server's CPU s comes from
# /proc, so the table shows which side the time went to. A variant "resend"
# sends the same N events again from a fresh data_dir: every document already
# exists and is answered 409 (counted as delivered), which costs the server
# far less than indexing and so shows more of the sink's own speed.
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
        -h | --help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option: $1" >&2; exit 2 ;;
        *) count=$1; shift ;;
    esac
done
[[ $count =~ ^[0-9]+$ && $count -gt 0 ]] || { echo "N must be a positive integer" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "GNU time (/usr/bin/time) is required: apt-get install time" >&2; exit 1; }

auditrail_bin=${AUDITRAIL_BIN:-$repo_root/target/release/auditrail}
[[ -x $auditrail_bin ]] || { echo "not found: $auditrail_bin (cargo build --release --bin auditrail)" >&2; exit 1; }
osmem_bin=$("$repo_root/integration-tests/peers/opensearch/install")

log() { echo "[es-bench] $*" >&2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/auditrail-es-bench.XXXXXX")
osmem_pid=""
agent_tpid=""
cleanup() {
    [[ -n $agent_tpid ]] && pkill -TERM -P "$agent_tpid" 2>/dev/null || true
    [[ -n $osmem_pid ]] && kill "$osmem_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 ~ "^"m"\\{" && $1 ~ /sink="es"/ { s += $2 } END { printf "%d", s }'; }
cpu_s_of() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

input="$work/in.ndjson"
log "generating $count events"
python3 "$script_dir/gen-events.py" --count "$count" --seed 1 --out "$input"
input_bytes=$(stat -c %s "$input")

start_osmem() {
    local port=$1
    "$osmem_bin" -addr "127.0.0.1:$port" -no-stdin-watch </dev/null >"$work/osmem.log" 2>&1 &
    osmem_pid=$!
    for _ in $(seq 1 200); do
        curl -sf "http://127.0.0.1:$port/_cluster/health" >/dev/null && return 0
        sleep 0.05
    done
    log "osmem-server did not start"; return 1
}

# run_once DIR SINK_EXTRA RESEND; writes "wall_s auditrail_cpu_s rss_mb server_cpu_s docs dead" to DIR/result
run_once() {
    local dir=$1 extra=$2 resend=$3 es_port api_port
    es_port=$(free_port)
    start_osmem "$es_port"
    mkdir -p "$dir"
    write_config() {
        cat >"$dir/auditrail.toml" <<EOF
data_dir = "$dir/$1"
[api]
address = "127.0.0.1:$api_port"
[sources.in]
type = "file"
include = ["$input"]
read_from = "beginning"
[sinks.es]
type = "elasticsearch"
inputs = ["in"]
endpoint = "http://127.0.0.1:$es_port"
# Teleport's port events have a plain "addr" where others have "addr.local": one index per event type keeps
# the dynamic mappings from conflicting (see the sink's README section).
index = "bench-{event}-%Y.%m"
$extra
EOF
    }
    local passes=1
    [[ $resend == yes ]] && passes=2
    local pass t0 t1 wall cpu rss n dead=0
    for ((pass = 1; pass <= passes; pass++)); do
        api_port=$(free_port)
        write_config "data$pass"
        t0=$(date +%s%N)
        /usr/bin/time -f '%U %S %M' -o "$dir/time$pass.txt" "$auditrail_bin" run --config "$dir/auditrail.toml" 2>"$dir/agent$pass.log" &
        agent_tpid=$!
        while :; do
            n=$(metric "$api_port" auditrail_sink_events_total 2>/dev/null || echo 0)
            dead=$(metric "$api_port" auditrail_sink_rejected_total 2>/dev/null || echo 0)
            ((${n:-0} + ${dead:-0} >= count)) && break
            if (($(date +%s%N) - t0 > timeout_s * 1000000000)); then log "timeout: $n/$count"; break; fi
            sleep 0.05
        done
        t1=$(date +%s%N)
        pkill -TERM -P "$agent_tpid" 2>/dev/null || true
        wait "$agent_tpid" || true
        agent_tpid=""
    done
    local docs server_cpu
    docs=$(curl -s "http://127.0.0.1:$es_port/_all/_count" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("count", 0))')
    server_cpu=$(cpu_s_of "$osmem_pid")
    kill "$osmem_pid" 2>/dev/null || true
    wait "$osmem_pid" 2>/dev/null || true
    osmem_pid=""
    read -r u s m <"$dir/time$passes.txt"
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    cpu=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
    rss=$(awk -v m="$m" 'BEGIN { printf "%.1f", m / 1024 }')
    echo "$wall $cpu $rss $server_cpu $docs $dead" >"$dir/result"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

rows=()
bench() {
    local name=$1 extra=$2 resend=${3:-no} i eps=() cpus=() rsss=() scpus=() notes=""
    for ((i = 1; i <= runs; i++)); do
        log "$name: run $i/$runs"
        run_once "$work/${name// /_}-$i" "$extra" "$resend"
        read -r wall cpu rss scpu docs dead <"$work/${name// /_}-$i/result"
        log "  ${wall} s, $(awk -v n="$count" -v w="$wall" 'BEGIN { printf "%.0f", n / w }') events/s, auditrail CPU ${cpu} s, RSS ${rss} MB, server CPU ${scpu} s, ${docs} documents"
        notes="$notes run $i: $docs documents, $dead dead-lettered;"
        eps+=("$(awk -v n="$count" -v w="$wall" 'BEGIN { printf "%.0f", n / w }')")
        cpus+=("$cpu"); rsss+=("$rss"); scpus+=("$scpu")
        rm -rf "$work/${name// /_}-$i"
    done
    rows+=("| $name | $(printf '%s\n' "${eps[@]}" | median | xargs printf '%.0f') | $(printf '%s\n' "${cpus[@]}" | median) | $(printf '%s\n' "${rsss[@]}" | median) | $(printf '%s\n' "${scpus[@]}" | median) | ${notes%;} |")
}

bench "gzip (default)" ""
bench "no compression" 'compression = "none"'
bench "resend, all 409" "" yes

echo "Machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), Linux $(uname -r); $("$osmem_bin" -version 2>&1 | head -n 1)."
echo
echo "Job: $count events ($input_bytes bytes), file source → elasticsearch sink → osmem-server on loopback; median of $runs runs."
echo
echo "Dead-lettered events are refused by the server (mapping_error), e.g. Teleport port events whose plain"
echo "\"addr\" clashes with \"addr.local\"; server CPU s covers the server's whole life (both passes for resend)."
echo
echo "| variant | events/s | auditrail CPU s | auditrail max RSS MB | server CPU s | notes |"
echo "| --- | ---: | ---: | ---: | ---: | --- |"
printf '%s\n' "${rows[@]}"
