"""A test ADS client speaking real gRPC (Debian's python3-grpcio) with the official Envoy protos
generated at build time (build/api/pb/py). It identifies as Envoy or as gRPC and lets a test send
requests and read responses one by one, so protocol details (ACK, NACK, nonces, versions) can
be checked exactly."""

import os
import queue
import sys
import threading

PB_PY = os.environ.get("HOLDFAST_PB_PY", "")
if PB_PY and PB_PY not in sys.path:
    sys.path.insert(0, PB_PY)

import grpc  # noqa: E402
from envoy.config.cluster.v3 import cluster_pb2  # noqa: E402,F401
from envoy.config.core.v3 import base_pb2  # noqa: E402
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: E402,F401
from envoy.config.listener.v3 import listener_pb2  # noqa: E402,F401
from envoy.config.route.v3 import route_pb2  # noqa: E402,F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: E402,F401
from envoy.extensions.filters.http.stateful_session.v3 import stateful_session_pb2  # noqa: E402,F401
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2  # noqa: E402,F401
from envoy.extensions.http.stateful_session.cookie.v3 import cookie_pb2  # noqa: E402,F401
from envoy.service.discovery.v3 import discovery_pb2  # noqa: E402
from google.rpc import status_pb2  # noqa: E402

T = "type.googleapis.com/envoy.config."
CDS = T + "cluster.v3.Cluster"
EDS = T + "endpoint.v3.ClusterLoadAssignment"
LDS = T + "listener.v3.Listener"
RDS = T + "route.v3.RouteConfiguration"

SOTW = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
DELTA = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"

_END = object()


def node(node_id, cluster, user_agent="envoy"):
    return base_pb2.Node(id=node_id, cluster=cluster, user_agent_name=user_agent)


class AdsClient:
    """One ADS stream. send() queues a request; recv() waits for the next response."""

    def __init__(self, address, delta=False, raw=False, read=True, options=(), credentials=None,
                 method=None):
        if not read:
            # A fixed, small HTTP/2 window: the transport cannot buffer much on our behalf.
            options = list(options) + [("grpc.http2.bdp_probe", 0),
                                       ("grpc.http2.lookahead_bytes", 8192)]
        if credentials is not None:  # grpc.ssl_channel_credentials: mutual TLS
            self.channel = grpc.secure_channel(address, credentials, options=list(options))
        else:
            self.channel = grpc.insecure_channel(address, options=list(options))
        self._out = queue.Queue()
        self._in = queue.Queue()
        self.delta = delta
        method = method or (DELTA if delta else SOTW)  # or a per-type service's method
        req_cls = discovery_pb2.DeltaDiscoveryRequest if delta else discovery_pb2.DiscoveryRequest
        resp_cls = discovery_pb2.DeltaDiscoveryResponse if delta else discovery_pb2.DiscoveryResponse
        call = self.channel.stream_stream(
            method,
            request_serializer=(lambda b: b) if raw else req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString)
        self._call = call(iter(self._out.get, _END))
        self.error = None
        self._thread = None
        if read:  # a client created with read=False never reads: it models a stuck proxy
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()

    def _read(self):
        try:
            for resp in self._call:
                self._in.put(resp)
        except grpc.RpcError as e:
            self.error = e
        self._in.put(_END)

    def send(self, msg):
        self._out.put(msg)

    def recv(self, timeout=5.0):
        """The next response, or None at the end of the stream; raises queue.Empty on timeout."""
        item = self._in.get(timeout=timeout)
        if item is _END:
            self._in.put(_END)
            return None
        return item

    def expect_nothing(self, wait=0.5):
        try:
            item = self._in.get(timeout=wait)
        except queue.Empty:
            return True
        self._in.put(item)
        return False

    def request(self, type_url, names=(), version="", nonce="", node_=None, error=None):
        req = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=list(names),
                                             version_info=version, response_nonce=nonce)
        if node_ is not None:
            req.node.CopyFrom(node_)
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        self.send(req)

    def ack(self, resp, names=()):
        self.request(resp.type_url, names, version=resp.version_info, nonce=resp.nonce)

    def follow(self, until, timeout=10.0):
        """Behaves like Envoy: ACKs every response and subscribes to the endpoints of every
        cluster, until until(latest responses by type) is true. Returns those responses."""
        import time
        latest = {}
        # The clusters whose endpoints it asked for, kept across calls: like Envoy, every EDS
        # ACK names them (an empty list after named subscriptions would unsubscribe).
        eds_names = getattr(self, "_eds_names", [])
        deadline = time.monotonic() + timeout
        while not until(latest):
            r = self.recv(timeout=max(0.1, deadline - time.monotonic()))
            if r is None:
                raise AssertionError("stream ended: %s" % self.error)
            latest[r.type_url] = r
            if r.type_url == CDS:
                self.ack(r)
                names = sorted(c.name for c in unpack(r, cluster_pb2.Cluster))
                if names != eds_names:
                    eds_names = self._eds_names = names
                    last = latest.get(EDS)
                    self.request(EDS, names, version=last.version_info if last else "",
                                 nonce=last.nonce if last else "")
            elif r.type_url == EDS:
                self.ack(r, eds_names)
            elif r.type_url == LDS:
                self.ack(r)
                self.request(RDS, ["edge"], nonce="" if RDS not in latest else latest[RDS].nonce,
                             version="" if RDS not in latest else latest[RDS].version_info)
            else:
                self.ack(r, [n for n in ["edge"]])
        return latest

    def close(self):
        self._out.put(_END)
        self._call.cancel()
        self.channel.close()


def unpack(resp, cls):
    out = []
    for any_ in resp.resources:
        m = cls()
        assert any_.Unpack(m), any_.type_url
        out.append(m)
    return out
