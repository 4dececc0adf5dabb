"""Rolling restarts, executed, with real processes: ten HTTP backends on 127.0.0.1 checked by two
holdfast-shims, and an orchestrator behind a webhook that really stops and restarts the backends
of each batch it is told is ready. Odd batches are confirmed by the orchestrator calling
.../restarted; even batches are not, and holdfast sees them fail and come back through the
checkers. The webhook refuses its first two calls (holdfast retries with backoff). Midway the
restart is paused, holdfast is killed with SIGKILL and started again on the same database: the
restart is still paused where it was, resumes, and completes with every endpoint active and
healthy, never more than the planned number of batches out of rotation at once. Abort puts
every endpoint back to active; a restart and a deployment of one service exclude each other."""

import http.server
import json
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Holdfast, Shim, free_port  # noqa: E402
from test_health import HttpBackend, TcpBackend  # noqa: E402

API = "/api/v1"
N = 10


class Orchestrator:
    """The webhook receiver: restarts the instances of a ready batch, as a deployer would."""

    def __init__(self, test):
        self.test = test
        self.calls = []
        self.confirmed = []
        self.lock = threading.Lock()
        self.refuse = 2
        orch = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with orch.lock:
                    orch.calls.append(body)
                    refuse = orch.refuse > 0
                    orch.refuse -= refuse
                self.send_response(500 if refuse else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if not refuse:
                    threading.Thread(target=orch.restart_batch, args=(body,), daemon=True).start()

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def restart_batch(self, body):
        t = self.test
        ports = [int(e.rsplit(":", 1)[1]) for e in body["endpoints"]]
        for p in ports:
            t.backends[p].stop()
        if body["batch"] % 2:
            time.sleep(0.2)
            for p in ports:
                t.backends[p] = HttpBackend(p)
            try:
                r = t.hf.post(body["restarted_url"])
                self.confirmed.append((body["batch"], r.status))
            except OSError:
                pass  # holdfast is down meanwhile (the SIGKILL part): then the checkers decide
        else:
            time.sleep(1.2)  # long enough for the checkers to see it fail
            for p in ports:
                t.backends[p] = HttpBackend(p)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class RestartTest(unittest.TestCase):
    def setUp(self):
        self.hf = Holdfast()
        self.hf.start(extra=["--lrs-interval", "200"])
        self.addCleanup(self.hf.__exit__)
        hf = self.hf
        hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
        hc = {"protocol": "http", "path": "/", "interval_ms": 300, "timeout_ms": 200,
              "unhealthy_threshold": 2, "healthy_threshold": 1}
        r = hf.post(API + "/services", {"name": "ws", "proxy_group": "edge", "health_check": hc,
                                        "connection": {"max_connection_age_s": 1, "drain_timeout_s": 1}})
        self.assertEqual(r.status, 201, r.body)
        hf.post(API + "/services/ws/fleets", {"name": "blue"})
        hf.post(API + "/services/ws/fleets", {"name": "green"})
        self.backends = {}
        for _ in range(N):
            p = free_port()
            self.backends[p] = HttpBackend(p)
            hf.post(API + "/services/ws/fleets/blue/endpoints", {"address": "127.0.0.1", "port": p, "zone": "z1"})
        g = free_port()
        self.backends[g] = HttpBackend(g)
        hf.post(API + "/services/ws/fleets/green/endpoints", {"address": "127.0.0.1", "port": g, "zone": "z1"})
        self.addCleanup(lambda: [b.stop() for b in self.backends.values()])
        self.shims = [Shim(hf.xds, "shim-a", "z1", hf.workdir), Shim(hf.xds, "shim-b", "z2", hf.workdir)]
        self.addCleanup(lambda: [s.stop() for s in self.shims])
        self.wait(lambda: all(e["health"] == "healthy" for e in self.endpoints()), 8, "all healthy")
        self.wait(lambda: all(e["health"] == "healthy" for e in self.endpoints("green")), 8, "green healthy")

    def endpoints(self, fleet="blue"):
        return self.hf.get(API + "/services/ws/fleets/%s/endpoints" % fleet).json["items"]

    def wait(self, cond, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.05)
        raise AssertionError("not %s after %.0f s" % (what, timeout))

    def start(self, **kw):
        body = {"service": "ws", "fleet": "blue", "avg_connection_s": 60, "max_disconnect_pct": 10,
                "max_draining_pct": 30, "restart_s": 2, "dry_run": False}
        body.update(kw)
        r = self.hf.post(API + "/restarts", body)
        self.assertEqual(r.status, 201, r.body)
        return r.json

    def test_restart_runs_to_completion_through_kill9(self):
        orch = Orchestrator(self)
        self.addCleanup(orch.stop)
        r = self.start(webhook_url="http://127.0.0.1:%d/restart" % orch.port)
        rid = r["id"]
        self.assertEqual((r["state"], r["batches"], r["batch_size"], r["concurrent_batches"]),
                         ("running", N, 1, 3))
        # a deployment of the same service meanwhile is a conflict, and so is a second restart
        self.assertEqual(self.hf.post(API + "/deployments", {"service": "ws", "to_fleet": "green"}).status, 409)
        self.assertEqual(self.hf.post(API + "/restarts", {"service": "ws", "fleet": "blue", "avg_connection_s": 60,
                                                          "max_disconnect_pct": 10, "dry_run": False}).status, 409)
        max_out = 0

        def batches():
            return self.hf.get(API + "/restarts/" + rid).json["batch_list"]

        def progress(k):
            nonlocal max_out
            bl = batches()
            out = sum(b["state"] not in ("pending", "done") for b in bl)
            max_out = max(max_out, out)
            drained = sum(e["admin_state"] == "draining" for e in self.endpoints())
            self.assertLessEqual(drained, 3)
            return sum(b["state"] == "done" for b in bl) >= k

        self.wait(lambda: progress(3), 30, "3 batches done")
        b1 = batches()[0]
        self.assertGreaterEqual(b1["webhook_attempts"], 3)  # refused twice, then accepted
        self.assertTrue(b1["webhook_ok"])
        self.assertEqual(self.hf.post(API + "/restarts/%s/pause" % rid).status, 200)
        time.sleep(1.0)  # let what the orchestrator is doing settle
        before = [b["state"] for b in batches()]
        self.hf.kill9()
        time.sleep(0.5)
        self.hf.start(extra=["--lrs-interval", "200"], keep_ports=True)
        after = self.hf.get(API + "/restarts/" + rid).json
        self.assertEqual(after["state"], "paused")
        self.assertEqual([b["state"] for b in after["batch_list"]], before)
        time.sleep(1.0)
        self.assertEqual([b["state"] for b in batches()], before)  # paused: nothing moves
        self.assertEqual(self.hf.post(API + "/restarts/%s/resume" % rid).status, 200)
        self.wait(lambda: progress(N), 60, "all batches done")
        self.wait(lambda: self.hf.get(API + "/restarts/" + rid).json["state"] == "completed", 5, "completed")
        self.assertLessEqual(max_out, 3)
        print("restart of %d endpoints: at most %d batches out at once, webhook calls %d"
              % (N, max_out, len(orch.calls)), file=sys.stderr)
        self.assertEqual({(e["admin_state"], e["health"]) for e in self.endpoints()}, {("active", "healthy")})
        self.assertEqual(sorted({c["batch"] for c in orch.calls}), list(range(1, N + 1)))
        self.assertIn((1, 200), orch.confirmed)
        actions = [e["action"] for e in self.hf.get(API + "/events?limit=1000").json["items"]]
        for a in ("restart.start", "restart.batch_draining", "restart.batch_ready", "restart.batch_restarted",
                  "restart.batch_done", "restart.pause", "restart.resume", "restart.complete"):
            self.assertIn(a, actions)
        self.assertEqual(self.hf.post(API + "/restarts/%s/pause" % rid).status, 409)  # over
        # a completed restart no longer blocks a deployment
        self.assertEqual(self.hf.post(API + "/deployments", {"service": "ws", "to_fleet": "green"}).status, 201)

    def test_abort_restores_every_endpoint(self):
        rid = self.start()["id"]  # no webhook, nobody restarts: batches wait in ready
        self.wait(lambda: sum(e["admin_state"] == "draining" for e in self.endpoints()) == 3, 15, "3 draining")
        r = self.hf.post(API + "/restarts/%s/abort" % rid)
        self.assertEqual((r.status, r.json["state"]), (200, "aborted"))
        self.assertEqual({e["admin_state"] for e in self.endpoints()}, {"active"})
        self.assertEqual(self.hf.post(API + "/restarts/%s/resume" % rid).status, 409)
        self.assertEqual(self.hf.post(API + "/restarts/%s/batches/9/restarted" % rid).status, 409)
        self.assertEqual(self.hf.post(API + "/restarts/%s/batches/99/restarted" % rid).status, 404)
        self.assertEqual(self.hf.post(API + "/restarts/%s/jump" % rid).status, 404)
        self.assertEqual(self.hf.get(API + "/restarts/r-nope").status, 404)
        time.sleep(1.0)
        self.assertEqual({e["admin_state"] for e in self.endpoints()}, {"active"})  # nothing moves after
        items = self.hf.get(API + "/restarts").json["items"]
        self.assertEqual([(x["id"], x["state"]) for x in items], [(rid, "aborted")])
        self.assertNotIn("batch_list", items[0])

    def test_silent_webhook_stalls_nothing(self):
        """A webhook that accepts and never answers (2 s timeout per call) must not hold up the
        other batches: they become ready on schedule."""
        silent = TcpBackend(free_port())
        self.addCleanup(silent.stop)
        t0 = time.monotonic()
        r = self.start(webhook_url="http://127.0.0.1:%d/hook" % silent.sock.getsockname()[1])
        schedule = r["drain_window_s"] + 2 * r["interval_s"]

        def ready():
            return [b for b in self.hf.get(API + "/restarts/" + r["id"]).json["batch_list"] if b["state"] == "ready"]
        self.wait(lambda: len(ready()) == 3, schedule + 2.0, "3 batches ready on schedule")
        took = time.monotonic() - t0
        print("3 batches ready %.1f s after start with a silent webhook (schedule %d s)" % (took, schedule),
              file=sys.stderr)
        self.wait(lambda: ready()[0]["webhook_attempts"] >= 2, 10, "the webhook retried")
        self.assertFalse(ready()[0]["webhook_ok"])

    def test_load_reports_end_a_drain_early(self):
        """A proxy reporting per-endpoint load (LRS): the batch stays draining while it reports
        requests in progress on the batch's endpoint, and becomes ready soon after it reports
        none - long before the 31 s drain window."""
        from adsclient import node
        import grpc
        from envoy.service.load_stats.v3 import lrs_pb2
        self.assertEqual(self.hf.patch(API + "/services/ws", {"connection": {"max_connection_age_s": 30}}).status, 200)
        busy = {}  # endpoint id -> requests in progress the proxy reports
        stop = threading.Event()

        def reports():
            first = lrs_pb2.LoadStatsRequest()
            first.node.CopyFrom(node("envoy-lrs-1", "edge"))
            yield first
            while not stop.wait(0.2):
                req = lrs_pb2.LoadStatsRequest()
                loc = req.cluster_stats.add(cluster_name="ws").upstream_locality_stats.add()
                loc.locality.zone, loc.locality.sub_zone = "z1", "blue"
                for e in self.endpoints():
                    es = loc.upstream_endpoint_stats.add(total_requests_in_progress=busy.get(e["id"], 0))
                    es.address.socket_address.address = e["address"]
                    es.address.socket_address.port_value = e["port"]
                yield req

        channel = grpc.insecure_channel(self.hf.xds)
        self.addCleanup(channel.close)
        self.addCleanup(stop.set)
        call = channel.stream_stream("/envoy.service.load_stats.v3.LoadReportingService/StreamLoadStats",
                                     request_serializer=lrs_pb2.LoadStatsRequest.SerializeToString,
                                     response_deserializer=lrs_pb2.LoadStatsResponse.FromString)(reports())
        self.addCleanup(call.cancel)
        self.assertTrue(next(call).report_endpoint_granularity)
        for e in self.endpoints():
            busy[e["id"]] = 2
        r = self.start(max_draining_pct=10)
        self.assertGreaterEqual(r["drain_window_s"], 30)
        rid = r["id"]

        def batch1():
            return self.hf.get(API + "/restarts/" + rid).json["batch_list"][0]
        self.wait(lambda: batch1()["state"] == "draining", 5, "batch 1 draining")
        time.sleep(2.0)
        self.assertEqual(batch1()["state"], "draining")  # requests still in progress
        t0 = time.monotonic()
        busy[batch1()["endpoints"][0]] = 0
        self.wait(lambda: batch1()["state"] == "ready", 5, "batch 1 ready early")
        took = time.monotonic() - t0
        b = batch1()
        self.assertTrue(b["drained_early"])
        print("drain ended %.1f s after the last request finished (window %d s)" % (took, r["drain_window_s"]),
              file=sys.stderr)
        self.assertEqual(self.hf.get(API + "/restarts/" + rid).json["batch_list"][1]["state"], "pending")

    def test_bad_start_changes_nothing(self):
        before = self.hf.state()
        for body, status, field in (
                ({"webhook_url": "ftp://x"}, 422, "webhook_url"),
                ({"webhook_url": "http://169.254.169.254/latest"}, 422, "webhook_url"),
                ({"fleet": "nope"}, 404, None),
                ({"max_disconnect_pct": 4}, 422, "max_disconnect_pct"),
                ({"dry_run": "no"}, 422, "dry_run")):
            b = {"service": "ws", "fleet": "blue", "avg_connection_s": 60, "max_disconnect_pct": 10, "dry_run": False}
            b.update(body)
            r = self.hf.post(API + "/restarts", b)
            self.assertEqual(r.status, status, (body, r.body))
            if field:
                self.assertEqual(r.json["error"].get("field"), field)
        self.assertEqual(self.hf.state(), before)
        self.assertEqual(self.hf.get(API + "/restarts").json["items"], [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
