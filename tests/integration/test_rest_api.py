"""Integration tests of the REST API against the real holdfast binary (DESIGN §7, issue 2):
every route, every error class with a check that nothing changed, auth, persistence across
kill -9, schema refusal, metrics and clean shutdown."""

import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import Holdfast  # noqa: E402

API = "/api/v1"

SERVICE = {
    "name": "cart", "proxy_group": "edge", "domains": ["cart.example.com"],
    "affinity": {"mode": "cookie", "cookie_name": "hf_cart", "ttl_s": 1800, "path": "/",
                 "strict": False},
    "health_check": {"protocol": "http", "path": "/healthz", "interval_ms": 2000,
                     "timeout_ms": 1000, "unhealthy_threshold": 3, "healthy_threshold": 2},
    "connection": {"max_connection_age_s": 3600, "drain_timeout_s": 30},
}


def populate(hf):
    """The README's walk-through: a group, a cookie service, blue and green with endpoints."""
    assert hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000}).status == 201
    assert hf.post(API + "/services", SERVICE).status == 201
    assert hf.post(API + "/services/cart/fleets", {
        "name": "blue", "version": "1.4.2", "session_format": "cart-v3", "role": "active"}).status == 201
    assert hf.post(API + "/services/cart/fleets", {
        "name": "green", "version": "1.5.0", "session_format": "cart-v3"}).status == 201
    for fleet, port in (("blue", 8081), ("blue", 8082), ("green", 8091)):
        r = hf.post(API + "/services/cart/fleets/%s/endpoints" % fleet,
                    {"address": "127.0.0.1", "port": port, "zone": "z1", "weight": 1})
        assert r.status == 201, r.body


