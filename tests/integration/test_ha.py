"""High availability on PostgreSQL (docs/ha.md), with real processes: a real PostgreSQL 15
cluster started by the test (tests/pg/pgcluster.py), several holdfast replicas on one database,
real gRPC ADS streams and the fleet simulator (tests/sim) reporting load over real LRS.

- three replicas: a write on A reaches an ADS client connected to C; /api/v1/replicas shows them
- kill -9 the leader in the middle of a blue-green drain whose load is reported to another
  replica: a new leader is elected and the drain finishes by threshold
- SIGSTOP the leader: another replica takes over within the bound; the old one stops leading
- PostgreSQL stopped for 10 s under write load: proxies keep their configuration, writes get
  503, every acknowledged write is present afterwards, replicas serve again without a restart
- 8 clients writing through 3 replicas at once: no lost or duplicated objects
- holdfast db copy: a SQLite installation moved into an empty PostgreSQL database
- health checking across replicas: a killed backend is evicted when its two checkers are
  connected to two different replicas (the leader's quorum counts both); one checker alone
  evicts nothing; only the leader decides
"""

import os
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "sim"))
sys.path.insert(0, os.path.join(HERE, "..", "pg"))
import harness  # noqa: E402
from harness import Holdfast  # noqa: E402
from pgcluster import PgCluster  # noqa: E402
from adsclient import AdsClient, CDS, EDS, node, unpack  # noqa: E402
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: E402
from fleet_sim import FleetSim  # noqa: E402
from harness import Shim, free_port  # noqa: E402
from test_health import HttpBackend  # noqa: E402

API = "/api/v1"
FAILOVER_BOUND_S = 10.0


def wait_for(fn, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("condition not met within %ss" % timeout)


def eds_ports(resp):
    ports = set()
    for cla in unpack(resp, endpoint_pb2.ClusterLoadAssignment):
        for loc in cla.endpoints:
            for lb in loc.lb_endpoints:
                ports.add(lb.endpoint.address.socket_address.port_value)
    return ports


class Follower:
    """An ADS client that behaves like Envoy on one replica, in a thread: it ACKs everything and
    remembers the endpoint ports it holds and when each first appeared."""

    def __init__(self, xds, node_id):
        self.client = AdsClient(xds)
        self.client.request(CDS, node_=node(node_id, "edge"))
        self.ports = set()
        self.seen_at = {}
        self.responses = 0
        self.ended = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _update(self, latest):
        if EDS in latest:
            ports = eds_ports(latest[EDS])
            now = time.monotonic()
            for p in ports - self.ports:
                self.seen_at.setdefault(p, now)
            self.ports = ports
        self.responses += 1
        return False

    def _run(self):
        try:
            self.client.follow(self._update, timeout=3600)
        except Exception as e:  # the stream ended (close, or a failure the test checks)
            self.ended = e

    def close(self):
        self.client.close()
        self.thread.join(5)


class HaBase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster().start()

    @classmethod
    def tearDownClass(cls):
        cls.pg.destroy()

    def replicas(self, n, extra=("--lrs-interval", "200"), leader_first=True):
        """n holdfast processes on one new database; the first is made the leader."""
        name = "ha_%s" % self.id().rsplit(".", 1)[1][:40]
        url = self.pg.create_database(name)
        out = []
        for i in range(n):
            hf = Holdfast(db=url)
            hf.start(extra=list(extra))
            self.addCleanup(hf.__exit__)
            out.append(hf)
            if i == 0 and leader_first:
                wait_for(lambda: self.leader_of(hf) == "self", 10)
        return out

    def _ms(self, ts):
        import datetime
        return int(datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc).timestamp() * 1000)

    @staticmethod
    def leader_of(hf):
        """'self' when hf leads, the leader's id, or None (no leader known)."""
        try:
            r = hf.get(API + "/replicas")
        except OSError:
            return None
        if r.status != 200:
            return None
        for it in r.json["items"]:
            if it["leader"]:
                return "self" if it["self"] else it["id"]
        return None

    @staticmethod
    def setup_service(hf, ttl=4):
        assert hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000}).status == 201
        r = hf.post(API + "/services", {"name": "cart", "proxy_group": "edge",
                                        "affinity": {"mode": "cookie", "cookie_name": "hf_cart",
                                                     "ttl_s": ttl}})
        assert r.status == 201, r.body
        for fleet, base in (("blue", 9100), ("green", 9200)):
            assert hf.post(API + "/services/cart/fleets", {"name": fleet, "version": fleet}).status == 201
            for i in range(3):
                r = hf.post(API + "/services/cart/fleets/%s/endpoints" % fleet,
                            {"address": "127.0.0.1", "port": base + i})
                assert r.status == 201, r.body


