"""Failover seen by gRPC's own xDS client (python3-grpcio): two shims health-check two gRPC
backends over TCP; when one backend is killed it is evicted from EDS and the client stops
sending it RPCs; when it comes back the client uses it again."""

import json
import os
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Holdfast, Shim, free_port, write_bootstrap  # noqa: E402
from backends import Backend, wait_until  # noqa: E402

API = "/api/v1"


class HealthGrpcClientTest(unittest.TestCase):
    def test_client_stops_using_an_evicted_backend(self):
        tmp = tempfile.TemporaryDirectory(prefix="hf-hgc-")
        self.addCleanup(tmp.cleanup)
        hf = Holdfast(workdir=tmp.name).start()
        self.addCleanup(hf.stop)
        os.environ["GRPC_XDS_BOOTSTRAP"] = write_bootstrap(
            os.path.join(tmp.name, "bootstrap.json"), hf.xds, "py-failover")
        import grpc

        ports = {"b1": free_port(), "b2": free_port()}
        backends = {n: Backend(n, p).start() for n, p in ports.items()}
        self.addCleanup(lambda: [b.stop() for b in backends.values()])
        hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
        hf.post(API + "/services", {"name": "cart", "proxy_group": "edge", "health_check": {
            "protocol": "tcp", "interval_ms": 300, "timeout_ms": 200, "unhealthy_threshold": 2,
            "healthy_threshold": 1}})
        hf.post(API + "/services/cart/fleets", {"name": "blue"})
        for p in ports.values():
            hf.post(API + "/services/cart/fleets/blue/endpoints", {"address": "127.0.0.1", "port": p})
        shims = [Shim(hf.xds, "shim-a", "z1", tmp.name), Shim(hf.xds, "shim-b", "z2", tmp.name)]
        self.addCleanup(lambda: [s.stop() for s in shims])

        channel = grpc.insecure_channel("xds:///cart")
        self.addCleanup(channel.close)
        wait_until(channel, {"b1", "b2"}, timeout=10)
        backends["b2"].stop()
        t0 = time.monotonic()
        while True:
            eps = hf.get(API + "/services/cart/fleets/blue/endpoints/127.0.0.1:%d" % ports["b2"]).json
            if eps["health"] == "unhealthy" or time.monotonic() - t0 > 5:
                break
            time.sleep(0.02)
        self.assertEqual(eps["health"], "unhealthy")
        # Once evicted, every RPC goes to b1 (and none fails).
        wait_until(channel, {"b1"}, timeout=2)
        call = channel.unary_unary("/test.Echo/Who")
        self.assertEqual({call(b"", timeout=5).decode() for _ in range(40)}, {"b1"})
        backends["b2"] = Backend("b2", ports["b2"]).start()
        wait_until(channel, {"b1", "b2"}, timeout=5)


if __name__ == "__main__":
    unittest.main(verbosity=2)
