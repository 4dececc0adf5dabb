"""Every resource holdfast sends, checked against the validation rules of the official Envoy protos
(the `validate.rules` annotations read from the descriptors, applied recursively, Any included:
tests/integration/pgv.py) and against the semantic rules Envoy applies across resources (router
last, referenced route tables and clusters exist, domains unique per route table, EDS names match
clusters). The world covers an Envoy node and a proxyless gRPC node, every affinity mode, a service
routed by its name, connection settings, a fleet draining after a cutover and a rolling restart in
progress. The validator itself is shown to fail on deliberately broken copies."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Holdfast  # noqa: E402
from adsclient import (AdsClient, CDS, EDS, LDS, RDS, node, unpack, cluster_pb2,  # noqa: E402
                       endpoint_pb2, listener_pb2, route_pb2)
import pgv  # noqa: E402
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2  # noqa: E402
from envoy.extensions.filters.http.stateful_session.v3 import stateful_session_pb2  # noqa: E402

API = "/api/v1"


def ok(r):
    if r.status not in (200, 201):
        raise AssertionError("%s: %s" % (r.status, r.body))
    return r.json


def setup_world(hf):
    ok(hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000}))
    ok(hf.post(API + "/services", {
        "name": "cart", "proxy_group": "edge", "domains": ["cart.example.com", "*.shop.example.com"],
        "affinity": {"mode": "cookie", "cookie_name": "hf_cart", "ttl_s": 1800, "path": "/", "strict": True},
        "connection": {"max_connection_age_s": 3600, "drain_timeout_s": 30, "max_stream_duration_s": 120}}))
    ok(hf.post(API + "/services", {
        "name": "search", "proxy_group": "edge", "domains": ["search.example.com"],
        "affinity": {"mode": "hash_cookie", "cookie_name": "hf_s", "ttl_s": 600, "path": "/q"},
        "connection": {"upstream_protocol": "auto", "websocket": True}}))
    ok(hf.post(API + "/services", {"name": "plain", "proxy_group": "edge"}))  # routed by its name
    ok(hf.post(API + "/services", {
        "name": "ws", "proxy_group": "edge", "domains": ["ws.example.com", "ws"],
        "affinity": {"mode": "cookie", "cookie_name": "hf_ws", "ttl_s": 60},
        "connection": {"max_connection_age_s": 1800, "websocket": True, "upstream_protocol": "http2"}}))
    for svc, fleet in (("cart", "blue"), ("cart", "green"), ("search", "v1"), ("plain", "a"),
                       ("ws", "blue")):
        ok(hf.post(API + "/services/%s/fleets" % svc, {"name": fleet, "version": "1"}))
    port = 8000
    for svc, fleet, n in (("cart", "blue", 3), ("cart", "green", 2), ("search", "v1", 1),
                          ("plain", "a", 1), ("ws", "blue", 10)):
        for i in range(n):
            port += 1
            ok(hf.post(API + "/services/%s/fleets/%s/endpoints" % (svc, fleet),
                       {"address": "127.0.0.1", "port": port, "zone": "z%d" % (i % 2 + 1)}))
    ok(hf.patch(API + "/services/cart/fleets/blue/endpoints/127.0.0.1:8003", {"admin_state": "disabled"}))
    # Another group routes a host of edge too: a gRPC client outside any group sees both.
    ok(hf.post(API + "/proxy-groups", {"name": "edge2", "listener_port": 10001}))
    ok(hf.post(API + "/services", {"name": "cart-b", "proxy_group": "edge2",
                                   "domains": ["cart.example.com", "search"]}))
    ok(hf.post(API + "/services/cart-b/fleets", {"name": "a"}))
    # A blue-green deployment of cart, cut over: blue drains.
    d = ok(hf.post(API + "/deployments", {"service": "cart", "to_fleet": "green", "lowered_ttl_s": 60}))
    ok(hf.post(API + "/deployments/%s/lower-ttl" % d["id"]))
    ok(hf.post(API + "/deployments/%s/cutover" % d["id"], {"force": True}))
    # A rolling restart of ws in progress: its first batch is out of rotation.
    ok(hf.post(API + "/restarts", {"service": "ws", "fleet": "blue", "avg_connection_s": 60,
                                   "max_disconnect_pct": 10, "max_draining_pct": 30, "dry_run": False}))
    deadline = time.monotonic() + 10
    while not any(e["admin_state"] == "draining" for e in
                  ok(hf.get(API + "/services/ws/fleets/blue/endpoints"))["items"]):
        if time.monotonic() > deadline:
            raise AssertionError("the restart's first batch never started draining")
        time.sleep(0.05)


def fetch(hf, node_id, user_agent, keep=None, group="edge"):
    """Does what the client does on a fresh state-of-the-world stream (wildcard listeners and
    clusters, then the endpoints and route tables they name); returns resources by type. With
    keep (a list), the stream stays open and keep receives the client and the responses."""
    c = AdsClient(hf.xds)
    responses = {}
    try:
        c.request(CDS, node_=node(node_id, group, user_agent))
        r = responses[CDS] = c.recv()
        c.ack(r)
        clusters = unpack(r, cluster_pb2.Cluster)
        names = sorted(x.name for x in clusters)
        c.request(EDS, names)
        r = responses[EDS] = c.recv()
        c.ack(r, names)
        cla = unpack(r, endpoint_pb2.ClusterLoadAssignment)
        c.request(LDS)
        r = responses[LDS] = c.recv()
        c.ack(r)
        listeners = unpack(r, listener_pb2.Listener)
        rds_names = sorted({h.rds.route_config_name for ls in listeners for _, h in pgv.hcms(ls)
                            if h is not None and h.WhichOneof("route_specifier") == "rds"})
        routes = []
        if rds_names:
            c.request(RDS, rds_names)
            r = responses[RDS] = c.recv()
            c.ack(r, rds_names)
            routes = unpack(r, route_pb2.RouteConfiguration)
        if keep is not None:
            keep.extend([c, responses])
        return {"listeners": listeners, "routes": routes, "clusters": clusters, "assignments": cla}
    finally:
        if keep is None:
            c.close()


class ValidateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hf = Holdfast().__enter__()
        try:
            setup_world(cls.hf)
            cls.envoy = fetch(cls.hf, "envoy-1", "envoy")
            cls.grpc = fetch(cls.hf, "grpc-1", "gRPC C-core")
            cls.grpc_all = fetch(cls.hf, "grpc-2", "gRPC C-core", group="no-such-group")
        except BaseException:
            cls.hf.__exit__()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.hf.__exit__()

    def all_resources(self, world):
        for kind in ("listeners", "routes", "clusters", "assignments"):
            for m in world[kind]:
                yield "%s %s" % (kind, getattr(m, "name", "") or m.cluster_name), m

    def check_world(self, world):
        errs = []
        for label, m in self.all_resources(world):
            errs.extend("%s: %s" % (label, e) for e in pgv.validate(m))
        errs.extend(pgv.semantic(world["listeners"], world["routes"], world["clusters"],
                                 world["assignments"]))
        return errs

    def test_world_is_what_the_test_claims(self):
        e = self.envoy
        self.assertEqual([x.name for x in e["listeners"]], ["edge"])
        self.assertEqual([x.name for x in e["routes"]], ["edge"])
        self.assertEqual(sorted(x.name for x in e["clusters"]), ["cart", "plain", "search", "ws"])
        statuses = {(a.cluster_name, ep.health_status) for a in e["assignments"]
                    for loc in a.endpoints for ep in loc.lb_endpoints}
        self.assertIn(("cart", 3), statuses)  # blue drains after the cutover
        self.assertIn(("ws", 3), statuses)  # the restart's first batch drains
        g = self.grpc
        self.assertTrue(all(x.HasField("api_listener") for x in g["listeners"]))
        self.assertEqual(sorted(x.name for x in g["listeners"]),
                         sorted(["cart", "cart.example.com", "*.shop.example.com", "search",
                                 "search.example.com", "plain", "ws", "ws.example.com"]))
        self.assertTrue(all(c.HasField("lrs_server") for c in g["clusters"]))
        cl = {c.name: c for c in e["clusters"]}
        self.assertEqual(sorted(n for n in cl if cl[n].typed_extension_protocol_options),
                         ["cart", "search", "ws"])  # max age; auto; http2
        (ls,) = e["listeners"]
        h = hcm_pb2.HttpConnectionManager()
        ls.filter_chains[0].filters[0].typed_config.Unpack(h)
        self.assertEqual([u.upgrade_type for u in h.upgrade_configs], ["websocket"])

    def first_response(self, method, request, response_cls, until=lambda r: True):
        """Opens a stream, sends one request, returns the first response for which until() is
        true (the stream is ended)."""
        import grpc
        import queue
        ch = grpc.insecure_channel(self.hf.xds)
        out = queue.Queue()
        out.put(request)
        done = object()
        call = ch.stream_stream(method, request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=response_cls.FromString)
        responses = call(iter(lambda: out.get(timeout=10), done), timeout=10)
        try:
            for r in responses:
                if until(r):
                    return r
            raise AssertionError("the stream ended without the response expected")
        finally:
            responses.cancel()
            ch.close()

    def test_hds_and_lrs_responses_are_valid(self):
        """What holdfast sends health checkers (HDS) and load reporters (LRS) follows the protos'
        rules too: the HealthCheckSpecifier's health checks (timeout, interval, thresholds, the
        HTTP check's path and expected statuses), and the LoadStatsResponse."""
        from envoy.service.health.v3 import hds_pb2
        from envoy.service.load_stats.v3 import lrs_pb2
        from envoy.config.core.v3 import base_pb2
        n = base_pb2.Node(id="checker-1", locality=base_pb2.Locality(zone="z1"))
        req = hds_pb2.HealthCheckRequestOrEndpointHealthResponse(
            health_check_request=hds_pb2.HealthCheckRequest(
                node=n, capability=hds_pb2.Capability(health_check_protocols=[0, 1])))
        spec = self.first_response("/envoy.service.health.v3.HealthDiscoveryService/StreamHealthCheck",
                                   req, hds_pb2.HealthCheckSpecifier,
                                   until=lambda r: len(r.cluster_health_checks) > 0)
        self.assertGreater(len(spec.cluster_health_checks), 0)
        self.assertEqual(pgv.validate(spec), [])
        lrs = self.first_response("/envoy.service.load_stats.v3.LoadReportingService/StreamLoadStats",
                                  lrs_pb2.LoadStatsRequest(node=n), lrs_pb2.LoadStatsResponse)
        self.assertTrue(lrs.send_all_clusters)
        self.assertEqual(pgv.validate(lrs), [])
        # and the rules bite there too
        broken = type(spec).FromString(spec.SerializeToString())
        broken.cluster_health_checks[0].health_checks[0].ClearField("timeout")
        self.assertIn("health_checks[0].timeout: duration is required", "\n".join(pgv.validate(broken)))

    def test_envoy_node_resources_are_valid(self):
        self.assertEqual(self.check_world(self.envoy), [])

    def test_grpc_node_resources_are_valid(self):
        self.assertEqual(self.check_world(self.grpc), [])

    def test_grpc_node_outside_any_group_gets_unique_listeners(self):
        names = [x.name for x in self.grpc_all["listeners"]]
        self.assertIn("cart.example.com", names)  # routed in both groups: one listener
        self.assertIn("cart-b", names)
        self.assertEqual(self.check_world(self.grpc_all), [])

    # --- the validator fails on broken resources -------------------------------------------

    def broken(self, kind, name, mutate):
        world = {k: [type(m).FromString(m.SerializeToString()) for m in v] for k, v in self.envoy.items()}
        (m,) = [x for x in world[kind] if (getattr(x, "name", "") or x.cluster_name) == name]
        mutate(m)
        return self.check_world(world)

    def assert_caught(self, errs, *fragments):
        self.assertTrue(errs, "the validator accepted a broken resource")
        text = "\n".join(errs)
        for f in fragments:
            self.assertIn(f, text)

    def test_field_rules_are_enforced(self):
        def zero_timeout(c):
            c.connect_timeout.seconds = 0
        self.assert_caught(self.broken("clusters", "cart", zero_timeout), "connect_timeout", "gt")

        def bad_enum(c):
            c.lb_policy = 77
        self.assert_caught(self.broken("clusters", "cart", bad_enum), "lb_policy", "not defined")

        def big_port(ls):
            ls.address.socket_address.port_value = 70000
        self.assert_caught(self.broken("listeners", "edge", big_port), "port_value")

        def no_address(ls):
            ls.address.socket_address.address = ""
        self.assert_caught(self.broken("listeners", "edge", no_address), "address", "min_len")

        def no_domains(rc):
            del rc.virtual_hosts[0].domains[:]
        self.assert_caught(self.broken("routes", "edge", no_domains), "domains", "at least 1")

        def bad_weight(cla):
            cla.endpoints[0].lb_endpoints[0].load_balancing_weight.value = 0
        self.assert_caught(self.broken("assignments", "cart", bad_weight), "load_balancing_weight")

        def no_route_action(rc):
            rc.virtual_hosts[0].routes[0].ClearField("route")
        self.assert_caught(self.broken("routes", "edge", no_route_action), "oneof action is required")

    def test_rules_inside_any_are_enforced(self):
        def empty_cookie_name(rc):
            vh = [v for v in rc.virtual_hosts if v.name == "cart"][0]
            per = stateful_session_pb2.StatefulSessionPerRoute()
            key = "envoy.filters.http.stateful_session"
            vh.typed_per_filter_config[key].Unpack(per)
            per.stateful_session.session_state.name = ""
            vh.typed_per_filter_config[key].Pack(per)
        self.assert_caught(self.broken("routes", "edge", empty_cookie_name),
                           "StatefulSessionPerRoute", "session_state.name")

        def empty_stat_prefix(ls):
            f = ls.filter_chains[0].filters[0]
            h = hcm_pb2.HttpConnectionManager()
            f.typed_config.Unpack(h)
            h.stat_prefix = ""
            f.typed_config.Pack(h)
        self.assert_caught(self.broken("listeners", "edge", empty_stat_prefix), "stat_prefix")

    def test_semantic_rules_are_enforced(self):
        def router_first(ls):
            f = ls.filter_chains[0].filters[0]
            h = hcm_pb2.HttpConnectionManager()
            f.typed_config.Unpack(h)
            filters = list(h.http_filters)
            del h.http_filters[:]
            h.http_filters.extend(reversed(filters))
            f.typed_config.Pack(h)
        self.assert_caught(self.broken("listeners", "edge", router_first), "router is not the last")

        def duplicate_domain(rc):
            rc.virtual_hosts[1].domains.append(rc.virtual_hosts[0].domains[0].upper())
        self.assert_caught(self.broken("routes", "edge", duplicate_domain), "duplicates")

        def unknown_cluster(rc):
            rc.virtual_hosts[0].routes[0].route.cluster = "nowhere"
        self.assert_caught(self.broken("routes", "edge", unknown_cluster), "unknown cluster 'nowhere'")

        def renamed_assignment(cla):
            cla.cluster_name = "cart2"
        self.assert_caught(self.broken("assignments", "cart", renamed_assignment),
                           "EDS cluster 'cart' has no ClusterLoadAssignment",
                           "'cart2' matches no EDS cluster")

        def alpn_without_tls(c):
            from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as up_pb2
            o = up_pb2.HttpProtocolOptions()
            o.auto_config.http2_protocol_options.SetInParent()
            c.typed_extension_protocol_options[pgv.UPSTREAM_KEY].Pack(o)
        self.assert_caught(self.broken("clusters", "search", alpn_without_tls), "auto_config (ALPN)")

        def unknown_table(ls):
            f = ls.filter_chains[0].filters[0]
            h = hcm_pb2.HttpConnectionManager()
            f.typed_config.Unpack(h)
            h.rds.route_config_name = "other"
            f.typed_config.Pack(h)
        self.assert_caught(self.broken("listeners", "edge", unknown_table), "'other' is never sent")


