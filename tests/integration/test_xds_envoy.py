"""The xDS server seen by a client that identifies as Envoy: every resource decoded with the
official Envoy protos and checked field by field against DESIGN §3, and the protocol rules of
Envoy's xDS document (ACK/NACK, nonces, versions, make-before-break, delta, bad input)."""

import os
import queue
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Holdfast  # noqa: E402
from adsclient import (AdsClient, CDS, EDS, LDS, RDS, node, unpack, cluster_pb2,  # noqa: E402
                       endpoint_pb2, listener_pb2, route_pb2, discovery_pb2)
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2  # noqa: E402
from envoy.extensions.filters.http.stateful_session.v3 import stateful_session_pb2  # noqa: E402
from envoy.extensions.http.stateful_session.cookie.v3 import cookie_pb2  # noqa: E402
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: E402
from envoy.config.core.v3 import health_check_pb2  # noqa: E402
import grpc  # noqa: E402

API = "/api/v1"
HS = health_check_pb2


def setup_world(hf):
    """edge: cart (cookie, TTL 1800, max age 3600, drain 30) with blue active (2 endpoints in
    two zones, one draining, one disabled) and green standby; search (hash_cookie)."""
    ok = lambda r: r.status in (200, 201) or (_ for _ in ()).throw(AssertionError(r.body))  # noqa: E731
    ok(hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000}))
    ok(hf.post(API + "/services", {
        "name": "cart", "proxy_group": "edge", "domains": ["cart.example.com", "shop.example.com"],
        "affinity": {"mode": "cookie", "cookie_name": "hf_cart", "ttl_s": 1800, "path": "/",
                     "strict": True},
        "connection": {"max_connection_age_s": 3600, "drain_timeout_s": 30}}))
    ok(hf.post(API + "/services", {
        "name": "search", "proxy_group": "edge", "domains": ["search.example.com"],
        "affinity": {"mode": "hash_cookie", "cookie_name": "hf_s", "ttl_s": 600, "path": "/q"}}))
    ok(hf.post(API + "/services/cart/fleets", {"name": "blue", "version": "1.4.2",
                                              "session_format": "cart-v3"}))
    ok(hf.post(API + "/services/cart/fleets", {"name": "green", "version": "1.5.0"}))
    ok(hf.post(API + "/services/search/fleets", {"name": "v1", "version": "7"}))
    for fleet, port, zone in (("blue", 8081, "z1"), ("blue", 8082, "z2"), ("blue", 8083, "z1"),
                              ("blue", 8084, "z1"), ("green", 8091, "z1")):
        ok(hf.post(API + "/services/cart/fleets/%s/endpoints" % fleet,
                   {"address": "127.0.0.1", "port": port, "zone": zone, "weight": 2}))
    ok(hf.patch(API + "/services/cart/fleets/blue/endpoints/127.0.0.1:8083", {"admin_state": "draining"}))
    ok(hf.patch(API + "/services/cart/fleets/blue/endpoints/127.0.0.1:8084", {"admin_state": "disabled"}))
    ok(hf.post(API + "/services/search/fleets/v1/endpoints", {"address": "10.0.0.7", "port": 80}))


def subscribe_all(c, node_id="envoy-1", group="edge"):
    """Does what Envoy does on a fresh stream; returns the first response of each type."""
    got = {}
    c.request(CDS, node_=node(node_id, group))
    got[CDS] = c.recv()
    c.ack(got[CDS])
    clusters = sorted(x.name for x in unpack(got[CDS], cluster_pb2.Cluster))
    c.request(EDS, clusters)
    got[EDS] = c.recv()
    c.ack(got[EDS], clusters)
    c.request(LDS)
    got[LDS] = c.recv()
    c.ack(got[LDS])
    c.request(RDS, ["edge"])
    got[RDS] = c.recv()
    c.ack(got[RDS], ["edge"])
    return got


class EnvoyResourcesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hf = Holdfast().__enter__()
        setup_world(cls.hf)
        cls.c = AdsClient(cls.hf.xds)
        cls.got = subscribe_all(cls.c)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        cls.hf.__exit__()

    def test_listener(self):
        (ls,) = unpack(self.got[LDS], listener_pb2.Listener)
        self.assertEqual(ls.name, "edge")
        self.assertEqual(ls.address.socket_address.address, "0.0.0.0")
        self.assertEqual(ls.address.socket_address.port_value, 10000)
        (chain,) = ls.filter_chains
        (f,) = chain.filters
        self.assertEqual(f.name, "envoy.filters.network.http_connection_manager")
        h = hcm_pb2.HttpConnectionManager()
        self.assertTrue(f.typed_config.Unpack(h))
        self.assertEqual(h.rds.route_config_name, "edge")
        self.assertTrue(h.rds.config_source.HasField("ads"))
        self.assertEqual(h.rds.config_source.resource_api_version, 2)  # V3
        self.assertEqual([x.name for x in h.http_filters],
                         ["envoy.filters.http.stateful_session", "envoy.filters.http.router"])
        ss = stateful_session_pb2.StatefulSession()
        self.assertTrue(h.http_filters[0].typed_config.Unpack(ss))
        self.assertFalse(ss.HasField("session_state"))  # enabled per virtual host
        self.assertTrue(h.http_filters[1].typed_config.Unpack(router_pb2.Router()))
        self.assertEqual(h.common_http_protocol_options.max_connection_duration.seconds, 3600)
        self.assertEqual(h.drain_timeout.seconds, 30)

    def test_routes(self):
        (rc,) = unpack(self.got[RDS], route_pb2.RouteConfiguration)
        self.assertEqual(rc.name, "edge")
        vh = {v.name: v for v in rc.virtual_hosts}
        self.assertEqual(sorted(vh), ["cart", "search"])
        cart = vh["cart"]
        self.assertEqual(list(cart.domains), ["cart.example.com", "shop.example.com"])
        (route,) = cart.routes
        self.assertEqual(route.match.prefix, "/")
        self.assertEqual(route.route.cluster, "cart")
        self.assertEqual(len(route.route.hash_policy), 0)
        per = stateful_session_pb2.StatefulSessionPerRoute()
        self.assertTrue(cart.typed_per_filter_config["envoy.filters.http.stateful_session"].Unpack(per))
        self.assertTrue(per.stateful_session.strict)
        state = per.stateful_session.session_state
        self.assertEqual(state.name, "envoy.http.stateful_session.cookie")
        ck = cookie_pb2.CookieBasedSessionState()
        self.assertTrue(state.typed_config.Unpack(ck))
        self.assertEqual((ck.cookie.name, ck.cookie.ttl.seconds, ck.cookie.path), ("hf_cart", 1800, "/"))
        search = vh["search"]
        self.assertEqual(len(search.typed_per_filter_config), 0)
        (hp,) = search.routes[0].route.hash_policy
        self.assertEqual((hp.cookie.name, hp.cookie.ttl.seconds, hp.cookie.path), ("hf_s", 600, "/q"))

    def test_clusters(self):
        cl = {x.name: x for x in unpack(self.got[CDS], cluster_pb2.Cluster)}
        self.assertEqual(sorted(cl), ["cart", "search"])
        cart = cl["cart"]
        self.assertEqual(cart.type, cluster_pb2.Cluster.EDS)
        self.assertTrue(cart.eds_cluster_config.eds_config.HasField("ads"))
        self.assertEqual(cart.eds_cluster_config.service_name, "cart")
        self.assertEqual(cart.lb_policy, cluster_pb2.Cluster.ROUND_ROBIN)
        self.assertEqual(list(cart.common_lb_config.override_host_status.statuses),
                         [HS.UNKNOWN, HS.HEALTHY, HS.DEGRADED, HS.DRAINING])
        self.assertTrue(cart.ignore_health_on_host_removal)
        # blue has a DRAINING endpoint: panic mode is off so it cannot get new sessions.
        self.assertTrue(cart.common_lb_config.HasField("healthy_panic_threshold"))
        self.assertEqual(cart.common_lb_config.healthy_panic_threshold.value, 0)
        self.assertFalse(cart.HasField("lrs_server"))  # Envoy reports through load_stats_config
        # max_connection_age_s also bounds the upstream connections (issue 7, item 1).
        from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as upstream_pb2
        opts = upstream_pb2.HttpProtocolOptions()
        self.assertTrue(cart.typed_extension_protocol_options[
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].Unpack(opts))
        self.assertEqual(opts.common_http_protocol_options.max_connection_duration.seconds, 3600)
        # independent of the max age: the default upstream protocol, HTTP/1.1 (issue 12 item 7)
        self.assertTrue(opts.explicit_http_config.HasField("http_protocol_options"))
        self.assertEqual(len(cl["search"].typed_extension_protocol_options), 0)  # no max age set
        self.assertEqual(cl["search"].lb_policy, cluster_pb2.Cluster.RING_HASH)
        self.assertFalse(cl["search"].common_lb_config.HasField("healthy_panic_threshold"))

    def test_endpoints(self):
        cla = {x.cluster_name: x for x in unpack(self.got[EDS], endpoint_pb2.ClusterLoadAssignment)}
        cart = cla["cart"]
        loc = [(e.locality.zone, e.locality.sub_zone, e.load_balancing_weight.value,
                [(lb.endpoint.address.socket_address.port_value, lb.health_status)
                 for lb in e.lb_endpoints]) for e in cart.endpoints]
        # One locality per (zone, fleet); green is standby and 8084 disabled: both absent.
        self.assertEqual(loc, [("z1", "blue", 4, [(8081, HS.HEALTHY), (8083, HS.DRAINING)]),
                               ("z2", "blue", 2, [(8082, HS.HEALTHY)])])
        lb = cart.endpoints[0].lb_endpoints[0]
        self.assertEqual(lb.load_balancing_weight.value, 2)
        md = lb.metadata.filter_metadata["holdfast"]
        self.assertEqual((md["fleet"], md["version"]), ("blue", "1.4.2"))

    def test_response_envelope(self):
        for t, resp in self.got.items():
            self.assertEqual(resp.type_url, t)
            self.assertRegex(resp.version_info, r"^[0-9a-f]{16}$")
            for any_ in resp.resources:
                self.assertEqual(any_.type_url, t)
        nonces = [r.nonce for r in self.got.values()]
        self.assertEqual(len(set(nonces)), 4)


