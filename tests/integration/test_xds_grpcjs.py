"""@grpc/grpc-js-xds (Node) as a real xDS client of holdfast: a channel to xds:///cart reaches
the active fleet's endpoints, follows a fleet switch and an endpoint drain made through REST,
and ACKs what it is sent (no NACK)."""

import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Holdfast, free_port, write_bootstrap  # noqa: E402
from backends import Backend  # noqa: E402

API = "/api/v1"
SRC = os.path.abspath(os.environ.get("HOLDFAST_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")))


class NodeClient:
    def __init__(self, bootstrap, target="xds:///cart"):
        env = dict(os.environ, GRPC_XDS_BOOTSTRAP=bootstrap,
                   NODE_PATH=os.path.join(SRC, "node_modules"))
        self.proc = subprocess.Popen(["node", os.path.join(SRC, "tests", "integration", "grpcjs_client.js"), target],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                     cwd=SRC)

    def who(self, n=20):
        self.proc.stdin.write("who %d\n" % n)
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["counts"]

    def wait_until(self, expected, timeout=2.0):
        t0 = time.monotonic()
        seen = None
        while time.monotonic() - t0 < timeout:
            seen = self.who(10)
            if set(seen) == set(expected):
                return time.monotonic() - t0
        raise AssertionError("grpc-js reaches %s, want %s" % (seen, sorted(expected)))

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(5)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


class GrpcJsXdsTest(unittest.TestCase):
    def test_grpcjs_routes_follow_rest(self):
        with Holdfast() as hf:
            ports = {n: free_port() for n in ("b1", "b2", "g1")}
            backends = [Backend(n, p).start() for n, p in ports.items()]
            self.addCleanup(lambda: [b.stop() for b in backends])
            hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
            hf.post(API + "/services", {"name": "cart", "proxy_group": "edge"})
            hf.post(API + "/services/cart/fleets", {"name": "blue"})
            hf.post(API + "/services/cart/fleets", {"name": "green"})
            for fleet, n in (("blue", "b1"), ("blue", "b2"), ("green", "g1")):
                hf.post(API + "/services/cart/fleets/%s/endpoints" % fleet,
                        {"address": "127.0.0.1", "port": ports[n], "zone": "z1"})
            boot = write_bootstrap(os.path.join(hf.workdir, "bootstrap-js.json"), hf.xds, "js-1", zone="z1")
            js = NodeClient(boot)
            self.addCleanup(js.close)
            js.wait_until({"b1", "b2"}, timeout=15)
            self.assertEqual(set(js.who(30)), {"b1", "b2"})
            hf.patch(API + "/services/cart/fleets/blue/endpoints/127.0.0.1:%d" % ports["b2"],
                     {"admin_state": "draining"})
            drain = js.wait_until({"b1"})
            hf.patch(API + "/services/cart/fleets/green", {"role": "active"})
            switch = js.wait_until({"g1"})
            print("grpc-js moved within: drain %.0f ms, switch %.0f ms" % (drain * 1000, switch * 1000),
                  file=sys.stderr)
            (p,) = [x for x in hf.get(API + "/proxies").json["items"] if x["id"] == "js-1"]
            self.assertEqual(p["kind"], "grpc")
            self.assertIn("Node", p["user_agent"])
            for t in ("lds", "cds", "eds"):
                self.assertEqual(p["types"][t]["acked_version"], p["types"][t]["sent_version"], t)
                self.assertIsNone(p["types"][t]["last_nack"], t)


if __name__ == "__main__":
    unittest.main(verbosity=2)
