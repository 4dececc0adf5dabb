"""Hardening of what holdfast keeps on disk (issue 14 items 8 and 10), against the real binary
and a real SQLite file. Each case names the attack it stops; each fails on the code before the
fix."""

import os
import stat
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import Holdfast  # noqa: E402
from adsclient import AdsClient, CDS, node  # noqa: E402

API = "/api/v1"
CONN = ("proxy.connect", "proxy.disconnect")


def events(hf):
    out, since = [], 0
    while True:
        page = hf.get(API + "/events?since=%d&limit=1000" % since).json
        out += page["items"]
        if not page["items"]:
            return out
        since = page["next_since"]


def flap(hf, node_id, times):
    for _ in range(times):
        c = AdsClient(hf.xds)
        c.request(CDS, node_=node(node_id, "edge"))
        c.recv(timeout=5.0)
        c.close()


def wait_events(hf, pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        ev = events(hf)
        if pred(ev) or time.monotonic() > deadline:
            return ev
        time.sleep(0.2)


class DatabaseModeTest(unittest.TestCase):
    """Item 10."""

    def test_database_wal_and_shm_are_private(self):
        # Attack: another local user reads the database (token hashes, the whole configuration).
        old = os.umask(0o022)
        try:
            with Holdfast() as hf:
                self.assertEqual(hf.post(API + "/proxy-groups",
                                         {"name": "edge", "listener_port": 10000}).status, 201)
                for suffix in ("", "-wal", "-shm"):
                    mode = stat.S_IMODE(os.stat(hf.db + suffix).st_mode)
                    self.assertEqual(mode, 0o600, "%s%s is %o" % (hf.db, suffix, mode))
        finally:
            os.umask(old)


class AuditRetentionTest(unittest.TestCase):
    """Item 8 (audit rows)."""

    def test_flapping_proxy_cannot_grow_the_audit_log(self):
        # Attack: a proxy that connects and disconnects in a loop adds two rows per flap, without
        # bound.
        with Holdfast() as hf:
            self.assertEqual(hf.post(API + "/proxy-groups",
                                     {"name": "edge", "listener_port": 10000}).status, 201)
            flap(hf, "flapper", 200)
            flap(hf, "steady", 1)
            ev = wait_events(hf, lambda e: any(x["object"] == "proxies/steady" and
                                               x["action"] == "proxy.disconnect" for x in e))
            flapper = [e for e in ev if e["object"] == "proxies/flapper" and e["action"] in CONN]
            print("audit rows of a proxy after 200 flaps: %d" % len(flapper))
            self.assertLessEqual(len(flapper), 10, len(flapper))
            self.assertEqual(flapper[-1]["action"], "proxy.disconnect")  # the newest are kept
            self.assertEqual(len([e for e in ev if e["object"] == "proxies/steady"]), 2)
            self.assertEqual(len([e for e in ev if e["action"] not in CONN]), 1)  # the group

    def test_row_cap_prunes_connection_rows_first(self):
        # Attack: many distinct node ids (each within its per-peer bound) still fill the disk.
        with Holdfast() as hf:
            hf.stop()
            hf.start(extra=["--audit-retention", "100"])
            self.assertEqual(hf.post(API + "/proxy-groups",
                                     {"name": "edge", "listener_port": 10000}).status, 201)
            for i in range(200):
                flap(hf, "node-%d" % i, 1)
            ev = wait_events(hf, lambda e: any(x["object"] == "proxies/node-199" and
                                               x["action"] == "proxy.disconnect" for x in e))
            conn = [e for e in ev if e["action"] in CONN]
            other = [e for e in ev if e["action"] not in CONN]
            print("audit rows after 400 connection events with --audit-retention 100: %d"
                  % len(ev))
            self.assertLess(len(ev), 100 + 256, len(ev))
            self.assertLess(len(conn), 400)
            self.assertEqual(len(other), 1, other)  # the group's creation outlives them


if __name__ == "__main__":
    unittest.main(verbosity=2)
