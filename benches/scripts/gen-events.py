#!/usr/bin/env python3
"""Write Teleport-like audit events as NDJSON (one JSON object per line).

The output is deterministic for a given --seed and --count. Every line has a
unique "uid", an "event" string and an RFC 3339 "time"; lines are 250-410
bytes, about 350 on average.

    gen-events.py --count 1000000 --seed 1 --out /tmp/in.ndjson
"""

import argparse
import datetime
import json
import random
import sys
import uuid

USERS = [
    "alice@example.com", "bob@example.com", "carol@example.com",
    "dave@example.com", "erin@example.com", "frank@example.com",
    "grace@example.com", "heidi@example.com", "ivan@example.com",
    "judy@example.com", "mallory@example.com", "trent@example.com",
]
LOGINS = ["root", "dba", "ubuntu", "admin", "deploy", "ops"]
CLUSTERS = ["prod", "staging", "dev"]
METHODS = ["local", "saml", "oidc", "github"]
COMMANDS = [
    "ls -la /var/log", "systemctl status nginx", "tail -n 100 /var/log/syslog",
    "cat /etc/hosts", "df -h", "ps aux", "journalctl -u sshd --since today",
    "psql -U postgres -c 'select 1'", "uptime", "sudo -i",
]
PROGRAMS = [
    ("/bin/ls", ["-la"]), ("/usr/bin/cat", ["/etc/passwd"]),
    ("/usr/bin/curl", ["-s", "http://localhost:8080/health"]),
    ("/usr/bin/vim", ["/etc/nginx/nginx.conf"]), ("/bin/ps", ["aux"]),
    ("/usr/bin/sudo", ["systemctl", "restart", "nginx"]),
]
# (event, code, weight)
EVENTS = [
    ("session.start", "T2000I", 10),
    ("session.end", "T2004I", 10),
    ("session.join", "T2001I", 3),
    ("session.leave", "T2003I", 3),
    ("user.login", "T1000I", 12),
    ("user.login", "T1000W", 2),
    ("exec", "T3002I", 15),
    ("session.command", "T4000I", 35),
    ("session.network", "T4002I", 5),
    ("scp", "T3004I", 3),
    ("port", "T3003I", 2),
]
EPOCH = datetime.datetime(2017, 2, 3, 6, 54, 5, 123000, tzinfo=datetime.timezone.utc)


def rfc3339(ts):
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ts.microsecond // 1000)


class Generator:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.servers = [str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
                        for _ in range(64)]
        self.sessions = [str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
                         for _ in range(512)]
        self.events = [(e, c) for e, c, _ in EVENTS]
        self.weights = [w for _, _, w in EVENTS]
        self.now = EPOCH

    def uid(self, index):
        # Random high bits; the low 48 bits are a bijection of the line index
        # (odd multiplier modulo 2^48), so every line's uid is unique.
        low = ((index + 1) * 0x9E3779B97F4B) & 0xFFFFFFFFFFFF
        return str(uuid.UUID(int=(self.rng.getrandbits(80) << 48) | low, version=4))

    def addr(self, prefix, port=None):
        rng = self.rng
        return "%s.%d.%d:%d" % (prefix, rng.randrange(256), rng.randrange(1, 255),
                                port if port is not None else rng.randrange(32768, 61000))

    def event(self, index):
        rng = self.rng
        self.now += datetime.timedelta(milliseconds=rng.randrange(1, 40))
        name, code = rng.choices(self.events, self.weights)[0]
        ev = {
            "event": name,
            "uid": self.uid(index),
            "code": code,
            "time": rfc3339(self.now),
            "user": rng.choice(USERS),
            "cluster_name": rng.choice(CLUSTERS),
        }
        if name == "user.login":
            ev["method"] = rng.choice(METHODS)
            ev["success"] = code.endswith("I")
            if not ev["success"]:
                ev["error"] = "invalid username, password or second factor"
            ev["addr.remote"] = self.addr("10.7")
            ev["user_agent"] = "tsh/12.%d.%d" % (rng.randrange(5), rng.randrange(10))
            return ev
        ev["login"] = rng.choice(LOGINS)
        ev["server_id"] = rng.choice(self.servers)
        ev["sid"] = rng.choice(self.sessions)
        if name in ("session.start", "session.join", "exec", "scp", "port"):
            ev["addr.local"] = self.addr("10.5", 3022)
            ev["addr.remote"] = self.addr("10.5")
        if name == "session.start":
            ev["namespace"] = "default"
            ev["size"] = "%d:%d" % (rng.choice((80, 120, 200)), rng.choice((25, 40, 50)))
        elif name == "session.end":
            ev["participants"] = [ev["user"]]
            ev["interactive"] = rng.random() < 0.8
            ev["session_start"] = rfc3339(self.now - datetime.timedelta(seconds=rng.randrange(5, 3600)))
        elif name == "exec":
            ev["command"] = rng.choice(COMMANDS)
            ev["exitCode"] = "0" if rng.random() < 0.9 else "1"
        elif name == "session.command":
            program, argv = rng.choice(PROGRAMS)
            ev["program"] = program
            ev["argv"] = argv
            ev["pid"] = rng.randrange(1000, 65000)
            ev["return_code"] = 0
        elif name == "session.network":
            ev["dst_addr"] = "10.9.%d.%d" % (rng.randrange(256), rng.randrange(1, 255))
            ev["dst_port"] = rng.choice((22, 80, 443, 5432, 6379))
            ev["pid"] = rng.randrange(1000, 65000)
        elif name == "scp":
            ev["path"] = "backup-%04d.tgz" % rng.randrange(10000)
            ev["action"] = rng.choice(("upload", "download"))
        elif name == "port":
            ev["addr"] = "127.0.0.1:%d" % rng.choice((5432, 6379, 8080))
        return ev


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000000, help="number of events (default 1000000)")
    ap.add_argument("--out", default="-", help="output file (default: stdout)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = ap.parse_args()
    if args.count < 0:
        ap.error("--count must be >= 0")

    gen = Generator(args.seed)
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="ascii", newline="\n")
    try:
        chunk = []
        for i in range(args.count):
            chunk.append(dumps(gen.event(i)))
            if len(chunk) == 10000:
                out.write("\n".join(chunk))
                out.write("\n")
                chunk.clear()
        if chunk:
            out.write("\n".join(chunk))
            out.write("\n")
    finally:
        if out is not sys.stdout:
            out.close()
        else:
            out.flush()


if __name__ == "__main__":
    main()