class ConfigDumpTest(unittest.TestCase):
    """GET /api/v1/proxies/{node_id}/config (issue 12 item 8): every resource last sent to the
    node, in the proto3 JSON mapping, identical to what Python's json_format makes of the same
    bytes, with the versions ACKed or NACKed per type."""

    @classmethod
    def setUpClass(cls):
        cls.hf = Holdfast().__enter__()
        cls.keep = {}
        pgv.load_all()  # every type an Any may hold, for json_format
        try:
            setup_world(cls.hf)
            for node_id, ua in (("envoy-1", "envoy"), ("grpc-1", "gRPC C-core")):
                k = []
                fetch(cls.hf, node_id, ua, keep=k)
                cls.keep[node_id] = k
        except BaseException:
            cls.hf.__exit__()
            raise

    @classmethod
    def tearDownClass(cls):
        for c, _ in cls.keep.values():
            c.close()
        cls.hf.__exit__()

    def dump(self, node_id):
        import urllib.parse
        r = self.hf.get(API + "/proxies/%s/config" % urllib.parse.quote(node_id, safe=""))
        self.assertEqual(r.status, 200, r.body)
        return r.json

    def check_same_as_json_format(self, node_id):
        from google.protobuf import json_format
        _, responses = self.keep[node_id]
        got = self.dump(node_id)
        self.assertEqual((got["id"], got["mode"]), (node_id, "sotw"))
        checked = 0
        for url, resp in responses.items():
            name = {CDS: "cds", EDS: "eds", LDS: "lds", RDS: "rds"}[url]
            t = got["types"][name]
            self.assertEqual(t["type_url"], url)
            self.assertEqual((t["sent_version"], t["acked_version"], t["last_nack"]),
                             (resp.version_info, resp.version_info, None))
            want = {}
            for any_ in resp.resources:
                d = json_format.MessageToDict(any_)
                want[d.get("name") or d.get("clusterName")] = d
            self.assertEqual(sorted(want), [x["name"] for x in t["resources"]])
            for x in t["resources"]:
                self.assertEqual(x["resource"], want[x["name"]], x["name"])
                checked += 1
        return checked

    def test_envoy_node_dump_matches_json_format(self):
        self.assertGreaterEqual(self.check_same_as_json_format("envoy-1"), 10)

    def test_grpc_node_dump_matches_json_format(self):
        self.assertGreaterEqual(self.check_same_as_json_format("grpc-1"), 10)

    def test_special_forms(self):
        got = self.dump("envoy-1")
        cart = [x["resource"] for x in got["types"]["cds"]["resources"] if x["name"] == "cart"][0]
        self.assertEqual(cart["@type"], "type.googleapis.com/envoy.config.cluster.v3.Cluster")
        self.assertEqual(cart["connectTimeout"], "5s")  # Duration
        self.assertEqual(cart["type"], "EDS")  # enum by name
        self.assertEqual(cart["commonLbConfig"]["overrideHostStatus"]["statuses"],
                         ["UNKNOWN", "HEALTHY", "DEGRADED", "DRAINING"])
        opts = cart["typedExtensionProtocolOptions"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
        self.assertEqual(opts["commonHttpProtocolOptions"]["maxConnectionDuration"], "3600s")  # Any, unpacked
        self.assertNotIn("lbPolicy", cart)  # ROUND_ROBIN is the default: left out

    def test_nack_is_traced_to_the_resources(self):
        c, responses = self.keep["envoy-1"]
        # A change, then the proxy rejects the new route table.
        self.assertEqual(self.hf.patch(API + "/services/search", {"affinity": {"ttl_s": 700}}).status, 200)
        r = c.recv()
        while r.type_url != RDS:
            c.ack(r, [] if r.type_url != EDS else sorted(x.cluster_name for x in unpack(r, endpoint_pb2.ClusterLoadAssignment)))
            r = c.recv()
        c.request(RDS, ["edge"], version=responses[RDS].version_info, nonce=r.nonce, error="bad hash policy")
        deadline = time.monotonic() + 5
        while True:
            t = self.dump("envoy-1")["types"]["rds"]
            if t["last_nack"] is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(t["last_nack"]["version"], r.version_info)
        self.assertEqual(t["last_nack"]["error"], "bad hash policy")
        self.assertEqual(t["sent_version"], r.version_info)
        self.assertEqual(t["acked_version"], responses[RDS].version_info)  # still the old one
        (edge,) = t["resources"]  # what was rejected, to find the culprit in
        search = [v for v in edge["resource"]["virtualHosts"] if v["name"] == "search"][0]
        self.assertEqual(search["routes"][0]["route"]["hashPolicy"][0]["cookie"]["ttl"], "700s")

    def test_delta_stream_dump(self):
        c = AdsClient(self.hf.xds, delta=True)
        self.addCleanup(c.close)
        from adsclient import discovery_pb2
        c.send(discovery_pb2.DeltaDiscoveryRequest(type_url=CDS, node=node("delta-1", "edge")))
        r = c.recv()
        c.send(discovery_pb2.DeltaDiscoveryRequest(type_url=CDS, response_nonce=r.nonce))
        got = self.dump("delta-1")
        self.assertEqual(got["mode"], "delta")
        names = sorted(x.name for x in r.resources)
        self.assertEqual([x["name"] for x in got["types"]["cds"]["resources"]], names)
        self.assertEqual({x["name"]: x["version"] for x in got["types"]["cds"]["resources"]},
                         {x.name: x.version for x in r.resources})

    def test_unknown_node_is_404(self):
        r = self.hf.get(API + "/proxies/nobody/config")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json["error"]["code"], "not_found")


if __name__ == "__main__":
    unittest.main(verbosity=2)
