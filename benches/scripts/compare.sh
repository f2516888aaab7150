#!/usr/bin/env bash
# File-to-file throughput comparison: cat, rsyslog, syslog-ng and auditrail.
#
# Generates N Teleport-like NDJSON audit events once, then for every tool runs
# the same job K times: read the input file from the beginning and write every
# line, unchanged, to an output file. Prints a Markdown table with the median
# of the runs on stdout; progress goes to stderr.
#
#   benches/scripts/compare.sh [--runs K] [--timeout S] [--tools LIST]
#                              [--seed S] [--keep] [--install-peers] [N]
#
# events/s is N divided by the wall time from starting the tool until the
# output file holds all N lines, measured here (the daemons do not exit at end
# of input: the output is polled, then the daemon gets SIGTERM). CPU s
# (user+sys) and max RSS come from GNU time and cover the whole process life.
#
# Environment:
#   AUDITRAIL_BIN   auditrail binary (default: <repo>/target/release/auditrail)
#   RSYSLOGD        rsyslogd binary (default: rsyslogd on PATH)
#   SYSLOG_NG       syslog-ng binary or wrapper (default: the one made by
#                   integration-tests/peers/syslog-ng/install)
#   AUDITRAIL_PEERS_DIR  cache of integration-tests/peers/syslog-ng/install
#   TMPDIR          where the work directory is created (default /tmp)

# Most functions are invoked indirectly (from the EXIT trap or as "$func").
# shellcheck disable=SC2317
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)

usage() {
    cat >&2 <<EOF
usage: $(basename "$0") [options] [N]

  N                 number of events (default 1000000)
  --runs K          runs per tool; the table shows the median (default 3)
  --timeout S       seconds a tool gets to deliver all N lines (default 300)
  --tools LIST      comma-separated subset of: cat,rsyslog,syslog-ng,auditrail
                    (default: all)
  --seed S          seed for the generated events (default 1)
  --keep            keep the work directory (inputs, outputs, configs, logs)
  --install-peers   run integration-tests/peers/{rsyslog,syslog-ng}/install first
  -h, --help        this text
EOF
}