class RoutesTest(unittest.TestCase):
    def setUp(self):
        self.hf = Holdfast().__enter__()
        self.addCleanup(self.hf.__exit__)

    def test_walkthrough_reads_back_what_was_written(self):
        hf = self.hf
        populate(hf)
        g = hf.get(API + "/proxy-groups/edge").json
        self.assertEqual(g["listener_port"], 10000)
        self.assertEqual(g["services"], ["cart"])
        self.assertRegex(g["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        s = hf.get(API + "/services/cart").json
        for key in ("name", "proxy_group", "domains", "affinity", "health_check"):
            if isinstance(SERVICE[key], dict):  # what was written, plus defaulted members
                self.assertEqual({k: s[key][k] for k in SERVICE[key]}, SERVICE[key], key)
            else:
                self.assertEqual(s[key], SERVICE[key], key)
        self.assertTrue(s["health_check"]["reuse_connection"])
        self.assertEqual(s["connection"]["max_connection_age_s"], 3600)
        self.assertEqual(s["connection"]["drain_timeout_s"], 30)
        fleets = {f["name"]: f for f in hf.get(API + "/services/cart/fleets").json["items"]}
        self.assertEqual(fleets["blue"]["role"], "active")
        self.assertEqual(fleets["green"]["role"], "standby")
        self.assertEqual(fleets["blue"]["session_format"], "cart-v3")
        e = hf.get(API + "/services/cart/fleets/blue/endpoints/127.0.0.1:8081").json
        self.assertEqual(e["id"], "127.0.0.1:8081")
        self.assertEqual((e["admin_state"], e["health"], e["zone"], e["weight"]),
                         ("active", "unknown", "z1", 1))
        eps = hf.get(API + "/services/cart/fleets/blue/endpoints").json["items"]
        self.assertEqual([x["id"] for x in eps], ["127.0.0.1:8081", "127.0.0.1:8082"])
        self.assertEqual(len(hf.get(API + "/proxy-groups").json["items"]), 1)
        self.assertEqual(len(hf.get(API + "/services?proxy_group=edge").json["items"]), 1)
        self.assertEqual(len(hf.get(API + "/services?proxy_group=other").json["items"]), 0)

    def test_defaults(self):
        hf = self.hf
        hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
        s = hf.post(API + "/services", {"name": "api", "proxy_group": "edge"}).json
        self.assertEqual(s["affinity"], {"mode": "cookie", "cookie_name": "hf_api", "ttl_s": 1800,
                                         "path": "/", "strict": False})
        self.assertEqual(s["health_check"]["interval_ms"], 2000)
        self.assertEqual(s["health_check"]["unhealthy_threshold"], 3)
        self.assertEqual(s["domains"], [])
        f = hf.post(API + "/services/api/fleets", {"name": "v1"}).json
        self.assertEqual(f["role"], "active")  # the first fleet is active
        e = hf.post(API + "/services/api/fleets/v1/endpoints",
                    {"address": "::0001", "port": 9000}).json
        self.assertEqual((e["id"], e["weight"], e["zone"]), ("[::1]:9000", 1, ""))
        self.assertEqual(hf.get(API + "/services/api/fleets/v1/endpoints/[::1]:9000").status, 200)

    def test_patch_and_delete(self):
        hf = self.hf
        populate(hf)
        r = hf.patch(API + "/services/cart", {"affinity": {"ttl_s": 300}, "domains": ["a.example.com"]})
        self.assertEqual(r.status, 200, r.body)
        s = hf.get(API + "/services/cart").json
        self.assertEqual(s["affinity"]["ttl_s"], 300)
        self.assertEqual(s["affinity"]["cookie_name"], "hf_cart")  # untouched members kept
        self.assertEqual(s["domains"], ["a.example.com"])
        self.assertGreater(s["updated_at"], s["created_at"])

        ep = API + "/services/cart/fleets/blue/endpoints/127.0.0.1:8081"
        for state in ("draining", "disabled", "active"):
            r = hf.patch(ep, {"admin_state": state})
            self.assertEqual(r.status, 200)
            self.assertEqual(hf.get(ep).json["admin_state"], state)
        self.assertEqual(hf.patch(ep, {"weight": 7, "zone": "z2"}).json["weight"], 7)

        # Hard switch: making green active demotes blue.
        r = hf.patch(API + "/services/cart/fleets/green", {"role": "active", "version": "1.5.1"})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(hf.get(API + "/services/cart/fleets/blue").json["role"], "standby")
        self.assertEqual(hf.get(API + "/services/cart/fleets/green").json["version"], "1.5.1")

        # A standby fleet goes with its endpoints; then the rest can be deleted in order.
        self.assertEqual(hf.delete(API + "/services/cart/fleets/blue").status, 204)
        self.assertEqual(hf.get(ep).status, 404)
        self.assertEqual(hf.delete(API + "/services/cart/fleets/green/endpoints/127.0.0.1:8091").status, 204)
        self.assertEqual(hf.get(API + "/services/cart/fleets/green/endpoints").json["items"], [])
        # green is active: it cannot go while it is the service's active fleet.
        self.assertEqual(hf.delete(API + "/services/cart/fleets/green").status, 409)

    def test_events_audit_log(self):
        hf = self.hf
        populate(hf)
        ev = hf.get(API + "/events?since=0&limit=1000").json
        actions = [e["action"] for e in ev["items"]]
        self.assertEqual(actions[:4], ["proxy_group.create", "service.create", "fleet.create", "fleet.create"])
        self.assertEqual(actions.count("endpoint.create"), 3)
        self.assertTrue(all(e["actor"] == "anonymous" for e in ev["items"]))
        last = ev["next_since"]
        self.assertEqual(hf.get(API + "/events?since=%d" % last).json["items"], [])
        hf.patch(API + "/services/cart/fleets/blue/endpoints/127.0.0.1:8081", {"admin_state": "draining"})
        newer = hf.get(API + "/events?since=%d" % last).json["items"]
        self.assertEqual(len(newer), 1)
        self.assertEqual(newer[0]["object"], "services/cart/fleets/blue/endpoints/127.0.0.1:8081")
        self.assertIn("draining", newer[0]["summary"])
        self.assertEqual(len(hf.get(API + "/events?since=0&limit=2").json["items"]), 2)
        self.assertEqual(hf.get(API + "/events?limit=5000").status, 422)
        self.assertEqual(hf.get(API + "/events?since=abc").status, 422)

    def test_health_ready_metrics(self):
        hf = self.hf
        self.assertEqual(hf.get("/healthz").json, {"status": "ok"})
        self.assertEqual(hf.get("/readyz").json["status"], "ready")
        populate(hf)
        hf.get(API + "/services/nope")
        m = hf.get("/metrics")
        self.assertTrue(m.headers["Content-Type"].startswith("text/plain"))
        text = m.body.decode()
        self.assertRegex(text, r'holdfast_http_requests_total\{method="POST",route="/api/v1/services",status="201"\} 1\b')
        self.assertRegex(text, r'holdfast_http_requests_total\{method="GET",route="/api/v1/services/\{service\}",status="404"\} 1\b')
        self.assertRegex(text, r'holdfast_http_request_seconds_bucket\{route="/api/v1/proxy-groups",le="\+Inf"\} \d+')
        self.assertRegex(text, r'holdfast_store_transaction_seconds_count\{result="commit"\} (\d+)')
        commits = int(re.search(r'holdfast_store_transaction_seconds_count\{result="commit"\} (\d+)', text).group(1))
        self.assertEqual(commits, 7)  # one transaction per change in populate()

    def test_sigterm_is_a_clean_shutdown(self):
        self.assertEqual(self.hf.stop(), 0)
        self.assertIn("stopped", self.hf.log())


class ErrorsChangeNothingTest(unittest.TestCase):
    """Every refused request returns the DESIGN §7 error object and leaves the state as it was."""

    @classmethod
    def setUpClass(cls):
        cls.hf = Holdfast().__enter__()
        populate(cls.hf)

    @classmethod
    def tearDownClass(cls):
        cls.hf.__exit__()

    def check(self, method, path, status, code, body=None, raw=None, field=None):
        before = self.hf.state()
        r = self.hf.request(method, path, body=body, raw=raw)
        self.assertEqual(r.status, status, "%s %s -> %s %s" % (method, path, r.status, r.body[:300]))
        err = r.json["error"]
        if code is not None:
            self.assertEqual(err["code"], code, r.body)
        self.assertTrue(err["message"])
        if field is not None:
            self.assertEqual(err.get("field"), field, r.body)
        self.assertEqual(self.hf.state(), before, "state changed by a refused %s %s" % (method, path))
        return err

    def test_malformed_json_400(self):
        for raw in (b"{", b"{\"name\":}", b"nope", b"{\"name\":\"a\",\"name\":\"b\"}",
                    b"\xff\xfe", b"{\"a\":1} trailing"):
            self.check("POST", API + "/proxy-groups", 400, "malformed_json", raw=raw)
        self.check("POST", API + "/proxy-groups", 400, "malformed_json")  # no body at all

    def test_unknown_fields_422(self):
        self.check("POST", API + "/proxy-groups", 422, "unknown_field",
                   {"name": "x", "listener_port": 1, "colour": "red"}, field="colour")
        self.check("POST", API + "/services", 422, "unknown_field",
                   dict(SERVICE, name="s2", domains=[], affinity={"mode": "cookie", "ttl": 5}),
                   field="affinity.ttl")
        self.check("PATCH", API + "/services/cart", 422, "unknown_field", {"foo": 1}, field="foo")
        self.check("PATCH", API + "/services/cart/fleets/blue", 422, "unknown_field", {"colour": 1})
        self.check("POST", API + "/services/cart/fleets/blue/endpoints", 422, "unknown_field",
                   {"address": "127.0.0.1", "port": 9999, "hostname": "x"}, field="hostname")
        self.check("POST", API + "/services/cart/fleets/blue/endpoints", 422, "invalid_field",
                   {"address": "127.0.0.1", "port": 9999, "health": "healthy"}, field="health")

    def test_invalid_values_422(self):
        svc = dict(SERVICE, name="s2", domains=["s2.example.com"])
        cases = [
            ("POST", API + "/proxy-groups", {"name": "Edge", "listener_port": 1}, "name"),
            ("POST", API + "/proxy-groups", {"name": "-x", "listener_port": 1}, "name"),
            ("POST", API + "/proxy-groups", {"name": "a" * 64, "listener_port": 1}, "name"),
            ("POST", API + "/proxy-groups", {"name": "x", "listener_port": 0}, "listener_port"),
            ("POST", API + "/proxy-groups", {"name": "x", "listener_port": 65536}, "listener_port"),
            ("POST", API + "/proxy-groups", {"name": "x"}, "listener_port"),
            ("POST", API + "/proxy-groups", {"name": "x", "listener_port": "80"}, "listener_port"),
            ("POST", API + "/proxy-groups", [1, 2], None),
            ("POST", API + "/services", dict(svc, affinity={"ttl_s": 0}), "affinity.ttl_s"),
            ("POST", API + "/services", dict(svc, affinity={"ttl_s": 604801}), "affinity.ttl_s"),
            ("POST", API + "/services", dict(svc, affinity={"mode": "sticky"}), "affinity.mode"),
            ("POST", API + "/services", dict(svc, health_check={"unhealthy_threshold": 11}), "health_check.unhealthy_threshold"),
            ("POST", API + "/services", dict(svc, health_check={"healthy_threshold": 0}), "health_check.healthy_threshold"),
            ("POST", API + "/services", dict(svc, health_check={"interval_ms": 99}), "health_check.interval_ms"),
            ("POST", API + "/services", dict(svc, health_check={"interval_ms": 300001}), "health_check.interval_ms"),
            ("POST", API + "/services", dict(svc, health_check={"interval_ms": 1000, "timeout_ms": 1000}), "health_check.timeout_ms"),
            ("POST", API + "/services", dict(svc, proxy_group="missing"), "proxy_group"),
            ("POST", API + "/services", dict(svc, domains=["Bad Domain"]), "domains"),
            ("POST", API + "/services", dict(svc, name="Bad"), "name"),
            ("PATCH", API + "/services/cart", {"name": "renamed"}, "name"),
            ("PATCH", API + "/services/cart", {"affinity": {"ttl_s": -5}}, "affinity.ttl_s"),
            ("POST", API + "/services/cart/fleets", {"name": "x", "role": "draining"}, "role"),
            ("POST", API + "/services/cart/fleets", {"name": "x", "role": "boss"}, "role"),
            ("PATCH", API + "/services/cart/fleets/green", {"role": "draining"}, "role"),
            ("POST", API + "/services/cart/fleets/blue/endpoints", {"address": "backend.local", "port": 80}, "address"),
            ("POST", API + "/services/cart/fleets/blue/endpoints", {"address": "127.0.0.1", "port": 0}, "port"),
            ("POST", API + "/services/cart/fleets/blue/endpoints", {"address": "127.0.0.1"}, "port"),
            ("POST", API + "/services/cart/fleets/blue/endpoints", {"address": "127.0.0.1", "port": 1, "weight": 0}, "weight"),
            ("PATCH", API + "/services/cart/fleets/blue/endpoints/127.0.0.1:8081", {"admin_state": "gone"}, "admin_state"),
            ("PATCH", API + "/services/cart/fleets/blue/endpoints/127.0.0.1:8081", {"port": 1}, "port"),
            ("POST", API + "/tokens", {"role": "root"}, "role"),
            ("POST", API + "/tokens", {"role": "viewer", "extra": 1}, "extra"),
        ]
        for method, path, body, field in cases:
            with self.subTest(path=path, body=body):
                err = self.check(method, path, 422, None, body)
                self.assertIn(err["code"], ("invalid_field", "unknown_field"))
                if field:
                    self.assertEqual(err.get("field"), field)

    def test_conflicts_409(self):
        self.check("POST", API + "/proxy-groups", 409, "conflict", {"name": "edge", "listener_port": 1})
        self.check("POST", API + "/services", 409, "conflict", SERVICE)
        self.check("POST", API + "/services", 409, "conflict",
                   dict(SERVICE, name="other"), field="domains")  # same domain, same group
        self.check("POST", API + "/services/cart/fleets", 409, "conflict", {"name": "blue"})
        self.check("POST", API + "/services/cart/fleets/green/endpoints", 409, "conflict",
                   {"address": "127.0.0.1", "port": 8081})  # already in blue
        self.check("DELETE", API + "/proxy-groups/edge", 409, "conflict")
        self.check("DELETE", API + "/services/cart", 409, "conflict")
        self.check("DELETE", API + "/services/cart/fleets/blue", 409, "conflict")  # active
        self.check("PATCH", API + "/services/cart/fleets/blue", 409, "conflict", {"role": "standby"})

    def test_domain_and_name_conflicts_409(self):
        """A host is routed to one service per proxy group: a service without domains is routed
        by its name (and a gRPC client resolves every service by its name), so a name and
        another service's domain collide too (issue 12 item 2). Both services are named."""
        other = dict(SERVICE, name="other", domains=[])
        err = self.check("POST", API + "/services", 409, "conflict",
                         dict(other, domains=["cart"]), field="domains")
        self.assertIn("'other'", err["message"])
        self.assertIn("'cart'", err["message"])
        self.assertEqual(self.hf.post(API + "/services", dict(other, domains=["x.example.com"])).status, 201)
        # PATCH: claiming the name of a service as a domain, or a domain of another
        err = self.check("PATCH", API + "/services/other", 409, "conflict", {"domains": ["cart"]},
                         field="domains")
        self.assertIn("'other'", err["message"])
        self.check("PATCH", API + "/services/other", 409, "conflict",
                   {"domains": ["x.example.com", "cart.example.com"]}, field="domains")
        # A new service whose name is already a domain of another (routed by name: a duplicate)
        self.assertEqual(self.hf.patch(API + "/services/other", {"domains": ["shop"]}).status, 200)
        err = self.check("POST", API + "/services", 409, "conflict",
                         dict(SERVICE, name="shop", domains=[]), field="name")
        self.assertIn("'shop'", err["message"])
        self.assertIn("'other'", err["message"])
        # Case never makes two equal hosts: upper case is refused; the wildcard is one per group.
        self.check("POST", API + "/services", 422, None,
                   dict(SERVICE, name="s3", domains=["CART.example.com"]), field="domains")
        self.assertEqual(self.hf.patch(API + "/services/other", {"domains": ["*"]}).status, 200)
        self.check("POST", API + "/services", 409, "conflict", dict(SERVICE, name="s3", domains=["*"]),
                   field="domains")
        # In another proxy group the same host is fine; a service may list its own name.
        self.assertEqual(self.hf.post(API + "/proxy-groups", {"name": "edge2", "listener_port": 10001}).status, 201)
        self.assertEqual(self.hf.post(API + "/services", dict(SERVICE, name="s3", proxy_group="edge2",
                                                               domains=["cart", "s3"])).status, 201)
        for name in ("s3", "other"):
            self.assertEqual(self.hf.delete(API + "/services/" + name).status, 204)
        self.assertEqual(self.hf.delete(API + "/proxy-groups/edge2").status, 204)

    def test_not_found_404(self):
        self.check("GET", API + "/proxy-groups/nope", 404, "not_found")
        self.check("GET", API + "/services/nope", 404, "not_found")
        self.check("PATCH", API + "/services/nope", 404, "not_found", {"domains": []})
        self.check("GET", API + "/services/nope/fleets", 404, "not_found")
        self.check("GET", API + "/services/cart/fleets/nope", 404, "not_found")
        self.check("POST", API + "/services/cart/fleets/nope/endpoints", 404, "not_found",
                   {"address": "127.0.0.1", "port": 1})
        self.check("GET", API + "/services/cart/fleets/blue/endpoints/127.0.0.1:1", 404, "not_found")
        self.check("GET", API + "/services/cart/fleets/blue/endpoints/garbage", 404, "not_found")
        self.check("DELETE", API + "/services/cart/fleets/blue/endpoints/127.0.0.1:1", 404, "not_found")
        self.check("DELETE", API + "/tokens/999", 404, "not_found")
        self.check("GET", API + "/nothing", 404, "not_found")
        self.check("GET", API + "/services/", 404, "not_found")

    def test_method_not_allowed_405(self):
        self.check("PUT", API + "/services/cart", 405, "method_not_allowed", {"name": "cart"})
        self.check("PATCH", API + "/proxy-groups/edge", 405, "method_not_allowed", {})

    def test_too_large_413(self):
        big = b'{"name":"x","listener_port":1,"pad":"' + b"a" * (1024 * 1024) + b'"}'
        self.check("POST", API + "/proxy-groups", 413, "too_large", raw=big)


class AuthTest(unittest.TestCase):
    def setUp(self):
        self.hf = Holdfast().__enter__()
        self.addCleanup(self.hf.__exit__)

    def make_token(self, role):
        r = self.hf.cli("token", "create", "--role", role, "--name", role, "--db", self.hf.db)
        self.assertEqual(r.returncode, 0, r.stderr)
        token = r.stdout.strip()
        self.assertRegex(token, r"^hf_[0-9a-f]{64}$")
        return token

    def test_open_until_first_token_then_roles(self):
        hf = self.hf
        self.assertEqual(hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000}).status, 201)
        admin = self.make_token("admin")
        operator = self.make_token("operator")
        viewer = self.make_token("viewer")
        # Tokens are stored hashed: the secret never appears in the database.
        self.assertNotIn(admin.encode(), hf.db_bytes())
        self.assertEqual(hf.get(API + "/proxy-groups", token="").status, 401)
        r = hf.get(API + "/proxy-groups", token="hf_" + "0" * 64)
        self.assertEqual((r.status, r.json["error"]["code"]), (401, "unauthorized"))
        self.assertIn("Bearer", r.headers["WWW-Authenticate"])
        self.assertEqual(hf.get(API + "/proxy-groups", token=viewer).status, 200)
        r = hf.post(API + "/services", {"name": "cart", "proxy_group": "edge"}, token=viewer)
        self.assertEqual((r.status, r.json["error"]["code"]), (403, "forbidden"))
        r = hf.post(API + "/services", {"name": "cart", "proxy_group": "edge"}, token=operator)
        self.assertEqual(r.status, 403)
        self.assertEqual(hf.post(API + "/services", {"name": "cart", "proxy_group": "edge"}, token=admin).status, 201)
        self.assertEqual(hf.post(API + "/services/cart/fleets", {"name": "blue"}, token=admin).status, 201)
        ep = {"address": "127.0.0.1", "port": 8081}
        self.assertEqual(hf.post(API + "/services/cart/fleets/blue/endpoints", ep, token=viewer).status, 403)
        self.assertEqual(hf.post(API + "/services/cart/fleets/blue/endpoints", ep, token=operator).status, 201)
        self.assertEqual(hf.patch(API + "/services/cart/fleets/blue/endpoints/127.0.0.1:8081",
                                  {"admin_state": "draining"}, token=operator).status, 200)
        self.assertEqual(hf.get(API + "/tokens", token=operator).status, 403)
        # Rolling restarts: a viewer may plan (dry run), only an operator may start one; the
        # route table decides that from the parsed body, before the handler runs.
        plan = {"service": "cart", "fleet": "blue", "avg_connection_s": 60, "dry_run": True}
        r = hf.post(API + "/restarts", plan, token=viewer)
        # (one instance cannot keep within the 5 % budget: the planner, not the role check, says so)
        self.assertEqual((r.status, r.json["error"]["field"]), (422, "max_disconnect_pct"))
        r = hf.post(API + "/restarts", dict(plan, dry_run=False), token=viewer)
        self.assertEqual((r.status, r.json["error"]["code"]), (403, "forbidden"))
        self.assertIn("operator", r.json["error"]["message"])
        r = hf.post(API + "/restarts", dict(plan, dry_run="yes"), token=viewer)  # not a dry run
        self.assertEqual(r.status, 403)
        r = hf.post(API + "/restarts", dict(plan, dry_run=False, bogus=1), token=operator)
        self.assertEqual((r.status, r.json["error"]["field"]), (422, "bogus"))
        # Routes that take no members refuse any (and need no body at all).
        r = hf.post(API + "/restarts/r-nope/pause", {"force": True}, token=operator)
        self.assertEqual((r.status, r.json["error"]["code"]), (422, "unknown_field"))
        self.assertEqual(hf.post(API + "/restarts/r-nope/pause", token=operator).status, 404)
        self.assertEqual(hf.post(API + "/restarts/r-nope/pause", token=viewer).status, 403)
        # Health and metrics stay open.
        self.assertEqual(hf.get("/healthz", token="").status, 200)
        self.assertEqual(hf.get("/readyz", token="").status, 200)
        self.assertEqual(hf.get("/metrics", token="").status, 200)
        # The audit log names the token that acted.
        events = hf.get(API + "/events?limit=1000", token=viewer).json["items"]
        self.assertEqual(events[-1]["action"], "endpoint.update")
        self.assertRegex(events[-1]["actor"], r"^token:\d+:operator$")

    def test_tokens_over_rest(self):
        hf = self.hf
        r = hf.post(API + "/tokens", {"role": "admin", "name": "root"})
        self.assertEqual(r.status, 201, r.body)
        admin = r.json["token"]
        self.assertEqual(hf.get(API + "/tokens", token="").status, 401)  # no longer open
        r = hf.post(API + "/tokens", {"role": "viewer"}, token=admin)
        viewer, viewer_id = r.json["token"], r.json["id"]
        listed = hf.get(API + "/tokens", token=admin).json["items"]
        self.assertEqual([t["role"] for t in listed], ["admin", "viewer"])
        self.assertNotIn("token", listed[0])  # secrets are never listed
        self.assertEqual(hf.get(API + "/services", token=viewer).status, 200)
        self.assertEqual(hf.delete(API + "/tokens/%d" % viewer_id, token=admin).status, 204)
        self.assertEqual(hf.get(API + "/services", token=viewer).status, 401)

    def test_token_cli_errors(self):
        r = self.hf.cli("token", "create", "--role", "root", "--db", self.hf.db)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--role", r.stderr)
        r = self.hf.cli("token", "list")
        self.assertEqual(r.returncode, 2)

    def test_non_loopback_requires_tokens(self):
        # Refused before any socket is bound: nothing listens outside loopback in this test.
        port = harness.free_port()
        r = self.hf.cli("--db", harness.fresh_db(self.hf.workdir, "other.db"), "--http",
                        "0.0.0.0:%d" % port)
        self.assertEqual(r.returncode, 1)
        self.assertIn("requires API tokens", r.stderr)