class ReplicasTest(HaBase):
    def test_write_on_a_reaches_ads_client_on_c(self):
        a, b, c = self.replicas(3)
        items = wait_for(lambda: len(a.get(API + "/replicas").json["items"]) == 3
                         and a.get(API + "/replicas").json["items"], 5)
        self.assertEqual(sum(1 for it in items if it["leader"]), 1)
        self.assertTrue(all(it["alive"] for it in items))
        self.assertEqual({it["http_address"] for it in items}, {a.base, b.base, c.base})
        self.assertEqual(self.leader_of(b), self.leader_of(c))
        self.assertEqual(c.get("/readyz").json["database"], "postgresql")

        self.setup_service(a)
        f = Follower(c.xds, "envoy-on-c")
        self.addCleanup(f.close)
        wait_for(lambda: f.ports >= {9100, 9101, 9102}, 10)
        t0 = time.monotonic()
        r = a.post(API + "/services/cart/fleets/blue/endpoints", {"address": "127.0.0.1", "port": 9103})
        self.assertEqual(r.status, 201)
        wait_for(lambda: 9103 in f.ports, 5)
        print("write on A -> ADS client on C: %.1f ms" % ((f.seen_at[9103] - t0) * 1000))
        # And the other way round, removed on B.
        self.assertEqual(b.delete(API + "/services/cart/fleets/blue/endpoints/127.0.0.1:9100").status, 204)
        wait_for(lambda: 9100 not in f.ports, 5)
        # Every replica reads the same state, and filters the audit log alike (the UI's query).
        self.assertEqual(a.state(), c.state())
        for q in ("action=endpoint.", "service=cart", "object=services/cart/fleets/blue",
                  "action=proxy_group.create"):
            got = [e["id"] for e in c.get(API + "/events?" + q).json["items"]]
            self.assertTrue(got, q)
            self.assertEqual(got, [e["id"] for e in a.get(API + "/events?" + q).json["items"]], q)
        created = c.get(API + "/events?action=endpoint.create").json["items"]
        self.assertEqual(len(created), 7)
        self.assertTrue(all(e["action"] == "endpoint.create" for e in created))
        older = c.get(API + "/events?action=endpoint.create&before=%d&limit=2" % created[-1]["id"]).json["items"]
        self.assertEqual([e["id"] for e in older], [e["id"] for e in created[-3:-1]])

    def test_event_streams_follow_every_replica(self):
        from test_events_stream import Stream
        a, b, c = self.replicas(3, extra=())
        stream = Stream(c.http_port)
        self.addCleanup(stream.close)
        time.sleep(0.5)
        # A configuration change on A, an event-only transaction on B (a proxy connecting):
        # each reaches the stream on C at once, not at its next 10 s keep-alive.
        for i, (hf, what) in enumerate(((a, "proxy_group.create"), (b, "proxy.connect"), (a, "proxy_group.delete"))):
            t0 = time.monotonic()
            if what == "proxy_group.create":
                self.assertEqual(hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000}).status, 201)
            elif what == "proxy.connect":
                f = Follower(hf.xds, "envoy-on-b")
                self.addCleanup(f.close)
            else:
                self.assertEqual(hf.delete(API + "/proxy-groups/edge").status, 204)
            ok = stream.read_until(lambda buf, w=what: ('"action":"%s"' % w).encode() in buf.replace(b" ", b""), 2.0)
            self.assertTrue(ok, "%s on another replica did not reach the stream on C within 2 s" % what)
            print("%s: on C's event stream after %.0f ms" % (what, (time.monotonic() - t0) * 1000))
            time.sleep(1.0)

    def test_eight_writers_through_three_replicas(self):
        reps = self.replicas(3)
        self.setup_service(reps[0])
        results = {}
        lock = threading.Lock()

        def writer(i):
            hf = reps[i % 3]
            mine = []
            for k in range(15):
                port = 20000 + i * 100 + k
                r = hf.post(API + "/services/cart/fleets/blue/endpoints", {"address": "127.0.0.2", "port": port})
                mine.append((port, r.status))
            # Every writer also tries to create the same endpoint: exactly one may win.
            r = hf.post(API + "/services/cart/fleets/green/endpoints", {"address": "127.0.0.3", "port": 30000})
            mine.append((30000, r.status))
            with lock:
                results[i] = mine

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(len(results), 8)
        created = [p for v in results.values() for p, s in v if s == 201]
        statuses = {s for v in results.values() for _, s in v}
        self.assertTrue(statuses <= {201, 409}, statuses)
        self.assertEqual(created.count(30000), 1)
        self.assertEqual(len(created), 8 * 15 + 1)
        for hf in reps:
            blue = [e["port"] for e in hf.get(API + "/services/cart/fleets/blue/endpoints").json["items"]]
            green = [e["port"] for e in hf.get(API + "/services/cart/fleets/green/endpoints").json["items"]]
            self.assertEqual(sorted(blue + green), sorted(created + [9100, 9101, 9102, 9200, 9201, 9202]))
            self.assertEqual(len(set(blue + green)), len(blue + green))  # no duplicates
        events = reps[1].get(API + "/events?limit=1000").json["items"]
        ids = [e["id"] for e in events]
        self.assertEqual(ids, sorted(set(ids)))
        self.assertEqual(sum(1 for e in events if e["action"] == "endpoint.create"), len(created) + 6)


