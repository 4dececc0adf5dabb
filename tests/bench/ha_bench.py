"""Benchmark (not a test): holdfast replicas on PostgreSQL (docs/ha.md). Prints Markdown tables.

  /usr/bin/python3 tests/bench/ha_bench.py [--nodes 1000] [--rounds 3] [--failovers 5]
                                           [--writes 400]

1. Cross-replica propagation: 3 replicas on one database; `nodes` simulated proxies
   (xds_loadgen --external, each node on its own gRPC connection) spread evenly over them; one
   REST write on replica A; the time from sending it to each node holding the new endpoint, for the
   nodes on A (local) and on B and C (through NOTIFY and their own snapshot rebuild).
2. Leader failover: a blue-green drain whose load the fleet simulator reports to replica B;
   kill -9 the leader; the time to the new leader (GET /api/v1/replicas on B) and to its first
   engine action (the first tail sample stored after the kill). Repeated, killing each new leader.
3. REST write throughput: POST endpoint, one client and 8 clients, on SQLite and on PostgreSQL.

Starts its own PostgreSQL cluster (tests/pg/pgcluster.py) and holdfast processes, all on this
machine: the figures include the simulated proxies' and PostgreSQL's CPU on the same cores.
"""
import argparse
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
sys.path.insert(0, os.path.join(TOP, "tests", "pg"))
sys.path.insert(0, os.path.join(TOP, "tests", "sim"))
os.environ.setdefault("HOLDFAST_BIN", os.path.join(TOP, "build", "control-plane", "holdfast"))
os.environ.setdefault("HOLDFAST_PB_PY", os.path.join(TOP, "build", "api", "pb", "py"))
LOADGEN = os.environ.get("XDS_LOADGEN", os.path.join(TOP, "build", "tests", "bench", "xds_loadgen"))

import harness  # noqa: E402
from harness import Holdfast  # noqa: E402
from pgcluster import PgCluster  # noqa: E402

API = "/api/v1"


def ms(ts):
    import datetime
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp() * 1000


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int((len(v) - 1) * p))] if v else float("nan")


def setup(hf, endpoints=3, ttl=4):
    hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
    hf.post(API + "/services", {"name": "cart", "proxy_group": "edge",
                                "affinity": {"mode": "cookie", "cookie_name": "c", "ttl_s": ttl}})
    for fleet, base in (("blue", 9100), ("green", 9200)):
        hf.post(API + "/services/cart/fleets", {"name": fleet})
        for i in range(endpoints):
            hf.post(API + "/services/cart/fleets/%s/endpoints" % fleet, {"address": "127.0.0.1", "port": base + i})


def leader_id(hf):
    try:
        for it in hf.get(API + "/replicas").json["items"]:
            if it["leader"]:
                return it["id"]
    except Exception:
        pass
    return None


def self_id(hf):
    return [it["id"] for it in hf.get(API + "/replicas").json["items"] if it["self"]][0]


def start_replicas(pg, name, n, extra=()):
    url = pg.create_database(name)
    reps = []
    for i in range(n):
        hf = Holdfast(db=url)
        hf.start(extra=["--log-level", "warn", *extra])
        reps.append(hf)
        if i == 0:
            deadline = time.monotonic() + 10
            while leader_id(hf) is None and time.monotonic() < deadline:
                time.sleep(0.05)
    return reps


