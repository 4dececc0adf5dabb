"""Hardening of the restart webhook (issue 14 item 5), against the real holdfast binary, real
shims and real HTTP/HTTPS receivers. Each case names the attack it stops; each fails on the code
before the fix (the hand-written client took IPv4 literals only, no names, no HTTPS, and any
string after the host as the request path)."""

import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import Holdfast, free_port  # noqa: E402
import test_restart  # noqa: E402

API = "/api/v1"


class BadUrlTest(unittest.TestCase):
    def test_hostile_urls_refused_naming_the_field(self):
        # Attacks: CR/LF in the URL injects a header or smuggles a second request; a link-local
        # or unspecified target reaches the cloud metadata service or this host's own ports.
        with Holdfast() as hf:
            before = hf.state()
            for url in ("http://127.0.0.1:9/x\r\nX-Injected: 1",
                        "http://127.0.0.1:9/x HTTP/1.1\r\nHost: evil",
                        "http://127.0.0.1:9/a b",
                        "http://169.254.169.254/latest/meta-data",
                        "http://[fe80::1]/x",
                        "http://[::ffff:169.254.169.254]/x",
                        "http://0.0.0.0:9/x",
                        "http://[::]:9/x",
                        "http://224.0.0.1/x",
                        "gopher://127.0.0.1:9/x",
                        "http:///x"):
                r = hf.post(API + "/restarts", {"service": "ws", "fleet": "blue",
                                                "avg_connection_s": 60, "max_disconnect_pct": 10,
                                                "dry_run": False, "webhook_url": url})
                self.assertEqual(r.status, 422, (url, r.body))
                self.assertEqual(r.json["error"]["field"], "webhook_url", url)
            self.assertEqual(hf.state(), before)


class Receiver:
    """An HTTP webhook receiver that records each request's headers and body."""

    def __init__(self):
        self.calls = []
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                rec.calls.append((self.path, dict(self.headers), json.loads(body)))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class TlsReceiver:
    """A TLS server with a self-signed certificate (no CA vouches for it): records how each
    handshake ended."""

    def __init__(self, tmp):
        key, cert = os.path.join(tmp, "key.pem"), os.path.join(tmp, "cert.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                        "-out", cert, "-days", "1", "-subj", "/CN=localhost"],
                       check=True, capture_output=True)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.outcomes = []
        self.stopping = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(5)
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
                    self.outcomes.append("handshake completed")
            except (ssl.SSLError, OSError) as e:
                self.outcomes.append(str(e))

    def stop(self):
        self.stopping = True
        self.sock.close()


class WebhookClientTest(unittest.TestCase):
    setUp = test_restart.RestartTest.setUp
    endpoints = test_restart.RestartTest.endpoints
    wait = test_restart.RestartTest.wait
    start = test_restart.RestartTest.start

    def batch1(self, rid):
        return self.hf.get(API + "/restarts/" + rid).json["batch_list"][0]

    def test_host_name_target(self):
        # The old client took IPv4 literals only: an orchestrator known by name was refused.
        rec = Receiver()
        self.addCleanup(rec.stop)
        r = self.start(webhook_url="http://localhost:%d/hook?x=1" % rec.port)
        self.wait(lambda: rec.calls, 30, "the webhook called by name")
        path, headers, body = rec.calls[0]
        self.assertEqual(path, "/hook?x=1")
        self.assertEqual(headers["Host"], "localhost:%d" % rec.port)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(body["batch"], 1)
        self.wait(lambda: self.batch1(r["id"])["webhook_ok"], 10, "webhook_ok")

    def test_https_checks_the_certificate(self):
        # Attack: an on-path attacker answers an https:// webhook with its own certificate.
        with tempfile.TemporaryDirectory(prefix="hf-tls-") as tmp:
            tls = TlsReceiver(tmp)
            self.addCleanup(tls.stop)
            r = self.start(webhook_url="https://localhost:%d/hook" % tls.port)
            self.wait(lambda: self.batch1(r["id"])["webhook_attempts"] >= 2, 30, "two attempts")
            self.assertFalse(self.batch1(r["id"])["webhook_ok"])
            self.assertTrue(tls.outcomes, "no TLS connection was made")
            self.assertNotIn("handshake completed", tls.outcomes)
            self.assertTrue(any("UNKNOWN_CA" in o.upper() or "CERTIFICATE" in o.upper()
                                for o in tls.outcomes), tls.outcomes)


if __name__ == "__main__":
    unittest.main(verbosity=2)
