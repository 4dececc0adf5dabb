"""What the shim makes of backends' answers (issue 11 items 3, 4, 7 and "bad input"), with real
holdfast, real shims and raw-socket backends on 127.0.0.1. Each case states the behaviour:

- an answer of any size passes on its status: a 1 MB body, an endless chunked body;
- garbage, an endless header, a close mid-answer, a refused connect, a silent backend and a 503
  fail with the right reason, shown in GET /api/v1/health (verdicts[].reason);
- while all that goes on, the shim's memory stays flat and a good backend stays healthy;
- all of it with kept connections and with a new connection per check;
- checks that do not keep their connection close it with an RST: the backend is left with no
  TIME_WAIT sockets."""

import os
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Holdfast, Shim, free_port  # noqa: E402

API = "/api/v1"
INTERVAL_MS, TIMEOUT_MS = 300, 200


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RawBackend:
    """Accepts connections; each gets `behave(conn)` on its own thread after the request."""

    def __init__(self, port, behave):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(512)
        self.behave = behave
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            c.settimeout(5)
            while not self.stopped:
                req = b""
                while b"\r\n\r\n" not in req:
                    chunk = c.recv(4096)
                    if not chunk:
                        return
                    req += chunk
                if not self.behave(c, req):
                    return
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        self.stopped = True
        self.sock.close()


def ok_small(c, req):
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
    return b"close" not in req.lower()


def big_body(c, req):
    body = b"x" * (1 << 20)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    return True


def endless_body(c, req):
    c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    while True:
        c.sendall(b"1000\r\n" + b"y" * 4096 + b"\r\n")


def garbage(c, req):
    c.sendall(b"\x00\xffSSH-2.0-OpenSSH garbage\r\n\r\n")
    return False


def endless_header(c, req):
    c.sendall(b"HTTP/1.1 200 OK\r\nX-Long: ")
    while True:
        c.sendall(b"a" * 4096)


def mid_answer(c, req):
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")
    return False


def silent(c, req):
    time.sleep(5)
    return False


def unavailable(c, req):
    c.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
    return True


CASES = {  # name: (behaviour, health, reason prefix)
    "good": (ok_small, "healthy", "HTTP 200 in"),
    "big": (big_body, "healthy", "HTTP 200 in"),
    "endless_body": (endless_body, "healthy", "HTTP 200 in"),
    "garbage": (garbage, "unhealthy", "protocol error: not an HTTP response"),
    "endless_header": (endless_header, "unhealthy", "protocol error: headers over"),
    "mid_answer": (mid_answer, "unhealthy", "connection closed mid-answer"),
    "silent": (silent, "unhealthy", "timeout after %d ms waiting for the answer" % TIMEOUT_MS),
    "unavailable": (unavailable, "unhealthy", "HTTP 503 in"),
    "refused": (None, "unhealthy", "connect refused"),
}


class AnswersTest(unittest.TestCase):
    def setUp(self):
        self.hf = Holdfast()
        self.hf.start()
        self.addCleanup(self.hf.__exit__)
        self.hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
        self.backends = []
        self.addCleanup(lambda: [b.stop() for b in self.backends])
        self.shims = []
        self.addCleanup(lambda: [s.stop() for s in self.shims])

    def service(self, name, reuse):
        hc = {"interval_ms": INTERVAL_MS, "timeout_ms": TIMEOUT_MS, "unhealthy_threshold": 2,
              "healthy_threshold": 1, "protocol": "http", "path": "/healthz",
              "reuse_connection": reuse}
        self.hf.post(API + "/services", {"name": name, "proxy_group": "edge", "health_check": hc})
        self.hf.post(API + "/services/%s/fleets" % name, {"name": "blue"})

    def endpoint(self, service, behave):
        port = free_port()
        if behave is not None:
            self.backends.append(RawBackend(port, behave))
        self.hf.post(API + "/services/%s/fleets/blue/endpoints" % service,
                     {"address": "127.0.0.1", "port": port})
        return port

    def verdicts(self):
        out = {}
        for e in self.hf.get(API + "/health").json["endpoints"]:
            out[e["port"]] = (e["health"], [v.get("reason", "") for v in e["verdicts"]])
        return out

    def test_answers_and_reasons(self):
        self.answers_and_reasons(reuse=True)

    def test_answers_and_reasons_new_connection(self):
        # A new connection per check: the answer is peeked first, and closing a socket whose
        # answer was judged on peeked bytes resets it (what is not enough is read for real).
        self.answers_and_reasons(reuse=False)

    def answers_and_reasons(self, reuse):
        self.service("web", reuse)
        ports = {name: self.endpoint("web", c[0]) for name, c in CASES.items()}
        self.shims = [Shim(self.hf.xds, "shim-a", "z1", self.hf.workdir),
                      Shim(self.hf.xds, "shim-b", "z2", self.hf.workdir)]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            v = self.verdicts()
            if all(v[ports[n]][0] == CASES[n][1] and len(v[ports[n]][1]) == 2 for n in CASES):
                break
            time.sleep(0.1)
        v = self.verdicts()
        for name, (_, health, reason) in CASES.items():
            got_health, reasons = v[ports[name]]
            self.assertEqual(got_health, health, (name, v[ports[name]]))
            for r in reasons:
                self.assertTrue(r.startswith(reason), (name, r))
        # Flat memory while the bad backends keep going; the good one stays healthy.
        pids = [s.proc.pid for s in self.shims]
        before = [rss_kb(p) for p in pids]
        time.sleep(6)  # 20 check intervals
        after = [rss_kb(p) for p in pids]
        print("shim RSS kB before %s after %s" % (before, after), file=sys.stderr)
        for b, a in zip(before, after):
            self.assertLess(a - b, 1024)
        self.assertEqual(self.verdicts()[ports["good"]][0], "healthy")

    def test_no_time_wait_on_backends(self):
        self.service("oneshot", False)  # a new connection per check
        port = self.endpoint("oneshot", ok_small)
        self.shims = [Shim(self.hf.xds, "shim-a", "z1", self.hf.workdir)]
        deadline = time.monotonic() + 10
        while self.verdicts()[port][0] != "healthy" and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3)  # ~10 checks, each on its own connection
        out = subprocess.run(["ss", "-tanH", "state", "time-wait"], capture_output=True,
                             text=True, check=True).stdout
        tw = [line for line in out.splitlines() if ":%d " % port in line + " "]
        self.assertEqual(tw, [], "TIME_WAIT sockets left: %s" % tw)


if __name__ == "__main__":
    unittest.main(verbosity=2)
