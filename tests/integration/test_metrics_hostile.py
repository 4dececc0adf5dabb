"""/metrics under hostile clients (issue 14 item 6), against the real holdfast binary.

Attack: the HTTP method is a peer-chosen label value. 20,000 made-up methods used to make
20,000 series (the exposition grew without bound), and one method with a double quote or a
backslash broke the whole exposition for every scraper. Stopped by: methods outside the known
set count as "other", label values are escaped per the Prometheus text format, and every metric
has a cap on its series. The exposition is parsed with a real parser (Debian's
python3-prometheus-client) after the flood."""

import concurrent.futures
import os
import socket
import sys
import unittest

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.dirname(__file__))
from harness import Holdfast  # noqa: E402

FLOOD = 20000
SENDERS = 4  # client threads, each one request per connection (a 405 closes the connection)


def send_one(port, method):
    """Sends one bodyless request with this method; returns its status code (0: no answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"%s /healthz HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"
                  % (method, port))
        head = s.recv(64)
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[0] == b"HTTP/1.1" else 0


def send_methods(port, methods):
    """Sends one request per method from a few threads; returns how many were answered."""
    with concurrent.futures.ThreadPoolExecutor(SENDERS) as pool:
        return sum(1 for status in pool.map(lambda m: send_one(port, m), methods) if status)


class HostileMetricsTest(unittest.TestCase):
    def test_made_up_methods_stay_bounded_and_parseable(self):
        with Holdfast() as hf:
            before = hf.get("/metrics").body
            methods = [b"M%05d" % i for i in range(FLOOD)]
            methods += [b'GE"T', b"B\\ACK", b"POST"]
            answered = send_methods(hf.http_port, methods)
            self.assertGreater(answered, FLOOD * 0.9, "the server answered the flood")
            r = hf.get("/metrics")
            self.assertEqual(r.status, 200)
            text = r.body.decode()
            families = list(text_string_to_metric_families(text))  # raises if it cannot parse
            samples = [smp for f in families for smp in f.samples]
            self.assertLess(len(samples), 400, "series stay bounded after %d made-up methods" % FLOOD)
            # The exposition is about the size it was before the flood, not 1,000 times more.
            self.assertLess(len(r.body), 20 * len(before) + 20000)
            # Every sample line was understood whole (this parser silently skips what follows a
            # stray quote, so count the lines too) and has exactly its labels.
            lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
            self.assertEqual(len(lines), len(samples))
            requests = [smp for smp in samples if smp.name == "holdfast_http_requests_total"]
            for smp in requests:
                self.assertEqual(set(smp.labels), {"method", "route", "status"}, smp)
            methods_seen = {smp.labels["method"] for smp in requests}
            self.assertLessEqual(methods_seen, {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE",
                                                "OPTIONS", "other"})
            others = sum(smp.value for smp in requests if smp.labels["method"] == "other")
            self.assertGreaterEqual(others, answered - 1)  # every made-up method, counted


if __name__ == "__main__":
    unittest.main(verbosity=2)
