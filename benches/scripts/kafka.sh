#!/usr/bin/env bash
# Kafka throughput on loopback against librdkafka's mock cluster (the kafka-mock binary, 3 brokers), auditrail
# beside kcat (Debian's `kcat`, librdkafka's own command-line client) on the same job:
#
#   produce: file → auditrail's kafka sink (idempotent, acks=all, lz4, linger 5ms)
#            vs  kcat -P producing the same file with acks=all, idempotence, lz4, linger 5ms
#   consume: the topic → auditrail's kafka source (a consumer group) → blackhole sink
#            vs  kcat -C reading the same topic from the beginning to the end
#
# Generates N Teleport-like events once (benches/scripts/gen-events.py). Each run gets a fresh kafka-mock
# with a 6-partition topic per producer. Prints a Markdown table with the medians on stdout; progress goes to
# stderr.
#
#   benches/scripts/kafka.sh [--runs K] [--timeout S] [N]
#
# events/s is N over the wall time from the start of the tool until the last event was delivered (auditrail:
# auditrail_sink_events_total on its /metrics; kcat: its exit, which waits for every delivery report / the
# end of every partition). CPU s and max RSS come from GNU time over the tool's whole life.
#
# Environment:
#   AUDITRAIL_BIN   auditrail binary (default: <repo>/target/release/auditrail)
#   KAFKA_MOCK_BIN  kafka-mock binary (default: <repo>/target/release/kafka-mock, built when missing)
#   TMPDIR          where the work directory is created (default /tmp)
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)

count=100000
runs=1
timeout_s=600
while (($#)); do
    case $1 in
        --runs) runs=$2; shift 2 ;;
        --timeout) timeout_s=$2; shift 2 ;;
        -h | --help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option: $1" >&2; exit 2 ;;
        *) count=$1; shift ;;
    esac
done
[[ $count =~ ^[0-9]+$ && $count -gt 0 ]] || { echo "N must be a positive integer" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "GNU time (/usr/bin/time) is required: apt-get install time" >&2; exit 1; }
command -v kcat >/dev/null || { echo "kcat is required: apt-get install kcat" >&2; exit 1; }

auditrail_bin=${AUDITRAIL_BIN:-$repo_root/target/release/auditrail}
[[ -x $auditrail_bin ]] || { echo "not found: $auditrail_bin (cargo build --release --bin auditrail)" >&2; exit 1; }
mock_bin=${KAFKA_MOCK_BIN:-$repo_root/target/release/kafka-mock}
if [[ ! -x $mock_bin ]]; then
    (cd "$repo_root" && cargo build --release --quiet -p auditrail-integration-tests --bin kafka-mock) >&2
fi

