#!/usr/bin/env bash
# Overhead of host-event capture: a 10,000 x /bin/true exec loop and a 100,000-open loop, run
#   - without any tracer,
#   - with auditrail's ebpf source (scope "all", exec+open+connect, to a file sink),
#   - with bpftrace running the equivalent probes (sched_process_exec, sys_enter/exit_openat) as the anchor.
# Prints a Markdown table: workload wall and CPU (user+sys of the loop), the tracer's CPU over the same
# interval, events/s the tracer delivered, and lost % (auditrail: from its kernel counters; bpftrace: the
# "Lost N events" it reports).
#
#   benches/scripts/ebpf.sh [--runs K]
#
# Needs root, bpftrace (Debian's), and mounts tracefs if it is not mounted (bpftrace's tracepoints need it).
# Environment: AUDITRAIL_BIN (default <repo>/target/release/auditrail).
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
bin=${AUDITRAIL_BIN:-$repo_root/target/release/auditrail}
runs=1
[ "${1:-}" = "--runs" ] && runs=$2

work=$(mktemp -d)
cleanup() {
    [ -n "${tracer_pid:-}" ] && kill "$tracer_pid" 2>/dev/null || true
    [ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing

exec_loop='i=0; while [ $i -lt 10000 ]; do /bin/true; i=$((i+1)); done'
open_loop='i=0; while [ $i -lt 100000 ]; do : < /etc/hostname; i=$((i+1)); done'

# Clock ticks of user+sys of pid $1.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# Runs workload $1 under /usr/bin/time; prints "wall cpu".
run_load() {
    /usr/bin/time -f "%e %U %S" -o "$work/time" /bin/sh -c "$1" >/dev/null
    awk '{printf "%.2f %.2f\n", $1, $2 + $3}' "$work/time"
}

start_auditrail() {
    api=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    rm -rf "$work/agent"; mkdir -p "$work/agent"
    cat > "$work/agent/a.toml" <<TOML
data_dir = "$work/agent/data"
[api]
address = "127.0.0.1:$api"
[sources.host]
type = "ebpf"
scope = "all"
rate_limit = 0
[sinks.out]
type = "file"
inputs = ["host"]
path = "$work/agent/out.ndjson"
TOML
    "$bin" run --config "$work/agent/a.toml" 2>"$work/agent/log" &
    tracer_pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$api/ready" >/dev/null && return; sleep 0.1; done
    echo "auditrail did not get ready" >&2; cat "$work/agent/log" >&2; exit 1
}

metric() { curl -s "http://127.0.0.1:$api/metrics" | awk -v n="$1" -v k="$2" '$1 ~ "^"n"\\{" && $1 ~ "kind=\""k"\"" {s+=$2} END {print s+0}'; }

start_bpftrace() {
    bpftrace -e '
tracepoint:sched:sched_process_exec { printf("exec %d %s %s\n", pid, comm, str(args->filename)); }
tracepoint:syscalls:sys_enter_openat { @path[tid] = args->filename; }
tracepoint:syscalls:sys_exit_openat /@path[tid]/ { printf("open %d %s %s %d\n", pid, comm, str(@path[tid]), args->ret); delete(@path[tid]); }
tracepoint:syscalls:sys_enter_connect { printf("connect %d %s\n", pid, comm); }' >"$work/bpftrace.out" 2>&1 &
    tracer_pid=$!
    for _ in $(seq 200); do grep -q "Attaching" "$work/bpftrace.out" 2>/dev/null && break; sleep 0.1; done
    sleep 1
}

stop_tracer() { kill "$tracer_pid" 2>/dev/null || true; wait "$tracer_pid" 2>/dev/null || true; tracer_pid=; }

echo "| workload | tracer | wall s | loop CPU s | tracer CPU s | events | events/s | lost % |"
echo "|---|---|---|---|---|---|---|---|"
for r in $(seq "$runs"); do
for load in exec open; do
    [ $load = exec ] && script=$exec_loop || script=$open_loop
    read -r wall cpu < <(run_load "$script")
    echo "| $load | none | $wall | $cpu | - | - | - | - |"

    start_auditrail
    t0=$(ticks "$tracer_pid"); seen0=$(metric auditrail_ebpf_seen_events_total "$load"); d0=$(metric auditrail_ebpf_events_total "$load")
    read -r wall cpu < <(run_load "$script")
    sleep 2 # let the reader finish and the counters tick
    t1=$(ticks "$tracer_pid"); seen1=$(metric auditrail_ebpf_seen_events_total "$load"); d1=$(metric auditrail_ebpf_events_total "$load"); lost=$(metric auditrail_ebpf_lost_events_total "$load")
    stop_tracer
    ev=$((d1 - d0)); seen=$((seen1 - seen0))
    awk -v w="$wall" -v c="$cpu" -v t=$((t1 - t0)) -v hz="$hz" -v ev="$ev" -v seen="$seen" -v lost="$lost" -v l="$load" \
        'BEGIN {printf "| %s | auditrail | %s | %s | %.2f | %d | %.0f | %.2f |\n", l, w, c, t/hz, ev, ev/w, (seen ? 100*lost/seen : 0)}'

    start_bpftrace
    t0=$(ticks "$tracer_pid"); n0=$(grep -c "^$load " "$work/bpftrace.out" || true)
    read -r wall cpu < <(run_load "$script")
    sleep 2
    t1=$(ticks "$tracer_pid"); n1=$(grep -c "^$load " "$work/bpftrace.out" || true)
    stop_tracer
    blost=$({ grep -o "Lost [0-9]* events" "$work/bpftrace.out" || true; } | awk '{s+=$2} END {print s+0}')
    awk -v w="$wall" -v c="$cpu" -v t=$((t1 - t0)) -v hz="$hz" -v ev=$((n1 - n0)) -v lost="$blost" -v l="$load" \
        'BEGIN {printf "| %s | bpftrace | %s | %s | %.2f | %d | %.0f | %.2f |\n", l, w, c, t/hz, ev, ev/w, (ev+lost ? 100*lost/(ev+lost) : 0)}'
done
done
