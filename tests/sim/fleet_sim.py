"""Fleet simulator — a SIMULATION, not Envoy.

N simulated Envoy nodes each hold a real ADS stream to holdfast (CDS -> EDS -> LDS -> RDS, ACKing
like Envoy, decoding every resource with the official protos) and a real LRS stream. Simulated
users arrive as a Poisson process, make requests at a steady rate and leave after exponentially
distributed session lengths. Each request is routed with Envoy's documented stateful-session
semantics (envoy-facts.md):

- a request whose cookie is live (not past the expiry it was issued with) goes to the cookie's
  host if that host is in the node's EDS with a status in the cluster's override_host_status
  (UNKNOWN, HEALTHY, DEGRADED, DRAINING);
- otherwise it is load-balanced over the HEALTHY hosts and the cookie is (re)issued with the TTL
  in force on the node at that moment (the route's StatefulSessionPerRoute cookie TTL);
- the TTL is not sliding: a cookie is reissued only when the host changes. (sliding_ttl=True
  models load balancers that refresh the expiry on every response, for comparison.)

Every node reports its per-locality (zone, fleet) request counts over LRS at the interval
holdfast asks for, so holdfast measures the affinity tail from real load reports. Time is real
time: scale TTLs down to seconds to run a drain in a test.
"""

import math
import os
import random
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from adsclient import AdsClient, CDS, EDS, LDS, RDS, node, unpack  # noqa: E402
from adsclient import cluster_pb2, endpoint_pb2, route_pb2  # noqa: E402
import grpc  # noqa: E402
from envoy.config.endpoint.v3 import load_report_pb2  # noqa: E402
from envoy.extensions.filters.http.stateful_session.v3 import stateful_session_pb2  # noqa: E402
from envoy.extensions.http.stateful_session.cookie.v3 import cookie_pb2  # noqa: E402
from envoy.service.load_stats.v3 import lrs_pb2  # noqa: E402
from envoy.config.core.v3 import health_check_pb2 as hs  # noqa: E402

LRS_METHOD = "/envoy.service.load_stats.v3.LoadReportingService/StreamLoadStats"
OVERRIDE_OK = {hs.UNKNOWN, hs.HEALTHY, hs.DEGRADED, hs.DRAINING}


class SimEnvoy:
    """One simulated Envoy node: its xDS view, kept current by a real ADS stream, and its load
    counters, reported over a real LRS stream."""

    def __init__(self, xds, node_id, group, zone="z1"):
        self.xds, self.node_id, self.group, self.zone = xds, node_id, group, zone
        self.lock = threading.Lock()
        self.endpoints = {}   # cluster -> [(host "ip:port", status, zone, fleet)]
        self.cookie_ttl = {}  # cluster -> seconds (from RDS), absent without cookie affinity
        self.counts = {}      # (cluster, zone, fleet) -> requests since the last report
        self.rr = 0
        self.stop_flag = threading.Event()
        self.threads = [threading.Thread(target=self._ads_loop, daemon=True),
                        threading.Thread(target=self._lrs_loop, daemon=True)]
        for t in self.threads:
            t.start()

    # ---- xDS ----
    def _take(self, r):
        if r.type_url == EDS:
            with self.lock:
                for cla in unpack(r, endpoint_pb2.ClusterLoadAssignment):
                    eps = []
                    for loc in cla.endpoints:
                        for lb in loc.lb_endpoints:
                            sa = lb.endpoint.address.socket_address
                            eps.append(("%s:%d" % (sa.address, sa.port_value), lb.health_status,
                                        loc.locality.zone, loc.locality.sub_zone))
                    self.endpoints[cla.cluster_name] = eps
        elif r.type_url == RDS:
            ttl = {}
            for rc in unpack(r, route_pb2.RouteConfiguration):
                for vh in rc.virtual_hosts:
                    cfg = vh.typed_per_filter_config.get("envoy.filters.http.stateful_session")
                    if cfg is None:
                        continue
                    per = stateful_session_pb2.StatefulSessionPerRoute()
                    cfg.Unpack(per)
                    ck = cookie_pb2.CookieBasedSessionState()
                    per.stateful_session.session_state.typed_config.Unpack(ck)
                    cluster = vh.routes[0].route.cluster
                    ttl[cluster] = ck.cookie.ttl.seconds + ck.cookie.ttl.nanos / 1e9
            with self.lock:
                self.cookie_ttl = ttl

    def _ads_loop(self):
        while not self.stop_flag.is_set():
            c = AdsClient(self.xds)
            try:
                c.request(CDS, node_=node(self.node_id, self.group))
                eds_names, latest = [], {}
                while not self.stop_flag.is_set():
                    try:
                        r = c.recv(timeout=0.5)
                    except Exception:
                        continue
                    if r is None:
                        break  # holdfast went away: reconnect
                    latest[r.type_url] = r
                    self._take(r)
                    if r.type_url == CDS:
                        c.ack(r)
                        names = sorted(x.name for x in unpack(r, cluster_pb2.Cluster))
                        if names != eds_names:
                            eds_names = names
                            last = latest.get(EDS)
                            c.request(EDS, names, version=last.version_info if last else "",
                                      nonce=last.nonce if last else "")
                        if LDS not in latest:
                            c.request(LDS)
                    elif r.type_url == EDS:
                        c.ack(r, eds_names)
                    elif r.type_url == LDS:
                        c.ack(r)
                        if RDS not in latest:
                            c.request(RDS, [self.group])
                    else:
                        c.ack(r, [self.group])
            finally:
                c.close()
            self.stop_flag.wait(0.2)

    # ---- LRS ----
    def _lrs_loop(self):
        while not self.stop_flag.is_set():
            channel = grpc.insecure_channel(self.xds)
            outq = []
            cond = threading.Condition()

            def requests():
                first = lrs_pb2.LoadStatsRequest()
                first.node.CopyFrom(node(self.node_id, self.group))
                yield first
                while not self.stop_flag.is_set():
                    with cond:
                        while not outq and not self.stop_flag.is_set():
                            cond.wait(0.2)
                        if outq:
                            yield outq.pop(0)

            call = channel.stream_stream(LRS_METHOD, request_serializer=lrs_pb2.LoadStatsRequest.SerializeToString,
                                         response_deserializer=lrs_pb2.LoadStatsResponse.FromString)(requests())
            try:
                resp = next(call)
                interval = resp.load_reporting_interval.seconds + resp.load_reporting_interval.nanos / 1e9
                while not self.stop_flag.wait(interval) and not call.done():
                    report = self._report(interval)
                    with cond:
                        outq.append(report)
                        cond.notify()
            except grpc.RpcError:
                pass
            finally:
                call.cancel()
                channel.close()
            self.stop_flag.wait(0.2)

    def _report(self, interval):
        with self.lock:
            counts, self.counts = self.counts, {}
        req = lrs_pb2.LoadStatsRequest()
        by_cluster = {}
        for (cluster, zone, fleet), n in counts.items():
            by_cluster.setdefault(cluster, []).append((zone, fleet, n))
        for cluster, locs in by_cluster.items():
            cs = req.cluster_stats.add(cluster_name=cluster, cluster_service_name=cluster)
            cs.load_report_interval.FromNanoseconds(int(interval * 1e9))
            for zone, fleet, n in locs:
                ls = cs.upstream_locality_stats.add(total_successful_requests=n, total_issued_requests=n)
                ls.locality.zone = zone
                ls.locality.sub_zone = fleet
        return req

    # ---- routing one request (Envoy's stateful-session semantics) ----
    def route(self, cluster, session, now, sliding_ttl=False):
        """Routes one request of session; returns the fleet it reached, or None (no host)."""
        with self.lock:
            eps = self.endpoints.get(cluster, [])
            ttl = self.cookie_ttl.get(cluster)
            chosen = None
            if ttl is not None and session.cookie is not None and now < session.cookie[1]:
                for ep in eps:
                    if ep[0] == session.cookie[0] and ep[1] in OVERRIDE_OK:
                        chosen = ep
                        break
            if chosen is None:
                healthy = [ep for ep in eps if ep[1] == hs.HEALTHY]
                if not healthy:
                    return None
                self.rr += 1
                chosen = healthy[self.rr % len(healthy)]
                if ttl is not None:
                    session.cookie = (chosen[0], now + ttl)
            elif sliding_ttl:
                session.cookie = (chosen[0], now + ttl)
            key = (cluster, chosen[2], chosen[3])
            self.counts[key] = self.counts.get(key, 0) + 1
            return chosen[3]

    def ready(self, cluster):
        with self.lock:
            return bool(self.endpoints.get(cluster))

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(3)


