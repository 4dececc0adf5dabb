#!/usr/bin/python3
"""Runs the fleet simulator (a SIMULATION of Envoy nodes on real ADS/LRS, see fleet_sim.py)
until SIGTERM, for tests written in other languages (the browser tests).

  run_sim.py --xds 127.0.0.1:18000 --group edge --cluster cart [--nodes 3] [--rate 40]
"""
import argparse
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet_sim import FleetSim  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xds", required=True)
    ap.add_argument("--group", default="edge")
    ap.add_argument("--cluster", default="cart")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--rate", type=float, default=40.0)
    ap.add_argument("--session", type=float, default=3.0)
    args = ap.parse_args()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    signal.signal(signal.SIGINT, lambda *a: done.set())
    sim = FleetSim(args.xds, args.group, args.cluster, nodes=args.nodes, arrivals_per_s=args.rate,
                   mean_session_s=args.session).start(timeout=30)
    print("simulating", flush=True)
    done.wait()
    sim.stop()


if __name__ == "__main__":
    main()
