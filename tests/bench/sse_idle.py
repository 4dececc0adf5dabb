"""Benchmark: what idle event streams (GET /api/v1/events?stream=true) cost holdfast, and how fast
a committed audit event reaches all of them. Prints figures; asserts nothing.

    HOLDFAST_BIN=build/control-plane/holdfast /usr/bin/python3 tests/bench/sse_idle.py [STREAMS] [SECONDS]
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from harness import Holdfast  # noqa: E402


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 10
    with Holdfast() as hf:
        socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", hf.http_port))
            s.sendall(b"GET /api/v1/events?stream=true HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            s.recv(4096)  # headers and the first keep-alive comment
            socks.append(s)
        before = cpu_seconds(hf.proc.pid)
        time.sleep(secs)
        idle = cpu_seconds(hf.proc.pid) - before
        t0 = time.monotonic()
        hf.post("/api/v1/proxy-groups", {"name": "edge", "listener_port": 10000})
        worst = 0.0
        for s in socks:
            buf = b""
            while b"proxy_group.create" not in buf:
                buf += s.recv(65536)
            worst = max(worst, time.monotonic() - t0)
        print("%d idle streams for %.0f s: holdfast CPU %.3f s (%.1f %% of one core)"
              % (n, secs, idle, 100 * idle / secs))
        print("one audit event reached all %d streams in %.1f ms" % (n, worst * 1000))
        for s in socks:
            s.close()


if __name__ == "__main__":
    main()
