#!/usr/bin/env python3
"""What Redis WAIT adds to a write, on one Redis Cluster master, while a benchmark runs.

    scripts/wait-probe.py PORT SECONDS [HEALTH_URL]

Waits until HEALTH_URL answers (default http://127.0.0.1:8091/healthz, the second node of
scripts/bench.sh cluster2) and 4 s more (logins), then for SECONDS alternates, about 200 pairs a
second, a `SET` alone and a `SET` + `WAIT 1 100` pipeline (what the Redis engine sends per chat
message with --redis-wait-replicas 1) on the master at 127.0.0.1:PORT, and prints the round
trip of each: p50, p99 and how often WAIT confirmed no replica. Standard library only.
"""
import socket
import sys
import time
import urllib.request

port = int(sys.argv[1])
secs = float(sys.argv[2])
health = sys.argv[3] if len(sys.argv) > 3 else "http://127.0.0.1:8091/healthz"
for _ in range(600):
    try:
        urllib.request.urlopen(health, timeout=1)
        break
    except OSError:
        time.sleep(0.1)
time.sleep(4)

sock = socket.create_connection(("127.0.0.1", port))
replies = sock.makefile("rb")


def cmd(*parts):
    return b"".join([b"*%d\r\n" % len(parts)] + [b"$%d\r\n%s\r\n" % (len(p), p) for p in parts])


def reply():
    line = replies.readline()
    if line[:1] == b"$":
        replies.read(int(line[1:]) + 2)
    return line


# A key whose slot this master serves (the others answer MOVED).
key = None
for i in range(1000):
    sock.sendall(cmd(b"SET", b"wait-probe-%d" % i, b"x"))
    if reply().startswith(b"+OK"):
        key = b"wait-probe-%d" % i
        break
if key is None:
    sys.exit(f"no key found for the master on {port}")

set_only, set_wait, unconfirmed = [], [], 0
end = time.time() + secs
while time.time() < end:
    t = time.perf_counter()
    sock.sendall(cmd(b"SET", key, b"v"))
    reply()
    set_only.append(time.perf_counter() - t)
    t = time.perf_counter()
    sock.sendall(cmd(b"SET", key, b"v") + cmd(b"WAIT", b"1", b"100"))
    reply()
    unconfirmed += reply().strip() == b":0"
    set_wait.append(time.perf_counter() - t)
    time.sleep(0.005)
sock.sendall(cmd(b"DEL", key))
reply()


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] * 1000


print(
    f"{len(set_only)} pairs on {port}: SET p50 {pct(set_only, .5):.3f} ms, "
    f"p99 {pct(set_only, .99):.3f} ms; SET + WAIT 1 100 p50 {pct(set_wait, .5):.3f} ms, "
    f"p99 {pct(set_wait, .99):.3f} ms, max {max(set_wait) * 1000:.1f} ms; "
    f"WAIT confirmed no replica: {unconfirmed}"
)
