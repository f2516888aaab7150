#!/usr/bin/env bash
# Writes the seed corpus under fuzz/corpus/<target>/: hand-made inputs for the parsers, and for the disk-buffer
# scanner and the verifier what the real agent wrote (disk-buffer segments, chained lines and seals).
#   fuzz/make-seeds.sh        (AUDITRAIL_BIN: the agent, default target/release/auditrail)
set -euo pipefail
cd "$(dirname "$0")"
bin=${AUDITRAIL_BIN:-../target/release/auditrail}
[[ -x $bin ]] || { echo "binary not found: $bin (cargo build --release --bin auditrail)" >&2; exit 1; }
corpus=$PWD/corpus
rm -rf "$corpus"
mkdir -p "$corpus"/{canonical_form,event_parse,http_body,line_splitter,segment_scan,verify_lines}
ev1='{"event":"session.start","code":"T2000I","time":"2017-02-03T06:54:05.123Z","uid":"b6d2a7c4-1","user":"alice@example.com","login":"root","server_id":"node-1","addr.remote":"10.0.0.5:51234"}'
ev2='{"event":"user.login","code":"T1000I","time":"2026-11-25T12:00:00+01:00","user":"bob","success":true,"method":"local"}'
ev3='{"event":"exec","code":"T3002I","time":"2017-02-03T06:54:05Z","uid":"e-3","command":"echo \"a \u003c b\" \\ \ud83d\ude00","exitCode":0,"n":-1.5e300,"big":123456789012345678901234567890,"nested":{"a":[1,{"b":null}]}}'
bad_time='{"event":"x","time":"yesterday","uid":"4"}'
no_time='{"event":"x","uid":"5"}'
s() { printf '%s' "$2" > "$1"; }
# event_parse
s "$corpus/event_parse/session_start" "$ev1"
s "$corpus/event_parse/login_no_uid" "$ev2"
s "$corpus/event_parse/escapes_numbers" "$ev3"
s "$corpus/event_parse/bad_time" "$bad_time"
s "$corpus/event_parse/no_time" "$no_time"
printf '{\n  "event": "pretty",\n  "time": "2017-02-03T06:54:05Z",\n  "uid": "6"\n}' > "$corpus/event_parse/pretty"
s "$corpus/event_parse/duplicate_keys" '{"event":"a","event":"b","time":"2017-02-03T06:54:05Z","time":"2018-01-01T00:00:00Z"}'
# canonical_form
s "$corpus/canonical_form/session_start" "$ev1"
s "$corpus/canonical_form/escapes_numbers" "$ev3"
s "$corpus/canonical_form/with_integrity" '{"event":"a","time":"2017-02-03T06:54:05Z","auditrail.integrity":{"stream":"n/s","seq":1},"z":1e-7,"y":0.1,"x":"\u00e9\u0000"}'
s "$corpus/canonical_form/key_order" '{"\u20ac":1,"\r":2,"1":3,"\ud83d\ude00":4,"\ufb33":5,"a":[true,false,null,-0,1E+2]}'
# http_body: one byte choosing the per-event limit ((b + 1) * 32 bytes), then the body.
h() { { printf "$2"; printf '%s' "$3"; } > "$corpus/http_body/$1"; }
h array '\xff' "[$ev1, $ev2 ,$ev3]"
h array_bad_element '\xff' "[$ev1, 5, \"x\", $no_time]"
h array_cut '\xff' "[$ev1, "
h ndjson '\xff' "$ev1
$ev2

$bad_time
not json
$ev3
"
h ndjson_crlf_over_limit '\x03' "$ev1"$'\r\n'"$ev3"$'\r\n'"$ev2"
h pretty_object '\xff' $'{\n  "event": "pretty",\n  "time": "2017-02-03T06:54:05Z",\n  "uid": "6"\n}\n'
h blank '\xff' $' \n\t\n'
# line_splitter: the longest line (one byte), the number of cut points (one byte), the cut points (two bytes
# each, little-endian), then the stream.
printf '\xff\x00%s\n%s\n' "$ev1" "$ev2" > "$corpus/line_splitter/two_lines_one_read"
printf '\xff\x03\x05\x00\x40\x00\x00\x01%s\n%s\n%s' "$ev1" "$ev2" "$ev3" > "$corpus/line_splitter/cut_partial_last"
printf '\x20\x02\x10\x00\x30\x00%s\nshort\n%s\n' "$ev1" "$ev3" > "$corpus/line_splitter/over_long_lines"
printf '\x01\x04\x01\x00\x02\x00\x03\x00\x04\x00\n\n\na\nbb\n' > "$corpus/line_splitter/tiny_limit_empty_lines"

# The agent: a file source of a few events, chained ([integrity], key made at start), into a file sink (the
# chained lines and seals) and into an Elasticsearch sink that cannot connect, whose disk buffer keeps the
# segment.
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/in"
{ echo "$ev1"; echo "$ev2"; echo "$ev3"; for i in 1 2 3 4 5 6; do
    echo "{\"event\":\"session.data\",\"code\":\"T2006I\",\"time\":\"2017-02-03T06:54:0${i}Z\",\"uid\":\"d-$i\",\"tx\":$((i * 100))}"
  done; } > "$work/in/a.log"
