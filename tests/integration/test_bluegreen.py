"""Blue-green deployments end to end, by REST alone, with the fleet simulator (tests/sim, a
simulation of Envoy nodes on real ADS and LRS) making traffic: plan -> lower TTL -> wait for
unlock -> cutover -> the tail decays in real load reports -> auto-finish -> blue retired, TTL
restored; rollback mid-drain; the session-format gate; 409s; kill -9 mid-drain."""

import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "sim"))
from harness import Holdfast  # noqa: E402
from fleet_sim import FleetSim  # noqa: E402

API = "/api/v1"
NORMAL_TTL = 4   # seconds: the seed's 30 minutes, scaled
LOWERED_TTL = 1  # the seed's 5 minutes, scaled


def setup_service(hf, blue_format="cart-v3", green_format="cart-v3"):
    assert hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000}).status == 201
    assert hf.post(API + "/services", {"name": "cart", "proxy_group": "edge",
                                       "affinity": {"mode": "cookie", "cookie_name": "hf_cart",
                                                    "ttl_s": NORMAL_TTL}}).status == 201
    hf.post(API + "/services/cart/fleets", {"name": "blue", "version": "1", "session_format": blue_format})
    hf.post(API + "/services/cart/fleets", {"name": "green", "version": "2", "session_format": green_format})
    for fleet, base in (("blue", 9100), ("green", 9200)):
        for i in range(3):
            r = hf.post(API + "/services/cart/fleets/%s/endpoints" % fleet,
                        {"address": "127.0.0.1", "port": base + i, "zone": "z%d" % (i % 2)})
            assert r.status == 201, r.body


