"""Test backends: real gRPC servers on 127.0.0.1 whose every method answers with the server's
own name (generic handlers), and a helper that counts which backends a channel reaches."""

import collections
import time
from concurrent import futures

import grpc


class _Named(grpc.GenericRpcHandler):
    def __init__(self, name, delay_s):
        self.name = name.encode()
        self.delay_s = delay_s

    def answer(self, req, ctx):
        if self.delay_s:
            time.sleep(self.delay_s)  # a slow call: one in flight when the server stops fails
        return self.name

    def service(self, details):
        return grpc.unary_unary_rpc_method_handler(self.answer)


class Backend:
    def __init__(self, name, port, delay_s=0.0):
        self.name = name
        self.port = port
        self.delay_s = delay_s
        self.server = None

    def start(self):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.server.add_generic_rpc_handlers((_Named(self.name, self.delay_s),))
        self.server.add_insecure_port("127.0.0.1:%d" % self.port)
        self.server.start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.stop(0).wait()
            self.server = None


def who(channel, n=30, timeout=5.0):
    """Counts which backends answered n RPCs."""
    call = channel.unary_unary("/test.Echo/Who")
    return collections.Counter(call(b"", timeout=timeout).decode() for _ in range(n))


def wait_until(channel, expected, timeout=1.0, n=20):
    """Calls until the last n RPCs reached exactly the backends in expected; returns the time it
    took, or raises AssertionError with what was seen."""
    t0 = time.monotonic()
    seen = None
    while time.monotonic() - t0 < timeout:
        seen = who(channel, n)
        if set(seen) == set(expected):
            return time.monotonic() - t0
    raise AssertionError("after %.1fs RPCs reach %s, want %s" % (timeout, dict(seen or {}), sorted(expected)))
