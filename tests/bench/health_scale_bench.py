#!/usr/bin/python3
"""Health checking at fleet scale (issue 11). Prints figures; asserts nothing. Every figure line
states the machine's load average, since the machine may be shared.

  steady   holdfast's and the shims' CPU in steady state: 2 shims (k = 2) checking N HTTP
           endpoints at 1 s, on N distinct addresses sharing one port (127.1.x.y:PORT, the shape
           of real fleets) or, with --ports, on N ports of 127.0.0.1 (the old benchmark's shape).
  soak     false evictions under contention: N endpoints that stay up, a new connection per
           check, H CPU-bound processes beside the shims and holdfast for S seconds; counts every
           eviction (each one is false: no backend goes down).
  grpc     one shim checking N gRPC endpoints (grpc.health.v1.Health/Check at 1 s) served by one
           python3-grpcio server bound to N addresses: the shim's CPU and RSS.
  change   holdfast's CPU for one endpoint added (then removed) with N endpoints in 100-endpoint
           services and no checker connected (issue 11 item 8 measured 30-45 s at 100,000):
           the reassignment, the snapshot and the store, everything one change costs.
  haproxy  side by side with Debian's haproxy (option httpchk, the same backends, 1 s, fall 3,
           rise 2), interleaved: CPU per check of the shim and of haproxy (kept-alive and a new
           connection per check), and kill-to-eviction of one backend among N, R times each,
           with and without one CPU-bound process beside them.

  tests/bench/health_scale_bench.py steady [--endpoints 10000] [--seconds 30] [--ports]
  tests/bench/health_scale_bench.py soak [--endpoints 10000] [--seconds 180] [--hogs 2]
  tests/bench/health_scale_bench.py grpc [--endpoints 1000] [--seconds 20]
  tests/bench/health_scale_bench.py change [--endpoints 100000]
  tests/bench/health_scale_bench.py haproxy [--endpoints 10000] [--seconds 10] [--kills 5]
                                            [--modes kept,new] [--kill-only] [--kill-hogs 0,1]
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.path.join(TOP, "build")
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
import harness  # noqa: E402

harness.HOLDFAST = os.environ.get("HOLDFAST_BIN", os.path.join(BUILD, "control-plane", "holdfast"))
harness.SHIM = os.environ.get("HOLDFAST_SHIM_BIN", os.path.join(BUILD, "shim", "holdfast-shim"))
HTTP_MANY = os.path.join(BUILD, "tests", "bench", "http_many")
from harness import Holdfast, Shim  # noqa: E402

API = "/api/v1"
TICK = os.sysconf("SC_CLK_TCK")
PORT = 18080  # the one port of the address-shaped fleet
VICTIM = "127.2.0.1"


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


def load():
    return "load %.1f" % os.getloadavg()[0]


def addr(i):
    v = (127 << 24) + (1 << 16) + 1 + i
    return "%d.%d.%d.%d" % (v >> 24, (v >> 16) & 255, (v >> 8) & 255, v & 255)


class Backends:
    """N endpoints served by http_many processes (halves: descriptor limits)."""

    def __init__(self, n, ports=False, procs=2):
        self.n, self.ports = n, ports
        step = (n + procs - 1) // procs
        halves = [(s, min(step, n - s)) for s in range(0, n, step)]
        if ports:
            self.eps = [("127.0.0.1", 20000 + i) for i in range(n)]
            args = [[HTTP_MANY, str(20000 + s), str(c)] for s, c in halves if c]
        else:
            self.eps = [(addr(i), PORT) for i in range(n)]
            args = [[HTTP_MANY, str(PORT), str(c), addr(s)] for s, c in halves if c]
        self.procs = [subprocess.Popen(a, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                      for a in args]
        self.victim = None

    def start_victim(self):
        self.victim = subprocess.Popen([HTTP_MANY, str(PORT), "1", VICTIM],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.2)

    def kill_victim(self):
        self.victim.kill()
        self.victim.wait()
        self.victim = None

    def stop(self):
        for p in self.procs + ([self.victim] if self.victim else []):
            p.send_signal(signal.SIGTERM)
            p.wait(30)


def holdfast_with(backends, reuse, extra=(), victim=False):
    hf = Holdfast()
    hf.start(extra=["--log-level", "warn", *extra])
    hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
    hf.post(API + "/services", {"name": "many", "proxy_group": "edge", "health_check": {
        "protocol": "http", "path": "/h", "interval_ms": 1000, "timeout_ms": 500,
        "unhealthy_threshold": 3, "healthy_threshold": 2, "reuse_connection": reuse}})
    hf.post(API + "/services/many/fleets", {"name": "blue"})
    eps = list(backends.eps) + ([(VICTIM, PORT)] if victim else [])
    for a, p in eps:
        r = hf.post(API + "/services/many/fleets/blue/endpoints", {"address": a, "port": p})
        assert r.status == 201, r.body
    return hf


def wait_healthy(hf, n, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        eps = hf.get(API + "/health?service=many").json["endpoints"]
        if sum(e["health"] == "healthy" for e in eps) >= n:
            return
        time.sleep(1)
    raise RuntimeError("not all healthy after %ds" % timeout)


class Evictions:
    """endpoint.evict audit events, read incrementally (never the whole log again)."""

    def __init__(self, hf):
        self.hf, self.since, self.items = hf, 0, []
        self.poll()

    def poll(self):
        while True:
            page = self.hf.get(API + "/events?limit=1000&since=%d" % self.since).json
            if not page["items"]:
                return len(self.items)
            self.items += [e for e in page["items"] if e["action"] == "endpoint.evict"]
            self.since = page["next_since"]


def hogs(n):
    return [subprocess.Popen(["/usr/bin/python3", "-c", "while True: pass"]) for _ in range(n)]


def stop_all(procs):
    for p in procs:
        p.kill()
        p.wait()


def steady(args):
    b = Backends(args.endpoints, ports=args.ports)
    hf = holdfast_with(b, True)
    shims = []
    try:
        shims = [Shim(hf.xds, "shim-a", "z1", hf.workdir), Shim(hf.xds, "shim-b", "z2", hf.workdir)]
        wait_healthy(hf, args.endpoints)
        time.sleep(3)
        pids = [hf.proc.pid] + [s.proc.pid for s in shims]
        c0, w0 = [cpu_seconds(p) for p in pids], time.monotonic()
        time.sleep(args.seconds)
        c1, w1 = [cpu_seconds(p) for p in pids], time.monotonic()
        pct = [100.0 * (y - x) / (w1 - w0) for x, y in zip(c0, c1)]
        shape = "%d ports of 127.0.0.1" % args.endpoints if args.ports else \
            "%d addresses, one port" % args.endpoints
        print("| steady, 2 shims, k = 2, 1 s, kept-alive | %s | holdfast %.1f %% | shims %.1f / %.1f %% "
              "| holdfast RSS %.0f MB | %s |" % (shape, pct[0], pct[1], pct[2], rss_mb(pids[0]), load()),
              flush=True)
    finally:
        for s in shims:
            s.stop()
        hf.stop()
        b.stop()


def soak(args):
    # The backends stand for 10,000 machines: spread over 8 processes so that the scheduler does
    # not starve them as one process behind the CPU hogs (their slowness would be real).
    b = Backends(args.endpoints, procs=8)
    hf = holdfast_with(b, False)
    shims, hs = [], []
    try:
        shims = [Shim(hf.xds, "shim-a", "z1", hf.workdir), Shim(hf.xds, "shim-b", "z2", hf.workdir)]
        wait_healthy(hf, args.endpoints)
        ev = Evictions(hf)
        before = len(ev.items)
        hs = hogs(args.hogs)
        time.sleep(args.seconds)
        l1 = os.getloadavg()[0]
        stop_all(hs)
        hs = []
        n = ev.poll() - before
        print("| soak: %d endpoints, new connection per check, %d CPU hogs, %d s | evictions of "
              "backends that were up: %d | load %.1f |" % (args.endpoints, args.hogs, args.seconds,
                                                           n, l1), flush=True)
        why = {}
        for e in ev.items[before:]:
            msg = e.get("summary", "")
            r = msg[msg.find("("):] if "(" in msg else msg
            r = "".join(ch for ch in r if not ch.isdigit())
            why[r] = why.get(r, 0) + 1
        for r, k in sorted(why.items(), key=lambda x: -x[1]):
            print("  %5d  %s" % (k, r), flush=True)
    finally:
        stop_all(hs)
        for s in shims:
            s.stop()
        hf.stop()
        b.stop()


def haproxy_cfg(path, eps, reuse, stats):
    lines = ["global", "  log stdout format raw local0", "  stats socket %s mode 600" % stats,
             "defaults", "  log global", "  mode http", "  timeout connect 500ms",
             "  timeout check 500ms", "  timeout client 5s", "  timeout server 5s",
             "backend be", "  option httpchk GET /h"]
    del reuse  # haproxy opens a new connection for every check
    for i, (a, p) in enumerate(eps):
        lines.append("  server s%d %s:%d check inter 1s fall 3 rise 2" % (i, a, p))
    lines.append("  server victim %s:%d check inter 1s fall 3 rise 2" % (VICTIM, PORT))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


class Haproxy:
    def __init__(self, eps, reuse, workdir):
        cfg = os.path.join(workdir, "haproxy.cfg")
        haproxy_cfg(cfg, eps, reuse, os.path.join(workdir, "haproxy.sock"))
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", cfg], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.down = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            if "victim is DOWN" in line:
                self.down.append(time.time())

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


def cpu_run(pid, seconds):
    c0, w0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return cpu_seconds(pid) - c0, time.monotonic() - w0


def side_by_side(args):
    n = args.endpoints
    b = Backends(n)
    b.start_victim()
    work = tempfile.mkdtemp(prefix="hf-haproxy-")
    try:
        for reuse in [m == "kept" for m in args.modes.split(",")] if not args.kill_only else ():
            per = {"shim": [], "haproxy": []}
            for _ in range(2):  # interleaved: shim, haproxy, shim, haproxy
                hf = holdfast_with(b, reuse, extra=["--hds-replicas", "1"], victim=True)
                shim = Shim(hf.xds, "shim-a", "z1", hf.workdir)
                try:
                    wait_healthy(hf, n + 1)
                    time.sleep(2)
                    cpu, wall = cpu_run(shim.proc.pid, args.seconds)
                    per["shim"].append(cpu / (wall * (n + 1)))
                finally:
                    shim.stop()
                    hf.stop()
                h = Haproxy(b.eps, reuse, work)
                try:
                    time.sleep(5)  # rise 2 at 1 s, with the first checks spread
                    cpu, wall = cpu_run(h.proc.pid, args.seconds)
                    per["haproxy"].append(cpu / (wall * (n + 1)))
                finally:
                    h.stop()
            s, hp = min(per["shim"]), min(per["haproxy"])
            print("| CPU per check, %s, %d endpoints | shim %.1f us | haproxy %.1f us | ratio %.2f | %s |"
                  % ("kept-alive" if reuse else "new connection per check", n + 1, s * 1e6,
                     hp * 1e6, s / hp, load()), flush=True)
        for hog in args.hogs_list if args.kills else ():
            kill_to_eviction(b, n, args.kills, hog, work)
    finally:
        b.stop()


def kill_to_eviction(b, n, kills, hog, work):
    hs = hogs(hog)
    try:
        shim_t, hap_t = [], []
        hf = holdfast_with(b, True, victim=True)
        shims = [Shim(hf.xds, "shim-a", "z1", hf.workdir), Shim(hf.xds, "shim-b", "z2", hf.workdir)]
        try:
            ev = Evictions(hf)
            for _ in range(kills):
                if b.victim is None:
                    b.start_victim()
                wait_healthy(hf, n + 1)
                time.sleep(1)
                seen = ev.poll()
                t0 = time.time()
                b.kill_victim()
                while ev.poll() == seen and time.time() - t0 < 30:
                    time.sleep(0.05)
                new = ev.items[seen:]
                at = min(harness_ms(e["at"]) for e in new) / 1000.0 if new else float("nan")
                shim_t.append(at - t0)
        finally:
            for s in shims:
                s.stop()
            hf.stop()
        h = Haproxy(b.eps, True, work)
        try:
            for _ in range(kills):
                if b.victim is None:
                    b.start_victim()
                time.sleep(4)  # rise 2
                seen = len(h.down)
                t0 = time.time()
                b.kill_victim()
                while len(h.down) == seen and time.time() - t0 < 30:
                    time.sleep(0.02)
                hap_t.append(h.down[-1] - t0 if len(h.down) > seen else float("nan"))
        finally:
            h.stop()
        print("| kill -> eviction, %d endpoints, 1 s x fall 3, %d CPU hog(s) | shim + holdfast: "
              "median %.2f s, max %.2f s | haproxy: median %.2f s, max %.2f s | %s |"
              % (n + 1, hog, sorted(shim_t)[len(shim_t) // 2], max(shim_t),
                 sorted(hap_t)[len(hap_t) // 2], max(hap_t), load()), flush=True)
    finally:
        stop_all(hs)
        if b.victim is None:
            b.start_victim()


GRPC_SERVER = r"""
import concurrent.futures, sys, time, grpc
base, n, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
a, b, c, d = (int(x) for x in base.split("."))
first = (a << 24) | (b << 16) | (c << 8) | d
srv = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=8))
srv.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
    "Check": grpc.unary_unary_rpc_method_handler(lambda req, ctx: b"\x08\x01")}),))
