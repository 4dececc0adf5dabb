"""Hardening of the xDS side against hostile peers (issue 14 items 3, 7 and 8), against the real
holdfast binary and Debian's python3-grpcio. Each case names the attack it stops; each fails on
the code before the fix."""

import os
import resource
import queue
import socket
import stat
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import Holdfast  # noqa: E402
from adsclient import AdsClient, CDS, node  # noqa: E402
from envoy.service.discovery.v3 import discovery_pb2  # noqa: E402

API = "/api/v1"


def setup_world(hf):
    assert hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000}).status == 201
    assert hf.post(API + "/services", {"name": "cart", "proxy_group": "edge"}).status == 201


def first_cds(address, node_id, timeout=1.0):
    """Opens an ADS stream, asks for CDS and returns the first response (None when none came)."""
    c = AdsClient(address)
    try:
        c.request(CDS, node_=node(node_id, "edge"))
        return c.recv(timeout=timeout)
    except queue.Empty:
        return None
    finally:
        c.close()


def own_descriptors(n):
    """Raises this test process's own soft descriptor limit so that it can hold n sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            raise unittest.SkipTest("this process may hold only %d descriptors" % hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class DescriptorFloodTest(unittest.TestCase):
    """Item 3."""

    def test_ads_recovers_after_a_flood_past_the_descriptor_limit(self):
        # Attack: with 1,024 descriptors (a soft limit of 512 below), 1,100 idle TCP connections to the xDS port make gRPC
        # fail accept4 (EMFILE) and stop listening for good: no proxy can connect until a restart.
        own_descriptors(1100)
        with tempfile.TemporaryDirectory(prefix="hf-fd-") as tmp:
            wrapper = os.path.join(tmp, "holdfast-1024")
            with open(wrapper, "w") as f:
                f.write("#!/bin/sh\nulimit -Sn 512 && ulimit -Hn 1024 && exec '%s' \"$@\"\n"
                        % harness.HOLDFAST)
            os.chmod(wrapper, stat.S_IRWXU)
            real = harness.HOLDFAST
            harness.HOLDFAST = wrapper
            try:
                hf = Holdfast(workdir=tmp).start()
            finally:
                harness.HOLDFAST = real
            try:
                setup_world(hf)
                self.assertIsNotNone(first_cds(hf.xds, "before-1", timeout=5.0))
                flood = []
                for _ in range(1100):
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.setblocking(False)
                    s.connect_ex(("127.0.0.1", hf.xds_port))
                    flood.append(s)
                time.sleep(2.0)
                for s in flood:
                    s.close()
                t0 = time.monotonic()
                got = None
                while got is None and time.monotonic() - t0 < 5.0:
                    got = first_cds(hf.xds, "after-1", timeout=1.0)
                took = time.monotonic() - t0
                print("first ADS response %.2f s after a 1,100-connection flood closed "
                      "(descriptor limit 1,024)" % took)
                self.assertIsNotNone(got, "no ADS response within 5 s of the flood closing:\n"
                                     + hf.log()[-3000:])
                self.assertEqual(got.type_url, CDS)
                log = hf.log()
                self.assertNotIn("Failed accept4", log)
                self.assertIn("open files: soft limit 512, hard limit 1024, now 1024", log)
                self.assertEqual(hf.get("/healthz").status, 200)
            finally:
                hf.stop()


class PeerStringsTest(unittest.TestCase):
    """Items 7 and 8: what a proxy names itself and says in a NACK."""

    def test_invalid_utf8_node_id_listed_escaped_and_logged_on_one_line(self):
        # Attack: a node id with invalid UTF-8 (and a newline) hides the proxy from
        # /api/v1/proxies and forges a log line.
        with Holdfast() as hf:
            setup_world(hf)
            placeholder = "P" * 48
            req = discovery_pb2.DiscoveryRequest(type_url=CDS, node=node(placeholder, "edge"))
            evil = b"x\xff\xfe\n2026-01-01T00:00:00.000Z info main: FORGED"
            evil = evil + b"-" * (48 - len(evil))
            data = req.SerializeToString().replace(placeholder.encode(), evil)
            c = AdsClient(hf.xds, raw=True)
            try:
                c.send(data)
                self.assertIsNotNone(c.recv(timeout=5.0))
                items = hf.get(API + "/proxies").json["items"]
                ids = [p["id"] for p in items]
                self.assertEqual(len(items), 1, items)
                self.assertTrue(ids[0].startswith("x\\xff\\xfe\\x0a2026-01-01"), ids)
            finally:
                c.close()
            time.sleep(0.3)
            log = hf.log()
            self.assertFalse([line for line in log.splitlines()
                              if line.startswith("2026-01-01T00:00:00.000Z")], log[-2000:])

    def test_nack_message_cannot_forge_a_log_line(self):
        # Attack: a NACK's error_detail.message with a newline writes a forged log line.
        with Holdfast() as hf:
            setup_world(hf)
            c = AdsClient(hf.xds)
            try:
                c.request(CDS, node_=node("envoy-1", "edge"))
                r = c.recv(timeout=5.0)
                while not r.resources:  # a snapshot from before the service: wait for the next
                    r = c.recv(timeout=5.0)
                c.request(CDS, version="", nonce=r.nonce,
                          error="rejected\n2026-01-01T00:00:00.000Z error main: FORGED")
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    p = hf.get(API + "/proxies").json["items"]
                    if p and p[0]["types"]["cds"]["last_nack"]:
                        break
                    time.sleep(0.1)
                time.sleep(0.3)
            finally:
                c.close()
            log = hf.log()
            self.assertIn("rejected", log)
            self.assertFalse([line for line in log.splitlines()
                              if line.startswith("2026-01-01T00:00:00.000Z")], log[-2000:])


if __name__ == "__main__":
    unittest.main(verbosity=2)
