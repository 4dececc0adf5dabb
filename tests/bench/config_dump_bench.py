"""Benchmark of GET /api/v1/proxies/{node_id}/config (issue 12 item 8): one Envoy node
subscribed to a proxy group of S services (one fleet of E endpoints each); prints the size of
the dump and the time to serve it (median of 9, REST round trip included), for S = 100 and 300.
Run: HOLDFAST_BIN=build/control-plane/holdfast HOLDFAST_PB_PY=build/api/pb/py \\
     /usr/bin/python3 tests/bench/config_dump_bench.py"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from harness import Holdfast  # noqa: E402
from adsclient import AdsClient, CDS, EDS, LDS, RDS, node  # noqa: E402

API = "/api/v1"


def world(hf, services, endpoints):
    hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
    for s in range(services):
        name = "svc%d" % s
        hf.post(API + "/services", {"name": name, "proxy_group": "edge",
                                    "domains": ["%s.example.com" % name],
                                    "affinity": {"mode": "cookie", "strict": True},
                                    "connection": {"max_connection_age_s": 600}})
        hf.post(API + "/services/%s/fleets" % name, {"name": "blue"})
        for e in range(endpoints):
            hf.post(API + "/services/%s/fleets/blue/endpoints" % name,
                    {"address": "10.%d.%d.%d" % (s // 250, s % 250, e + 1), "port": 8080})


def subscribe(hf):
    """Behaves like Envoy (ACKs, EDS for every cluster, RDS) until it holds all four types."""
    c = AdsClient(hf.xds)
    c.request(CDS, node_=node("bench-1", "edge"))
    c.request(LDS)
    c.follow(lambda latest: all(t in latest for t in (CDS, EDS, LDS, RDS)), timeout=60)
    return c


def main():
    print("services endpoints resources dump_bytes median_ms")
    for services in (100, 300):
        with Holdfast() as hf:
            world(hf, services, 10)
            c = subscribe(hf)
            times = []
            for _ in range(9):
                t0 = time.perf_counter()
                r = hf.get(API + "/proxies/bench-1/config")
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status == 200, r.body
            n = sum(len(t["resources"]) for t in r.json["types"].values())
            print("%8d %9d %9d %10d %9.1f" % (services, services * 10, n, len(r.body),
                                                statistics.median(times)))
            c.close()


if __name__ == "__main__":
    main()
