"""Hardening of the REST server against hostile clients (issue 14 items 1, 2, 7 and 9), against the
real holdfast binary. Each case names the attack it stops; each fails on the code before the fix."""

import os
import resource
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import Holdfast  # noqa: E402

API = "/api/v1"


def raw(hf, head, body=b"", source=None, timeout=5.0):
    """Sends a hand-written request (head without the final blank line) and returns the answer's
    bytes up to the connection's end or timeout."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect(("127.0.0.1", hf.http_port))
    s.sendall(head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        pass
    finally:
        s.close()
    return out


def status_of(answer):
    line = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    return int(line.split()[1]) if line.startswith("HTTP/") else 0


def own_descriptors(n):
    """Raises this test process's own soft descriptor limit so that it can hold n sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            raise unittest.SkipTest("this process may hold only %d descriptors" % hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class CsrfAndRebindingTest(unittest.TestCase):
    """Item 1: the open loopback mode must not be drivable by a web page."""

    @classmethod
    def setUpClass(cls):
        cls.hf = Holdfast().start()

    @classmethod
    def tearDownClass(cls):
        cls.hf.stop()
        cls.hf._tmp.cleanup()

    def tokens(self):
        return self.hf.get(API + "/tokens").json["items"]

    def test_text_plain_post_cannot_mint_a_token(self):
        # Attack: a page POSTs a text/plain body (a "simple" request, no preflight) to /tokens
        # and mints an admin token that locks the operator out.
        before = self.tokens()
        r = self.hf.request("POST", API + "/tokens", raw=b'{"role":"admin"}',
                            headers={"Content-Type": "text/plain"})
        self.assertEqual(r.status, 415, r.body)
        self.assertEqual(r.json["error"]["code"], "unsupported_media_type")
        self.assertEqual(self.tokens(), before)
        self.assertEqual(self.hf.get(API + "/services").status, 200)  # still open: not locked out

    def test_form_post_and_bodyless_post_refused(self):
        # Attack: an HTML form (application/x-www-form-urlencoded), or a body-less no-cors
        # fetch, drives an action.
        r = raw(self.hf, "POST %s/proxy-groups HTTP/1.1\nHost: 127.0.0.1\n"
                "Content-Type: application/x-www-form-urlencoded\nContent-Length: 38\n"
                "Connection: close" % API, b'{"name":"edge","listener_port":10000}\n')
        self.assertEqual(status_of(r), 415, r)
        r = raw(self.hf, "POST %s/restarts/x/abort HTTP/1.1\nHost: 127.0.0.1\n"
                "Content-Length: 0\nConnection: close" % API)
        self.assertEqual(status_of(r), 415, r)
        self.assertEqual(self.hf.get(API + "/proxy-groups").json["items"], [])

    def test_cross_origin_change_refused(self):
        # Attack: a page on another site sends a JSON change (it would need CORS, which we never
        # grant, but the request itself would still run).
        r = self.hf.post(API + "/proxy-groups", {"name": "evil", "listener_port": 10001},
                         headers={"Origin": "http://evil.example"})
        self.assertEqual(r.status, 403, r.body)
        self.assertEqual(r.json["error"]["code"], "cross_origin")
        r = self.hf.post(API + "/proxy-groups", {"name": "evil", "listener_port": 10001},
                         headers={"Origin": "null"})
        self.assertEqual(r.status, 403, r.body)
        self.assertEqual(self.hf.get(API + "/proxy-groups").json["items"], [])
        # The UI's own origin is fine.
        r = self.hf.post(API + "/proxy-groups", {"name": "mine", "listener_port": 10002},
                         headers={"Origin": self.hf.base})
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(self.hf.delete(API + "/proxy-groups/mine",
                                        headers={"Origin": self.hf.base}).status, 204)

    def test_rebinding_host_refused(self):
        # Attack: DNS rebinding; evil.example resolves to 127.0.0.1 and the page reads the API.
        r = raw(self.hf, "GET %s/services HTTP/1.1\nHost: evil.example:%d\nConnection: close"
                % (API, self.hf.http_port))
        self.assertEqual(status_of(r), 421, r)
        self.assertNotIn(b'"items"', r)
        for host in ("127.0.0.1:%d" % self.hf.http_port, "localhost:%d" % self.hf.http_port,
                     "LOCALHOST"):
            r = raw(self.hf, "GET %s/services HTTP/1.1\nHost: %s\nConnection: close" % (API, host))
            self.assertEqual(status_of(r), 200, (host, r))

    def test_http_host_names_another_name(self):
        # A name the operator really uses (a reverse proxy's) is accepted once declared.
        with Holdfast() as hf:
            hf.stop()
            hf.start(extra=["--http-host", "holdfast.internal"])
            for host, status in (("holdfast.internal:%d" % hf.http_port, 200),
                                 ("evil.example", 421)):
                r = raw(hf, "GET %s/services HTTP/1.1\nHost: %s\nConnection: close" % (API, host))
                self.assertEqual(status_of(r), status, (host, r))


