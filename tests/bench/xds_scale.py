#!/usr/bin/python3
"""Benchmark (not a test): xDS at the scale of issue 10 -- S services x F fleets x E endpoints in
one proxy group, N state-of-the-world nodes and one delta node subscribed to every cluster and
every ClusterLoadAssignment, then C one-endpoint changes through the REST API, each once holdfast
is idle again after the one before (at least 2 s apart).

    tests/bench/xds_scale.py [--services 1000] [--fleets 2] [--endpoints 50] [--sotw 20]
                             [--changes 5] [--loadgen-nodes 1000]

Prints, per change: REST -> every node holds it (ms), bytes each SotW node and the delta node
received for it, holdfast CPU for it (ms), the snapshot build time (holdfast's
holdfast_xds_snapshot_seconds); then RSS, and the fan-out figures of tests/bench/xds_loadgen
(1,000 nodes on their own connections, one cluster each) against the same configuration.
Uses build/ binaries unless HOLDFAST_BIN / XDS_LOADGEN / HOLDFAST_PB_PY say otherwise; with
HOLDFAST_BIN=build/tests/bench/holdfast_no_reassign it measures the xDS path without the
health-check reassignment that follows every snapshot. No health checkers are connected.
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
os.environ.setdefault("HOLDFAST_PB_PY", os.path.join(TOP, "build", "api", "pb", "py"))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))

import adsclient  # noqa: E402
from adsclient import CDS, EDS  # noqa: E402
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: E402
from envoy.service.discovery.v3 import discovery_pb2  # noqa: E402

HOLDFAST = os.environ.get("HOLDFAST_BIN", os.path.join(TOP, "build", "control-plane", "holdfast"))
LOADGEN = os.environ.get("XDS_LOADGEN", os.path.join(TOP, "build", "tests", "bench", "xds_loadgen"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_s(pid):
    """holdfast's CPU time so far: the sum of its threads' schedstat run time (ns resolution;
    holdfast's threads live as long as it does)."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total / 1e9


def wait_idle(pid, limit=600):
    """Waits until holdfast uses under 2 % of a core over half a second (the work a change
    started, such as the health-check reassignment, is done)."""
    deadline = time.monotonic() + limit
    last = cpu_s(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu_s(pid)
        if now - last < 0.01:
            return
        last = now


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Rest:
    def __init__(self, port, workers=8):
        self.port = port
        self.local = threading.local()
        self.pool = concurrent.futures.ThreadPoolExecutor(workers)

    def call(self, method, path, body=None, retry=True):
        c = getattr(self.local, "c", None)
        if c is None:
            c = self.local.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request(method, "/api/v1" + path,
                      body=json.dumps(body) if body is not None else None,
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException):
            c.close()  # an idle keep-alive connection the server closed: once more, anew
            self.local.c = None
            if not retry:
                raise
            return self.call(method, path, body, retry=False)
        if r.status >= 300:
            raise RuntimeError("%s %s: %d %s" % (method, path, r.status, data[:200]))
        return data

    def many(self, calls):
        list(self.pool.map(lambda a: self.call(*a), calls))


def metric(port, name):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    out = {}
    for suffix in ("_sum", "_count"):
        m = re.search(r"^%s%s(?:\{[^}]*\})? ([0-9.e+-]+)$" % (name, suffix), text, re.M)
        out[suffix] = float(m.group(1)) if m else 0.0
    return out


class Node(threading.Thread):
    """An Envoy-like node: CDS wildcard, EDS for every cluster, ACKs everything. Counts bytes
    and notes when the watched endpoint reaches the watched weight."""

    def __init__(self, xds, name, names, delta, target, address):
        super().__init__(daemon=True)
        self.c = adsclient.AdsClient(xds, delta=delta)
        self.name, self.names, self.delta = name, names, delta
        self.target, self.address = target, address
        self.bytes = 0
        self.want = None
        self.held_at = None
        self.ready = threading.Event()
        self.lock = threading.Lock()

    def watch(self, weight):
        with self.lock:
            self.want, self.held_at = weight, None

    def _check(self, cla_bytes):
        cla = endpoint_pb2.ClusterLoadAssignment.FromString(cla_bytes)
        for loc in cla.endpoints:
            for e in loc.lb_endpoints:
                a = e.endpoint.address.socket_address
                if a.address == self.address and e.load_balancing_weight.value == self.want:
                    self.held_at = time.monotonic()

    def run(self):
        n = adsclient.node(self.name, "edge")
        if self.delta:
            D = discovery_pb2.DeltaDiscoveryRequest
            self.c.send(D(node=n, type_url=CDS))
            self.c.send(D(type_url=EDS, resource_names_subscribe=self.names))
        else:
            self.c.request(CDS, node_=n)
            self.c.request(EDS, self.names)
        have = set()
        while True:
            r = self.c.recv(timeout=600)
            if r is None:
                return
            with self.lock:
                self.bytes += r.ByteSize()
                if r.type_url == EDS:
                    for res in r.resources:
                        if self.delta:
                            have.add(res.name)
                            if res.name == self.target and self.want is not None:
                                self._check(res.resource.value)
                        elif self.want is not None or len(have) < len(self.names):
                            cla = endpoint_pb2.ClusterLoadAssignment.FromString(res.value)
                            have.add(cla.cluster_name)
                            if cla.cluster_name == self.target and self.want is not None:
                                self._check(res.value)
            if self.delta:
                self.c.send(discovery_pb2.DeltaDiscoveryRequest(type_url=r.type_url,
                                                                response_nonce=r.nonce))
            else:
                self.c.ack(r, self.names if r.type_url == EDS else ())
            if len(have) >= len(self.names):
                self.ready.set()


def populate(rest, services, fleets, endpoints):
    rest.call("POST", "/proxy-groups", {"name": "edge", "listener_port": 10000})
    names = ["s%04d" % i for i in range(services)]
    rest.many([("POST", "/services", {"name": s, "proxy_group": "edge"}) for s in names])
    fl = ["blue", "green", "f3", "f4"][:fleets]
    for f in fl:  # in order: the first fleet of each service is its active one
        rest.many([("POST", "/services/%s/fleets" % s, {"name": f}) for s in names])
    calls = []
    for i, s in enumerate(names):
        for j, f in enumerate(fl):
            for k in range(endpoints):
                addr = "10.%d.%d.%d" % (j, i // 250, (i % 250) + 1)
                calls.append(("POST", "/services/%s/fleets/%s/endpoints" % (s, f),
                              {"address": addr, "port": 8000 + k, "zone": "z1"}))
    t0 = time.monotonic()
    rest.many(calls)
    return names, len(calls) / (time.monotonic() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--fleets", type=int, default=2)
    ap.add_argument("--endpoints", type=int, default=50)
    ap.add_argument("--sotw", type=int, default=20)
    ap.add_argument("--changes", type=int, default=5)
    ap.add_argument("--loadgen-nodes", type=int, default=1000)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="hf-scale-")
    http_port, xds_port = free_port(), free_port()
    proc = subprocess.Popen([HOLDFAST, "--db", os.path.join(work, "db"), "--http",
                             "127.0.0.1:%d" % http_port, "--xds", "127.0.0.1:%d" % xds_port,
                             "--log-level", "warn"], stderr=open(os.path.join(work, "log"), "w"))
    try:
        rest = Rest(http_port)
        for _ in range(100):
            try:
                http.client.HTTPConnection("127.0.0.1", http_port, timeout=1).request("GET", "/healthz")
                break
            except OSError:
                time.sleep(0.05)
        names, rate = populate(rest, a.services, a.fleets, a.endpoints)
        print("binary: %s" % os.path.basename(HOLDFAST))
        print("config: %d services x %d fleets x %d endpoints; REST created %.0f endpoints/s"
              % (a.services, a.fleets, a.endpoints, rate))
        wait_idle(proc.pid)
        target = names[len(names) // 2]
        address = "10.0.%d.%d" % ((len(names) // 2) // 250, ((len(names) // 2) % 250) + 1)
        xds = "127.0.0.1:%d" % xds_port
        nodes = [Node(xds, "sotw-%d" % i, names, False, target, address) for i in range(a.sotw)]
        nodes.append(Node(xds, "delta-0", names, True, target, address))
        t0 = time.monotonic()
        for n in nodes:
            n.start()
        for n in nodes:
            n.ready.wait(600)
        print("%d SotW + 1 delta nodes hold the full configuration after %.1f s "
              "(initial bytes per SotW node %.0f KB)" % (a.sotw, time.monotonic() - t0,
                                                         nodes[0].bytes / 1e3))
        time.sleep(2)
        print("| change | REST -> every node holds it (ms) | bytes per SotW node | bytes, delta "
              "node | holdfast CPU (ms) | snapshot build (ms) |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        lat = []
        for k in range(a.changes):
            weight = 10 + k
            for n in nodes:
                n.watch(weight)
            b0 = [n.bytes for n in nodes]
            m0 = metric(http_port, "holdfast_xds_snapshot_seconds")
            c0 = cpu_s(proc.pid)
            t = time.monotonic()
            rest.call("PATCH", "/services/%s/fleets/blue/endpoints/%s:8000" % (target, address),
                      {"weight": weight})
            while any(n.held_at is None for n in nodes) and time.monotonic() - t < 60:
                time.sleep(0.002)
            held = max(n.held_at or float("inf") for n in nodes) - t
            time.sleep(2)
            wait_idle(proc.pid)
            c1 = cpu_s(proc.pid)
            m1 = metric(http_port, "holdfast_xds_snapshot_seconds")
            lat.append(held * 1000)
            sotw_b = statistics.mean(n.bytes - b for n, b in zip(nodes[:-1], b0))
            print("| %d | %.1f | %.0f | %.0f | %.0f | %.1f |" % (
                k + 1, held * 1000, sotw_b, nodes[-1].bytes - b0[-1], (c1 - c0) * 1000,
                1000 * (m1["_sum"] - m0["_sum"]) / max(1, m1["_count"] - m0["_count"])))
        print("latency over %d changes: p50 %.1f ms, max %.1f ms; holdfast RSS %.0f MB"
              % (len(lat), statistics.median(lat), max(lat), rss_mb(proc.pid)))
        for n in nodes:
            n.c.close()
        if a.loadgen_nodes > 0 and os.path.exists(LOADGEN):
            out = subprocess.run([LOADGEN, "--xds", xds, "--http", "127.0.0.1:%d" % http_port,
                                  "--pid", str(proc.pid), "--nodes", str(a.loadgen_nodes),
                                  "--service", names[1], "--group", "edge", "--fleet", "blue",
                                  "--port-base", "30000"], capture_output=True, text=True,
                                 timeout=600)
            print("xds_loadgen, %d nodes, one cluster each, same configuration: %s"
                  % (a.loadgen_nodes, out.stdout.strip() or out.stderr.strip()))
    finally:
        proc.terminate()
        rc = proc.wait(60)
        shutil.rmtree(work, ignore_errors=True)
        if rc != 0:
            print("holdfast exited %d" % rc, file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
