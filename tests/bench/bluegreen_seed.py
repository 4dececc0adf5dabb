#!/usr/bin/python3
"""Reproduces the seed's blue-green numbers with the fleet simulator (a simulation of Envoy
nodes on real ADS/LRS) against a real holdfast, time scaled: one seed minute = SCALE seconds.

Seed: normal TTL 30 min lowered to 5 min one hour (60 min) before cutover; "the affinity tail
decays exponentially but can take 2-3x the TTL to drop below 1-5 %".

For each cookie model it runs plan -> lower TTL -> lead -> cutover and then records holdfast's
own tail samples (from the nodes' load reports) until 10 lowered TTLs after cutover, and prints
when the tail fell below 5 %, 2 % and 1 % (for good), in multiples of the lowered TTL:
  envoy   Envoy's stateful-session cookie: expiry fixed when issued, never refreshed
  sliding a cookie whose expiry is refreshed by every response (many load balancers' affinity),
          with sessions of 10 and of 5 seed minutes
The curves are written to docs/bluegreen-tail.png (gnuplot) and a .dat file beside it.

  tests/bench/bluegreen_seed.py [--scale 0.2] [--out docs]     (about 2.5 minutes)
"""

import argparse
import datetime
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
sys.path.insert(0, os.path.join(TOP, "tests", "sim"))
os.environ.setdefault("HOLDFAST_PB_PY", os.path.join(TOP, "build", "api", "pb", "py"))
import harness  # noqa: E402

harness.HOLDFAST = os.environ.get("HOLDFAST_BIN", os.path.join(TOP, "build", "control-plane", "holdfast"))
from harness import Holdfast  # noqa: E402
from fleet_sim import FleetSim  # noqa: E402

API = "/api/v1"


def ms(ts):
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp() * 1000


def run(model, scale, minutes, session_min):
    normal, lowered, lead = 30, 5, 60  # seed minutes
    sec = lambda m: max(1, round(m * scale))  # noqa: E731  (holdfast TTLs are whole seconds)
    interval_ms = max(100, int(scale * 1000))  # one load report per seed minute
    hf = Holdfast()
    hf.start(extra=["--lrs-interval", str(interval_ms), "--log-level", "warn"])
    try:
        hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
        hf.post(API + "/services", {"name": "shop", "proxy_group": "edge",
                                    "affinity": {"mode": "cookie", "ttl_s": sec(normal)}})
        hf.post(API + "/services/shop/fleets", {"name": "blue"})
        hf.post(API + "/services/shop/fleets", {"name": "green"})
        for fleet, base in (("blue", 9100), ("green", 9200)):
            for i in range(4):
                hf.post(API + "/services/shop/fleets/%s/endpoints" % fleet,
                        {"address": "127.0.0.1", "port": base + i, "zone": "z%d" % (i % 2)})
        # Sessions: mean session_min seed minutes, a request every half minute, ~60 concurrent.
        sim = FleetSim(hf.xds, "edge", "shop", nodes=3, arrivals_per_s=60.0 / session_min / scale,
                       mean_session_s=session_min * scale, request_interval_s=0.5 * scale,
                       sliding_ttl=(model == "sliding"), seed=11).start()
        try:
            time.sleep(sec(normal) * 1.2)  # steady state under the normal TTL
            d = hf.post(API + "/deployments", {"service": "shop", "to_fleet": "green",
                                              "lowered_ttl_s": sec(lowered), "lead_s": sec(lead),
                                              "tail_threshold_pct": 0.1, "deadline_factor": 10}).json
            hf.post(API + "/deployments/%s/lower-ttl" % d["id"])
            time.sleep(sec(lead))
            d = hf.post(API + "/deployments/%s/cutover" % d["id"]).json
            end = time.monotonic() + minutes * scale
            while time.monotonic() < end and hf.get(API + "/deployments/" + d["id"]).json["state"] == "draining":
                time.sleep(0.2)
            d = hf.get(API + "/deployments/" + d["id"]).json
        finally:
            sim.stop()
    finally:
        hf.stop()
    t0 = ms(d["cutover_at"])
    ttl_ms = sec(lowered) * 1000.0
    curve = [((ms(s["t"]) - t0) / ttl_ms, s["pct"]) for s in d["tail"] if ms(s["t"]) >= t0]
    return curve, d


def below_for_good(curve, pct):
    """The first time (in lowered TTLs) after which every sample is under pct."""
    last_above = 0.0
    for x, y in curve:
        if y >= pct:
            last_above = x
    return last_above


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=0.2, help="seconds per seed minute")
    ap.add_argument("--out", default=os.path.join(TOP, "docs"))
    args = ap.parse_args()
    runs = [("envoy", 10), ("sliding", 10), ("sliding", 5)]  # (cookie model, mean session, min)
    results = {}
    for model, session_min in runs:
        results["%s, %d-minute sessions" % (model, session_min)] = run(model, args.scale, 50, session_min)
    print("| cookie model, sessions | below 5 % | below 2 % | below 1 % | outcome |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name, (curve, d) in results.items():
        cells = []
        for p in (5, 2, 1):
            x = below_for_good(curve, p)
            cells.append("> %.0f x TTL" % curve[-1][0] if curve and x >= curve[-1][0] else "%.1f x TTL" % x)
        outcome = ("finished by %s" % d["finish_reason"]) if d["state"] == "completed" else \
                  "still draining at %.0f x TTL" % (curve[-1][0] if curve else 0)
        print("| %s | %s | %s | %s | %s |" % (name, *cells, outcome))
    os.makedirs(args.out, exist_ok=True)
    dat = os.path.join(args.out, "bluegreen-tail.dat")
    with open(dat, "w") as f:
        f.write("# time since cutover (lowered TTLs)\ttail %%; one block per run\n")
        for i, model in enumerate(results):
            f.write("\n\n# %s\n" % model)
            for x, y in results[model][0]:
                f.write("%.3f\t%.3f\n" % (x, y))
    png = os.path.join(args.out, "bluegreen-tail.png")
    script = """
set terminal pngcairo size 900,480 font ",11"
set output '%s'
set title "Affinity tail after cutover: TTL 30 min lowered to 5 min, 60 min lead (simulated fleet, measured from LRS)"
set xlabel "time since cutover (lowered TTLs)"
set ylabel "requests still reaching blue (%%)"
set grid
set key top right
set xrange [0:10]
set yrange [0:*]
f(x) = 5; g(x) = 1
plot '%s' index 0 with linespoints lw 2 pt 7 ps 0.5 title "Envoy cookie (expiry fixed at issue), 10-min sessions", \\
     '%s' index 1 with linespoints lw 2 pt 5 ps 0.5 title "sliding TTL, 10-min sessions", \\
     '%s' index 2 with linespoints lw 2 pt 9 ps 0.5 title "sliding TTL, 5-min sessions", \\
     f(x) with lines dt 2 lc rgb "gray" title "5 %%", g(x) with lines dt 3 lc rgb "gray" title "1 %%"
""" % (png, dat, dat, dat)
    subprocess.run(["gnuplot"], input=script.replace("pngcairo", "png"), text=True, check=True)
    print("curve: %s (data %s)" % (png, dat))


if __name__ == "__main__":
    main()
