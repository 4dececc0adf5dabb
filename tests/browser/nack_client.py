#!/usr/bin/python3
"""A test ADS client that identifies as Envoy node NODE, rejects the first CDS response with an
error, and stays connected until killed (for the browser test's live-NACK check)."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from adsclient import AdsClient, CDS, node  # noqa: E402

c = AdsClient(sys.argv[1])
c.request(CDS, node_=node(sys.argv[2], "edge"))
r = c.recv(timeout=10)
c.request(CDS, version="", nonce=r.nonce, error="cluster cart: unknown field in override_host_status")
print("nacked", flush=True)
while True:
    time.sleep(1)
