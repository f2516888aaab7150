#!/usr/bin/env python3
"""Recording overhead harness: runs commands on a pseudo-terminal that it opens itself and drains as fast as
it can, and measures each run's wall time and CPU seconds.

    pty_drain.py gen FILE MB            write MB MiB of mixed text with ANSI escapes (deterministic, seed 1)
    pty_drain.py run -- CMD ARGS...     one run: prints JSON {"bytes_out", "seconds", "cpu_s", "status"}
    pty_drain.py table --file FILE --reps N [--variant NAME=SHELL-COMMAND]...
                                        runs every variant N times, interleaved (variant 1, 2, ..., then
                                        again), and prints a Markdown table of medians

The PTY is the user's terminal in the scenario: the harness is the terminal emulator, the command (a
recorder running `cat FILE`, or `cat FILE` alone) writes to the slave side and the harness reads the master
side in 64 KiB reads until the slave side is closed by every process (EIO), so the reader is never the
bottleneck of a recorder. The window is 120x40. CPU seconds are user+sys of the whole process tree,
from os.wait4 on the direct child (which covers every descendant it waited for: script and asciinema wait
for their shell and cat). MB/s is the file's size (MiB) divided by the wall time from fork to the child's
exit and EOF on the PTY.
"""

import fcntl
import json
import os
import random
import struct
import sys
import termios
import time

READ = 64 << 10


def gen(path, mib):
    """Deterministic mixed terminal output: words, colours (SGR), cursor moves, line erases, UTF-8."""
    rnd = random.Random(1)
    words = ("the quick brown fox jumps over lazy dog auditrail session recording "
             "ls -la /var/log/auth.log drwxr-xr-x root 4096 total error warning ok "
             "café naïve 日本語 テスト — «quoted» ✓ ✗ λ → ←").split()
    escapes = ["\x1b[0m", "\x1b[1m", "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[34m", "\x1b[1;36m",
               "\x1b[38;5;208m", "\x1b[48;2;10;20;30m", "\x1b[2K", "\x1b[K", "\x1b[A", "\x1b[3C",
               "\x1b[?25l", "\x1b[?25h", "\x1b]0;title\x07", "\r"]
    target = mib << 20
    written = 0
    with open(path, "wb") as f:
        while written < target:
            # One 256 KiB block at a time, made of lines of 0-30 words with escapes between them.
            parts = []
            size = 0
            while size < (256 << 10):
                n = rnd.randrange(0, 31)
                line = []
                for _ in range(n):
                    if rnd.random() < 0.15:
                        line.append(rnd.choice(escapes))
                    line.append(rnd.choice(words))
                s = (" ".join(line) + "\x1b[0m\n").encode()
                parts.append(s)
                size += len(s)
            block = b"".join(parts)[: target - written]
            f.write(block)
            written += len(block)


def run_once(argv):
    """Runs argv on a fresh PTY, drains it, returns (bytes read, wall seconds, cpu seconds, status)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(master)
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            if slave > 2:
                os.close(slave)
            os.execvp(argv[0], argv)
        except BaseException as e:  # noqa: BLE001 - report anything, then leave without cleanup
            os.write(2, f"exec {argv[0]}: {e}\n".encode())
        finally:
            os._exit(127)
    os.close(slave)
    got = 0
    while True:
        try:
            b = os.read(master, READ)
        except OSError:  # EIO: every slave fd is closed
            break
        if not b:
            break
        got += len(b)
    _, status, usage = os.wait4(pid, 0)
    wall = time.monotonic() - start
    os.close(master)
    return got, wall, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def table(args):
    file = None
    reps = 3
    variants = []
    it = iter(args)
    for a in it:
        if a == "--file":
            file = next(it)
        elif a == "--reps":
            reps = int(next(it))
        elif a == "--variant":
            name, _, cmd = next(it).partition("=")
            variants.append((name, cmd))
        else:
            sys.exit(f"pty_drain.py table: unknown argument {a!r}")
    if not file or not variants:
        sys.exit("pty_drain.py table: --file and at least one --variant are needed")
    mib = os.path.getsize(file) / (1 << 20)
    results = {name: [] for name, _ in variants}
    for rep in range(reps):
        for name, cmd in variants:
            got, wall, cpu, status = run_once(["/bin/sh", "-c", cmd])
            print(f"rep {rep + 1} {name}: {got} bytes read, {wall:.2f} s, {cpu:.2f} CPU s, exit {status}",
                  file=sys.stderr)
            if status != 0:
                print(f"  {name} exited {status}: its runs are not counted", file=sys.stderr)
                continue
            results[name].append((wall, cpu, got))
    base = results[variants[0][0]]
    base_rate = mib / median([w for w, _, _ in base]) if base else None
    print(f"| recorder | MB/s (median of {reps}) | ratio to no recorder | CPU s (user+sys) | bytes read from the PTY |")
    print("|---|---:|---:|---:|---:|")
    for name, _ in variants:
        r = results[name]
        if not r:
            print(f"| {name} | failed | | | |")
            continue
        rate = mib / median([w for w, _, _ in r])
        ratio = f"{rate / base_rate:.2f}" if base_rate else "n/a"
        print(f"| {name} | {rate:.1f} | {ratio} | {median([c for _, c, _ in r]):.2f} | {int(median([g for _, _, g in r]))} |")


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "gen":
        gen(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) >= 3 and sys.argv[1] == "run":
        argv = sys.argv[3:] if sys.argv[2] == "--" else sys.argv[2:]
        got, wall, cpu, status = run_once(argv)
        print(json.dumps({"bytes_out": got, "seconds": wall, "cpu_s": cpu, "status": status}))
    elif len(sys.argv) >= 2 and sys.argv[1] == "table":
        table(sys.argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