class DurabilityTest(unittest.TestCase):
    def test_acknowledged_writes_survive_kill_9(self):
        with Holdfast() as hf:
            hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
            hf.post(API + "/services", {"name": "cart", "proxy_group": "edge"})
            hf.post(API + "/services/cart/fleets", {"name": "blue"})
            for round_ in range(5):
                for i in range(10):
                    port = 9000 + round_ * 10 + i
                    r = hf.post(API + "/services/cart/fleets/blue/endpoints",
                                {"address": "127.0.0.1", "port": port})
                    self.assertEqual(r.status, 201)
                # SIGKILL right after the last 201: no chance to flush anything more.
                hf.kill9()
                hf.start()
                eps = hf.get(API + "/services/cart/fleets/blue/endpoints").json["items"]
                self.assertEqual(len(eps), (round_ + 1) * 10)
                self.assertEqual(eps[-1]["port"], 9000 + round_ * 10 + 9)
            events = hf.get(API + "/events?limit=1000").json["items"]
            self.assertEqual(len(events), 3 + 50)

    def test_newer_schema_is_refused(self):
        with Holdfast() as hf:
            hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
            self.assertEqual(hf.stop(), 0)
            hf.db_set_schema_version(99)
            hf.start(wait=False)
            hf.proc.wait(10)
            self.assertEqual(hf.proc.returncode, 1)
            self.assertIn("newer than this holdfast supports", hf.log())
            hf.stop()

    def test_cli_basics(self):
        r = subprocess.run([harness.HOLDFAST, "--version"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^holdfast \d+\.\d+\.\d+")
        r = subprocess.run([harness.HOLDFAST, "--help"], capture_output=True, text=True)
        for flag in ("--db", "--http", "--xds", "--log-level", "token create"):
            self.assertIn(flag, r.stdout)
        r = subprocess.run([harness.HOLDFAST, "--http", "nonsense"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        r = subprocess.run([harness.HOLDFAST, "--log-level", "loud"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        for bad in (["--xds-threads", "0"], ["--lrs-interval", "5"]):
            r = subprocess.run([harness.HOLDFAST, *bad], capture_output=True, text=True)
            self.assertEqual(r.returncode, 2, bad)
            self.assertIn(bad[0], r.stderr)
        # Every documented flag is accepted.
        with Holdfast() as hf2:
            hf2.stop()
            hf2.start(extra=["--xds-threads", "2", "--lrs-interval", "500"])
            self.assertEqual(hf2.get("/healthz").status, 200)


class RestartPlanTest(unittest.TestCase):
    def test_plan_reproduces_the_seed(self):
        with Holdfast() as hf:
            hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
            hf.post(API + "/services", {"name": "ws", "proxy_group": "edge",
                                        "connection": {"max_connection_age_s": 1800, "drain_timeout_s": 30}})
            hf.post(API + "/services/ws/fleets", {"name": "blue"})
            for i in range(20):
                hf.post(API + "/services/ws/fleets/blue/endpoints", {"address": "127.0.0.1", "port": 9000 + i})
            before = hf.state()
            r = hf.post(API + "/restarts", {"service": "ws", "fleet": "blue", "avg_connection_s": 2700,
                                            "max_disconnect_pct": 10, "dry_run": True})
            self.assertEqual(r.status, 200, r.body)
            p = r.json
            self.assertEqual((p["endpoints"], p["batch_size"], p["batches"]), (20, 2, 10))
            self.assertTrue(240 <= p["interval_s"] <= 360)      # about every 5 minutes
            self.assertTrue(55 * 60 <= p["total_s"] <= 85 * 60)  # about an hour
            self.assertIn("max connection age", p["explanation"])
            self.assertEqual(hf.state(), before)  # planning changes nothing
            for body, field in (({"service": "ws", "fleet": "blue", "avg_connection_s": 60, "max_disconnect_pct": 4,
                                  "dry_run": True}, "max_disconnect_pct"),  # under one endpoint's share
                                ({"service": "ws", "fleet": "blue", "avg_connection_s": 60}, "dry_run"),
                                ({"service": "ws", "fleet": "blue", "dry_run": True}, "avg_connection_s"),
                                ({"service": "ws", "fleet": "blue", "avg_connection_s": 60, "dry_run": True,
                                  "x": 1}, "x")):
                r = hf.post(API + "/restarts", body)
                self.assertEqual((r.status, r.json["error"].get("field")), (422, field), body)
            r = hf.post(API + "/restarts", {"service": "ws", "fleet": "nope", "avg_connection_s": 60, "dry_run": True})
            self.assertEqual(r.status, 404)


class OpenApiTest(unittest.TestCase):
    def test_document_parses_and_every_operation_has_responses(self):
        import yaml
        src = os.environ["HOLDFAST_SOURCE_DIR"]
        with open(os.path.join(src, "api", "openapi.yaml")) as f:
            doc = yaml.safe_load(f)
        self.assertTrue(doc["openapi"].startswith("3."))
        for path, item in doc["paths"].items():
            for method in ("get", "post", "patch", "delete"):
                if method in item:
                    self.assertTrue(item[method].get("responses"), "%s %s" % (method, path))


if __name__ == "__main__":
    harness.HOLDFAST = os.environ.get("HOLDFAST_BIN") or sys.argv.pop(1)
    unittest.main(verbosity=2)
