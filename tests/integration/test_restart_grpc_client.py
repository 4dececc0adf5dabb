"""A rolling restart seen by gRPC's own xDS client (C core, through Debian's python3-grpcio):
ten real gRPC backends in one fleet, checked over TCP by a holdfast-shim, and RPCs sent without
pause (six 100 ms calls in flight at any time) through xds:///cart while holdfast restarts the fleet batch by batch. The test plays the
orchestrator: when a batch is ready it stops those servers (in-flight RPCs would fail), starts
them again and says so. Not one RPC may fail, every backend is back in rotation at the end, and
a stopped backend never answered an RPC while its batch was out of rotation."""

import os
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Holdfast, Shim, free_port, write_bootstrap  # noqa: E402
from backends import Backend, wait_until  # noqa: E402

API = "/api/v1"
N = 10


class RestartGrpcClientTest(unittest.TestCase):
    def test_no_rpc_lost(self):
        tmp = tempfile.TemporaryDirectory(prefix="hf-rgrpc-")
        self.addCleanup(tmp.cleanup)
        hf = Holdfast(workdir=tmp.name).start(extra=["--lrs-interval", "200"])
        self.addCleanup(hf.stop)
        os.environ["GRPC_XDS_BOOTSTRAP"] = write_bootstrap(
            os.path.join(tmp.name, "bootstrap.json"), hf.xds, "py-grpc-restart", zone="z1")
        import grpc  # after the bootstrap is in place

        hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
        r = hf.post(API + "/services", {
            "name": "cart", "proxy_group": "edge",
            "health_check": {"protocol": "tcp", "interval_ms": 300, "timeout_ms": 200,
                             "unhealthy_threshold": 2, "healthy_threshold": 1},
            "connection": {"max_connection_age_s": 1, "drain_timeout_s": 1}})
        self.assertEqual(r.status, 201, r.body)
        hf.post(API + "/services/cart/fleets", {"name": "blue"})
        backends = {}
        for i in range(N):
            p = free_port()
            backends[p] = Backend("b%d" % i, p, delay_s=0.1).start()
            hf.post(API + "/services/cart/fleets/blue/endpoints", {"address": "127.0.0.1", "port": p, "zone": "z1"})
        self.addCleanup(lambda: [b.stop() for b in backends.values()])
        shim = Shim(hf.xds, "shim-a", "z1", hf.workdir)
        self.addCleanup(shim.stop)

        channel = grpc.insecure_channel("xds:///cart")
        self.addCleanup(channel.close)
        names = {b.name for b in backends.values()}
        wait_until(channel, names, timeout=30, n=40)

        stop = threading.Event()
        seen, failures = [], []
        out_of_rotation = set()  # names of stopped backends

        def load():
            call = channel.unary_unary("/test.Echo/Who")
            while not stop.is_set():
                try:
                    name = call(b"", timeout=2).decode()
                    seen.append(name)
                    if name in out_of_rotation:
                        failures.append("answered by stopped " + name)
                except grpc.RpcError as e:
                    failures.append("%s %s" % (e.code(), e.details()))

        threads = [threading.Thread(target=load) for _ in range(6)]  # six 100 ms calls in flight
        for t in threads:
            t.start()
        rid = hf.post(API + "/restarts", {"service": "cart", "fleet": "blue", "avg_connection_s": 60,
                                           "max_disconnect_pct": 10, "max_draining_pct": 30,
                                           "restart_s": 2, "dry_run": False}).json["id"]
        restarted = set()
        deadline = time.monotonic() + 90
        try:
            while time.monotonic() < deadline:
                rs = hf.get(API + "/restarts/" + rid).json
                if rs["state"] == "completed":
                    break
                for b in rs["batch_list"]:
                    if b["state"] == "ready" and b["n"] not in restarted:
                        restarted.add(b["n"])
                        ports = [int(e.rsplit(":", 1)[1]) for e in b["endpoints"]]
                        for p in ports:
                            out_of_rotation.add(backends[p].name)
                            backends[p].stop()
                        time.sleep(0.3)
                        for p in ports:
                            backends[p].start()
                            out_of_rotation.discard(backends[p].name)
                        self.assertEqual(hf.post(API + "/restarts/%s/batches/%d/restarted" % (rid, b["n"])).status, 200)
                time.sleep(0.05)
            self.assertEqual(rs["state"], "completed", rs)
            wait_until(channel, names, timeout=30, n=40)  # every backend back in rotation
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        print("rolling restart under load: %d RPCs, %d failed, %d batches restarted"
              % (len(seen), len(failures), len(restarted)), file=sys.stderr)
        self.assertEqual(failures, [])
        self.assertEqual(restarted, set(range(1, N + 1)))
        self.assertGreater(len(seen), 300)


if __name__ == "__main__":
    unittest.main(verbosity=2)