die_usage() {
    echo "$(basename "$0"): $*" >&2
    usage
    exit 2
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

count=1000000
runs=3
timeout_s=300
tools="cat,rsyslog,syslog-ng,auditrail"
seed=1
keep=0
install_peers=0
while (($#)); do
    case $1 in
        --runs) (($# >= 2)) || die_usage "--runs needs a value"; runs=$2; shift 2 ;;
        --runs=*) runs=${1#*=}; shift ;;
        --timeout) (($# >= 2)) || die_usage "--timeout needs a value"; timeout_s=$2; shift 2 ;;
        --timeout=*) timeout_s=${1#*=}; shift ;;
        --tools) (($# >= 2)) || die_usage "--tools needs a value"; tools=$2; shift 2 ;;
        --tools=*) tools=${1#*=}; shift ;;
        --seed) (($# >= 2)) || die_usage "--seed needs a value"; seed=$2; shift 2 ;;
        --seed=*) seed=${1#*=}; shift ;;
        --keep) keep=1; shift ;;
        --install-peers) install_peers=1; shift ;;
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
is_pos "$runs" || die_usage "--runs must be a positive integer"
is_pos "$timeout_s" || die_usage "--timeout must be a positive integer"
is_uint "$seed" || die_usage "--seed must be a non-negative integer"
IFS=',' read -ra tool_list <<<"$tools"
for t in "${tool_list[@]}"; do
    case $t in
        cat | rsyslog | syslog-ng | auditrail) ;;
        *) die_usage "unknown tool in --tools: $t" ;;
    esac
done
[[ -x /usr/bin/time ]] || { echo "GNU time (/usr/bin/time) is required: apt-get install time" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }

want() {
    local t
    for t in "${tool_list[@]}"; do [[ $t == "$1" ]] && return 0; done
    return 1
}

log() { echo "[compare] $*" >&2; }

# ---------------------------------------------------------------------------
# Work directory and cleanup

work=$(mktemp -d "${TMPDIR:-/tmp}/auditrail-bench.XXXXXX")
# GNU time process of the run in progress (its child is the tool), if any.
active_tpid=""

cleanup() {
    local pid i
    if [[ -n $active_tpid ]] && kill -0 "$active_tpid" 2>/dev/null; then
        for pid in $(children_of "$active_tpid"); do
            kill -TERM "$pid" 2>/dev/null || true
        done
        for ((i = 0; i < 50; i++)); do
            kill -0 "$active_tpid" 2>/dev/null || break
            sleep 0.1
        done
        for pid in $(children_of "$active_tpid"); do
            kill -KILL "$pid" 2>/dev/null || true
        done
        kill -KILL "$active_tpid" 2>/dev/null || true
    fi
    if ((keep)); then
        log "kept work directory: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

input="$work/in.ndjson"

# ---------------------------------------------------------------------------
# Small helpers

now_ns() { date +%s%N; }

file_size() { stat -c %s "$1" 2>/dev/null || echo 0; }

line_count() {
    if [[ -e $1 ]]; then wc -l <"$1"; else echo 0; fi
}

# Lines (newlines) in bytes FROM..TO of a file. The polling loop counts only
# what was appended since its last count: counting the whole output on every
# poll would take CPU from the tool being measured, the more so the larger its
# output (integrity adds a field to every line).
lines_between() {
    if [[ -e $1 ]] && (($3 > $2)); then
        tail -c +$(($2 + 1)) "$1" | head -c $(($3 - $2)) | wc -l
    else
        echo 0
    fi
}

# Children of a process (the tool started by GNU time).
children_of() { pgrep -P "$1" 2>/dev/null || true; }

# Sends SIGTERM to the tool run by GNU time (pid $1), then SIGKILL after 10 s.
stop_timed() {
    local tpid=$1 child i
    for child in $(children_of "$tpid"); do
        kill -TERM "$child" 2>/dev/null || true
    done
    for ((i = 0; i < 100; i++)); do
        kill -0 "$tpid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "  still running 10 s after SIGTERM: SIGKILL"
    for child in $(children_of "$tpid"); do
        kill -KILL "$child" 2>/dev/null || true
    done
}

# ---------------------------------------------------------------------------
# One measured run.
#
# run_timed MODE DIR OUT -- CMD...
#   MODE exit:   the command finishes by itself (cat); stdout goes to OUT.
#   MODE daemon: the command writes OUT itself and keeps running; OUT is polled
#                until it holds $count lines, then the command gets SIGTERM.
# Writes DIR/result: "status wall_ns user sys maxrss_kb lines note..."
# status is ok, incomplete or failed.
run_timed() {
    local mode=$1 dir=$2 out=$3
    shift 4
    local t0 t_done tpid rc=0 status=ok note="" lines=0
    local timefile="$dir/time.txt"
    local deadline=$((timeout_s * 1000000000))

    t0=$(now_ns)
    if [[ $mode == exit ]]; then
        /usr/bin/time -f '%e %U %S %M' -o "$timefile" "$@" >"$out" 2>"$dir/stderr.log" &
    else
        /usr/bin/time -f '%e %U %S %M' -o "$timefile" "$@" >"$dir/stdout.log" 2>"$dir/stderr.log" &
    fi
    tpid=$!
    active_tpid=$tpid

    if [[ $mode == exit ]]; then
        wait "$tpid" || rc=$?
        t_done=$(now_ns)
        lines=$(line_count "$out")
        if ((rc != 0)); then
            status=failed
            note="exit status $rc"
        elif ((lines < count)); then
            status=incomplete
        fi
    else
        local size prev_size=-1 t_change=$t0 counted_size=0 now exited=0
        while :; do
            now=$(now_ns)
            size=$(file_size "$out")
            if ((size != prev_size)); then
                prev_size=$size
                t_change=$now
            fi
            kill -0 "$tpid" 2>/dev/null || exited=1
            # Count lines when the output is as large as the input (the tools
            # pass lines through unchanged), or when it stopped growing for
            # 2 s, or when the tool exited.
            if ((size != counted_size)) &&
                ((size >= input_bytes || now - t_change > 2000000000 || exited)); then
                lines=$((lines + $(lines_between "$out" "$counted_size" "$size")))
                counted_size=$size
                if ((lines >= count)); then
                    # The output reached its final size at t_change at the
                    # latest; if it is still growing, now.
                    if ((size >= input_bytes)); then t_done=$now; else t_done=$t_change; fi
                    break
                fi
            fi
            if ((exited)); then
                lines=$(line_count "$out")
                wait "$tpid" || rc=$?
                status=failed
                note="exited with status $rc before delivering all lines"
                break
            fi
            if ((now - t0 > deadline)); then
                lines=$(line_count "$out")
                status=incomplete
                note="timeout after ${timeout_s} s"
                break
            fi
            sleep 0.05
        done
        if [[ $status == ok ]] || kill -0 "$tpid" 2>/dev/null; then
            stop_timed "$tpid"
            wait "$tpid" || true
        fi
        [[ -n ${t_done:-} ]] || t_done=$(now_ns)
    fi

    active_tpid=""

    local u s m
    if [[ -s $timefile ]]; then
        read -r _ u s m < <(tail -n 1 "$timefile")
    fi
    is_uint "${m:-x}" || { u=0; s=0; m=0; }
    echo "$status $((t_done - t0)) $u $s $m $lines $note" >"$dir/result"
}

# ---------------------------------------------------------------------------
# Tools. Each prepares a fresh run directory, runs once and leaves
# DIR/result and DIR/out.ndjson.

run_cat() {
    local dir=$1
    run_timed exit "$dir" "$dir/out.ndjson" -- cat "$input"
}

run_rsyslog() {
    local dir=$1
    mkdir -p "$dir/work"
    cat >"$dir/rsyslog.conf" <<EOF
global(workDirectory="$dir/work" maxMessageSize="64k")
module(load="imfile")
template(name="raw" type="string" string="%msg%\n")
ruleset(name="bench") {
    action(type="omfile" file="$dir/out.ndjson" template="raw")
}
input(type="imfile" file="$input" tag="bench" ruleset="bench")
EOF
    run_timed daemon "$dir" "$dir/out.ndjson" -- \
        "$rsyslogd_bin" -n -f "$dir/rsyslog.conf" -i "$dir/rsyslogd.pid"
}

run_syslog_ng() {
    local dir=$1
    cat >"$dir/syslog-ng.conf" <<EOF
@version: 3.38
options { stats-freq(0); log-msg-size(65536); };
source s_in { file("$input" follow-freq(1) flags(no-parse)); };
destination d_out { file("$dir/out.ndjson" template("\${MESSAGE}\n")); };
log { source(s_in); destination(d_out); flags(flow-control); };
EOF
    run_timed daemon "$dir" "$dir/out.ndjson" -- \
        "$syslog_ng_bin" -F -f "$dir/syslog-ng.conf" --persist-file "$dir/syslog-ng.persist" \
        --pidfile "$dir/syslog-ng.pid" --control "$dir/syslog-ng.ctl"
}

# The standard auditrail job: auditrail_config SINK_EXTRA prints it with
# SINK_EXTRA (TOML lines, may be empty) appended to [sinks.out].
# Placeholders @DATA_DIR@, @INPUT@ and @OUTPUT@ are filled in per run.
auditrail_config() {
    cat <<'EOF'
data_dir = "@DATA_DIR@"

[sources.in]
type = "file"
include = ["@INPUT@"]
read_from = "beginning"

[sinks.out]
type = "file"
inputs = ["in"]
path = "@OUTPUT@"
EOF
    [[ -z $1 ]] || printf '%s\n' "$1"
}

run_auditrail() {
    local dir=$1 body=$2
    mkdir -p "$dir/data"
    body=${body//@DATA_DIR@/$dir/data}
    body=${body//@INPUT@/$input}
    body=${body//@OUTPUT@/$dir/out.ndjson}
    printf '%s\n' "$body" >"$dir/auditrail.toml"
    run_timed daemon "$dir" "$dir/out.ndjson" -- \
        "$auditrail_bin" run --config "$dir/auditrail.toml"
}

# ---------------------------------------------------------------------------
# Runs a tool $runs times and appends a row to the table.
#
# bench NAME VERIFY FUNC [ARGS...]
#   VERIFY strict: output must equal the input byte for byte (cat, auditrail)
#   VERIFY lines:  output must hold N lines; byte equality is reported only
#   VERIFY chained: output holds the N events plus seal events (integrity on);
#                   each event line differs from its input by the appended
#                   chain field, so byte equality is not expected

rows=()
details=()

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

with_commas() { LC_ALL=C printf '%.0f' "$1" | sed -e ':a' -e 's/\([0-9]\)\([0-9]\{3\}\)\($\|,\)/\1,\2\3/' -e 'ta'; }

bench() {
    local name=$1 verify=$2 func=$3
    shift 3
    local i dir status wall_ns u s m lines note
    local ok_eps=() ok_cpu=() ok_rss=() notes=() per_run=()
    local n_ok=0 n_identical=0 n_differ=0
    for ((i = 1; i <= runs; i++)); do
        dir="$work/${name//[^A-Za-z0-9_.-]/_}-run$i"
        rm -rf "$dir"
        mkdir -p "$dir"
        # Write back earlier outputs now, not during the run.
        sync
        log "$name: run $i/$runs"
        if ! "$func" "$dir" "$@"; then
            echo "failed 0 0 0 0 0 harness error" >"$dir/result"
        fi
        read -r status wall_ns u s m lines note <"$dir/result"
        local wall eps cpu rss
        wall=$(awk -v ns="$wall_ns" 'BEGIN { printf "%.3f", ns / 1e9 }')
        cpu=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
        rss=$(awk -v m="$m" 'BEGIN { printf "%.1f", m / 1024 }')
        if [[ $status == ok ]]; then
            if cmp -s "$input" "$dir/out.ndjson"; then
                n_identical=$((n_identical + 1))
            else
                n_differ=$((n_differ + 1))
                if [[ $verify == chained ]] && ((lines >= count)); then
                    note="$((lines - count)) seal lines"
                elif ((lines != count)); then
                    status=bad
                    note="$lines lines instead of $count"
                elif [[ $verify == strict ]]; then
                    status=bad
                    note="output differs from input"
                fi
            fi
        fi
        if [[ $status == ok ]]; then
            n_ok=$((n_ok + 1))
            eps=$(awk -v n="$count" -v w="$wall" 'BEGIN { printf "%.0f", n / w }')
            ok_eps+=("$eps")
            ok_cpu+=("$cpu")
            ok_rss+=("$rss")
            per_run+=("${wall} s")
            log "  ${wall} s, $(with_commas "$eps") events/s, CPU ${cpu} s, max RSS ${rss} MB"
        else
            per_run+=("$status")
            case $status in
                incomplete) notes+=("run $i incomplete: $lines/$count lines${note:+ ($note)}") ;;
                *) notes+=("run $i $status: ${note:-unknown}; $lines/$count lines") ;;
            esac
            log "  $status: $lines/$count lines${note:+, $note}"
            if [[ -s $dir/stderr.log ]]; then
                log "  stderr (last lines):"
                tail -n 5 "$dir/stderr.log" | sed 's/^/    /' >&2
            fi
        fi
        # Outputs are as large as the input: keep only the last run's.
        ((keep)) || rm -f "$dir/out.ndjson"
    done

    local cell_eps="-" cell_cpu="-" cell_rss="-"
    if ((n_ok > 0)); then
        cell_eps=$(with_commas "$(printf '%s\n' "${ok_eps[@]}" | median)")
        cell_cpu=$(printf '%s\n' "${ok_cpu[@]}" | median | xargs printf '%.2f')
        cell_rss=$(printf '%s\n' "${ok_rss[@]}" | median | xargs printf '%.1f')
    fi
    if ((n_ok > 0)); then
        if ((n_differ == 0)); then
            notes=("$count lines, output identical to input" "${notes[@]}")
        else
            notes=("$count lines, output bytes differ from input" "${notes[@]}")
        fi
    fi
    ((n_ok == runs)) || notes+=("median of $n_ok/$runs runs")
    local joined
    joined=$(printf '%s; ' "${notes[@]}")
    rows+=("| $name | $cell_eps | $cell_cpu | $cell_rss | ${joined%; } |")
    details+=("- $name: $(printf '%s, ' "${per_run[@]}" | sed 's/, $//')")
}

skip() {
    local name=$1 why=$2
    log "$name: skipped: $why"
    rows+=("| $name | - | - | - | skipped: $why |")
}

# ---------------------------------------------------------------------------
# auditrail variants: one line each, a name and a config body.

auditrail_variants() {
    auditrail_variant "auditrail" "$(auditrail_config '')"
    auditrail_variant "auditrail (disk buffer)" "$(auditrail_config 'buffer = { type = "disk", max_size = "2GiB" }')"
    # Integrity on, with its defaults (a seal every 10,000 events or 10 s): every event is chained. The run
    # counts as complete at N lines, which the seals make a hundredth of a percent early.
    auditrail_variant "auditrail (integrity)" "$(auditrail_config $'\n[integrity]\nkey = "@DATA_DIR@/keys/auditrail.key"\nnode_id = "bench"')" chained
}

auditrail_bin=${AUDITRAIL_BIN:-$repo_root/target/release/auditrail}
auditrail_usable=""

auditrail_variant() {
    local name=$1 body=$2 help
    if [[ -z $auditrail_usable ]]; then
        if [[ ! -x $auditrail_bin ]]; then
            auditrail_usable="binary not found: $auditrail_bin (cargo build --release --bin auditrail)"
        elif ! help=$("$auditrail_bin" run --help 2>&1); then
            auditrail_usable="'$auditrail_bin run --help' fails"
        elif [[ -z $help ]]; then
            auditrail_usable="'$auditrail_bin run --help' prints nothing (no run command yet?)"
        else
            auditrail_usable=yes
        fi
    fi
    if [[ $auditrail_usable != yes ]]; then
        skip "$name" "$auditrail_usable"
        return 0
    fi
    bench "$name" "${3:-strict}" run_auditrail "$body"
}

# ---------------------------------------------------------------------------
# Peers

if ((install_peers)); then
    want rsyslog && { "$repo_root/integration-tests/peers/rsyslog/install" >/dev/null || log "rsyslog install failed"; }
    want syslog-ng && { "$repo_root/integration-tests/peers/syslog-ng/install" >/dev/null || log "syslog-ng install failed"; }
fi

rsyslogd_bin=${RSYSLOGD:-$(command -v rsyslogd 2>/dev/null || { [[ -x /usr/sbin/rsyslogd ]] && echo /usr/sbin/rsyslogd; } || true)}
syslog_ng_bin=${SYSLOG_NG:-${AUDITRAIL_PEERS_DIR:-/var/tmp/auditrail-peers}/syslog-ng/bin/syslog-ng}

version_of() {
    case $1 in
        rsyslog) "$rsyslogd_bin" -v 2>/dev/null | head -n 1 | awk '{ print $2 }' ;;
        syslog-ng) "$syslog_ng_bin" --version 2>/dev/null | sed -n 's/^Installer-Version: //p' ;;
        auditrail) "$auditrail_bin" --version 2>/dev/null | head -n 1 ;;
    esac
}

# ---------------------------------------------------------------------------
# Main

log "work directory: $work"
log "generating $count events (seed $seed)"
python3 "$script_dir/gen-events.py" --count "$count" --seed "$seed" --out "$input"
input_bytes=$(file_size "$input")
log "input: $input_bytes bytes, $(line_count "$input") lines"
# Warm the page cache so that every tool reads the input from memory.
cat "$input" >/dev/null
sync
# How busy the CPUs are without us (percent over 2 s, from /proc/stat).
cpu_busy_pct() {
    local a b
    a=$(head -n 1 /proc/stat)
    sleep 2
    b=$(head -n 1 /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {
        na = split(a, x); split(b, y); total = 0
        for (i = 2; i <= na && i <= 9; i++) total += y[i] - x[i]  # up to steal
        idle = (y[5] - x[5]) + (y[6] - x[6])
        printf "%.0f", (total > 0 ? 100 * (total - idle) / total : 0)
    }'
}
busy_start=$(cpu_busy_pct)
if ((busy_start > 25)); then
    log "warning: the CPUs are ${busy_start}% busy before the runs; other processes will skew the numbers"
fi

versions=()
if want cat; then
    bench cat strict run_cat
fi
if want rsyslog; then
    if [[ -z $rsyslogd_bin || ! -x $rsyslogd_bin ]]; then
        skip rsyslog "rsyslogd not found (integration-tests/peers/rsyslog/install)"
    elif ! "$rsyslogd_bin" -v >/dev/null 2>&1; then
        skip rsyslog "'$rsyslogd_bin -v' fails"
    else
        versions+=("rsyslog $(version_of rsyslog)")
        bench rsyslog lines run_rsyslog
    fi
fi
if want syslog-ng; then
    if [[ ! -x $syslog_ng_bin ]]; then
        skip syslog-ng "not found: $syslog_ng_bin (integration-tests/peers/syslog-ng/install)"
    elif ! "$syslog_ng_bin" --version >/dev/null 2>&1; then
        skip syslog-ng "'$syslog_ng_bin --version' fails"
    else
        versions+=("syslog-ng $(version_of syslog-ng)")
        bench syslog-ng lines run_syslog_ng
    fi
fi
if want auditrail; then
    auditrail_variants
    if [[ $auditrail_usable == yes ]]; then
        v=$(version_of auditrail)
        versions+=("${v:-auditrail} ($auditrail_bin)")
    fi
fi

cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mem_gib=$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)
avg_bytes=$((input_bytes / count))

echo "Machine: $(nproc) CPUs, ${cpu_model:-unknown CPU}, ${mem_gib} GiB RAM, Linux $(uname -r); CPUs ${busy_start}% busy just before the runs."
echo
echo "Job: $count events ($(with_commas "$input_bytes") bytes, ${avg_bytes} bytes/event on average), one file to another; median of $runs runs."
if ((${#versions[@]})); then
    echo "Versions: $(printf '%s, ' "${versions[@]}" | sed 's/, $//')."
fi
echo
echo "| tool | events/s | CPU s | max RSS MB | notes |"
echo "| --- | ---: | ---: | ---: | --- |"
printf '%s\n' "${rows[@]}"
if ((${#details[@]})); then
    echo
    echo "Wall time per run (start until the output held all lines):"
    echo
    printf '%s\n' "${details[@]}"
fi
exit 0