class ConnectionSettingsTest(unittest.TestCase):
    """connection.websocket and connection.upstream_protocol (issue 12 item 7), independent of
    each other and of max_connection_age_s, decoded field by field."""

    SERVICES = {  # name: (websocket, upstream_protocol, max_connection_age_s)
        "plain": (False, None, 0), "ws": (True, None, 0), "h2": (False, "http2", 0),
        "ws-h2": (True, "http2", 0), "auto": (False, "auto", 0), "aged-h2": (False, "http2", 600),
        "aged": (False, "http1", 900), "ws-auto-aged": (True, "auto", 1200),
    }

    @classmethod
    def setUpClass(cls):
        cls.hf = Holdfast().__enter__()
        hf = cls.hf
        assert hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000}).status == 201
        for name, (ws, proto, age) in cls.SERVICES.items():
            conn = {"websocket": ws, "max_connection_age_s": age}
            if proto:
                conn["upstream_protocol"] = proto
            r = hf.post(API + "/services", {"name": name, "proxy_group": "edge", "connection": conn})
            assert r.status == 201, r.body
            assert hf.post(API + "/services/%s/fleets" % name, {"name": "a"}).status == 201
        c = AdsClient(hf.xds)
        try:
            cls.got = subscribe_all(c)
        finally:
            c.close()

    @classmethod
    def tearDownClass(cls):
        cls.hf.__exit__()

    def test_rest_round_trip_and_refusals(self):
        s = self.hf.get(API + "/services/ws-h2").json["connection"]
        self.assertEqual((s["websocket"], s["upstream_protocol"]), (True, "http2"))
        s = self.hf.get(API + "/services/plain").json["connection"]
        self.assertEqual((s["websocket"], s["upstream_protocol"]), (False, "http1"))
        for bad in ({"upstream_protocol": "h3"}, {"upstream_protocol": 2}, {"websocket": "yes"}):
            r = self.hf.patch(API + "/services/plain", {"connection": bad})
            self.assertEqual(r.status, 422, r.body)
            self.assertEqual(r.json["error"]["field"], "connection." + list(bad)[0], r.body)
        r = self.hf.patch(API + "/services/plain", {"connection": {"websocket": False}})
        self.assertEqual(r.status, 200, r.body)

    def test_websocket_upgrades(self):
        (ls,) = unpack(self.got[LDS], listener_pb2.Listener)
        h = hcm_pb2.HttpConnectionManager()
        self.assertTrue(ls.filter_chains[0].filters[0].typed_config.Unpack(h))
        (u,) = h.upgrade_configs  # known to the HCM, off unless a route turns it on
        self.assertEqual((u.upgrade_type, u.HasField("enabled"), u.enabled.value), ("websocket", True, False))
        (rc,) = unpack(self.got[RDS], route_pb2.RouteConfiguration)
        for vh in rc.virtual_hosts:
            (route,) = vh.routes
            want = self.SERVICES[vh.name][0]
            if want:
                (ru,) = route.route.upgrade_configs
                self.assertEqual((ru.upgrade_type, ru.enabled.value), ("websocket", True), vh.name)
            else:
                self.assertEqual(len(route.route.upgrade_configs), 0, vh.name)

    def test_upstream_protocol(self):
        from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as upstream_pb2
        key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        for c in unpack(self.got[CDS], cluster_pb2.Cluster):
            ws, proto, age = self.SERVICES[c.name]
            proto = proto or "http1"
            with self.subTest(cluster=c.name):
                if proto == "http1" and not age:
                    self.assertEqual(len(c.typed_extension_protocol_options), 0)  # Envoy's default
                    continue
                opts = upstream_pb2.HttpProtocolOptions()
                self.assertTrue(c.typed_extension_protocol_options[key].Unpack(opts))
                self.assertEqual(opts.common_http_protocol_options.max_connection_duration.seconds, age)
                self.assertEqual(opts.HasField("common_http_protocol_options"), age > 0)
                kind = opts.WhichOneof("upstream_protocol_options")
                if proto == "auto":
                    # plaintext: no ALPN, so the downstream protocol decides
                    self.assertEqual(kind, "use_downstream_protocol_config")
                    self.assertTrue(opts.use_downstream_protocol_config.HasField("http2_protocol_options"))
                    self.assertTrue(opts.use_downstream_protocol_config.HasField("http_protocol_options"))
                    self.assertFalse(c.HasField("transport_socket"))
                else:
                    self.assertEqual(kind, "explicit_http_config")
                    which = opts.explicit_http_config.WhichOneof("protocol_config")
                    self.assertEqual(which, {"http1": "http_protocol_options",
                                             "http2": "http2_protocol_options"}[proto])
                    if proto == "http2":  # WebSocket over HTTP/2 needs extended CONNECT
                        self.assertEqual(opts.explicit_http_config.http2_protocol_options.allow_connect, ws)

    def test_store_migration_keeps_old_max_age_services_on_the_downstream_protocol(self):
        import sqlite3
        import tempfile
        with tempfile.TemporaryDirectory(prefix="hf-mig-") as tmp:
            db = os.path.join(tmp, "old.db")
            with Holdfast(workdir=tmp, db=db) as hf:
                hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
                hf.post(API + "/services", {"name": "old-aged", "proxy_group": "edge",
                                            "connection": {"max_connection_age_s": 60}})
                hf.post(API + "/services", {"name": "old-plain", "proxy_group": "edge"})
            # Turn the file back into a version-9 database, as written before this change.
            con = sqlite3.connect(db)
            con.executescript("ALTER TABLE services DROP COLUMN websocket;"
                              "ALTER TABLE services DROP COLUMN upstream_protocol;"
                              "PRAGMA user_version = 9;")
            con.close()
            with Holdfast(workdir=tmp, db=db) as hf:
                got = {s["name"]: s["connection"] for s in hf.get(API + "/services").json["items"]}
                self.assertEqual(got["old-aged"]["upstream_protocol"], "auto")
                self.assertEqual(got["old-plain"]["upstream_protocol"], "http1")
                self.assertFalse(got["old-aged"]["websocket"])