for i in range(n):
    v = first + i
    srv.add_insecure_port("%d.%d.%d.%d:%d" % (v >> 24, (v >> 16) & 255, (v >> 8) & 255, v & 255, port))
srv.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"""


def grpc_bench(args):
    n = args.endpoints
    server = subprocess.Popen(["/usr/bin/python3", "-c", GRPC_SERVER, "127.3.0.1", str(n), str(PORT)],
                              stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "ready"
    hf = Holdfast()
    hf.start(extra=["--log-level", "warn", "--hds-replicas", "1"])
    shim = None
    try:
        hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
        hf.post(API + "/services", {"name": "many", "proxy_group": "edge", "health_check": {
            "protocol": "grpc", "interval_ms": 1000, "timeout_ms": 500}})
        hf.post(API + "/services/many/fleets", {"name": "blue"})
        for i in range(n):
            v = (127 << 24) + (3 << 16) + 1 + i
            a = "%d.%d.%d.%d" % (v >> 24, (v >> 16) & 255, (v >> 8) & 255, v & 255)
            r = hf.post(API + "/services/many/fleets/blue/endpoints", {"address": a, "port": PORT})
            assert r.status == 201, r.body
        shim = Shim(hf.xds, "shim-a", "z1", hf.workdir)
        wait_healthy(hf, n)
        time.sleep(3)
        cpu, wall = cpu_run(shim.proc.pid, args.seconds)
        print("| gRPC health checks, %d endpoints, 1 s, one shim | shim %.1f %% of a core | RSS %.0f MB "
              "| %s |" % (n, 100.0 * cpu / wall, rss_mb(shim.proc.pid), load()), flush=True)
    finally:
        if shim is not None:
            shim.stop()
        hf.stop()
        server.kill()
        server.wait()


def change(args):
    import concurrent.futures
    n = args.endpoints
    hf = Holdfast()
    hf.start(extra=["--log-level", "warn"])
    try:
        hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
        services = (n + 99) // 100
        for s in range(services):
            hf.post(API + "/services", {"name": "svc-%d" % s, "proxy_group": "edge"})
            hf.post(API + "/services/svc-%d/fleets" % s, {"name": "blue"})

        def add(i):
            r = hf.post(API + "/services/svc-%d/fleets/blue/endpoints" % (i // 100),
                        {"address": addr(i), "port": PORT})
            assert r.status == 201, r.body
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            list(ex.map(add, range(n)))
        time.sleep(5)
        pid = hf.proc.pid
        idle0 = cpu_seconds(pid)
        time.sleep(5)
        idle = (cpu_seconds(pid) - idle0) / 5
        costs, reassign = [], []
        for k in range(5):
            c0 = cpu_seconds(pid)
            s0 = reassign_sum(hf)
            hf.post(API + "/services/svc-0/fleets/blue/endpoints", {"address": "127.9.0.%d" % (k + 1),
                                                                     "port": PORT})
            time.sleep(3)
            costs.append(cpu_seconds(pid) - c0 - 3 * idle)
            s1 = reassign_sum(hf)
            reassign.append((s1[0] - s0[0]) / max(1, s1[1] - s0[1]))
        print("| one-endpoint change at %d endpoints, no checker | holdfast CPU per change: median "
              "%.0f ms, max %.0f ms (idle %.1f %% subtracted); the health reassignment alone: "
              "median %.2f ms, max %.2f ms | %s |"
              % (n, 1000 * sorted(costs)[2], 1000 * max(costs), 100 * idle,
                 1000 * sorted(reassign)[2], 1000 * max(reassign), load()), flush=True)
    finally:
        hf.stop()


def reassign_sum(hf):
    """(seconds, count) of holdfast_hds_reassign_seconds so far."""
    total, count = 0.0, 0
    for line in hf.get("/metrics").body.decode().splitlines():
        if line.startswith("holdfast_hds_reassign_seconds_sum"):
            total = float(line.split()[-1])
        elif line.startswith("holdfast_hds_reassign_seconds_count"):
            count = int(float(line.split()[-1]))
    return total, count


def harness_ms(ts):
    import datetime
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp() * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["steady", "soak", "grpc", "change", "haproxy"])
    ap.add_argument("--endpoints", type=int, default=10000)
    ap.add_argument("--seconds", type=int, default=0)
    ap.add_argument("--ports", action="store_true")
    ap.add_argument("--hogs", type=int, default=2)
    ap.add_argument("--kills", type=int, default=5, help="0: CPU per check only")
    ap.add_argument("--kill-only", action="store_true", help="kill-to-eviction only")
    ap.add_argument("--kill-hogs", default="0,1", help="CPU hogs beside, per kill series")
    ap.add_argument("--modes", default="kept,new", help="CPU per check: kept-alive and/or new")
    args = ap.parse_args()
    args.hogs_list = [int(x) for x in args.kill_hogs.split(",")]
    os.environ.setdefault("HOLDFAST_PB_PY", os.path.join(BUILD, "api", "pb", "py"))
    if args.what == "steady":
        args.seconds = args.seconds or 30  # a full report (every 30 s) falls in the window
        steady(args)
    elif args.what == "soak":
        args.seconds = args.seconds or 180
        soak(args)
    elif args.what == "change":
        change(args)
    elif args.what == "grpc":
        args.seconds = args.seconds or 20
        grpc_bench(args)
    else:
        args.seconds = args.seconds or 10
        side_by_side(args)


if __name__ == "__main__":
    main()