class HttpEdgeCasesTest(unittest.TestCase):
    """Item 9."""

    def test_two_content_lengths(self):
        # Attack: request smuggling through a proxy that takes the other Content-Length.
        with Holdfast() as hf:
            body = b'{"name":"edge","listener_port":10000}'
            r = raw(hf, "POST %s/proxy-groups HTTP/1.1\nHost: 127.0.0.1\n"
                    "Content-Type: application/json\nContent-Length: %d\nContent-Length: 5\n"
                    "Connection: close" % (API, len(body)), body)
            self.assertEqual(status_of(r), 400, r)
            self.assertEqual(hf.get(API + "/proxy-groups").json["items"], [])

    def test_expect_continue_with_huge_length(self):
        # Attack: announce 50 MB with Expect: 100-continue and make the server ask for it.
        with Holdfast() as hf:
            r = raw(hf, "POST %s/proxy-groups HTTP/1.1\nHost: 127.0.0.1\n"
                    "Content-Type: application/json\nContent-Length: 52428800\n"
                    "Expect: 100-continue" % API, timeout=3.0)
            self.assertFalse(r.startswith(b"HTTP/1.1 100"), r)
            self.assertEqual(status_of(r), 413, r)


class ConnectionExhaustionTest(unittest.TestCase):
    """Item 2."""

    def test_idle_flood_from_one_address_does_not_lock_out_healthz(self):
        # Attack: 1,000 sockets from one address that never send a byte take every connection
        # slot; /healthz stops answering and an orchestrator restarts holdfast.
        own_descriptors(1000)
        with Holdfast() as hf:
            flood = []
            try:
                for _ in range(1000):
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.setblocking(False)
                    s.connect_ex(("127.0.0.1", hf.http_port))
                    flood.append(s)
                time.sleep(1.0)  # the server has seen them
                times = []
                for _ in range(5):
                    t0 = time.monotonic()
                    r = raw(hf, "GET /healthz HTTP/1.1\nHost: 127.0.0.1\nConnection: close",
                            source="127.0.0.2", timeout=5.0)
                    times.append(time.monotonic() - t0)
                    self.assertEqual(status_of(r), 200, r)
                print("healthz with 1000 idle sockets held from 127.0.0.1: best %.1f ms, "
                      "worst %.1f ms" % (min(times) * 1000, max(times) * 1000))
                self.assertLess(min(times), 0.100, times)
            finally:
                for s in flood:
                    s.close()

    def test_silent_connection_dropped_in_seconds(self):
        # Attack: slowloris; a connection that never sends its request is held for minutes.
        with Holdfast() as hf:
            s = socket.create_connection(("127.0.0.1", hf.http_port))
            s.settimeout(20)
            t0 = time.monotonic()
            try:
                self.assertEqual(s.recv(1), b"")
            except ConnectionResetError:
                pass
            self.assertLess(time.monotonic() - t0, 15)
            s.close()

    def test_event_streams_have_their_own_cap(self):
        # Attack: event-stream subscribers draw on the request pool until nothing else answers.
        with Holdfast() as hf:
            streams = []
            try:
                statuses = []
                for _ in range(33):
                    s = socket.create_connection(("127.0.0.1", hf.http_port))
                    s.settimeout(5)
                    s.sendall(b"GET /api/v1/events?stream=true HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    statuses.append(status_of(s.recv(4096)))
                    streams.append(s)
                self.assertEqual(statuses[:32], [200] * 32)
                self.assertEqual(statuses[32], 503)
                self.assertEqual(hf.get("/healthz").status, 200)
            finally:
                for s in streams:
                    s.close()


class LogInjectionTest(unittest.TestCase):
    """Item 7 (the URL): a peer-supplied string must not start a log line of its own."""

    def test_newline_in_url_is_escaped(self):
        # Attack: %0a in a URL (even one refused with 401) forges a log line.
        with Holdfast() as hf:
            hf.token = hf.cli("token", "create", "--role", "admin", "--db", hf.db).stdout.strip()
            r = raw(hf, "GET %s/x%%0a2026-01-01T00:00:00.000Z%%20info%%20main:%%20FORGED "
                    "HTTP/1.1\nHost: 127.0.0.1\nConnection: close" % API)
            self.assertIn(status_of(r), (401, 404))
            hf.get("/healthz")
            time.sleep(0.2)
            log = hf.log()
            self.assertFalse(any(line.startswith("2026-01-01T00:00:00.000Z info main: FORGED")
                                 for line in log.splitlines()), log[-2000:])
            self.assertIn("\\x0a2026-01-01", log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
