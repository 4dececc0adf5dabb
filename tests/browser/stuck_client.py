#!/usr/bin/python3
"""A test ADS client that identifies as Envoy node NODE in group edge, ACKs the first CDS response,
then never answers another one (a stuck proxy) and stays connected until killed (for the browser
test: a proxy that ACKed an old version must not be shown as in sync)."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from adsclient import AdsClient, CDS, node  # noqa: E402

c = AdsClient(sys.argv[1])
c.request(CDS, node_=node(sys.argv[2], "edge"))
c.ack(c.recv(timeout=10))
print("acked", flush=True)
while True:
    time.sleep(1)