class FailoverTest(HaBase):
    def test_kill_9_leader_mid_drain(self):
        a, b, c = self.replicas(3)
        self.setup_service(a)
        # The simulated proxies report their load to B, not to the leader.
        sim = FleetSim(b.xds, "edge", "cart", nodes=3, arrivals_per_s=40, mean_session_s=3.0,
                       request_interval_s=0.1).start()
        self.addCleanup(sim.stop)
        time.sleep(1.0)
        d = c.post(API + "/deployments", {"service": "cart", "to_fleet": "green", "lowered_ttl_s": 2,
                                          "lead_s": 0, "force": True, "deadline_factor": 10}).json
        self.assertEqual(c.post(API + "/deployments/%s/lower-ttl" % d["id"]).status, 200)
        r = c.post(API + "/deployments/%s/cutover" % d["id"])
        self.assertEqual(r.status, 200, r.body)
        d = r.json
        # Samples are taken by the leader from B's reports.
        wait_for(lambda: len(b.get(API + "/deployments/" + d["id"]).json["tail"]) >= 2, 5)
        old = [it["id"] for it in a.get(API + "/replicas").json["items"] if it["self"]][0]
        t0 = time.monotonic()
        killed_ms = time.time() * 1000
        a.kill9()
        wait_for(lambda: self.leader_of(b) not in (None, old), FAILOVER_BOUND_S + 5)
        failover = time.monotonic() - t0
        print("leader failover after kill -9: %.2f s" % failover)
        self.assertLess(failover, FAILOVER_BOUND_S)
        done = wait_for(lambda: b.get(API + "/deployments/" + d["id"]).json["state"] == "completed"
                        and b.get(API + "/deployments/" + d["id"]).json, 30)
        self.assertEqual(done["finish_reason"], "threshold")
        # The new leader sampled the tail from B's reports after the kill, and finished on them.
        after = [s for s in done["tail"] if self._ms(s["t"]) > killed_ms and s["total_requests"] > 0]
        self.assertGreaterEqual(len(after), 3)
        # Whose reports: the 3 simulated proxies connected to B, counted by the leader elsewhere.
        self.assertTrue(all(s["reporters"] <= 3 and s["connected_proxies"] == 3 for s in after), after)
        self.assertEqual(max(s["reporters"] for s in after), 3)
        roles = {f["name"]: f["role"] for f in c.get(API + "/services/cart/fleets").json["items"]}
        self.assertEqual(roles, {"blue": "retired", "green": "active"})

    def test_hung_leader_is_replaced_and_fenced(self):
        import signal
        a, b = self.replicas(2, extra=())
        t0 = time.monotonic()
        a.proc.send_signal(signal.SIGSTOP)
        try:
            wait_for(lambda: self.leader_of(b) == "self", FAILOVER_BOUND_S + 2)
            hung = time.monotonic() - t0
            print("leader failover after SIGSTOP: %.2f s" % hung)
            self.assertLess(hung, FAILOVER_BOUND_S)
        finally:
            a.proc.send_signal(signal.SIGCONT)
        # Resumed, the old leader knows it no longer leads.
        wait_for(lambda: a.get("/readyz").json.get("leader") is False, 5)
        self.assertEqual(self.leader_of(a), self.leader_of(b) and [
            it["id"] for it in b.get(API + "/replicas").json["items"] if it["self"]][0])


