#!/usr/bin/env python3
"""The kill -9 loop behind crash-loop.sh (see there for the options and what is measured).

Per run, in a directory of its own: the agent (file source -> disk or memory buffer -> file sink, [integrity]
on) is started on a copy of the input, killed with SIGKILL at a uniformly random moment 0.2-0.9 s after it
first answered /health, K times; then started once more and left to run until every input uid is in the
output, stopped with SIGTERM, and `auditrail verify --json` is run on the output. One Markdown table row per
run goes to stdout; progress goes to stderr.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

EVENT_RE = re.compile(rb'"event":"([^"]*)"')
UID_RE = re.compile(rb'"uid":"([^"]*)"')
READ_CHUNK = 64 << 20


def log(msg):
    print(f"[crash-loop] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=0.5) as r:
            return r.status == 200
    except OSError:
        return False


def input_uids(path):
    uids = set()
    with open(path, "rb") as f:
        for line in f:
            m = UID_RE.search(line)
            if m:
                uids.add(m.group(1))
    return uids


class Output:
    """What the file sink wrote so far: complete lines only, read incrementally (the sink cuts a torn last
    line at its next start, never anything before the last newline)."""

    def __init__(self, path, want):
        self.path = path
        self.want = want
        self.delivered = 0  # distinct uids of `want` seen
        self.offset = 0
        self.lines = 0
        self.event_lines = 0  # lines that are not auditrail.* events
        self.uids = {}

    def update(self):
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            if size < self.offset:
                raise RuntimeError(f"{self.path} shrank below {self.offset} bytes (now {size})")
            f.seek(self.offset)
            while self.offset < size:
                data = f.read(min(READ_CHUNK, size - self.offset))
                if not data:
                    break
                end = data.rfind(b"\n")
                if end < 0:
                    break
                self._count(data[: end + 1])
                self.offset += end + 1
                f.seek(self.offset)

    def _count(self, chunk):
        for line in chunk.splitlines():
            self.lines += 1
            m = EVENT_RE.search(line)
            if m and m.group(1).startswith(b"auditrail."):
                continue
            self.event_lines += 1
            u = UID_RE.search(line)
            key = u.group(1) if u else b""
            c = self.uids.get(key, 0)
            if c == 0 and key in self.want:
                self.delivered += 1
            self.uids[key] = c + 1


def config(d, api, buffer, checkpoint_interval):
    # As integration-tests/src/integrity.rs::config with one source `a`, but the file source's
    # checkpoint_interval is its default (1s) unless given: that is the scenario of the issue.
    checkpoint = f'checkpoint_interval = "{checkpoint_interval}"\n' if checkpoint_interval else ""
    return f"""
data_dir = "{d}/data"
shutdown_timeout = "20s"
[api]
address = "127.0.0.1:{api}"
[sinks.out]
type = "file"
inputs = ["a"]
path = "{d}/out/all.ndjson"
batch_max_events = 1000
buffer = {buffer}
[integrity]
key = "{d}/keys/auditrail.key"
node_id = "node-1"
seal_interval = "300ms"
seal_events = 2000
[sources.a]
type = "file"
include = ["{d}/in/a*.log"]
poll_interval = "20ms"
{checkpoint}"""


BUFFERS = {
    "disk": '{ type = "disk", max_size = "256MiB", fsync_interval = "20ms" }',
    "memory": '{ type = "memory" }',
}


class Agent:
    def __init__(self, binary, cfg, log_path):
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [binary, "run", "--config", cfg],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            start_new_session=True,
        )

    def wait_ready(self, port, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if healthy(port):
                return True
            time.sleep(0.02)
        return False

    def kill9(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def terminate(self, timeout):
        """SIGTERM; SIGKILL after `timeout`. Returns the exit status and whether it had to be killed."""
        killed = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                killed = True
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        return self.proc.returncode, killed


class RunFailed(Exception):
    """A run that could not go on (the agent would not start again, verify printed no JSON)."""


def tail(path, n=5):
    try:
        with open(path, "rb") as f:
            return b"".join(f.readlines()[-n:]).decode("utf-8", "replace").rstrip()
    except OSError:
        return ""


def last_error(path):
    """The agent's last `error:` line (its reason for not starting), else its last line."""
    text = tail(path, 20)
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    return (errors[-1] if errors else text.splitlines()[-1] if text else "").strip()


def gap_size(g):
    return int(g[1]) - int(g[0]) + 1


