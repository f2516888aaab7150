#!/usr/bin/env python3
"""Events per second through the http source: starts the agent (AUDITRAIL_BIN, default
target/release/auditrail) with an http source and a file sink, posts NDJSON batches from CONNS keep-alive
connections for SECONDS, and prints accepted events/s (answered 200) and delivered events/s.

    benches/scripts/http-load.py [--conns 4] [--batch 500] [--seconds 10]
"""
import argparse, http.client, os, socket, subprocess, sys, tempfile, threading, time

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    binary = os.environ.get("AUDITRAIL_BIN", os.path.join(root, "target/release/auditrail"))
    d = tempfile.mkdtemp(prefix="http-load-")
    api, port = free_port(), free_port()
    with open(f"{d}/a.toml", "w") as f:
        f.write(f'''data_dir = "{d}/data"
[api]
address = "127.0.0.1:{api}"
[sources.h]
type = "http"
address = "127.0.0.1:{port}"
[sinks.out]
type = "file"
inputs = ["h"]
path = "{d}/out.ndjson"
''')
    agent = subprocess.Popen([binary, "run", "--config", f"{d}/a.toml"], stderr=open(f"{d}/log", "w"))
    for _ in range(200):
        try:
            c = http.client.HTTPConnection("127.0.0.1", api, timeout=1); c.request("GET", "/health")
            if c.getresponse().status == 200: break
        except OSError: time.sleep(0.05)
    accepted = [0] * a.conns
    stop = time.time() + a.seconds
    def worker(k):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        n = 0
        while time.time() < stop:
            body = "".join(
                '{"event":"session.start","uid":"%d-%d","time":"2017-02-03T06:54:05Z","user":"u%d@example.com","addr.remote":"10.5.1.7:51234"}\n' % (k, n + i, i)
                for i in range(a.batch)).encode()
            c.request("POST", "/v1/events", body, {"Content-Type": "application/x-ndjson"})
            r = c.getresponse(); r.read()
            if r.status == 200:
                accepted[k] += a.batch
            n += a.batch
    t0 = time.time()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(a.conns)]
    [t.start() for t in ts]; [t.join() for t in ts]
    took = time.time() - t0
    total = sum(accepted)
    while True:
        with open(f"{d}/out.ndjson", "rb") as f:
            lines = sum(1 for _ in f)
        if lines >= total: break
        time.sleep(0.1)
    delivered_took = time.time() - t0
    agent.terminate(); agent.wait()
    print(f"accepted {total} events in {took:.2f}s: {total / took:,.0f} events/s; "
          f"delivered all in {delivered_took:.2f}s: {total / delivered_took:,.0f} events/s")

if __name__ == "__main__":
    main()
