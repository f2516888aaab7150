#!/usr/bin/env bash
# Recording upload throughput to moto_server (an in-memory S3-compatible server, installed with awscli by
# integration-tests/peers/s3/install): auditrail's uploader against `aws s3 cp --recursive` (awscli), on the
# same files, to the same server, in one run.
#
# Makes SMALL small sessions (1-300 KB .raw + a small .cast + .done) and LARGE large ones (.raw of LARGE_MB
# MiB), once; then for each run and each client: a fresh bucket, the client uploads everything, and the
# bucket must then hold every file with its size. Prints a Markdown table (median of the runs) on stdout;
# progress on stderr.
#
#   benches/scripts/upload.sh [--runs K] [--small N] [--large N] [--large-mb MB]
#
# MB/s is the bytes of the recording files over the wall time of the client's process (auditrail:
# `auditrail upload --once`, which scans, uploads, verifies each object with a HEAD and exits; awscli:
# `aws s3 cp --recursive`, which does no verification). CPU s (user+sys) and max RSS of the client's
# process tree come from GNU time; moto's CPU s from /proc, to show where the time went. Both clients use
# multipart above 16 MiB with 8 MiB parts (awscli's defaults, which auditrail's match), and auditrail's
# concurrency = 4 sessions x part_concurrency = 4 parts against awscli's max_concurrent_requests = 10.
#
# Environment:
#   AUDITRAIL_BIN   auditrail binary (default: <repo>/target/release/auditrail)
#   TMPDIR          where the work directory is created (default /tmp)
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)

runs=3
small=500
large=3
large_mb=256
while (($#)); do
    case $1 in
        --runs) runs=$2; shift 2 ;;
        --small) small=$2; shift 2 ;;
        --large) large=$2; shift 2 ;;
        --large-mb) large_mb=$2; shift 2 ;;
        -h | --help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[[ -x /usr/bin/time ]] || { echo "GNU time (/usr/bin/time) is required: apt-get install time" >&2; exit 1; }
auditrail_bin=${AUDITRAIL_BIN:-$repo_root/target/release/auditrail}
[[ -x $auditrail_bin ]] || { echo "not found: $auditrail_bin (cargo build --release --bin auditrail)" >&2; exit 1; }
venv_bin=$("$repo_root/integration-tests/peers/s3/install")

log() { echo "[upload-bench] $*" >&2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/auditrail-upload-bench.XXXXXX")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
    "$repo_root/integration-tests/peers/s3/stop" "$work/moto" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

log "making $small small and $large x ${large_mb} MiB sessions in $work/rec"
mkdir -p "$work/rec"
python3 - "$work/rec" "$small" "$large" "$large_mb" <<'PY'
import os, sys
rec, small, large, large_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def write(sid, size):
    with open(os.path.join(rec, sid + ".raw"), "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(os.urandom(n))
            left -= n
    with open(os.path.join(rec, sid + ".cast"), "w") as f:
        f.write('{"version":2,"width":80,"height":24}\n[0.1,"o","x"]\n')
    with open(os.path.join(rec, sid + ".done"), "w") as f:
        f.write('{"sid":"%s"}' % sid)
for i in range(small):
    write("small%04d" % i, 1000 + (i * 7919) % 300000)
for i in range(large):
    write("large%02d" % i, large_mb << 20)
PY
# awscli gets exactly the recording files (not the .done markers auditrail does not upload).
mkdir -p "$work/aws-src"
for f in "$work"/rec/*.raw "$work"/rec/*.cast; do ln "$f" "$work/aws-src/"; done
files=$(find "$work/aws-src" -type f | wc -l)
bytes=$(find "$work/aws-src" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
log "$files files, $bytes bytes"

"$repo_root/integration-tests/peers/s3/start" "$port" "$work/moto" >/dev/null
moto_pid=$(cat "$work/moto/moto.pid")
endpoint="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
aws() { "$venv_bin/aws" --endpoint-url "$endpoint" "$@"; }
aws configure set default.s3.max_concurrent_requests 10 >/dev/null 2>&1 || true

moto_cpu() { awk '{print ($14+$15)/100}' "/proc/$moto_pid/stat"; }

bucket_check() { # bucket → "objects bytes"
    # One "count bytes" line per page of 1000: add them up.
    aws s3api list-objects-v2 --bucket "$1" --query '[length(Contents), sum(Contents[].Size)]' --output text |
        awk '{o += $1; b += $2} END {print o, b}'
}

run_one() { # client run → "secs cpu rss_mb moto_cpu check"
    local client=$1 run=$2 bucket="bench-$1-$2" m0 m1 t0 t1
    aws s3api create-bucket --bucket "$bucket" >/dev/null
    m0=$(moto_cpu)
    t0=$(date +%s.%N)
    if [[ $client == auditrail ]]; then
        rm -rf "$work/data"
        cat >"$work/upload.toml" <<TOML
data_dir = "$work/data"
[uploader]
watch = ["$work/rec"]
url = "s3://$bucket/b"
endpoint = "$endpoint"
allow_http = true
key_template = "{sid}/{file}"
concurrency = 4
part_concurrency = 4
socket = "$work/none.sock"
TOML
        /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$auditrail_bin" upload --once --config "$work/upload.toml" 2>"$work/auditrail.log" ||
            { log "auditrail failed:"; tail -5 "$work/auditrail.log" >&2; }
        rm -rf "$work/rec/spool"
    else
        /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$venv_bin/aws" --endpoint-url "$endpoint" s3 cp --recursive --quiet "$work/aws-src" "s3://$bucket/b" >&2
    fi
    t1=$(date +%s.%N)
    m1=$(moto_cpu)
    read -r _ user sys rss <"$work/time"
    local check
    check=$(bucket_check "$bucket")
    echo "$(echo "$t1 - $t0" | bc -l) $(echo "$user + $sys" | bc -l) $((rss / 1024)) $(echo "$m1 - $m0" | bc -l) $(echo "$check" | tr ' \t' '::')"
    aws s3 rb --force "s3://$bucket" >/dev/null 2>&1 || true
}

declare -A results
for ((r = 1; r <= runs; r++)); do
    for client in auditrail awscli; do
        out=$(run_one "$client" "$r")
        log "run $r $client: secs cpu rss_mb moto_cpu objects:bytes = $out"
        results[$client]+="$out"$'\n'
    done
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "Job: $files files ($small small sessions of 1-300 KB + $large of $large_mb MiB, each with a .cast), $bytes bytes, to moto_server on loopback; median of $runs runs."
echo
echo "| client | MB/s | wall s | CPU s | max RSS MB | moto CPU s | stored (objects:bytes, last run) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
for client in auditrail awscli; do
    lines=${results[$client]}
    secs=$(echo -n "$lines" | awk '{print $1}' | median)
    cpu=$(echo -n "$lines" | awk '{print $2}' | median)
    rss=$(echo -n "$lines" | awk '{print $3}' | median)
    mcpu=$(echo -n "$lines" | awk '{print $4}' | median)
    check=$(echo -n "$lines" | tail -n 1 | awk '{print $5}')
    mbs=$(echo "$bytes / 1048576 / $secs" | bc -l)
    printf '| %s | %.1f | %.1f | %.2f | %d | %.1f | %s |\n' "$client" "$mbs" "$secs" "$cpu" "$rss" "$mcpu" "$check"
done