def window_size(w):
    """Seqs in one crash_windows entry, whatever its shape ([from, to] or {from, to}); None if unknown."""
    try:
        if isinstance(w, list) and len(w) == 2:
            return int(w[1]) - int(w[0]) + 1
        if isinstance(w, dict):
            lo = w.get("from", w.get("first"))
            hi = w.get("to", w.get("last"))
            if lo is not None and hi is not None:
                return int(hi) - int(lo) + 1
    except (TypeError, ValueError):
        pass
    return None


def summarize(code, report):
    streams = report.get("streams", [])
    s = {
        "exit": code,
        "ok": report.get("ok"),
        "streams": [x.get("stream") for x in streams],
        "verified": sum(x.get("verified", 0) for x in streams),
        "gap_ranges": sum(len(x.get("gaps", [])) for x in streams),
        "gap_seqs": sum(gap_size(g) for x in streams for g in x.get("gaps", [])),
        "first_gaps": [g for x in streams for g in x.get("gaps", [])][:3],
        "conflicts": sum(len(x.get("conflicts", [])) for x in streams),
        "altered": sum(len(x.get("altered", [])) for x in streams),
        "broken_links": sum(len(x.get("broken_links", [])) for x in streams),
        "bad_seals": sum(len(x.get("bad_seals", [])) for x in streams),
        "first_bad_seal": next((b for x in streams for b in x.get("bad_seals", [])), None),
        "chain_duplicates": sum(x.get("duplicates", 0) for x in streams),
        "unreadable": report.get("unreadable", 0),
        "crash_windows": None,
    }
    if any("crash_windows" in x for x in streams):
        windows = [w for x in streams for w in x.get("crash_windows") or []]
        sizes = [window_size(w) for w in windows]
        s["crash_windows"] = {
            "count": len(windows),
            "seqs": sum(sizes) if all(z is not None for z in sizes) else None,
            "first": windows[:3],
        }
    return s


