#!/usr/bin/env python3
"""Runs one player command in a fresh pseudo-terminal of 120x40 and measures, for benches/scripts/play.sh:
the wall time from the start until the output shows MARKER (the first frame, or the screen at a seek), and
the process's max RSS (wait4's ru_maxrss, KiB). With --to-end it waits for the process to exit instead of
killing it once MARKER is seen. Prints one JSON object.

    play_measure.py MARKER [--to-end] [--timeout S] -- CMD [ARGS...]
"""
import argparse
import fcntl
import json
import os
import pty
import select
import signal
import struct
import sys
import termios
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("marker")
    ap.add_argument("--to-end", action="store_true")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    marker = a.marker.encode()
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        os.close(master)
        os.execvp(cmd[0], cmd)
    os.close(slave)
    seen_at = None
    tail = b""
    total = 0
    deadline = start + a.timeout
    status = None
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.05)
        if r:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:
                chunk = b""
            if chunk:
                total += len(chunk)
                if seen_at is None:
                    tail = (tail + chunk)[-(len(marker) + 65536):]
                    if marker in tail:
                        seen_at = time.monotonic() - start
                        if not a.to_end:
                            break
                continue
        done, st, ru = os.wait4(pid, os.WNOHANG)
        if done:
            status = (st, ru)
            break
    if status is None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        # Drain so that the child never blocks on a full terminal while it exits.
        while True:
            done, st, ru = os.wait4(pid, os.WNOHANG)
            if done:
                status = (st, ru)
                break
            r, _, _ = select.select([master], [], [], 0.05)
            if r:
                try:
                    os.read(master, 1 << 16)
                except OSError:
                    pass
    st, ru = status
    print(json.dumps({
        "marker_s": seen_at,
        "wall_s": time.monotonic() - start,
        "max_rss_kib": ru.ru_maxrss,
        "output_bytes": total,
        "exit": os.waitstatus_to_exitcode(st),
    }))


if __name__ == "__main__":
    main()
