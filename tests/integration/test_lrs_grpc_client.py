"""Load reports from gRPC's own xDS client (C core, python3-grpcio) reach holdfast over LRS
(the clusters carry lrs_server: self) and count in a deployment's affinity tail: with only this
client's traffic, a blue-green drain is measured and finishes by its threshold."""

import json
import os
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Holdfast, free_port, write_bootstrap  # noqa: E402
from backends import Backend  # noqa: E402

API = "/api/v1"


class GrpcClientLrsTest(unittest.TestCase):
    def test_grpc_load_reports_count_in_the_tail(self):
        tmp = tempfile.TemporaryDirectory(prefix="hf-lrs-")
        self.addCleanup(tmp.cleanup)
        hf = Holdfast(workdir=tmp.name)
        hf.start(extra=["--lrs-interval", "500"])
        self.addCleanup(hf.stop)
        os.environ["GRPC_XDS_BOOTSTRAP"] = write_bootstrap(
            os.path.join(tmp.name, "bootstrap.json"), hf.xds, "py-lrs-1", zone="z1")
        import grpc

        ports = {"b1": free_port(), "g1": free_port()}
        for name, port in ports.items():
            self.addCleanup(Backend(name, port).start().stop)
        hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
        hf.post(API + "/services", {"name": "cart", "proxy_group": "edge", "affinity": {"ttl_s": 2}})
        hf.post(API + "/services/cart/fleets", {"name": "blue"})
        hf.post(API + "/services/cart/fleets", {"name": "green"})
        hf.post(API + "/services/cart/fleets/blue/endpoints", {"address": "127.0.0.1", "port": ports["b1"], "zone": "z1"})
        hf.post(API + "/services/cart/fleets/green/endpoints", {"address": "127.0.0.1", "port": ports["g1"], "zone": "z1"})

        channel = grpc.insecure_channel("xds:///cart")
        self.addCleanup(channel.close)
        call = channel.unary_unary("/test.Echo/Who")
        seen = {}
        stop = threading.Event()

        def traffic():
            while not stop.is_set():
                try:
                    name = call(b"", timeout=5).decode()
                    seen[name] = seen.get(name, 0) + 1
                except grpc.RpcError:
                    pass
                time.sleep(0.005)

        t = threading.Thread(target=traffic, daemon=True)
        t.start()
        self.addCleanup(lambda: (stop.set(), t.join(5)))
        deadline = time.monotonic() + 10
        while seen.get("b1", 0) < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertGreaterEqual(seen.get("b1", 0), 20)

        d = hf.post(API + "/deployments", {"service": "cart", "to_fleet": "green", "lowered_ttl_s": 1,
                                          "lead_s": 0, "force": True, "deadline_factor": 10}).json
        hf.post(API + "/deployments/%s/lower-ttl" % d["id"])
        hf.post(API + "/deployments/%s/cutover" % d["id"])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            cur = hf.get(API + "/deployments/" + d["id"]).json
            if cur["state"] == "completed":
                break
            time.sleep(0.2)
        self.assertEqual(cur["state"], "completed")
        self.assertEqual(cur["finish_reason"], "threshold")  # measured, not the deadline
        measured = [s for s in cur["tail"] if s["total_requests"] > 0]
        self.assertGreaterEqual(len(measured), 3)
        self.assertGreater(sum(s["total_requests"] for s in measured), 10)
        self.assertGreater(seen.get("g1", 0), 0)


class GrpcClientLrsAfterRestartTest(unittest.TestCase):
    """Issue 12 item 9: plan -> lower TTL -> cutover, then kill -9 holdfast and restart it on the
    same database. The client's ADS stream comes back holding the current versions; gRPC only
    (re)starts load reporting once its new ADS stream has seen a response, so holdfast must answer
    a reconnecting gRPC client even when nothing changed. The drain then ends by its threshold,
    measured from load reports sent after the restart."""

    def test_drain_finishes_by_threshold_after_a_restart(self):
        tmp = tempfile.TemporaryDirectory(prefix="hf-lrs-restart-")
        self.addCleanup(tmp.cleanup)
        hf = Holdfast(workdir=tmp.name)
        hf.start(extra=["--lrs-interval", "500"])
        self.addCleanup(hf.stop)
        os.environ["GRPC_XDS_BOOTSTRAP"] = write_bootstrap(
            os.path.join(tmp.name, "bootstrap.json"), hf.xds, "py-lrs-2", zone="z1")
        import grpc

        ports = {"b1": free_port(), "g1": free_port()}
        for name, port in ports.items():
            self.addCleanup(Backend(name, port).start().stop)
        hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
        hf.post(API + "/services", {"name": "cart", "proxy_group": "edge", "affinity": {"ttl_s": 30}})
        hf.post(API + "/services/cart/fleets", {"name": "blue"})
        hf.post(API + "/services/cart/fleets", {"name": "green"})
        hf.post(API + "/services/cart/fleets/blue/endpoints", {"address": "127.0.0.1", "port": ports["b1"], "zone": "z1"})
        hf.post(API + "/services/cart/fleets/green/endpoints", {"address": "127.0.0.1", "port": ports["g1"], "zone": "z1"})

        channel = grpc.insecure_channel("xds:///cart")
        self.addCleanup(channel.close)
        call = channel.unary_unary("/test.Echo/Who")
        seen = {}
        stop = threading.Event()

        def traffic():
            while not stop.is_set():
                try:
                    name = call(b"", timeout=5).decode()
                    seen[name] = seen.get(name, 0) + 1
                except grpc.RpcError:
                    pass
                time.sleep(0.005)

        t = threading.Thread(target=traffic, daemon=True)
        t.start()
        self.addCleanup(lambda: (stop.set(), t.join(5)))
        deadline = time.monotonic() + 10
        while seen.get("b1", 0) < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertGreaterEqual(seen.get("b1", 0), 20)

        # A deadline far enough (10 x 5 s after cutover) that only the threshold ends it in time.
        d = hf.post(API + "/deployments", {"service": "cart", "to_fleet": "green", "lowered_ttl_s": 5,
                                          "lead_s": 0, "force": True, "deadline_factor": 10})
        self.assertEqual(d.status, 201, d.body)
        d = d.json
        hf.post(API + "/deployments/%s/lower-ttl" % d["id"])
        r = hf.post(API + "/deployments/%s/cutover" % d["id"])
        self.assertEqual(r.status, 200, r.body)
        hf.kill9()
        restarted_at = time.time()
        hf.start(extra=["--lrs-interval", "500"], keep_ports=True)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            cur = hf.get(API + "/deployments/" + d["id"]).json
            if cur["state"] == "completed":
                break
            time.sleep(0.2)
        self.assertEqual(cur["state"], "completed", cur)
        self.assertEqual(cur["finish_reason"], "threshold")  # measured, not the deadline
        after = [s for s in cur["tail"] if s["total_requests"] > 0 and
                 s["t"] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(restarted_at))]
        self.assertGreaterEqual(len(after), 2, cur["tail"])  # samples from reports after the restart
        (p,) = [x for x in hf.get(API + "/proxies").json["items"] if x["id"] == "py-lrs-2"]
        self.assertEqual(p["kind"], "grpc")


if __name__ == "__main__":
    unittest.main(verbosity=2)