def wait_for(fn, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("condition not met within %ss" % timeout)


class BlueGreenTest(unittest.TestCase):
    def start(self, **kw):
        self.hf = Holdfast()
        self.hf.start(extra=["--lrs-interval", "200"])
        self.addCleanup(self.hf.__exit__)
        setup_service(self.hf, **kw)
        self.sim = FleetSim(self.hf.xds, "edge", "cart", nodes=3, arrivals_per_s=40,
                            mean_session_s=3.0, request_interval_s=0.1).start()
        self.addCleanup(self.sim.stop)
        time.sleep(1.0)  # sessions build up on blue

    def dep(self, dep_id):
        return self.hf.get(API + "/deployments/" + dep_id).json

    def act(self, dep_id, action, body=None, status=200):
        r = self.hf.post(API + "/deployments/%s/%s" % (dep_id, action), body)
        self.assertEqual(r.status, status, r.body)
        return r.json

    def roles(self):
        return {f["name"]: f["role"] for f in self.hf.get(API + "/services/cart/fleets").json["items"]}

    def sim_ttl(self):
        return {n.cookie_ttl.get("cart") for n in self.sim.nodes}

    def test_full_blue_green_finishes_by_itself(self):
        self.start()
        self.assertEqual(set(self.sim.take_window()), {"blue"})
        r = self.hf.post(API + "/deployments", {"service": "cart", "to_fleet": "green",
                                               "lowered_ttl_s": LOWERED_TTL, "lead_s": NORMAL_TTL})
        self.assertEqual(r.status, 201, r.body)
        d = r.json
        self.assertEqual((d["state"], d["from_fleet"], d["warnings"]), ("planned", "blue", []))
        self.assertEqual(self.hf.post(API + "/deployments", {"service": "cart", "to_fleet": "green"}).status, 409)

        d = self.act(d["id"], "lower-ttl")
        self.assertEqual(d["state"], "ttl_lowered")
        wait_for(lambda: self.sim_ttl() == {LOWERED_TTL}, 3)  # every node got the lowered TTL
        self.assertEqual(self.hf.get(API + "/services/cart").json["ttl_in_force_s"], LOWERED_TTL)
        r = self.hf.post(API + "/deployments/%s/cutover" % d["id"])
        self.assertEqual(r.status, 409)  # before cutover_unlocks_at
        self.assertIn("unlocks", r.json["error"]["message"])
        wait_for(lambda: time.time() * 1000 > self._ms(d["cutover_unlocks_at"]), NORMAL_TTL + 2)
        d = self.act(d["id"], "cutover")
        self.assertEqual((d["state"], d["draining_fleet"]), ("draining", "blue"))
        self.assertEqual(self.roles(), {"blue": "draining", "green": "active"})

        done = wait_for(lambda: self.dep(d["id"])["state"] == "completed" and self.dep(d["id"]), 15)
        self.assertEqual(done["finish_reason"], "threshold")
        self.assertLess(done["final_tail_pct"], done["tail_threshold_pct"])
        tail = [s for s in done["tail"] if s["t"] >= done["cutover_at"]]
        self.assertGreaterEqual(len(tail), 3)
        self.assertGreater(tail[0]["total_requests"], 0)  # measured from real load reports
        # Whose reports: some of the 3 simulated nodes in each sample, all 3 in some.
        self.assertTrue(all(1 <= s["reporters"] <= 3 and s["connected_proxies"] == 3 for s in tail), tail)
        self.assertEqual(max(s["reporters"] for s in tail), 3)
        self.assertGreater(max(s["pct"] for s in tail), done["tail_threshold_pct"])  # a real tail
        self.assertTrue(all(s["pct"] < 2 for s in tail[-3:]))
        self.assertEqual(self.roles(), {"blue": "retired", "green": "active"})
        self.assertEqual(self.hf.get(API + "/services/cart").json["ttl_in_force_s"], NORMAL_TTL)
        wait_for(lambda: self.sim_ttl() == {NORMAL_TTL}, 3)
        self.sim.take_window()
        time.sleep(0.5)
        self.assertEqual(set(self.sim.take_window()), {"green"})  # blue left EDS
        events = [e["action"] for e in self.hf.get(API + "/events?limit=1000").json["items"]]
        for a in ("deployment.plan", "deployment.lower_ttl", "deployment.cutover", "deployment.complete"):
            self.assertIn(a, events)

    def test_rollback_mid_drain_drains_back(self):
        self.start()
        d = self.hf.post(API + "/deployments", {"service": "cart", "to_fleet": "green", "lowered_ttl_s": LOWERED_TTL,
                                               "lead_s": 0, "force": True}).json
        self.assertTrue(any("shorter than the normal TTL" in w for w in d["warnings"]))
        self.act(d["id"], "lower-ttl")
        d = self.act(d["id"], "cutover")
        time.sleep(0.6)  # green takes new sessions
        d = self.act(d["id"], "rollback")
        self.assertEqual((d["state"], d["draining_fleet"]), ("rolling_back", "green"))
        self.assertEqual(self.roles(), {"blue": "active", "green": "draining"})
        done = wait_for(lambda: self.dep(d["id"])["state"] == "rolled_back" and self.dep(d["id"]), 15)
        self.assertIn(done["finish_reason"], ("threshold", "deadline"))
        self.assertEqual(self.roles(), {"blue": "active", "green": "standby"})
        self.assertEqual(self.hf.get(API + "/services/cart").json["ttl_in_force_s"], NORMAL_TTL)

    def test_format_gate(self):
        self.start(green_format="cart-v4")
        d = self.hf.post(API + "/deployments", {"service": "cart", "to_fleet": "green", "lowered_ttl_s": LOWERED_TTL,
                                               "lead_s": NORMAL_TTL}).json
        self.assertTrue(d["session_format_change"])
        self.assertEqual(d["tail_threshold_pct"], 1.0)  # lower by default
        self.assertTrue(any("session format" in w for w in d["warnings"]))
        self.act(d["id"], "lower-ttl")
        r = self.hf.post(API + "/deployments/%s/cutover" % d["id"], {"force": True})
        self.assertEqual(r.status, 409)
        self.assertEqual(r.json["error"]["field"], "acknowledge_format_change")
        d = self.act(d["id"], "cutover", {"force": True, "acknowledge_format_change": True})
        self.assertEqual(self._ms(d["min_finish_at"]) - self._ms(d["cutover_at"]), LOWERED_TTL * 1000)
        done = wait_for(lambda: self.dep(d["id"])["state"] == "completed" and self.dep(d["id"]), 15)
        self.assertGreaterEqual(self._ms(done["finished_at"]), self._ms(d["min_finish_at"]))
        # Formats declared compatible: no gate (back to the retired blue fleet, cart-v3).
        self.hf.patch(API + "/services/cart", {"compatible_session_formats": ["cart-v3", "cart-v4"]})
        r = self.hf.post(API + "/deployments", {"service": "cart", "to_fleet": "blue", "lowered_ttl_s": 1,
                                               "lead_s": NORMAL_TTL})
        self.assertEqual(r.status, 201, r.body)
        self.assertFalse(r.json["session_format_change"])
        self.assertEqual(r.json["tail_threshold_pct"], 2.0)

    def test_refusals(self):
        self.start()
        bad = [({"service": "cart", "to_fleet": "blue"}, 422, "to_fleet"),       # already active
               ({"service": "cart", "to_fleet": "nope"}, 422, "to_fleet"),
               ({"service": "nope", "to_fleet": "green"}, 422, "service"),
               ({"service": "cart", "to_fleet": "green", "lowered_ttl_s": 99}, 422, "lowered_ttl_s"),
               ({"service": "cart", "to_fleet": "green", "lead_s": 1}, 422, "lead_s"),
               ({"service": "cart", "to_fleet": "green", "tail_threshold_pct": 9}, 422, "tail_threshold_pct"),
               ({"service": "cart", "to_fleet": "green", "colour": 1}, 422, "colour"),
               ({"to_fleet": "green"}, 422, "service")]
        for body, status, field in bad:
            r = self.hf.post(API + "/deployments", body)
            self.assertEqual((r.status, r.json["error"].get("field")), (status, field), body)
        self.assertEqual(self.hf.get(API + "/deployments").json["items"], [])
        d = self.hf.post(API + "/deployments", {"service": "cart", "to_fleet": "green"}).json
        self.assertEqual(self.hf.post(API + "/deployments/%s/finish" % d["id"]).status, 409)
        self.assertEqual(self.hf.post(API + "/deployments/%s/cutover" % d["id"]).status, 409)
        self.assertEqual(self.hf.post(API + "/deployments/%s/jump" % d["id"]).status, 404)
        self.assertEqual(self.hf.post(API + "/deployments/%s/lower-ttl" % d["id"], {"x": 1}).status, 422)
        self.assertEqual(self.hf.delete(API + "/services/cart/fleets/green").status, 409)
        self.assertEqual(self.hf.patch(API + "/services/cart/fleets/green", {"role": "active"}).status, 409)
        d = self.act(d["id"], "abort")
        self.assertEqual((d["state"], d["finish_reason"]), ("aborted", "aborted"))
        self.assertEqual(self.hf.post(API + "/deployments/%s/abort" % d["id"]).status, 409)
        self.assertEqual(self.hf.get(API + "/deployments/d-0000").status, 404)

    def test_kill_9_mid_drain_continues(self):
        self.start()
        d = self.hf.post(API + "/deployments", {"service": "cart", "to_fleet": "green", "lowered_ttl_s": 2,
                                               "lead_s": 0, "force": True, "deadline_factor": 5}).json
        self.act(d["id"], "lower-ttl")
        d = self.act(d["id"], "cutover")
        time.sleep(0.5)
        self.hf.kill9()
        time.sleep(0.5)
        self.hf.start(extra=["--lrs-interval", "200"], keep_ports=True)
        self.assertEqual(self.dep(d["id"])["state"], "draining")
        done = wait_for(lambda: self.dep(d["id"])["state"] == "completed" and self.dep(d["id"]), 20)
        self.assertEqual(self.roles(), {"blue": "retired", "green": "active"})
        after = [s for s in done["tail"] if self._ms(s["t"]) > self._ms(d["cutover_at"]) + 1000]
        self.assertTrue(after, "samples after the restart, from the reconnected nodes' reports")

    @staticmethod
    def _ms(ts):
        import datetime
        return int(datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc).timestamp() * 1000)


if __name__ == "__main__":
    unittest.main(verbosity=2)
