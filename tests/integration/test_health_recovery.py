"""Recovery after reassignment (issue 11 item 1), with real holdfast-shims and a real ADS client.

Checkers shim-c and shim-d see a backend healthy; they leave, and shim-a and shim-b, to which the
backend answers 503 (a "failing" checker: its own network or identity is refused), take over and
evict it. Then shim-c and shim-d come back and shim-a and shim-b leave: the healthy checkers take
over again and the endpoint must be back in EDS within one check interval plus the healthy
threshold (plus the time to reach the proxy). Before the health module, holdfast re-decided only
when a checker's verdict changed, and shim-c's and shim-d's verdicts were still "healthy" from
before, so the endpoint stayed out of EDS for good."""

import http.server
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Holdfast, Shim, free_port  # noqa: E402
import adsclient  # noqa: E402
from adsclient import AdsClient, CDS, EDS, node, unpack  # noqa: E402
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: E402

API = "/api/v1"
INTERVAL_MS, TIMEOUT_MS, UNHEALTHY, HEALTHY = 500, 300, 2, 2
PROPAGATION_MS = 500  # reassignment, the report, the decision, a snapshot and the push


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        agent = self.headers.get("User-Agent", "")
        refuse = any(r in agent for r in self.server.refuse)
        body = b"no\n" if refuse else b"ok\n"
        self.send_response(503 if refuse else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class RecoveryTest(unittest.TestCase):
    def setUp(self):
        self.hf = Holdfast()
        self.hf.start()
        self.addCleanup(self.hf.__exit__)
        self.hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
        hc = {"interval_ms": INTERVAL_MS, "timeout_ms": TIMEOUT_MS, "unhealthy_threshold": UNHEALTHY,
              "healthy_threshold": HEALTHY, "protocol": "http", "path": "/healthz"}
        self.hf.post(API + "/services", {"name": "web", "proxy_group": "edge", "health_check": hc})
        self.hf.post(API + "/services/web/fleets", {"name": "blue"})
        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.refuse = ("shim-a", "shim-b")
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.addCleanup(self.server.server_close)
        self.addCleanup(self.server.shutdown)
        self.hf.post(API + "/services/web/fleets/blue/endpoints",
                     {"address": "127.0.0.1", "port": self.port, "zone": "z1"})
        self.shims = {}
        self.addCleanup(lambda: [s.stop() for s in self.shims.values()])

    def shim(self, name, zone):
        self.shims[name] = Shim(self.hf.xds, name, zone, self.hf.workdir)

    def leave(self, name):
        self.shims.pop(name).stop()

    def endpoint(self):
        for e in self.hf.get(API + "/health").json["endpoints"]:
            if e["port"] == self.port:
                return e
        raise AssertionError("no endpoint")

    def wait(self, what, cond, timeout):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if cond():
                return time.monotonic() - t0
            time.sleep(0.02)
        raise AssertionError("%s: not after %.1f s; endpoint %s" % (what, timeout, self.endpoint()))

    def in_eds(self, latest):
        r = latest.get(EDS)
        if r is None:
            return None
        ports = [lb.endpoint.address.socket_address.port_value
                 for cla in unpack(r, endpoint_pb2.ClusterLoadAssignment)
                 for le in cla.endpoints for lb in le.lb_endpoints]
        return self.port in ports

    def test_healthy_checkers_take_over(self):
        self.shim("shim-c", "z1")
        self.shim("shim-d", "z2")
        self.wait("healthy", lambda: self.endpoint()["health"] == "healthy", 10)
        ads = AdsClient(self.hf.xds)
        self.addCleanup(ads.close)
        ads.request(CDS, node_=node("envoy-1", "edge"))
        ads.follow(lambda latest: self.in_eds(latest) is True)
        # The healthy checkers leave; the failing ones take over and evict.
        self.shim("shim-a", "z1")
        self.shim("shim-b", "z2")
        self.leave("shim-c")
        self.leave("shim-d")
        self.wait("evicted", lambda: self.endpoint()["health"] == "unhealthy", 10)
        ads.follow(lambda latest: self.in_eds(latest) is False)
        self.assertEqual(sorted(self.endpoint()["checkers"]), ["shim-a", "shim-b"])
        # The healthy checkers come back; the failing ones leave.
        self.shim("shim-c", "z1")
        self.shim("shim-d", "z2")
        self.wait("4 checkers", lambda: len(self.hf.get(API + "/health").json["checkers"]) == 4, 10)
        t0 = time.monotonic()
        self.leave("shim-a")
        self.leave("shim-b")
        budget = (INTERVAL_MS * (1 + HEALTHY) + PROPAGATION_MS) / 1000.0
        try:
            ads.follow(lambda latest: self.in_eds(latest) is True, timeout=budget + 10)
        except Exception:
            raise AssertionError("not back in EDS after %.1f s; endpoint %s"
                                 % (time.monotonic() - t0, self.endpoint()))
        took = time.monotonic() - t0
        print("back in EDS %.0f ms after the failing checkers left (budget %.0f ms)"
              % (took * 1000, budget * 1000), file=sys.stderr)
        self.assertLess(took, budget)
        e = self.endpoint()
        self.assertEqual(e["health"], "healthy")
        self.assertEqual(sorted(e["checkers"]), ["shim-c", "shim-d"])
        events = [x["action"] for x in self.hf.get(API + "/events?limit=1000").json["items"]]
        self.assertIn("endpoint.restore", events)


if __name__ == "__main__":
    unittest.main(verbosity=2)
