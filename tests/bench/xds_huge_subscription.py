#!/usr/bin/python3
"""Benchmark (not a test) for issue 14 item 4: one client sending subscriptions of 100,000
resource names (state of the world, re-sent back to back, and one delta stream) must not delay
the pushes other proxies get.

    tests/bench/xds_huge_subscription.py [--nodes 50] [--names 100000] [--changes 5]

Prints the time from a REST change to every one of N ordinary nodes holding it, without and
then with the hostile client running, and what a request over the cap gets.
Uses build/ binaries unless HOLDFAST_BIN / HOLDFAST_PB_PY say otherwise.
"""

import argparse
import multiprocessing
import os
import statistics
import sys
import threading
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
os.environ.setdefault("HOLDFAST_PB_PY", os.path.join(TOP, "build", "api", "pb", "py"))
os.environ.setdefault("HOLDFAST_BIN", os.path.join(TOP, "build", "control-plane", "holdfast"))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))

from harness import Holdfast  # noqa: E402
import adsclient  # noqa: E402
from adsclient import EDS, AdsClient, node  # noqa: E402
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: E402
from envoy.service.discovery.v3 import discovery_pb2  # noqa: E402

API = "/api/v1"


class Follower(threading.Thread):
    """An ordinary node: EDS for cart, ACKs everything, notes when a weight arrives."""

    def __init__(self, xds, i):
        super().__init__(daemon=True)
        self.c = AdsClient(xds)
        self.c.request(EDS, ["cart"], node_=node("n%d" % i, "edge"))
        self.seen = {}

    def run(self):
        while True:
            r = self.c.recv(timeout=600)
            if r is None:
                return
            for res in r.resources:
                cla = endpoint_pb2.ClusterLoadAssignment.FromString(res.value)
                for loc in cla.endpoints:
                    for e in loc.lb_endpoints:
                        w = e.load_balancing_weight.value
                        self.seen.setdefault(w, time.monotonic())
            self.c.ack(r, ["cart"])


def measure(hf, nodes, changes, base):
    out = []
    for k in range(changes):
        w = base + k
        t = time.monotonic()
        hf.patch(API + "/services/cart/fleets/blue/endpoints/127.0.0.1:8081", {"weight": w})
        while any(w not in n.seen for n in nodes) and time.monotonic() - t < 30:
            time.sleep(0.001)
        out.append((max(n.seen.get(w, float("inf")) for n in nodes) - t) * 1000)
        time.sleep(0.3)
    return out


def hostile(xds, names, stop, counts, vary):
    """Re-sends a subscription of len(names) names back to back: the same list, or (vary) one
    of two lists that differ by a name, so that every request changes the subscription."""
    big = AdsClient(xds)
    reqs = [discovery_pb2.DiscoveryRequest(type_url=EDS, resource_names=names),
            discovery_pb2.DiscoveryRequest(type_url=EDS, resource_names=["other"] + names[1:])]
    reqs[0].node.CopyFrom(node("hostile", "edge"))
    reqs[1].node.CopyFrom(node("hostile", "edge"))
    d = AdsClient(xds, delta=True)
    dreq = discovery_pb2.DeltaDiscoveryRequest(type_url=EDS, resource_names_subscribe=names)
    dreq.node.CopyFrom(node("hostile-delta", "edge"))
    d.send(dreq)
    while not stop.is_set():
        big.send(reqs[counts.value % 2 if vary else 0])
        counts.value += 1
        time.sleep(0.05)
        while not big.expect_nothing(0):
            big.recv()
    big.close()
    d.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--names", type=int, default=100000)
    ap.add_argument("--changes", type=int, default=5)
    a = ap.parse_args()
    with Holdfast() as hf:
        hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
        hf.post(API + "/services", {"name": "cart", "proxy_group": "edge"})
        hf.post(API + "/services/cart/fleets", {"name": "blue"})
        for p in (8081, 8082, 8083):
            hf.post(API + "/services/cart/fleets/blue/endpoints",
                    {"address": "127.0.0.1", "port": p, "zone": "z1"})
        nodes = [Follower(hf.xds, i) for i in range(a.nodes)]
        for n in nodes:
            n.start()
        time.sleep(1)
        quiet = measure(hf, nodes, a.changes, 10)
        names = ["cart"] + ["svc-%06d" % i for i in range(a.names - 1)]
        loud = {}
        for vary in (False, True):
            # its own process: the followers' timing must not wait for its Python work
            mp = multiprocessing.get_context("spawn")  # no fork: gRPC does not survive one
            stop = mp.Event()
            counts = mp.Value("l", 0)
            t = mp.Process(target=hostile, args=(hf.xds, names, stop, counts, vary),
                                        daemon=True)
            t.start()
            time.sleep(2)
            loud[vary] = (measure(hf, nodes, a.changes, 20 + 10 * vary), counts.value)
            stop.set()
            t.join(30)
        over = AdsClient(hf.xds)
        req = discovery_pb2.DiscoveryRequest(type_url=EDS,
                                             resource_names=names + ["one-too-many"])
        req.node.CopyFrom(node("over", "edge"))
        over.send(req)
        over.recv(timeout=10)
        print("| %d nodes, REST change -> all hold it | p50 (ms) | max (ms) |" % a.nodes)
        print("| --- | ---: | ---: |")
        print("| quiet | %.1f | %.1f |" % (statistics.median(quiet), max(quiet)))
        for vary, what in ((False, "the same"), (True, "a changed")):
            lat, sent = loud[vary]
            print("| while one client sends %s %d-name SotW subscription back to back (%d sent) "
                  "and holds a %d-name delta one | %.1f | %.1f |"
                  % (what, a.names, sent, a.names, statistics.median(lat), max(lat)))
        print("a %d-name request: %s" % (a.names + 1, over.error.code() if over.error else "served"))
        for n in nodes:
            n.c.close()
        over.close()


if __name__ == "__main__":
    main()