class Session:
    __slots__ = ("cookie", "next_at", "ends_at")

    def __init__(self, now, rng, request_interval, mean_length):
        self.cookie = None
        self.next_at = now + rng.uniform(0, request_interval)
        self.ends_at = now + rng.expovariate(1.0 / mean_length)


class FleetSim:
    """Users driving requests through the simulated nodes. Counts what reached each fleet per
    window, as a cross-check of what holdfast measures from the load reports."""

    def __init__(self, xds, group, cluster, nodes=3, arrivals_per_s=40.0, mean_session_s=3.0,
                 request_interval_s=0.1, sliding_ttl=False, seed=7, tick_s=0.01):
        self.cluster = cluster
        self.rng = random.Random(seed)
        self.nodes = [SimEnvoy(xds, "sim-envoy-%d" % i, group) for i in range(nodes)]
        self.arrivals, self.mean_session = arrivals_per_s, mean_session_s
        self.request_interval, self.sliding_ttl, self.tick = request_interval_s, sliding_ttl, tick_s
        self.sessions = []
        self.lock = threading.Lock()
        self.window = {}  # fleet -> requests since take_window()
        self.errors = 0
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        while not all(n.ready(self.cluster) for n in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("simulated nodes got no endpoints")
            time.sleep(0.05)
        self.thread.start()
        return self

    def _run(self):
        while not self.stop_flag.is_set():
            now = time.monotonic()
            # Poisson arrivals over this tick
            for _ in range(self._poisson(self.arrivals * self.tick)):
                self.sessions.append(Session(now, self.rng, self.request_interval, self.mean_session))
            alive = []
            for s in self.sessions:
                if now >= s.ends_at:
                    continue
                alive.append(s)
                while s.next_at <= now:
                    s.next_at += self.request_interval
                    node_ = self.nodes[self.rng.randrange(len(self.nodes))]  # L4 spreads requests
                    fleet = node_.route(self.cluster, s, time.time(), self.sliding_ttl)
                    with self.lock:
                        if fleet is None:
                            self.errors += 1
                        else:
                            self.window[fleet] = self.window.get(fleet, 0) + 1
            self.sessions = alive
            self.stop_flag.wait(max(0.0, self.tick - (time.monotonic() - now)))

    def _poisson(self, lam):
        # Knuth; lam is small per tick
        k, p, limit = 0, 1.0, math.exp(-lam)
        while True:
            p *= self.rng.random()
            if p <= limit:
                return k
            k += 1

    def take_window(self):
        with self.lock:
            w, self.window = self.window, {}
        return w

    def stop(self):
        self.stop_flag.set()
        if self.thread.is_alive():
            self.thread.join(3)
        for n in self.nodes:
            n.stop()