class ProtocolTest(unittest.TestCase):
    def setUp(self):
        self.hf = Holdfast().__enter__()
        self.addCleanup(self.hf.__exit__)
        setup_world(self.hf)

    def client(self):
        c = AdsClient(self.hf.xds)
        self.addCleanup(c.close)
        return c

    def proxies(self):
        return self.hf.get(API + "/proxies").json["items"]

    def test_old_envoy_version_is_warned_about(self):
        """Issue 12 item 6: strict needs Envoy 1.29; a 1.28 node is warned about, per service."""
        from envoy.config.core.v3 import base_pb2
        from envoy.type.v3 import semantic_version_pb2
        for node_id, ver in (("old", (1, 28, 0)), ("new", (1, 29, 1)), ("silent", None)):
            n = node(node_id, "edge")
            if ver:
                n.user_agent_build_version.CopyFrom(base_pb2.BuildVersion(
                    version=semantic_version_pb2.SemanticVersion(
                        major_number=ver[0], minor_number=ver[1], patch=ver[2])))
            c = self.client()
            c.request(CDS, node_=n)
            self.assertIsNotNone(c.recv())
        got = {p["id"]: p for p in self.proxies()}
        self.assertEqual(got["old"]["build_version"], "1.28.0")
        (w,) = got["old"]["warnings"]
        self.assertIn("older than 1.29", w)
        self.assertIn("'cart'", w)
        self.assertEqual((got["new"]["build_version"], got["new"]["warnings"]), ("1.29.1", []))
        self.assertEqual((got["silent"]["build_version"], got["silent"]["warnings"]), (None, []))
        # the warning follows the configuration: cart no longer strict, no warning
        self.assertEqual(self.hf.patch(API + "/services/cart", {"affinity": {"strict": False}}).status, 200)
        got = {p["id"]: p for p in self.proxies()}
        self.assertEqual(got["old"]["warnings"], [])

    def test_ack_then_change_pushes_only_what_changed(self):
        c = self.client()
        got = subscribe_all(c)
        self.assertTrue(c.expect_nothing(0.3))  # ACKed: nothing is re-sent
        t0 = time.monotonic()
        self.hf.post(API + "/services/cart/fleets/blue/endpoints", {"address": "127.0.0.1", "port": 8085})
        r = c.recv()
        self.assertEqual(r.type_url, EDS)  # clusters, listeners, routes unchanged
        self.assertNotEqual(r.version_info, got[EDS].version_info)
        self.assertLess(time.monotonic() - t0, 1.0)
        ports = [lb.endpoint.address.socket_address.port_value
                 for e in unpack(r, endpoint_pb2.ClusterLoadAssignment)[0].endpoints
                 for lb in e.lb_endpoints]
        self.assertIn(8085, ports)
        c.ack(r, ["cart", "search"])
        self.assertTrue(c.expect_nothing(0.3))
        p = [x for x in self.proxies() if x["id"] == "envoy-1"][0]
        self.assertEqual(p["types"]["eds"]["acked_version"], r.version_info)
        self.assertEqual(p["types"]["eds"]["sent_version"], r.version_info)
        self.assertEqual((p["kind"], p["proxy_group"], p["mode"]), ("envoy", "edge", "sotw"))

    def test_nack_is_recorded_not_resent_and_next_change_is_sent(self):
        c = self.client()
        got = subscribe_all(c)
        self.hf.patch(API + "/services/cart", {"affinity": {"ttl_s": 300}})
        r = c.recv()
        self.assertEqual(r.type_url, RDS)
        c.request(RDS, ["edge"], version=got[RDS].version_info, nonce=r.nonce, error="cookie ttl refused")
        self.assertTrue(c.expect_nothing(0.5))  # the rejected version is not re-sent
        p = [x for x in self.proxies() if x["id"] == "envoy-1"][0]
        nack = p["types"]["rds"]["last_nack"]
        self.assertEqual((nack["version"], nack["error"]), (r.version_info, "cookie ttl refused"))
        self.assertEqual(p["types"]["rds"]["acked_version"], got[RDS].version_info)
        events = self.hf.get(API + "/events?limit=1000").json["items"]
        self.assertTrue(any(e["action"] == "proxy.nack" and "cookie ttl refused" in e["summary"]
                            for e in events))
        self.hf.patch(API + "/services/cart", {"affinity": {"ttl_s": 600}})
        r2 = c.recv()
        self.assertEqual(r2.type_url, RDS)
        self.assertNotEqual(r2.version_info, r.version_info)
        self.assertNotEqual(r2.nonce, r.nonce)
        metrics = self.hf.get("/metrics").body.decode()
        self.assertIn('holdfast_xds_nacks_total{type="rds"} 1', metrics)

    def test_stale_nonce_is_ignored(self):
        c = self.client()
        got = subscribe_all(c)
        self.hf.post(API + "/services/cart/fleets/blue/endpoints", {"address": "127.0.0.1", "port": 8085})
        r = c.recv()
        # An answer to an older response (its nonce is stale) is ignored: no ACK recorded.
        c.request(EDS, ["cart", "search"], version=got[EDS].version_info, nonce=got[EDS].nonce)
        self.assertTrue(c.expect_nothing(0.3))
        p = [x for x in self.proxies() if x["id"] == "envoy-1"][0]
        self.assertEqual(p["types"]["eds"]["acked_version"], got[EDS].version_info)
        c.ack(r, ["cart", "search"])
        time.sleep(0.2)
        p = [x for x in self.proxies() if x["id"] == "envoy-1"][0]
        self.assertEqual(p["types"]["eds"]["acked_version"], r.version_info)

    def test_reconnect_with_current_version_is_not_pushed(self):
        c = self.client()
        got = subscribe_all(c)
        c.close()
        c2 = self.client()
        c2.request(CDS, version=got[CDS].version_info, node_=node("envoy-1", "edge"))
        self.assertTrue(c2.expect_nothing(0.5))
        c2.request(EDS, ["cart", "search"], version="some-old-version")
        r = c2.recv()
        self.assertEqual(r.version_info, got[EDS].version_info)

    def test_make_before_break_order(self):
        c = self.client()
        got = subscribe_all(c)
        # A new service changes clusters and routes at once.
        self.hf.post(API + "/services", {"name": "api", "proxy_group": "edge", "domains": ["api.example.com"]})
        r = c.recv()
        self.assertEqual(r.type_url, CDS)
        self.assertIn("api", [x.name for x in unpack(r, cluster_pb2.Cluster)])
        self.assertTrue(c.expect_nothing(0.3))  # routes wait while clusters are unanswered
        c.ack(r)
        self.assertTrue(c.expect_nothing(0.3))  # ... and until "api" endpoints are asked for
        names = ["api", "cart", "search"]
        c.request(EDS, names, version=got[EDS].version_info, nonce=got[EDS].nonce)
        r = c.recv()
        self.assertEqual(r.type_url, EDS)
        self.assertIn("api", [x.cluster_name for x in unpack(r, endpoint_pb2.ClusterLoadAssignment)])
        self.assertTrue(c.expect_nothing(0.3))  # ... and while those endpoints are unanswered
        c.ack(r, names)
        r = c.recv()
        self.assertEqual(r.type_url, RDS)
        self.assertIn("api", [v.name for v in unpack(r, route_pb2.RouteConfiguration)[0].virtual_hosts])

    def test_unknown_group_gets_empty_config_and_is_shown(self):
        c = self.client()
        c.request(CDS, node_=node("lost-1", "nogroup"))
        r = c.recv()
        self.assertEqual(len(r.resources), 0)
        p = [x for x in self.proxies() if x["id"] == "lost-1"][0]
        self.assertFalse(p["proxy_group_known"])
        # When the group appears, the proxy gets its configuration.
        self.hf.post(API + "/proxy-groups", {"name": "nogroup", "listener_port": 10001})
        self.hf.post(API + "/services", {"name": "late", "proxy_group": "nogroup"})
        c.ack(r)
        r = c.recv()
        self.assertEqual([x.name for x in unpack(r, cluster_pb2.Cluster)], ["late"])

    def test_delta(self):
        c = AdsClient(self.hf.xds, delta=True)
        self.addCleanup(c.close)
        req = discovery_pb2.DeltaDiscoveryRequest(type_url=CDS)
        req.node.CopyFrom(node("envoy-d", "edge"))
        c.send(req)
        r = c.recv()
        self.assertEqual(sorted(x.name for x in r.resources), ["cart", "search"])
        versions = {x.name: x.version for x in r.resources}
        for x in r.resources:
            self.assertRegex(x.version, r"^[0-9a-f]{16}$")
            self.assertTrue(x.resource.Unpack(cluster_pb2.Cluster()))
        c.send(discovery_pb2.DeltaDiscoveryRequest(type_url=CDS, response_nonce=r.nonce))
        self.assertTrue(c.expect_nothing(0.3))
        # Only the changed cluster is sent; a deleted one is in removed_resources.
        self.hf.patch(API + "/services/search", {"affinity": {"mode": "cookie"}})
        r = c.recv()
        self.assertEqual([x.name for x in r.resources], ["search"])
        self.assertNotEqual(r.resources[0].version, versions["search"])
        c.send(discovery_pb2.DeltaDiscoveryRequest(type_url=CDS, response_nonce=r.nonce))
        self.hf.post(API + "/services", {"name": "tmp", "proxy_group": "edge"})
        r = c.recv()
        self.assertEqual([x.name for x in r.resources], ["tmp"])
        c.send(discovery_pb2.DeltaDiscoveryRequest(type_url=CDS, response_nonce=r.nonce))
        self.hf.delete(API + "/services/tmp")
        r = c.recv()
        self.assertEqual((list(r.resources), list(r.removed_resources)), ([], ["tmp"]))
        c.send(discovery_pb2.DeltaDiscoveryRequest(type_url=CDS, response_nonce=r.nonce))
        # A new stream that already holds the current versions gets nothing for them.
        c2 = AdsClient(self.hf.xds, delta=True)
        self.addCleanup(c2.close)
        req = discovery_pb2.DeltaDiscoveryRequest(type_url=EDS, resource_names_subscribe=["cart", "search"])
        req.node.CopyFrom(node("envoy-d2", "edge"))
        c2.send(req)
        r = c2.recv()
        held = {x.name: x.version for x in r.resources}
        self.assertEqual(sorted(held), ["cart", "search"])
        c3 = AdsClient(self.hf.xds, delta=True)
        self.addCleanup(c3.close)
        req = discovery_pb2.DeltaDiscoveryRequest(type_url=EDS, resource_names_subscribe=["cart", "search"])
        req.node.CopyFrom(node("envoy-d3", "edge"))
        req.initial_resource_versions["cart"] = held["cart"]
        req.initial_resource_versions["search"] = "stale"
        c3.send(req)
        r = c3.recv()
        self.assertEqual([x.name for x in r.resources], ["search"])