log() { echo "[kafka-bench] $*" >&2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/auditrail-kafka-bench.XXXXXX")
tool_pid=""
mock_pid=""
cleanup() {
    [[ -n $tool_pid ]] && pkill -TERM -P "$tool_pid" 2>/dev/null || true
    [[ -n $mock_pid ]] && kill "$mock_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# metric PORT NAME SINK: the sum of NAME{..sink="SINK"..} on that agent's /metrics.
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" -v k="sink=\"$3\"" '$1 ~ "^"m"\\{" && index($1, k) { s += $2 } END { printf "%d", s }'; }
now_ns() { date +%s%N; }
wall_of() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
# time_fields FILE: "cpu_s rss_mb" from GNU time's "%U %S %M".
time_fields() { read -r u s m <"$1"; awk -v u="$u" -v s="$s" -v m="$m" 'BEGIN { printf "%.2f %.1f", u + s, m / 1024 }'; }

input="$work/in.ndjson"
log "generating $count events"
python3 "$script_dir/gen-events.py" --count "$count" --seed 1 --out "$input"
input_bytes=$(stat -c %s "$input")

# start_mock DIR: a fresh 3-broker cluster with topics a and k (24 partitions each: the mock keeps at most 5 MiB per partition); sets $bootstrap.
start_mock() {
    local dir=$1
    mkdir -p "$dir"
    "$mock_bin" --brokers 3 --topic a:24 --topic k:24 </dev/null >"$dir/mock.out" 2>"$dir/mock.log" &
    mock_pid=$!
    for _ in $(seq 1 200); do
        [[ -s $dir/mock.out ]] && break
        sleep 0.05
    done
    bootstrap=$(head -n 1 "$dir/mock.out")
}
stop_mock() { kill "$mock_pid" 2>/dev/null || true; wait "$mock_pid" 2>/dev/null || true; mock_pid=""; }

# auditrail_until DIR CONFIG PORT SINK: runs auditrail until SINK delivered $count; "wall cpu rss" to DIR/result.
auditrail_until() {
    local dir=$1 config=$2 port=$3 sink=$4 t0 t1 n
    t0=$(now_ns)
    /usr/bin/time -f '%U %S %M' -o "$dir/time.txt" "$auditrail_bin" run --config "$config" 2>"$dir/agent.log" &
    tool_pid=$!
    while :; do
        n=$(metric "$port" auditrail_sink_events_total "$sink" 2>/dev/null || echo 0)
        ((${n:-0} >= count)) && break
        if (($(now_ns) - t0 > timeout_s * 1000000000)); then log "timeout: $n/$count"; break; fi
        sleep 0.02
    done
    t1=$(now_ns)
    pkill -TERM -P "$tool_pid" 2>/dev/null || true
    wait "$tool_pid" || true
    tool_pid=""
    echo "$(wall_of "$t0" "$t1") $(time_fields "$dir/time.txt")" >"$dir/result"
}

# kcat_run DIR ARGS...: runs kcat to its end; "wall cpu rss" to DIR/result.
kcat_run() {
    local dir=$1 t0 t1
    shift
    t0=$(now_ns)
    /usr/bin/time -f "%U %S %M" -o "$dir/time.txt" kcat "$@" >/dev/null 2>"$dir/kcat.log"
    t1=$(now_ns)
    echo "$(wall_of "$t0" "$t1") $(time_fields "$dir/time.txt")" >"$dir/result"
}

# run_once DIR: the four measurements; each writes DIR/<name>/result.
run_once() {
    local dir=$1 api
    start_mock "$dir/mock"
    log "  cluster at $bootstrap"
    # 1. auditrail's sink into topic a.
    mkdir -p "$dir/sink"
    api=$(free_port)
    cat >"$dir/sink/a.toml" <<EOF
data_dir = "$dir/sink/data"
[api]
address = "127.0.0.1:$api"
[sources.in]
type = "file"
include = ["$input"]
read_from = "beginning"
[sinks.kafka]
type = "kafka"
inputs = ["in"]
bootstrap_servers = "$bootstrap"
topic = "a"
compression = "lz4"
linger = "5ms"
EOF
    auditrail_until "$dir/sink" "$dir/sink/a.toml" "$api" kafka
    # 2. kcat -P, the same file into topic k, the same producer settings.
    mkdir -p "$dir/kcat-p"
    kcat_run "$dir/kcat-p" -P -b "$bootstrap" -t k -X acks=all -X enable.idempotence=true \
        -X compression.type=lz4 -X linger.ms=5 -l "$input"
    # 3. auditrail's source reading topic a (what the sink wrote) into a blackhole.
    mkdir -p "$dir/source"
    api=$(free_port)
    cat >"$dir/source/b.toml" <<EOF
data_dir = "$dir/source/data"
[api]
address = "127.0.0.1:$api"
[sources.fleet]
type = "kafka"
bootstrap_servers = "$bootstrap"
group_id = "bench"
topics = ["a"]
[sinks.null]
type = "blackhole"
inputs = ["fleet"]
EOF
    auditrail_until "$dir/source" "$dir/source/b.toml" "$api" null
    # 4. kcat -C reading topic a from the beginning to the end of every partition.
    mkdir -p "$dir/kcat-c"
    kcat_run "$dir/kcat-c" -C -b "$bootstrap" -t a -o beginning -e -q -f '%s\n'
    stop_mock
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A eps cpu rss
names=(sink kcat-p source kcat-c)
for ((i = 1; i <= runs; i++)); do
    log "run $i/$runs"
    run_once "$work/run-$i"
    for n in "${names[@]}"; do
        read -r wall c r <"$work/run-$i/$n/result"
        e=$(awk -v n="$count" -v w="$wall" 'BEGIN { printf "%.0f", n / w }')
        log "  $n: ${wall} s, $e events/s, CPU ${c} s, max RSS ${r} MB"
        eps[$n]+="$e "; cpu[$n]+="$c "; rss[$n]+="$r "
    done
    rm -rf "$work/run-$i"
done

label() {
    case $1 in
        sink) echo "produce: auditrail file → kafka sink" ;;
        kcat-p) echo "produce: kcat -P (acks=all, idempotent)" ;;
        source) echo "consume: auditrail kafka source → blackhole" ;;
        kcat-c) echo "consume: kcat -C" ;;
    esac
}

echo "Machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), Linux $(uname -r)."
echo
echo "Job: $count events ($input_bytes bytes), librdkafka's mock cluster (kafka-mock, 3 brokers, 24 partitions) on loopback; median of $runs run(s)."
echo
echo "| tool | events/s | CPU s | max RSS MB |"
echo "| --- | ---: | ---: | ---: |"
for n in "${names[@]}"; do
    # shellcheck disable=SC2086 # the values are space-separated numbers
    echo "| $(label "$n") | $(printf '%s\n' ${eps[$n]} | median | xargs printf '%.0f') | $(printf '%s\n' ${cpu[$n]} | median) | $(printf '%s\n' ${rss[$n]} | median) |"
done