def one_run(args, run, work, input_path, want):
    d = os.path.join(work, f"run{run}")
    shutil.rmtree(d, ignore_errors=True)
    for sub in ("in", "out", "data", "keys"):
        os.makedirs(os.path.join(d, sub))
    shutil.copyfile(input_path, os.path.join(d, "in", "a.log"))
    api = free_port()
    cfg = os.path.join(d, "auditrail.toml")
    with open(cfg, "w") as f:
        f.write(config(d, api, BUFFERS[args.buffer], args.checkpoint_interval))
    out = Output(os.path.join(d, "out", "all.ndjson"), want)
    rng = random.Random(args.seed * 1000 + run)
    agent_log = os.path.join(d, "agent.log")
    notes = []
    t0 = time.monotonic()

    for k in range(1, args.kills + 1):
        agent = Agent(args.bin, cfg, agent_log)
        if not agent.wait_ready(api, 30):
            status = agent.proc.poll()
            agent.kill9()
            raise RunFailed(f"life {k}: the agent did not start again (exit status {status}): {last_error(agent_log)}")
        delay = rng.uniform(args.min_delay, args.max_delay)
        time.sleep(delay)
        exited = agent.proc.poll()
        agent.kill9()
        if exited is not None:
            notes.append(f"life {k} exited by itself ({exited})")
            log(f"  life {k}: exited by itself with status {exited} before the kill:\n{tail(agent_log)}")
        out.update()
        if args.snapshots:
            shutil.copytree(os.path.join(d, "data"), os.path.join(d, f"data-after-kill-{k}"))
        log(
            f"  run {run} kill -9 #{k} at {delay:.3f} s: {out.lines} lines out, "
            f"{out.delivered} distinct uids"
        )

    agent = Agent(args.bin, cfg, agent_log)
    if not agent.wait_ready(api, 30):
        status = agent.proc.poll()
        agent.kill9()
        raise RunFailed(f"final life: the agent did not start again (exit status {status}): {last_error(agent_log)}")
    deadline = time.monotonic() + args.timeout
    drained = False
    while time.monotonic() < deadline:
        out.update()
        if out.delivered == len(want):
            drained = True
            break
        if agent.proc.poll() is not None:
            notes.append(f"final life exited by itself ({agent.proc.returncode})")
            break
        time.sleep(0.1)
    if not drained:
        notes.append(f"not drained in {args.timeout} s")
    code, killed = agent.terminate(60)
    if killed:
        notes.append("SIGTERM ignored for 60 s: SIGKILL")
    elif code != 0:
        notes.append(f"exit status {code} after SIGTERM")
    out.update()
    elapsed = time.monotonic() - t0
    log(f"  run {run}: stopped after {elapsed:.1f} s; {out.lines} lines out; verifying")

    v = subprocess.run(
        [args.bin, "verify", "--key", os.path.join(d, "keys", "auditrail.pub"), "--json", os.path.join(d, "out")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        report = json.loads(v.stdout)
    except ValueError:
        raise RunFailed(f"verify printed no JSON (exit {v.returncode}): {v.stderr.decode()[-500:]}")
    with open(os.path.join(d, "verify.json"), "wb") as f:
        f.write(v.stdout)
    s = summarize(v.returncode, report)
    delivered = out.delivered
    s.update(
        run=run,
        lines=out.lines,
        event_lines=out.event_lines,
        distinct=delivered,
        foreign=sum(c for u, c in out.uids.items() if u not in want),
        duplicates=out.event_lines - delivered,
        lost=len(want) - delivered,
        seconds=round(elapsed, 1),
        notes=notes,
        dir=d,
    )
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump(s, f, default=lambda b: b.decode() if isinstance(b, bytes) else str(b))
    return s


def row(s, n):
    clean = "yes" if s["exit"] == 0 and s["ok"] else f"no (exit {s['exit']})"
    gaps = f"{s['gap_seqs']:,} seqs in {s['gap_ranges']} ranges" if s["gap_ranges"] else "0"
    if s["bad_seals"]:
        reason = s["first_bad_seal"]["reason"]
        if len(reason) > 90:
            reason = reason[:87] + "..."
        bad = f"{s['bad_seals']} (seq {s['first_bad_seal']['seq']}: {reason})"
    else:
        bad = "0"
    other = []
    for key in ("altered", "broken_links", "unreadable"):
        if s[key]:
            other.append(f"{key} {s[key]:,}")
    if len(s["streams"]) != 1:
        other.append(f"{len(s['streams'])} streams")
    if s["foreign"]:
        other.append(f"{s['foreign']} lines of unknown uids")
    other.extend(s["notes"])
    cw = s["crash_windows"]
    if cw is None:
        windows = "n/a"
    else:
        windows = f"{cw['count']}" + (f" ({cw['seqs']:,} seqs)" if cw["seqs"] is not None else "")
    dup_pct = 100.0 * s["duplicates"] / n if n else 0
    return (
        f"| {s['run']} | {clean} | {gaps} | {s['conflicts']:,} | {bad} | "
        f"{s['duplicates']:,} ({dup_pct:.0f}%) | {s['lost']:,} | {windows} | "
        f"{'; '.join(other) if other else '-'} |"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--input", required=True, help="the generated NDJSON events")
    ap.add_argument("--work", required=True, help="work directory (one subdirectory per run)")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--buffer", choices=sorted(BUFFERS), default="disk")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--min-delay", type=float, default=0.2)
    ap.add_argument("--max-delay", type=float, default=0.9)
    ap.add_argument(
        "--checkpoint-interval",
        default="",
        help="the file source's checkpoint_interval (default: not set, i.e. the source's default of 1s)",
    )
    ap.add_argument("--timeout", type=float, default=600, help="seconds the final life gets to deliver all")
    ap.add_argument(
        "--snapshots", action="store_true", help="copy data_dir as each kill left it (data-after-kill-K), for debugging"
    )
    ap.add_argument("--keep", action="store_true", help="keep each run's directory (else only its JSON)")
    args = ap.parse_args()

    want = input_uids(args.input)
    n = len(want)
    log(f"{n} distinct uids in {args.input}")
    rows = []
    failed = 0
    for run in range(1, args.runs + 1):
        log(f"run {run}/{args.runs}: {args.kills} x kill -9, {args.buffer} buffer")
        try:
            s = one_run(args, run, args.work, args.input, want)
        except RunFailed as e:
            log(f"  run {run} failed: {e}")
            rows.append(f"| {run} | run failed: {str(e).replace('|', '/')} | | | | | | | |")
            failed += 1
            continue
        rows.append(row(s, n))
        log("  " + rows[-1])
        if not args.keep:
            d = s["dir"]
            for sub in ("in", "out", "data"):
                shutil.rmtree(os.path.join(d, sub), ignore_errors=True)

    ckpt = args.checkpoint_interval or "default (1s)"
    print(
        f"{n:,} events, {args.buffer} buffer, file source checkpoint_interval {ckpt}, [integrity] on; "
        f"{args.kills} x kill -9 at "
        f"{args.min_delay}-{args.max_delay} s into each life, then one life until all were delivered; "
        f"`auditrail verify --json` on the output ({args.bin})."
    )
    print()
    print(
        "| run | verify clean? | gaps | conflicts | bad seals (first reason) | duplicate deliveries | lost "
        "| crash_windows | other |"
    )
    print("| ---: | --- | --- | ---: | --- | ---: | ---: | --- | --- |")
    for r in rows:
        print(r)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