class PerTypeServicesTest(unittest.TestCase):
    """ClusterDiscoveryService, EndpointDiscoveryService, ListenerDiscoveryService and
    RouteDiscoveryService (Stream and Delta), for bootstraps with one config source per type."""

    @classmethod
    def setUpClass(cls):
        cls.hf = Holdfast().__enter__()
        setup_world(cls.hf)

    @classmethod
    def tearDownClass(cls):
        cls.hf.__exit__()

    def open(self, service, verb, delta=False):
        c = AdsClient(self.hf.xds, delta=delta,
                      method="/envoy.service.%s.v3.%sDiscoveryService/%s%ss"
                      % (service.lower(), service, "Delta" if delta else "Stream", verb))
        self.addCleanup(c.close)
        return c

    def test_each_service_serves_its_type(self):
        ads = AdsClient(self.hf.xds)
        self.addCleanup(ads.close)
        want = subscribe_all(ads)
        cds = self.open("Cluster", "Cluster")
        cds.request(CDS, node_=node("typed", "edge"))
        r = cds.recv()
        self.assertEqual(r.version_info, want[CDS].version_info)
        cds.ack(r)
        eds = self.open("Endpoint", "Endpoint")
        eds.request(EDS, ["cart", "search"], node_=node("typed", "edge"))
        self.assertEqual(eds.recv().version_info, want[EDS].version_info)
        lds = self.open("Listener", "Listener")
        lds.request(LDS, node_=node("typed", "edge"))
        self.assertEqual(lds.recv().version_info, want[LDS].version_info)
        rds = self.open("Route", "Route")
        rds.request(RDS, ["edge"], node_=node("typed", "edge"))
        self.assertEqual(rds.recv().version_info, want[RDS].version_info)
        apis = sorted(p["api"] for p in self.hf.get(API + "/proxies").json["items"]
                      if p["id"] == "typed")
        self.assertEqual(apis, ["cds", "eds", "lds", "rds"])
        # ACK/NACK as on ADS: a NACKed version is recorded and not sent again.
        self.hf.patch(API + "/services/search", {"affinity": {"mode": "cookie"}})
        r = cds.recv()
        cds.request(CDS, version=want[CDS].version_info, nonce=r.nonce, error="rejected")
        self.assertTrue(cds.expect_nothing(0.5))
        shown = [p for p in self.hf.get(API + "/proxies").json["items"]
                 if p["id"] == "typed" and p["api"] == "cds"]
        self.assertEqual(shown[0]["types"]["cds"]["last_nack"]["error"], "rejected")

    def test_delta_and_wrong_type(self):
        d = self.open("Endpoint", "Endpoint", delta=True)
        req = discovery_pb2.DeltaDiscoveryRequest(type_url=EDS, resource_names_subscribe=["cart"])
        req.node.CopyFrom(node("typed-d", "edge"))
        d.send(req)
        r = d.recv()
        self.assertEqual([x.name for x in r.resources], ["cart"])
        wrong = self.open("Cluster", "Cluster")
        wrong.request(EDS, ["cart"], node_=node("typed-w", "edge"))
        self.assertIsNone(wrong.recv(timeout=5))
        self.assertEqual(wrong.error.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("serves cds only", wrong.error.details())


class BadInputTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hf = Holdfast().__enter__()
        setup_world(cls.hf)

    @classmethod
    def tearDownClass(cls):
        cls.hf.__exit__()

    def assert_ends_with(self, c, code, text):
        self.assertIsNone(c.recv(timeout=5))
        self.assertEqual(c.error.code(), code, c.error)
        self.assertIn(text, c.error.details())

    def test_bad_streams_end_alone(self):
        healthy = AdsClient(self.hf.xds)
        healthy.request(CDS, node_=node("good", "edge"))
        first = healthy.recv()
        healthy.ack(first)

        g = AdsClient(self.hf.xds, raw=True)
        g.send(b"\xff\xff\xff\xff garbage")
        self.assert_ends_with(g, grpc.StatusCode.INVALID_ARGUMENT, "cannot decode")

        # A type holdfast does not serve (here SDS over the same ADS stream) is ignored: the
        # stream goes on, every other type is still served, and the request is shown.
        secret = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
        u = AdsClient(self.hf.xds)
        u.request(secret, node_=node("u", "edge"))
        self.assertTrue(u.expect_nothing(0.3))
        u.request(CDS)
        self.assertEqual(u.recv().type_url, CDS)
        shown = [p for p in self.hf.get(API + "/proxies").json["items"] if p["id"] == "u"]
        self.assertEqual(shown[0]["ignored_type_urls"], [secret])
        self.assertEqual(shown[0]["api"], "ads")

        n = AdsClient(self.hf.xds)
        n.request(CDS)
        self.assert_ends_with(n, grpc.StatusCode.INVALID_ARGUMENT, "node.id")

        big = AdsClient(self.hf.xds, raw=True)
        big.send(b"\x0a" + b"\x80\x80\x80\x03" + b"x" * (6 * 1024 * 1024))
        self.assertIsNone(big.recv(timeout=10))
        self.assertEqual(big.error.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)

        ch = grpc.insecure_channel(self.hf.xds)
        with self.assertRaises(grpc.RpcError) as e:
            ch.unary_unary("/envoy.service.discovery.v3.AggregatedDiscoveryService/FetchClusters")(b"", timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        ch.close()

        # The well-behaved stream was never disturbed and still gets changes.
        self.hf.post(API + "/services", {"name": "more", "proxy_group": "edge"})
        r = healthy.recv()
        self.assertEqual(r.type_url, CDS)
        self.assertIn("more", [x.name for x in unpack(r, cluster_pb2.Cluster)])
        for c in (healthy, g, u, n, big):
            c.close()
        metrics = self.hf.get("/metrics").body.decode()
        self.assertRegex(metrics, r"holdfast_xds_stream_errors_total\{\} [2-9]")

    def test_client_that_never_reads_delays_nobody(self):
        # Three proxies that subscribe and then never read: once their HTTP/2 windows are full
        # each holds exactly one response in flight, and nothing queues behind it.
        stuck = [AdsClient(self.hf.xds, read=False) for _ in range(3)]
        for i, c in enumerate(stuck):
            c.request(CDS, node_=node("stuck-%d" % i, "edge"))
        good = AdsClient(self.hf.xds)
        good.request(CDS, node_=node("good-2", "edge"))
        # Every service of the group once the 150 below exist (other tests of this class may
        # have left some: waiting for fewer could stop one snapshot short of the newest).
        total = 150 + len([x for x in self.hf.get(API + "/services").json["items"]
                           if x["proxy_group"] == "edge"])
        # 150 services with long domain lists: each CDS/RDS response is far above 64 KiB.
        t0 = time.monotonic()
        for i in range(150):
            r = self.hf.post(API + "/services", {
                "name": "svc-%03d" % i, "proxy_group": "edge",
                "domains": ["d%d-%02d.%s.example.com" % (i, k, "x" * 40) for k in range(8)]})
            self.assertEqual(r.status, 201, r.body)
        want = lambda got: CDS in got and len(got[CDS].resources) >= total  # noqa: E731
        latest = good.follow(want, timeout=20)
        self.assertTrue(want(latest))
        self.assertLess(time.monotonic() - t0, 20)
        proxies = {p["id"]: p for p in self.hf.get(API + "/proxies").json["items"]}
        newest = latest[CDS].version_info
        self.assertEqual(proxies["good-2"]["types"]["cds"]["sent_version"], newest)
        for i in range(3):
            # Stalled with one older response in flight; the newest is built when it drains.
            p = proxies["stuck-%d" % i]
            self.assertNotEqual(p["types"]["cds"]["sent_version"], newest)
            self.assertIsNone(p["types"]["cds"]["acked_version"])
        for c in stuck + [good]:
            c.close()
        for i in range(150):
            self.hf.delete(API + "/services/svc-%03d" % i)


class RestartTest(unittest.TestCase):
    def test_kill_9_restart_same_versions(self):
        with Holdfast() as hf:
            setup_world(hf)
            c = AdsClient(hf.xds)
            got = subscribe_all(c)
            c.close()
            hf.kill9()
            hf.start(keep_ports=True)
            c = AdsClient(hf.xds)
            got2 = subscribe_all(c, node_id="envoy-1")
            for t in (CDS, EDS, LDS, RDS):
                self.assertEqual(got2[t].version_info, got[t].version_info, t)
                self.assertEqual([a.SerializeToString() for a in got2[t].resources],
                                 [a.SerializeToString() for a in got[t].resources], t)
            c.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
