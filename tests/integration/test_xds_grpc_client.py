"""gRPC's own xDS client (C core, through Debian's python3-grpcio) routing by what holdfast
serves: a channel to xds:///cart reaches only the active fleet, and adding, removing, draining
and disabling endpoints or switching the active fleet through REST moves the RPCs within a
second. Then holdfast is killed with -9 and restarted: the client keeps working throughout."""

import json
import os
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Holdfast, free_port, write_bootstrap  # noqa: E402
from backends import Backend, wait_until, who  # noqa: E402

API = "/api/v1"
EP = API + "/services/cart/fleets/%s/endpoints"


class GrpcXdsClientTest(unittest.TestCase):
    def test_routes_follow_rest(self):
        tmp = tempfile.TemporaryDirectory(prefix="hf-grpc-")
        self.addCleanup(tmp.cleanup)
        hf = Holdfast(workdir=tmp.name).start()
        self.addCleanup(hf.stop)
        os.environ["GRPC_XDS_BOOTSTRAP"] = write_bootstrap(
            os.path.join(tmp.name, "bootstrap.json"), hf.xds, "py-grpc-1", zone="z1")
        import grpc  # after the bootstrap is in place

        ports = {name: free_port() for name in ("b1", "b2", "b3", "g1")}
        backends = {name: Backend(name, port).start() for name, port in ports.items()}
        for b in backends.values():
            self.addCleanup(b.stop)

        self.assertEqual(hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000}).status, 201)
        self.assertEqual(hf.post(API + "/services", {"name": "cart", "proxy_group": "edge",
                                                     "domains": ["cart.example.com"]}).status, 201)
        hf.post(API + "/services/cart/fleets", {"name": "blue", "version": "1"})
        hf.post(API + "/services/cart/fleets", {"name": "green", "version": "2"})
        for fleet, name in (("blue", "b1"), ("blue", "b2"), ("green", "g1")):
            r = hf.post(EP % fleet, {"address": "127.0.0.1", "port": ports[name], "zone": "z1"})
            self.assertEqual(r.status, 201, r.body)

        channel = grpc.insecure_channel("xds:///cart")
        self.addCleanup(channel.close)
        wait_until(channel, {"b1", "b2"}, timeout=10)  # the first resolution
        self.assertEqual(set(who(channel, 40)), {"b1", "b2"})  # never green: it is standby
        by_domain = grpc.insecure_channel("xds:///cart.example.com")
        self.addCleanup(by_domain.close)
        wait_until(by_domain, {"b1", "b2"}, timeout=10)

        timings = {}
        id_ = lambda name: "127.0.0.1:%d" % ports[name]  # noqa: E731
        hf.post(EP % "blue", {"address": "127.0.0.1", "port": ports["b3"], "zone": "z1"})
        timings["add"] = wait_until(channel, {"b1", "b2", "b3"})
        hf.delete(EP % "blue" + "/" + id_("b3"))
        timings["remove"] = wait_until(channel, {"b1", "b2"})
        hf.patch(EP % "blue" + "/" + id_("b2"), {"admin_state": "draining"})
        timings["drain"] = wait_until(channel, {"b1"})
        hf.patch(EP % "blue" + "/" + id_("b2"), {"admin_state": "active"})
        hf.patch(EP % "blue" + "/" + id_("b1"), {"admin_state": "disabled"})
        timings["disable"] = wait_until(channel, {"b2"})
        hf.patch(EP % "blue" + "/" + id_("b1"), {"admin_state": "active"})
        wait_until(channel, {"b1", "b2"})
        hf.patch(API + "/services/cart/fleets/green", {"role": "active"})
        timings["switch fleet"] = wait_until(channel, {"g1"})
        print("moved within: " + ", ".join("%s %.0f ms" % (k, v * 1000) for k, v in timings.items()),
              file=sys.stderr)

        # The client shows in /api/v1/proxies as a gRPC node that ACKed what it was sent.
        (p,) = [x for x in hf.get(API + "/proxies").json["items"] if x["id"] == "py-grpc-1"]
        self.assertEqual(p["kind"], "grpc")
        self.assertTrue(p["user_agent"].startswith("gRPC C-core"), p["user_agent"])
        for t in ("lds", "cds", "eds"):
            self.assertIsNotNone(p["types"][t]["acked_version"], t)
            self.assertEqual(p["types"][t]["acked_version"], p["types"][t]["sent_version"], t)
            self.assertIsNone(p["types"][t]["last_nack"], t)

        # kill -9: the client keeps its last configuration and keeps working...
        hf.kill9()
        self.assertEqual(set(who(channel, 20)), {"g1"})
        # ... and after the restart (same ports, same database) it reconnects and follows.
        hf.start(keep_ports=True)
        hf.patch(API + "/services/cart/fleets/blue", {"role": "active"})
        timings["after restart"] = wait_until(channel, {"b1", "b2"}, timeout=15)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            items = [x for x in hf.get(API + "/proxies").json["items"] if x["id"] == "py-grpc-1"]
            if items and items[0]["types"]["eds"]["acked_version"]:
                break
            time.sleep(0.1)
        self.assertTrue(items and items[0]["types"]["eds"]["acked_version"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
