"""The audit log as server-sent events (GET /api/v1/events?stream=true), against the real binary.

Streams wait on the store's event hook (a condition variable), not on a poll: an event is
delivered when its transaction commits, whichever kind of change wrote it, to every open stream;
idle streams cost nothing; SIGTERM ends them and holdfast still exits 0."""

import json
import os
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import Holdfast  # noqa: E402

API = "/api/v1"


class Stream:
    """One raw SSE connection; events() returns the audit events read so far."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(b"GET /api/v1/events?stream=true HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                          b"Accept: text/event-stream\r\n\r\n" % port)
        self.buf = b""

    def read_until(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while not pred(self.buf):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            if not chunk:
                return pred(self.buf)
            self.buf += chunk
        return True

    def events(self):
        out = []
        for line in self.buf.split(b"\n"):
            if line.startswith(b"data: "):
                out.append(json.loads(line[6:]))
        return out

    def close(self):
        self.sock.close()


class EventStreamTest(unittest.TestCase):
    def test_events_reach_every_stream_and_streams_end_on_stop(self):
        hf = Holdfast().start()
        try:
            streams = [Stream(hf.http_port) for _ in range(20)]
            for s in streams:  # connected: the first keep-alive comment comes at once
                self.assertTrue(s.read_until(lambda b: b": keep-alive" in b, 5), s.buf)
            self.assertEqual(hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000}).status, 201)
            # A token is no configuration (no new snapshot), but its audit event is streamed too.
            self.assertEqual(hf.post(API + "/tokens", {"role": "viewer", "name": "ci"}).status, 201)
            for s in streams:
                self.assertTrue(s.read_until(lambda b: b"token.create" in b, 5), s.buf)
                actions = [e["action"] for e in s.events()]
                self.assertEqual(actions, ["proxy_group.create", "token.create"])
            # The REST API still answers with the streams open.
            self.assertEqual(hf.get("/healthz").status, 200)
        finally:
            t0 = time.monotonic()
            hf.stop()  # raises unless holdfast exits 0 on SIGTERM
            self.assertLess(time.monotonic() - t0, 5, "open streams do not hold up shutdown")
            for s in streams:
                s.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
