"""Health checking and failover eviction with real processes: two holdfast-shims (HDS), real HTTP
and TCP backends on 127.0.0.1. A killed backend is evicted within unhealthy_threshold x interval
plus one interval and comes back when it recovers; a killed shim evicts nothing; one shim of two
saying unhealthy evicts nothing (k = 2, partition safety); a backend that accepts and never
answers times out; the shims keep checking while holdfast restarts; garbage on an HDS stream
ends that stream only."""

import http.server
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import Holdfast, Shim, free_port  # noqa: E402
import grpc  # noqa: E402

API = "/api/v1"
INTERVAL_MS, TIMEOUT_MS, UNHEALTHY, HEALTHY = 300, 200, 2, 1


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the shims reuse connections

    def setup(self):
        super().setup()
        self.server.conns.add(self.connection)

    def do_GET(self):
        refuse = self.server.refuse_agent and self.server.refuse_agent in self.headers.get("User-Agent", "")
        body = b"no\n" if refuse else b"ok\n"
        self.send_response(503 if refuse else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class HttpBackend:
    def __init__(self, port, refuse_agent=None):
        self.port = port
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.refuse_agent = refuse_agent
        self.server.conns = set()
        self.server.daemon_threads = True
        # The shim closes connections it does not keep with a reset (no TIME_WAIT on the backend):
        # a reset mid-read is expected here, not an error to print.
        self.server.handle_error = lambda request, client_address: None
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        """Like a killed process: the listener and every open connection close."""
        self.server.shutdown()
        self.server.server_close()
        for c in list(self.server.conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class TcpBackend:
    """Accepts connections (and, when silent, never answers anything)."""

    def __init__(self, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(128)
        self.conns = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except OSError:
                return

    def stop(self):
        self.stopped = True
        self.sock.close()
        for c in self.conns:
            c.close()


class HealthTest(unittest.TestCase):
    def setUp(self):
        self.hf = Holdfast()
        self.hf.start()
        self.addCleanup(self.hf.__exit__)
        self.hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
        hc = {"interval_ms": INTERVAL_MS, "timeout_ms": TIMEOUT_MS,
              "unhealthy_threshold": UNHEALTHY, "healthy_threshold": HEALTHY}
        self.hf.post(API + "/services", {"name": "web", "proxy_group": "edge",
                                         "health_check": dict(hc, protocol="http", path="/healthz")})
        self.hf.post(API + "/services", {"name": "db", "proxy_group": "edge",
                                         "health_check": dict(hc, protocol="tcp")})
        self.hf.post(API + "/services/web/fleets", {"name": "blue"})
        self.hf.post(API + "/services/db/fleets", {"name": "main"})
        self.ports = {n: free_port() for n in ("h1", "h2", "h3", "t1", "t2")}
        self.backends = {}
        for n in ("h1", "h2"):
            self.backends[n] = HttpBackend(self.ports[n])
        self.backends["h3"] = HttpBackend(self.ports["h3"], refuse_agent="holdfast-shim/shim-a")
        for n in ("t1", "t2"):
            self.backends[n] = TcpBackend(self.ports[n])
        self.addCleanup(lambda: [b.stop() for b in self.backends.values()])
        for n in ("h1", "h2", "h3"):
            self.hf.post(API + "/services/web/fleets/blue/endpoints",
                         {"address": "127.0.0.1", "port": self.ports[n], "zone": "z1"})
        for n in ("t1", "t2"):
            self.hf.post(API + "/services/db/fleets/main/endpoints",
                         {"address": "127.0.0.1", "port": self.ports[n], "zone": "z1"})
        self.shims = [Shim(self.hf.xds, "shim-a", "z1", self.hf.workdir),
                      Shim(self.hf.xds, "shim-b", "z2", self.hf.workdir)]
        self.addCleanup(lambda: [s.stop() for s in self.shims])

    def health(self):
        return {(e["service"], e["port"]): e for e in self.hf.get(API + "/health").json["endpoints"]}

    def wait_health(self, service, name, want, timeout):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            e = self.health()[(service, self.ports[name])]
            if e["health"] == want:
                return time.monotonic() - t0
            time.sleep(0.02)
        raise AssertionError("%s %s is %s after %.1fs, want %s" % (service, name, e["health"], timeout, want))

    def settle(self):
        for name in ("h1", "h2"):
            self.wait_health("web", name, "healthy", 5)
        for name in ("t1", "t2"):
            self.wait_health("db", name, "healthy", 5)

    def test_eviction_and_restoration(self):
        self.settle()
        h = self.health()[("web", self.ports["h1"])]
        self.assertEqual(sorted(h["checkers"]), ["shim-a", "shim-b"])  # k = 2, two zones
        self.assertEqual(sorted(v["checker"] for v in h["verdicts"]), ["shim-a", "shim-b"])
        # The bound: unhealthy_threshold x interval plus one interval (+50 ms of polling).
        budget = (UNHEALTHY * INTERVAL_MS + INTERVAL_MS) / 1000.0 + 0.05
        self.backends["h2"].stop()
        took = self.wait_health("web", "h2", "unhealthy", 5)
        print("http eviction took %.0f ms (budget %.0f ms)" % (took * 1000, budget * 1000), file=sys.stderr)
        self.assertLess(took, budget)
        self.backends["t2"].stop()
        took = self.wait_health("db", "t2", "unhealthy", 5)
        self.assertLess(took, budget)
        self.assertEqual(self.health()[("web", self.ports["h1"])]["health"], "healthy")
        events = [e["action"] for e in self.hf.get(API + "/events?limit=1000").json["items"]]
        self.assertIn("endpoint.evict", events)
        self.backends["h2"] = HttpBackend(self.ports["h2"])
        self.wait_health("web", "h2", "healthy", 5)
        self.assertIn("endpoint.restore", [e["action"] for e in self.hf.get(API + "/events?limit=1000").json["items"]])
        metrics = self.hf.get("/metrics").body.decode()
        self.assertIn("holdfast_evictions_total", metrics)
        self.assertIn("holdfast_hds_detection_seconds", metrics)

    def test_partition_and_killed_shim_evict_nothing(self):
        self.settle()
        time.sleep(1.5)  # h3: shim-a gets 503, shim-b 200
        h3 = self.health()[("web", self.ports["h3"])]
        verdicts = {v["checker"]: v["verdict"] for v in h3["verdicts"]}
        self.assertEqual(verdicts, {"shim-a": "unhealthy", "shim-b": "healthy"})
        self.assertNotEqual(h3["health"], "unhealthy")  # one of two is no majority
        # A shim that dies evicts nothing; its endpoints go to the other.
        self.shims[1].stop()
        time.sleep(1.5)
        for (svc, port), e in self.health().items():
            if port != self.ports["h3"]:
                self.assertEqual(e["health"], "healthy", (svc, port))
        self.assertEqual([c["node_id"] for c in self.hf.get(API + "/health").json["checkers"]], ["shim-a"])
        self.assertEqual(self.health()[("web", self.ports["h1"])]["checkers"], ["shim-a"])

    def test_silent_backend_times_out(self):
        self.settle()
        silent = free_port()
        self.ports["s1"] = silent
        self.backends["s1"] = TcpBackend(silent)  # accepts, never answers HTTP
        self.hf.post(API + "/services/web/fleets/blue/endpoints", {"address": "127.0.0.1", "port": silent})
        self.wait_health("web", "s1", "unhealthy", 5)
        v = {x["checker"]: x["verdict"] for x in self.health()[("web", silent)]["verdicts"]}
        self.assertEqual(v, {"shim-a": "unhealthy", "shim-b": "unhealthy"})

    def test_shims_survive_holdfast_restart(self):
        self.settle()
        self.hf.kill9()
        self.backends["h2"].stop()  # fails while holdfast is away
        time.sleep(1.0)
        self.hf.start(keep_ports=True)
        self.wait_health("web", "h2", "unhealthy", 8)  # the shims reconnected and resynchronised
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            names = sorted(c["node_id"] for c in self.hf.get(API + "/health").json["checkers"])
            if names == ["shim-a", "shim-b"]:
                break
            time.sleep(0.1)
        self.assertEqual(names, ["shim-a", "shim-b"])  # both shims came back
        for s in self.shims:
            self.assertIsNone(s.proc.poll())

    def test_garbage_on_hds_ends_that_stream_only(self):
        self.settle()
        ch = grpc.insecure_channel(self.hf.xds)
        call = ch.stream_stream("/envoy.service.health.v3.HealthDiscoveryService/StreamHealthCheck")
        with self.assertRaises(grpc.RpcError) as e:
            list(call(iter([b"\xff\xfe garbage"]), timeout=5))
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        ch.close()
        self.backends["h2"].stop()
        self.wait_health("web", "h2", "unhealthy", 5)  # the shims were not disturbed


if __name__ == "__main__":
    unittest.main(verbosity=2)
