#!/usr/bin/python3
"""A test ADS client that behaves like Envoy (ACKs everything, subscribes to every cluster's
endpoints) as node NODE of group edge, and prints one JSON line {port: health_status} for cluster
CLUSTER each time its EDS changes, until killed (for the browser test: a drain clicked in the UI
reaches EDS)."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from adsclient import AdsClient, CDS, EDS, node, unpack  # noqa: E402
from envoy.config.core.v3 import health_check_pb2  # noqa: E402
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: E402

address, node_id, cluster = sys.argv[1:4]
c = AdsClient(address)
c.request(CDS, node_=node(node_id, "edge"))
seen = [None]


def changed(latest):
    r = latest.get(EDS)
    if r is not None and r.version_info != seen[0]:
        seen[0] = r.version_info
        out = {}
        for cla in unpack(r, endpoint_pb2.ClusterLoadAssignment):
            if cla.cluster_name == cluster:
                for loc in cla.endpoints:
                    for lb in loc.lb_endpoints:
                        out[str(lb.endpoint.address.socket_address.port_value)] = \
                            health_check_pb2.HealthStatus.Name(lb.health_status)
        print(json.dumps(out), flush=True)
    return False


c.follow(changed, timeout=3600)
