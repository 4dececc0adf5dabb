#!/usr/bin/python3
"""Health-checking benchmarks (issue 4). Prints figures; asserts nothing.

(a) one holdfast-shim checking N HTTP endpoints (default 10,000) at a 1 s interval, served by
    http_many (a small epoll server on N ports of 127.0.0.1): the shim's CPU per second of wall
    time, its RSS, and the spread of the actual intervals between two checks of one endpoint as
    seen by the backends; once with kept-alive connections (the default) and once with a new
    connection per check.
(b) failover: two shims, a backend killed; the time from the kill to the eviction decision
    (the audit event), and from the decision to each of P simulated proxies (xds_loadgen, each on
    its own connection) holding the EDS without it.

  tests/bench/health_bench.py [--endpoints 10000] [--proxies 1000] [--seconds 20]
"""

import argparse
import datetime
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.path.join(TOP, "build")
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
import harness  # noqa: E402

harness.HOLDFAST = os.environ.get("HOLDFAST_BIN", os.path.join(BUILD, "control-plane", "holdfast"))
harness.SHIM = os.environ.get("HOLDFAST_SHIM_BIN", os.path.join(BUILD, "shim", "holdfast-shim"))
HTTP_MANY = os.path.join(BUILD, "tests", "bench", "http_many")
LOADGEN = os.path.join(BUILD, "tests", "bench", "xds_loadgen")
from harness import Holdfast, Shim  # noqa: E402

API = "/api/v1"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def ms(ts):
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp() * 1000


def add_endpoints(hf, service, fleet, base, count):
    for i in range(count):
        r = hf.post(API + "/services/%s/fleets/%s/endpoints" % (service, fleet),
                    {"address": "127.0.0.1", "port": base + i, "zone": "z1"})
        assert r.status == 201, r.body


def checks(n, seconds, reuse):
    base = 20000  # below the ephemeral port range (32768+)
    halves = [(base, n // 2), (base + n // 2, n - n // 2)]  # two servers: descriptor limits
    servers = [subprocess.Popen([HTTP_MANY, str(b), str(c)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True) for b, c in halves]
    hf = Holdfast()
    hf.start(extra=["--hds-replicas", "1", "--log-level", "warn"])
    shim = None
    try:
        hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
        hf.post(API + "/services", {"name": "many", "proxy_group": "edge", "health_check": {
            "protocol": "http", "path": "/h", "interval_ms": 1000, "timeout_ms": 500,
            "reuse_connection": reuse}})
        hf.post(API + "/services/many/fleets", {"name": "blue"})
        t0 = time.monotonic()
        add_endpoints(hf, "many", "blue", base, n)
        load_s = time.monotonic() - t0
        shim = Shim(hf.xds, "bench-shim", "z1", hf.workdir)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            eps = hf.get(API + "/health?service=many").json["endpoints"]
            if sum(e["health"] == "healthy" for e in eps) == n:
                break
            time.sleep(1)
        all_healthy_s = time.monotonic() - t0 - load_s
        time.sleep(3)  # steady state
        pid = shim.proc.pid
        c0, w0 = cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)
        c1, w1 = cpu_seconds(pid), time.monotonic()
        rss = rss_mb(pid)
    finally:
        if shim is not None:
            shim.stop()
        hf.stop()
        for s in servers:
            s.send_signal(signal.SIGTERM)
    stats = {}
    requests = 0
    for s in servers:
        out = s.communicate(timeout=30)[0]
        if s.returncode != 0 or "requests=" not in out:
            raise RuntimeError("http_many failed (exit %s): %r" % (s.returncode, out))
        kv = dict(x.split("=") for x in out.split())
        requests += int(kv["requests"])
        for k in ("p1_ms", "p50_ms", "p99_ms"):
            stats[k] = max(stats.get(k, 0), float(kv.get(k, 0)))
    return {"mode": "kept-alive" if reuse else "new connection per check", "endpoints": n,
            "cpu_pct": 100.0 * (c1 - c0) / (w1 - w0), "rss_mb": rss, "p1": stats["p1_ms"],
            "p50": stats["p50_ms"], "p99": stats["p99_ms"], "registered_s": load_s,
            "all_healthy_s": all_healthy_s}


def failover(proxies):
    victim_port, other_port = 31000, 31001
    victim = subprocess.Popen([HTTP_MANY, str(victim_port), "1"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    other = subprocess.Popen([HTTP_MANY, str(other_port), "1"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    hf = Holdfast()
    hf.start(extra=["--log-level", "warn"])
    shims = []
    try:
        hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
        hf.post(API + "/services", {"name": "cart", "proxy_group": "edge", "health_check": {
            "protocol": "http", "path": "/h", "interval_ms": 1000, "timeout_ms": 500,
            "unhealthy_threshold": 3, "healthy_threshold": 2}})
        hf.post(API + "/services/cart/fleets", {"name": "blue"})
        add_endpoints(hf, "cart", "blue", victim_port, 2)
        shims = [Shim(hf.xds, "shim-a", "z1", hf.workdir), Shim(hf.xds, "shim-b", "z2", hf.workdir)]
        while sum(e["health"] == "healthy" for e in hf.get(API + "/health").json["endpoints"]) < 2:
            time.sleep(0.2)
        lg = subprocess.Popen([LOADGEN, "--xds", hf.xds, "--http", hf.base[len("http://"):],
                               "--nodes", str(proxies), "--service", "cart", "--external"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = lg.stderr.readline()
        assert line.strip() == "connected", line
        kill_ms = time.time() * 1000
        victim.kill()
        out, _ = lg.communicate(timeout=120)
        kv = dict(x.split("=") for x in out.split())
        evict, since = [], 0
        while not evict:  # page through the audit log (1,000 proxy connects come first)
            page = hf.get(API + "/events?limit=1000&since=%d" % since).json
            if not page["items"]:
                break
            evict = [e for e in page["items"] if e["action"] == "endpoint.evict"]
            since = page["next_since"]
        decision_ms = ms(evict[0]["at"])
    finally:
        for s in shims:
            s.stop()
        hf.stop()
        other.send_signal(signal.SIGTERM)
        other.wait()
        victim.wait()
    return {"proxies": proxies, "reached": int(kv["reached"]),
            "detection_ms": decision_ms - kill_ms,
            "p50_ms": float(kv["arrival_p50_ms"]) - decision_ms,
            "p99_ms": float(kv["arrival_p99_ms"]) - decision_ms,
            "max_ms": float(kv["arrival_max_ms"]) - decision_ms}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoints", type=int, default=10000)
    ap.add_argument("--proxies", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--skip-checks", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HOLDFAST_PB_PY", os.path.join(BUILD, "api", "pb", "py"))
    if not args.skip_checks:
        print("| connections | endpoints | shim CPU (% of one core) | shim RSS (MB) | interval p1 / p50 / p99 (ms) |")
        print("| --- | ---: | ---: | ---: | --- |")
        for reuse in (True, False):
            r = checks(args.endpoints, args.seconds, reuse)
            print("| %s | %d | %.1f | %.1f | %.0f / %.0f / %.0f |" % (
                r["mode"], r["endpoints"], r["cpu_pct"], r["rss_mb"], r["p1"], r["p50"], r["p99"]),
                flush=True)
    f = failover(args.proxies)
    print()
    print("| proxies | kill -> eviction decision (ms) | decision -> proxies: p50 (ms) | p99 (ms) | max (ms) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    print("| %d | %.0f | %.1f | %.1f | %.1f |" % (f["proxies"], f["detection_ms"], f["p50_ms"],
                                                  f["p99_ms"], f["max_ms"]))


if __name__ == "__main__":
    main()