class OutageTest(HaBase):
    def test_postgresql_stopped_for_10_s_under_write_load(self):
        a, b = self.replicas(2, extra=())
        self.setup_service(a)
        f = Follower(b.xds, "envoy-on-b")
        self.addCleanup(f.close)
        wait_for(lambda: f.ports >= {9100, 9101, 9102}, 10)
        acked, refused, other = [], [], []
        stop = threading.Event()

        def writer():
            port = 40000
            while not stop.is_set():
                try:
                    r = a.post(API + "/services/cart/fleets/blue/endpoints", {"address": "127.0.0.4", "port": port})
                except OSError as e:
                    other.append(str(e))
                    time.sleep(0.05)
                    continue
                if r.status == 201:
                    acked.append(port)
                    port += 1
                elif r.status == 503:
                    refused.append(r.json["error"]["code"])
                    time.sleep(0.05)
                else:
                    other.append((r.status, r.body))
                    port += 1  # (a 409 would mean the unacknowledged write did commit)
                time.sleep(0.01)

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        time.sleep(1.0)
        held = set(f.ports)
        stopped_ms = time.time() * 1000
        self.pg.stop(mode="fast")
        try:
            down = time.monotonic()
            wait_for(lambda: refused, 5)
            self.assertEqual(a.get("/readyz").status, 503)
            ready = b.get("/readyz").json
            self.assertEqual(ready.get("reason"), "the database is unavailable")
            # since when: the replica's first failed contact, not the time of this request
            since = ready["unavailable_since"]
            self.assertEqual(b.get("/readyz").json["unavailable_since"], since)
            self.assertTrue(stopped_ms - 1000 <= self._ms(since) <= time.time() * 1000, since)
            self.assertEqual(a.get(API + "/services").status, 503)
            time.sleep(max(0, 10 - (time.monotonic() - down)))
            # Fail static: the proxy's stream is up and it holds what it had.
            self.assertIsNone(f.ended)
            self.assertTrue(held <= f.ports)
        finally:
            self.pg.start()
        n_before = len(acked)
        wait_for(lambda: len(acked) > n_before + 5, 20)
        stop.set()
        t.join(10)
        self.assertEqual(set(refused), {"unavailable"})
        self.assertEqual(other, [])
        wait_for(lambda: a.get("/readyz").status == 200 and b.get("/readyz").status == 200, 10)
        for hf in (a, b):
            ports = {e["port"] for e in hf.get(API + "/services/cart/fleets/blue/endpoints").json["items"]}
            self.assertTrue(set(acked) <= ports, set(acked) - ports)
        # The proxy on B got the writes made after the outage, without a restart.
        wait_for(lambda: set(acked) <= f.ports, 10)
        print("outage: %d writes acknowledged, %d refused with 503" % (len(acked), len(refused)))


class CopyTest(HaBase):
    def test_db_copy_moves_a_sqlite_installation(self):
        import tempfile
        tmp = tempfile.TemporaryDirectory(prefix="hf-copy-")
        self.addCleanup(tmp.cleanup)
        path = os.path.join(tmp.name, "holdfast.db")
        with Holdfast(db=path) as hf:
            self.setup_service(hf)
            hf.post(API + "/deployments", {"service": "cart", "to_fleet": "green"})
            r = hf.cli("token", "create", "--role", "admin", "--name", "ops", "--db", path)
            self.assertEqual(r.returncode, 0, r.stderr)
            hf.token = r.stdout.strip()
            before = hf.state()
            before_deps = hf.get(API + "/deployments").json["items"]
        url = self.pg.create_database("copy_dst")
        r = Holdfast(db=path).cli("db", "copy", "--from", path, "--to", url)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("events", r.stdout)
        self.assertRegex(r.stdout, r"endpoints\s+6 rows")
        with Holdfast(db=url) as pg:
            pg.token = hf.token  # the token (stored hashed) was copied too
            self.assertEqual(pg.state(), before)
            self.assertEqual(pg.get(API + "/deployments").json["items"], before_deps)
            # New rows get new ids after the copied ones.
            r = pg.post(API + "/services/cart/fleets/blue/endpoints", {"address": "127.0.0.1", "port": 9109})
            self.assertEqual(r.status, 201, r.body)
            self.assertGreater(pg.get(API + "/events?limit=1000").json["items"][-1]["id"],
                               before["events"][-1]["id"])
        # Into a database that is not empty: refused, nothing changed.
        r = Holdfast(db=path).cli("db", "copy", "--from", path, "--to", url)
        self.assertEqual(r.returncode, 1)
        self.assertIn("not empty", r.stderr)
        r = Holdfast(db=path).cli("db", "copy", "--from", path + ".missing", "--to", url)
        self.assertEqual(r.returncode, 1)
        self.assertFalse(os.path.exists(path + ".missing"))