def propagation(pg, nodes, rounds):
    reps = start_replicas(pg, "bench_prop", 3)
    try:
        setup(reps[0])
        per = {"A (local)": [], "B": [], "C": []}
        for rnd in range(rounds):
            procs = []
            for i, hf in enumerate(reps):
                n = nodes // 3 + (1 if i < nodes % 3 else 0)
                p = subprocess.Popen([LOADGEN, "--xds", hf.xds, "--http", hf.base.replace("http://", ""),
                                      "--nodes", str(n), "--external"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
                procs.append(p)
            for p in procs:  # each says "connected" once its nodes hold the first EDS
                line = p.stderr.readline()
                if "connected" not in line:
                    raise RuntimeError("loadgen: " + line + p.stderr.read())
            time.sleep(1.0)
            # From the moment the request is sent (the 201 may reach this busy Python process
            # later than the proxies get the change).
            t0 = time.time() * 1000
            r = reps[0].post(API + "/services/cart/fleets/blue/endpoints",
                             {"address": "127.0.0.1", "port": 9300 + rnd})
            assert r.status == 201, r.body
            for key, p in zip(per, procs):
                out, err = p.communicate(timeout=120)
                fields = dict(kv.split("=") for kv in out.split())
                if int(fields["reached"]) != int(fields["nodes"]):
                    raise RuntimeError("not every node got the change: " + out + err)
                per[key].append((float(fields["arrival_p50_ms"]) - t0, float(fields["arrival_p99_ms"]) - t0,
                                 int(fields["nodes"])))
        print("\n### Cross-replica propagation (%d nodes over 3 replicas, %d writes on A)\n" % (nodes, rounds))
        print("| nodes on | nodes | p50 ms (median of rounds) | p99 ms (worst round) |")
        print("| --- | --- | --- | --- |")
        for key, v in per.items():
            print("| %s | %d | %.1f | %.1f |" % (key, v[0][2], pct([x[0] for x in v], 0.5), max(x[1] for x in v)))
    finally:
        for hf in reps:
            hf.__exit__()


def failover(pg, rounds):
    from fleet_sim import FleetSim
    reps = start_replicas(pg, "bench_failover", 3, extra=("--lrs-interval", "200"))
    sim = None
    try:
        setup(reps[0], ttl=600)  # a drain that lasts: deadline = 10 x the lowered TTL
        sim = FleetSim(reps[1].xds, "edge", "cart", nodes=3, arrivals_per_s=40, mean_session_s=60,
                       request_interval_s=0.1).start()
        time.sleep(1.0)
        r = reps[1].post(API + "/deployments", {"service": "cart", "to_fleet": "green", "lowered_ttl_s": 60,
                                                "lead_s": 0, "force": True, "deadline_factor": 10})
        assert r.status == 201, r.body
        d = r.json
        reps[1].post(API + "/deployments/%s/lower-ttl" % d["id"])
        reps[1].post(API + "/deployments/%s/cutover" % d["id"])
        rows = []
        attempts = 0
        while len(rows) < rounds and attempts < 3 * rounds:
            attempts += 1
            ids = {self_id(hf): hf for hf in reps}
            leader = ids[leader_id(reps[1])]
            if leader is reps[1]:
                # B carries the proxies' load: hand its leadership on, untimed.
                leader.stop()
                leader.start(extra=["--log-level", "warn", "--lrs-interval", "200"], keep_ports=True)
                time.sleep(2.0)
                continue
            t0 = time.monotonic()
            killed_ms = time.time() * 1000
            leader.kill9()
            old = [k for k, v in ids.items() if v is leader][0]
            t_leader = t_action = None
            while time.monotonic() - t0 < 30 and t_action is None:
                if t_leader is None and leader_id(reps[1]) not in (None, old):
                    t_leader = time.monotonic() - t0
                tail = reps[1].get(API + "/deployments/" + d["id"]).json["tail"]
                if any(ms(x["t"]) > killed_ms for x in tail):
                    t_action = time.monotonic() - t0
                time.sleep(0.02)
            rows.append((t_leader, t_action))
            leader.start(extra=["--log-level", "warn", "--lrs-interval", "200"], keep_ports=True)
            time.sleep(1.0)
        print("\n### Leader failover (kill -9 of the leader mid-drain, %d times)\n" % rounds)
        print("| | median s | max s |")
        print("| --- | --- | --- |")
        lead = [r[0] for r in rows if r[0] is not None]
        act = [r[1] for r in rows if r[1] is not None]
        print("| new leader elected (%d of %d kills) | %.2f | %.2f |" % (len(lead), rounds, pct(lead, 0.5), max(lead)))
        print("| first engine action (a tail sample) on the new leader (%d of %d) | %.2f | %.2f |"
              % (len(act), rounds, pct(act, 0.5), max(act)))
    finally:
        if sim:
            sim.stop()
        for hf in reps:
            hf.__exit__()


def throughput(hf, writes, clients, base):
    per = writes // clients
    errors = []

    def run(c):
        for k in range(per):
            r = hf.post(API + "/services/cart/fleets/blue/endpoints",
                        {"address": "127.0.0.5", "port": base + c * per + k})
            if r.status != 201:
                errors.append(r.status)

    t0 = time.monotonic()
    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.monotonic() - t0
    assert not errors, errors[:5]
    return per * clients / dt


def writes(pg, n):
    rows = []
    import tempfile
    with tempfile.TemporaryDirectory(prefix="hf-bench-") as tmp:
        for label, db in (("SQLite (WAL, synchronous=FULL)", os.path.join(tmp, "h.db")),
                          ("PostgreSQL 15 (local socket, fsync on)", pg.create_database("bench_writes"))):
            hf = Holdfast(db=db)
            try:
                hf.start(extra=["--log-level", "warn"])
                setup(hf)
                one = throughput(hf, n, 1, 20000)
                eight = throughput(hf, n, 8, 30000)
                rows.append((label, one, eight))
            finally:
                hf.__exit__()
    print("\n### REST write throughput (POST endpoint; %d writes per run)\n" % n)
    print("| database | 1 client, writes/s | 8 clients, writes/s |")
    print("| --- | --- | --- |")
    for r in rows:
        print("| %s | %.0f | %.0f |" % r)


def only_failover():
    pg = PgCluster().start()
    try:
        failover(pg, 5)
    finally:
        pg.destroy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--failovers", type=int, default=5)
    ap.add_argument("--writes", type=int, default=400)
    args = ap.parse_args()
    pg = PgCluster().start()
    try:
        propagation(pg, args.nodes, args.rounds)
        failover(pg, args.failovers)
        writes(pg, args.writes)
    finally:
        pg.destroy()


if __name__ == "__main__":
    main()
