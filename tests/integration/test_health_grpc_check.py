"""gRPC health checks (issue 11 item 4) with real holdfast, a real shim and a real gRPC server
(Debian's python3-grpcio) implementing grpc.health.v1.Health/Check with a generic handler (the
two tiny messages are encoded here by hand; no proto is copied). health_check.protocol "grpc"
with an optional service_name: SERVING is healthy; NOT_SERVING, an unknown service (NOT_FOUND)
and a server that is down (UNAVAILABLE) are unhealthy with that reason; a service that comes
back is restored; the shim reuses one channel (one connection) per endpoint."""

import concurrent.futures
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Holdfast, Shim, free_port  # noqa: E402
import grpc  # noqa: E402

API = "/api/v1"
SERVING, NOT_SERVING = 1, 2


class HealthServer:
    def __init__(self, port):
        self.status = {"": SERVING, "svc.ok": SERVING, "svc.flip": NOT_SERVING}
        self.peers = {}
        self.lock = threading.Lock()
        self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=8))
        handler = grpc.method_handlers_generic_handler(
            "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(self.check)})
        self.server.add_generic_rpc_handlers((handler,))
        self.server.add_insecure_port("127.0.0.1:%d" % port)
        self.server.start()

    def check(self, request, context):
        service = ""
        if len(request) >= 2 and request[0] == 0x0A:
            service = request[2:2 + request[1]].decode()
        with self.lock:
            self.peers.setdefault(service, set()).add(context.peer())
            status = self.status.get(service)
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return bytes([0x08, status])

    def stop(self):
        self.server.stop(0)


class GrpcCheckTest(unittest.TestCase):
    def setUp(self):
        self.hf = Holdfast()
        self.hf.start()
        self.addCleanup(self.hf.__exit__)
        self.hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
        self.port = free_port()
        self.srv = HealthServer(self.port)
        self.addCleanup(self.srv.stop)

    def service(self, name, service_name, port):
        hc = {"protocol": "grpc", "service_name": service_name, "interval_ms": 300,
              "timeout_ms": 200, "unhealthy_threshold": 2, "healthy_threshold": 1}
        r = self.hf.post(API + "/services", {"name": name, "proxy_group": "edge", "health_check": hc})
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(r.json["health_check"]["protocol"], "grpc")
        self.assertEqual(r.json["health_check"]["service_name"], service_name)
        self.hf.post(API + "/services/%s/fleets" % name, {"name": "blue"})
        self.hf.post(API + "/services/%s/fleets/blue/endpoints" % name,
                     {"address": "127.0.0.1", "port": port})

    def state(self, name):
        for e in self.hf.get(API + "/health?service=" + name).json["endpoints"]:
            return e["health"], [v["reason"] for v in e["verdicts"]]

    def wait(self, name, health, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.state(name)
            if s[0] == health and s[1]:
                return s[1][0]
            time.sleep(0.05)
        raise AssertionError("%s: %s, want %s" % (name, self.state(name), health))

    def test_grpc_health(self):
        self.service("whole", "", self.port)
        self.service("ok", "svc.ok", self.port)
        self.service("flip", "svc.flip", self.port)
        self.service("nope", "svc.nope", self.port)
        self.service("down", "", free_port())
        shim = Shim(self.hf.xds, "shim-a", "z1", self.hf.workdir)
        self.addCleanup(shim.stop)
        self.assertTrue(self.wait("whole", "healthy").startswith("gRPC SERVING in"))
        self.assertTrue(self.wait("ok", "healthy").startswith("gRPC SERVING in"))
        self.assertTrue(self.wait("flip", "unhealthy").startswith("gRPC NOT_SERVING"))
        self.assertTrue(self.wait("nope", "unhealthy").startswith("gRPC NOT_FOUND"))
        self.assertTrue(self.wait("down", "unhealthy").startswith("gRPC UNAVAILABLE"))
        with self.srv.lock:
            self.srv.status["svc.flip"] = SERVING
        self.wait("flip", "healthy")
        time.sleep(1)  # a few more checks on the same channels
        with self.srv.lock:
            peers = {k: len(v) for k, v in self.srv.peers.items()}
        self.assertEqual(peers[""], 1, peers)  # one channel, one connection, reused
        self.assertEqual(peers["svc.ok"], 1, peers)
        self.srv.stop()
        self.wait("whole", "unhealthy")

    def test_service_name_is_grpc_only(self):
        r = self.hf.post(API + "/services", {"name": "bad", "proxy_group": "edge", "health_check": {
            "protocol": "http", "service_name": "svc.ok"}})
        self.assertEqual(r.status, 422, r.body)
        self.assertEqual(r.json["error"]["field"], "health_check.service_name")


if __name__ == "__main__":
    unittest.main(verbosity=2)