cat > "$work/auditrail.toml" <<TOML
data_dir = "$work/data"
[api]
address = "127.0.0.1:0"
[sources.teleport]
type = "file"
include = ["$work/in/*.log"]
poll_interval = "20ms"
[sinks.out]
type = "file"
inputs = ["teleport"]
path = "$work/out/all.ndjson"
[sinks.es]
type = "elasticsearch"
inputs = ["teleport"]
endpoint = "http://127.0.0.1:9"
index = "audit"
buffer = { type = "disk", max_size = "64MiB", fsync_interval = "20ms" }
[integrity]
key = "$work/keys/auditrail.key"
node_id = "node-1"
seal_interval = "500ms"
TOML
"$bin" run --config "$work/auditrail.toml" 2> "$work/agent.log" &
pid=$!
sleep 1.2
kill -TERM $pid; wait $pid || true
out=$work/out/all.ndjson
[[ -s $out ]] || { cat "$work/agent.log" >&2; echo "no output" >&2; exit 1; }
cp "$out" "$corpus/verify_lines/agent_output"; chmod 644 "$corpus/verify_lines/agent_output"
head -n 4 "$out" > "$corpus/verify_lines/first_lines"
grep -m1 '"auditrail.seal"' "$out" > "$corpus/verify_lines/one_seal" || true
tail -n +2 "$out" > "$corpus/verify_lines/first_line_missing"
sed '3s/alice/mallory/' "$out" > "$corpus/verify_lines/altered_line"
segment=$(find "$work/data" -name '*.seg' -o -name 'segment*' -type f | head -1)
[[ -n $segment ]] || { find "$work/data" >&2; echo "no disk-buffer segment" >&2; exit 1; }
cp "$segment" "$corpus/segment_scan/agent_segment"
size=$(stat -c %s "$segment")
head -c $((size - 7)) "$segment" > "$corpus/segment_scan/torn_tail"
head -c $((size / 2)) "$segment" > "$corpus/segment_scan/half"
{ cat "$segment"; printf 'garbage after the records'; } > "$corpus/segment_scan/garbage_tail"
python3 -c 'import sys; b=bytearray(open(sys.argv[1],"rb").read()); b[len(b)//3]^=0x10; open(sys.argv[2],"wb").write(b)' \
    "$segment" "$corpus/segment_scan/flipped_byte"
# cast_reader: asciicast v2 and v3 as the recorder writes them, and damaged ones (a line that is not JSON,
# times going backwards, a torn last line, a wrong header, values out of range).
mkdir -p "$corpus/cast_reader"
printf '{"version": 2, "width": 80, "height": 24, "timestamp": 1700000000, "env": {"TERM": "xterm"}}\n[0.100000, "o", "\\u001b[1;31mred\\u001b[0m\\r\\n"]\n[0.200000, "r", "100x30"]\n[0.300000, "i", "ls\\r"]\n[1.500000, "o", "caf\\u00e9 \xe2\x82\xac"]\n' > "$corpus/cast_reader/v2"
printf '{"version": 3, "term": {"cols": 40, "rows": 10, "type": "xterm"}, "timestamp": 1, "command": "sh", "env": {"SHELL": "/bin/sh"}}\n[0.5, "o", "a"]\n[1.0, "o", "\\u001b[2J\\u001b[H"]\n[0.1, "m", "mark"]\n[0.2, "x", "0"]\n' > "$corpus/cast_reader/v3"
printf '{"version": 2, "width": 80, "height": 24}\n[0.1, "o", "a"]\nnot json\n[0.05, "o", "backwards"]\n[0.3, "o", "torn' > "$corpus/cast_reader/damaged"
printf '{"version": 9, "width": 80}\n[0.1, "o", "a"]\n' > "$corpus/cast_reader/wrong_header"
printf '{"version": 2, "width": 80, "height": 24}\n[1e308, "o", "x"]\n[-1, "o", "y"]\n[0.1, "r", "0x0"]\n[0.2, "r", "99999x3"]\n[0.3, 5, "z"]\n[0.4, "o", ["a"]]\n' > "$corpus/cast_reader/odd_values"
# seek_index: the index `auditrail play --frame` keeps beside a recording (of the cast_reader seeds v2, v3 and
# damaged, and of a longer one with several keyframes), as written, without its checksum (so the body's own
# seal makes it valid and the checks behind the checksum are reached), and cut short.
mkdir -p "$corpus/seek_index"
idx=$(mktemp -d)
cp "$corpus/cast_reader/v2" "$idx/v2.cast"
cp "$corpus/cast_reader/v3" "$idx/v3.cast"
cp "$corpus/cast_reader/damaged" "$idx/damaged.cast"
python3 -c 'import sys
with open(sys.argv[1], "w") as f:
    f.write("{\"version\": 2, \"width\": 20, \"height\": 4}\n")
    for i in range(200):
        f.write("[%d.5, \"o\", \"\\u001b[3%dmline %d\\r\\n\"]\n" % (i, i % 8, i))' "$idx/long.cast"
for c in v2 v3 damaged long; do
    "$bin" play --frame "$idx/$c.cast" >/dev/null 2>&1 || true
    cp "$idx/$c.index" "$corpus/seek_index/$c"
    head -c -32 "$idx/$c.index" > "$corpus/seek_index/${c}_unsealed"
done
head -c 100 "$idx/long.index" > "$corpus/seek_index/long_cut"
rm -rf "$idx"
du -sh "$corpus"/*