class HealthAcrossReplicasTest(HaBase):
    """Two shims (k = 2) connected to two different replicas: the leader assigns both to every
    endpoint, counts both verdicts, and decides alone."""

    def health(self, hf):
        return {e["port"]: e for e in hf.get(API + "/health").json["endpoints"]}

    def test_killed_backend_evicted_with_checkers_on_two_replicas(self):
        a, b = self.replicas(2, extra=())
        hc = {"interval_ms": 300, "timeout_ms": 200, "unhealthy_threshold": 2,
              "healthy_threshold": 1, "protocol": "http", "path": "/healthz"}
        assert b.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000}).status == 201
        r = b.post(API + "/services", {"name": "web", "proxy_group": "edge", "health_check": hc})
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(b.post(API + "/services/web/fleets", {"name": "blue"}).status, 201)
        ports = [free_port() for _ in range(3)]
        # the third backend refuses shim-b only: one checker (on the replica that does not lead)
        backends = [HttpBackend(ports[0]), HttpBackend(ports[1]),
                    HttpBackend(ports[2], refuse_agent="holdfast-shim/shim-b")]
        self.addCleanup(lambda: [x.stop() for x in backends])
        for p in ports:
            r = b.post(API + "/services/web/fleets/blue/endpoints", {"address": "127.0.0.1", "port": p})
            self.assertEqual(r.status, 201, r.body)
        shims = [Shim(a.xds, "shim-a", "z1", a.workdir), Shim(b.xds, "shim-b", "z2", b.workdir)]
        self.addCleanup(lambda: [s.stop() for s in shims])
        # Every replica lists both checkers, each on its own replica.
        for hf in (a, b):
            wait_for(lambda: sorted(c["node_id"] for c in hf.get(API + "/health").json["checkers"])
                     == ["shim-a", "shim-b"], 10)
        # Both are assigned every endpoint, and both verdicts reach the database.
        for hf in (a, b):  # the leader's table; the other replica mirrors the stored specifiers
            wait_for(lambda: all(sorted(e["checkers"]) == ["shim-a", "shim-b"]
                                 for e in self.health(hf).values()), 10)
        wait_for(lambda: all(e["health"] == "healthy" for p, e in self.health(b).items() if p != ports[2]), 10)
        wait_for(lambda: {v["checker"]: v["verdict"] for v in self.health(b)[ports[2]]["verdicts"]}
                 == {"shim-a": "healthy", "shim-b": "unhealthy"}, 10)
        time.sleep(1.0)
        self.assertNotEqual(self.health(b)[ports[2]]["health"], "unhealthy")  # one of two: no quorum
        # A killed backend: evicted by the leader on the verdicts of both replicas' checkers.
        t0 = time.monotonic()
        backends[1].stop()
        wait_for(lambda: self.health(b)[ports[1]]["health"] == "unhealthy", 10)
        print("eviction with checkers on two replicas: %.0f ms" % ((time.monotonic() - t0) * 1000))
        e = self.health(a)[ports[1]]
        self.assertEqual({v["checker"]: v["verdict"] for v in e["verdicts"]},
                         {"shim-a": "unhealthy", "shim-b": "unhealthy"})
        evicts = [ev for ev in b.get(API + "/events?limit=1000").json["items"]
                  if ev["action"] == "endpoint.evict"]
        self.assertEqual(len(evicts), 1, evicts)  # decided once, by the leader
        self.assertIn("2 of 2 assigned checkers", evicts[0]["summary"])
        self.assertIn("evicted", a.log())
        self.assertNotIn("evicted 127.0.0.1", b.log())
        # Back: restored the same way.
        backends[1] = HttpBackend(ports[1])
        wait_for(lambda: self.health(b)[ports[1]]["health"] == "healthy", 10)
        # The leader dies: the other replica takes the quorum over with its own checker only
        # (shim-a's replica is gone), and a killed backend is still evicted.
        a.kill9()
        shims[0].stop(sig=9)
        wait_for(lambda: self.leader_of(b) == "self", FAILOVER_BOUND_S + 2)
        wait_for(lambda: self.health(b)[ports[0]]["checkers"] == ["shim-b"], 10)
        backends[0].stop()
        wait_for(lambda: self.health(b)[ports[0]]["health"] == "unhealthy", 10)


if __name__ == "__main__":
    unittest.main(verbosity=2)
