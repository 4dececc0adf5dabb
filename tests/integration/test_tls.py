"""Trust on every stream (issue 13), with real processes and certificates made by the test
(`holdfast pki`, and python3-cryptography for the bad ones: expired, another CA, unknown SAN).

- ADS over mutual TLS with a real gRPC client (python3-grpcio) presenting a group certificate
  receives its group's configuration; another group's certificate: PERMISSION_DENIED; no
  certificate, another CA, expired: the handshake fails; unknown or missing SAN: denied; every
  refusal is audited and changes nothing else.
- HDS: a real holdfast-shim with a checker certificate checks and reports; a proxy certificate, a
  checker certificate claiming another checker's id, or no certificate cannot open HDS (the
  issue's hijack: fake checkers evicting healthy endpoints); a newer stream of the same checker
  replaces the older.
- LRS: reports from a proxy of another group change no deployment's tail, and the issue's
  poisoning (10^9 requests claimed on the new fleet) does not finish a drain.
- Rotation: re-issue the server certificate, SIGHUP; a new handshake sees the new serial while
  an established ADS stream keeps receiving pushes. The same for REST over HTTPS.
- Bad files at start: one-line error naming the file; plaintext xDS only on loopback.
"""

import datetime
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import adsclient  # noqa: E402
from adsclient import CDS, AdsClient, node, unpack  # noqa: E402
from harness import HOLDFAST, Holdfast, Shim, free_port  # noqa: E402
import grpc  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402
from envoy.config.core.v3 import base_pb2, health_check_pb2  # noqa: E402
from envoy.config.endpoint.v3 import endpoint_components_pb2, load_report_pb2  # noqa: E402
from envoy.service.health.v3 import hds_pb2  # noqa: E402
from envoy.service.load_stats.v3 import lrs_pb2  # noqa: E402

API = "/api/v1"
HDS = "/envoy.service.health.v3.HealthDiscoveryService/StreamHealthCheck"
LRS = "/envoy.service.load_stats.v3.LoadReportingService/StreamLoadStats"
PKI = None  # the folder of the test's CA, made once


def pki(*args):
    r = subprocess.run([HOLDFAST, "pki", *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def read(name):
    with open(os.path.join(PKI, name), "rb") as f:
        return f.read()


def creds(name):
    """gRPC channel credentials presenting NAME.crt (None: no client certificate)."""
    if name is None:
        return grpc.ssl_channel_credentials(read("ca.crt"))
    return grpc.ssl_channel_credentials(read("ca.crt"), read(name + ".key"), read(name + ".crt"))


def forge(name, san_uri=None, expired=False, ca=None):
    """A client certificate made here with python3-cryptography: signed by our CA (or by ca, a
    (cert, key) of another CA), with an optional URI SAN, possibly expired."""
    if ca is None:
        ca_cert = x509.load_pem_x509_certificate(read("ca.crt"))
        ca_key = serialization.load_pem_private_key(read("ca.key"), None)
    else:
        ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = (now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)) if expired \
        else (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1))
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
         .issuer_name(ca_cert.subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end))
    if san_uri:
        b = b.add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(san_uri)]), False)
    cert = b.sign(ca_key, hashes.SHA256())
    with open(os.path.join(PKI, name + ".crt"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(PKI, name + ".key"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def other_ca():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "holdfast CA")])  # same name!
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    return cert, key


def setUpModule():
    global PKI
    PKI = tempfile.mkdtemp(prefix="hf-pki-")
    pki("init", "--dir", PKI)
    pki("issue", "--dir", PKI, "--server", "127.0.0.1")
    for g in ("edge", "other"):
        pki("issue", "--dir", PKI, "--group", g)
    for c in ("shim-a", "shim-b", "fake"):
        pki("issue", "--dir", PKI, "--checker", c)
    forge("expired-edge", "spiffe://holdfast/group/edge", expired=True)
    forge("foreign-edge", "spiffe://holdfast/group/edge", ca=other_ca())
    forge("unknown-san", "spiffe://holdfast/admin/root")
    forge("no-san")


def tearDownModule():
    shutil.rmtree(PKI, ignore_errors=True)


def tls_args(server="server-127.0.0.1"):
    return ["--xds-tls-cert", os.path.join(PKI, server + ".crt"),
            "--xds-tls-key", os.path.join(PKI, server + ".key"),
            "--xds-client-ca", os.path.join(PKI, "ca.crt")]


def shim_args(name):
    return ["--tls-cert", os.path.join(PKI, name + ".crt"), "--tls-key", os.path.join(PKI, name + ".key"),
            "--ca", os.path.join(PKI, "ca.crt")]


def server_serial(port, client="group-edge"):
    """The serial of the certificate a new TLS handshake on port presents."""
    ctx = ssl.create_default_context(cafile=os.path.join(PKI, "ca.crt"))
    ctx.load_cert_chain(os.path.join(PKI, client + ".crt"), os.path.join(PKI, client + ".key"))
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            return x509.load_der_x509_certificate(t.getpeercert(binary_form=True)).serial_number


def file_serial(name):
    return x509.load_pem_x509_certificate(read(name + ".crt")).serial_number


def wait_for(fn, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("condition not met within %ss" % timeout)


def first_response(cred, cluster, node_id="n1", timeout=5):
    """Opens an ADS stream with cred, asks for clusters; returns the cluster names, or raises
    grpc.RpcError."""
    ch = grpc.secure_channel(HF.xds, cred) if cred is not None else grpc.insecure_channel(HF.xds)
    try:
        call = ch.stream_stream(adsclient.SOTW,
                                request_serializer=adsclient.discovery_pb2.DiscoveryRequest.SerializeToString,
                                response_deserializer=adsclient.discovery_pb2.DiscoveryResponse.FromString)
        req = adsclient.discovery_pb2.DiscoveryRequest(type_url=CDS, node=node(node_id, cluster))
        for r in call(iter([req]), timeout=timeout):
            return sorted(c.name for c in unpack(r, adsclient.cluster_pb2.Cluster))
    finally:
        ch.close()


HF = None


class HdsStream:
    """A raw HDS stream: hello as node_id, then reports on demand."""

    def __init__(self, cred, node_id):
        self.ch = grpc.secure_channel(HF.xds, cred) if cred is not None else grpc.insecure_channel(HF.xds)
        self.out = []
        self.cv = threading.Condition()
        self.closed = False
        call = self.ch.stream_stream(HDS, request_serializer=hds_pb2.HealthCheckRequestOrEndpointHealthResponse.SerializeToString,
                                     response_deserializer=hds_pb2.HealthCheckSpecifier.FromString)
        hello = hds_pb2.HealthCheckRequestOrEndpointHealthResponse(
            health_check_request=hds_pb2.HealthCheckRequest(node=base_pb2.Node(id=node_id)))
        self.queue = [hello]
        self.call = call(self._gen(), timeout=30)
        self.specs, self.error = [], None
        threading.Thread(target=self._read, daemon=True).start()

    def _gen(self):
        while True:
            with self.cv:
                while not self.queue and not self.closed:
                    self.cv.wait()
                if self.closed:
                    return
                m = self.queue.pop(0)
            yield m

    def _read(self):
        try:
            for s in self.call:
                self.specs.append(s)
        except grpc.RpcError as e:
            self.error = e

    def report_unhealthy(self, service, port):
        ep = hds_pb2.EndpointHealth(endpoint=endpoint_components_pb2.Endpoint(), health_status=health_check_pb2.UNHEALTHY)
        ep.endpoint.address.socket_address.address = "127.0.0.1"
        ep.endpoint.address.socket_address.port_value = port
        r = hds_pb2.HealthCheckRequestOrEndpointHealthResponse(endpoint_health_response=hds_pb2.EndpointHealthResponse(
            cluster_endpoints_health=[hds_pb2.ClusterEndpointsHealth(cluster_name=service, locality_endpoints_health=[
                hds_pb2.LocalityEndpointsHealth(locality=base_pb2.Locality(zone="z1"), endpoints_health=[ep])])]))
        with self.cv:
            self.queue.append(r)
            self.cv.notify()

    def close(self):
        with self.cv:
            self.closed = True
            self.cv.notify()
        self.call.cancel()
        self.ch.close()


class LrsStream:
    """A raw LRS stream sending one report of `requests` per fleet every `every` seconds."""

    def __init__(self, cred, node_id, cluster, loads, every=0.1):
        self.ch = grpc.secure_channel(HF.xds, cred)
        self.stop = threading.Event()
        self.error = None
        call = self.ch.stream_stream(LRS, request_serializer=lrs_pb2.LoadStatsRequest.SerializeToString,
                                     response_deserializer=lrs_pb2.LoadStatsResponse.FromString)

        def gen():
            first = True
            while not self.stop.is_set():
                req = lrs_pb2.LoadStatsRequest(cluster_stats=[load_report_pb2.ClusterStats(
                    cluster_name="cart", upstream_locality_stats=[
                        load_report_pb2.UpstreamLocalityStats(locality=base_pb2.Locality(zone="z1", sub_zone=f),
                                                              total_successful_requests=n)
                        for f, n in loads.items()])])
                if first:
                    req.node.CopyFrom(node(node_id, cluster))
                    first = False
                yield req
                time.sleep(every)

        self.call = call(gen(), timeout=60)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for _ in self.call:
                pass
        except grpc.RpcError as e:
            self.error = e

    def close(self):
        self.stop.set()
        self.call.cancel()
        self.ch.close()


class XdsTlsTest(unittest.TestCase):
    def setUp(self):
        global HF
        self.hf = HF = Holdfast()
        self.hf.start(extra=[*tls_args(), "--lrs-interval", "200"])
        self.addCleanup(self.hf.__exit__)
        for g, port in (("edge", 10000), ("other", 10001)):
            self.assertEqual(self.hf.post(API + "/proxy-groups", {"name": g, "listener_port": port}).status, 201)
        self.hf.post(API + "/services", {"name": "cart", "proxy_group": "edge",
                                         "health_check": {"protocol": "tcp", "interval_ms": 300, "timeout_ms": 200,
                                                          "unhealthy_threshold": 2, "healthy_threshold": 1}})
        self.hf.post(API + "/services", {"name": "pay", "proxy_group": "other"})
        for f in ("blue", "green"):
            self.hf.post(API + "/services/cart/fleets", {"name": f})

    def events(self, action):
        return [e for e in self.hf.get(API + "/events?limit=1000").json["items"] if e["action"] == action]

    def test_ads_group_certificate_gets_its_group_only(self):
        self.assertEqual(first_response(creds("group-edge"), "edge"), ["cart"])
        self.assertEqual(first_response(creds("group-other"), "other"), ["pay"])
        with self.assertRaises(grpc.RpcError) as e:
            first_response(creds("group-other"), "edge", node_id="spy")
        self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        self.assertIn("group other may not fetch the configuration of group 'edge'", e.exception.details())
        # Delta ADS is refused the same way.
        c = AdsClient(self.hf.xds, delta=True, credentials=creds("group-other"))
        c.send(adsclient.discovery_pb2.DeltaDiscoveryRequest(type_url=CDS, node=node("spy2", "edge")))
        self.assertIsNone(c.recv())
        self.assertEqual(c.error.code(), grpc.StatusCode.PERMISSION_DENIED)
        c.close()
        denied = wait_for(lambda: len(self.events("xds.denied")) >= 2 and self.events("xds.denied"), 5)
        self.assertEqual(len(denied), 2)
        self.assertIn("node spy refused: group other may not fetch", denied[0]["summary"])
        connected = [e["object"] for e in self.events("proxy.connect")]
        self.assertNotIn("proxies/spy", connected)  # refused before it counted as a proxy
        self.assertIn('holdfast_xds_denied_total{service="ADS"} 2', self.hf.get("/metrics").body.decode())

    def test_bad_client_certificates(self):
        before = self.hf.state()
        for name in (None, "foreign-edge", "expired-edge"):  # the handshake fails
            with self.assertRaises(grpc.RpcError) as e:
                first_response(creds(name), "edge")
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE, name)
        for name in ("unknown-san", "no-san", "checker-shim-a"):  # verified, but may not
            with self.assertRaises(grpc.RpcError) as e:
                first_response(creds(name), "edge")
            self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED, name)
        ch = grpc.insecure_channel(self.hf.xds)  # plaintext on the TLS port
        with self.assertRaises(grpc.RpcError) as e:
            list(ch.stream_stream(adsclient.SOTW)(iter([b""]), timeout=3))
        ch.close()
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
        refused = wait_for(lambda: len(self.events("xds.tls_refused")) >= 3 and self.events("xds.tls_refused"), 5)
        reasons = " ".join(e["summary"] for e in refused)
        self.assertIn("did not return a certificate", reasons)
        self.assertIn("certificate verify failed", reasons)
        denied = " ".join(e["summary"] for e in wait_for(
            lambda: len(self.events("xds.denied")) >= 3 and self.events("xds.denied"), 5))
        self.assertIn("unknown identity 'spiffe://holdfast/admin/root'", denied)
        self.assertIn("a certificate without a URI SAN", denied)
        self.assertIn("checker shim-a may use HDS only", denied)
        for e in refused + self.events("xds.denied"):
            self.assertNotIn("PRIVATE", e["summary"])
        after = self.hf.state()
        before.pop("events"), after.pop("events")
        self.assertEqual(before, after)  # nothing else changed
        self.assertEqual(self.hf.get(API + "/proxies").json["items"], [])

    def test_hds_checker_certificates_only(self):
        backends = []
        for _ in range(3):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(64)
            backends.append(s)
        self.addCleanup(lambda: [s.close() for s in backends])
        ports = [s.getsockname()[1] for s in backends]
        for p in ports:
            self.hf.post(API + "/services/cart/fleets/blue/endpoints", {"address": "127.0.0.1", "port": p, "zone": "z1"})
        shims = [Shim(self.hf.xds, n, "z%d" % i, self.hf.workdir, extra=shim_args("checker-" + n))
                 for i, n in enumerate(("shim-a", "shim-b"))]
        self.addCleanup(lambda: [s.stop() for s in shims])

        def healthy():
            eps = self.hf.get(API + "/health").json["endpoints"]
            return len(eps) == 3 and all(e["health"] == "healthy" for e in eps)
        wait_for(healthy, 10)  # the real shims check and report over mTLS
        self.assertEqual(sorted(c["node_id"] for c in self.hf.get(API + "/health").json["checkers"]), ["shim-a", "shim-b"])

        # The hijack: fake checkers reporting every endpoint unhealthy, as whoever they can be.
        attempts = [(creds("group-edge"), "fake-1", "group edge may not open a health-check"),
                    (creds("checker-fake"), "shim-a", "checker fake may not check health as 'shim-a'"),
                    (creds("unknown-san"), "fake-2", "unknown identity")]
        for cred, node_id, why in attempts:
            s = HdsStream(cred, node_id)
            for p in ports:
                s.report_unhealthy("cart", p)
            wait_for(lambda: s.error is not None, 5)
            self.assertEqual(s.error.code(), grpc.StatusCode.PERMISSION_DENIED)
            self.assertIn(why, s.error.details())
            s.close()
        s = HdsStream(creds(None), "fake-3")  # no certificate: no handshake
        wait_for(lambda: s.error is not None, 5)
        self.assertEqual(s.error.code(), grpc.StatusCode.UNAVAILABLE)
        s.close()
        time.sleep(1.0)  # several check intervals
        self.assertTrue(healthy())  # nothing evicted
        self.assertEqual(self.events("endpoint.evict"), [])

        # A newer stream of the same checker identity replaces the older one.
        old = HdsStream(creds("checker-fake"), "fake")
        wait_for(lambda: old.specs, 5)
        new = HdsStream(creds("checker-fake"), "fake")
        wait_for(lambda: old.error is not None, 5)
        self.assertEqual(old.error.code(), grpc.StatusCode.ABORTED)
        self.assertIsNone(new.error)
        old.close()
        new.close()

    def test_lrs_from_another_group_counts_nowhere(self):
        for f in ("blue", "green"):
            self.hf.post(API + "/services/cart/fleets/%s/endpoints" % f, {"address": "127.0.0.1", "port": free_port()})
        d = self.hf.post(API + "/deployments", {"service": "cart", "to_fleet": "green", "lowered_ttl_s": 60,
                                                "lead_s": 1, "force": True, "deadline_factor": 10})
        self.assertEqual(d.status, 201, d.body)
        dep = d.json["id"]
        self.assertEqual(self.hf.post(API + "/deployments/%s/lower-ttl" % dep).status, 200)
        r = self.hf.post(API + "/deployments/%s/cutover" % dep, {"force": True})
        self.assertEqual(r.status, 200, r.body)
        cutover_at = r.json["cutover_at"]
        # The poisoning: a proxy of another group claims 10^9 requests on the new fleet, while an
        # honest proxy of the service's group still sends half of its traffic to the old one.
        proxy = AdsClient(self.hf.xds, credentials=creds("group-edge"))  # one connected proxy
        self.addCleanup(proxy.close)
        proxy.request(CDS, node_=node("edge-1", "edge"))
        self.assertIsNotNone(proxy.recv())
        spy = AdsClient(self.hf.xds, credentials=creds("group-other"))  # another group's
        self.addCleanup(spy.close)
        spy.request(CDS, node_=node("evil", "other"))
        self.assertIsNotNone(spy.recv())
        poison = LrsStream(creds("group-other"), "evil", "edge", {"green": 10 ** 9})
        honest = LrsStream(creds("group-edge"), "edge-1", "edge", {"blue": 50, "green": 50})
        self.addCleanup(poison.close)
        self.addCleanup(honest.close)

        def samples():
            t = self.hf.get(API + "/deployments/" + dep).json["tail"]
            return [s for s in t if s["t"] >= cutover_at]
        state = lambda: self.hf.get(API + "/deployments/" + dep).json["state"]  # noqa: E731
        wait_for(lambda: len(samples()) >= 8 or state() != "draining", 10)
        self.assertEqual(state(), "draining")  # not finished by threshold
        for s in samples()[1:]:
            self.assertLess(s["total_requests"], 10 ** 6)  # the poison never counted
            self.assertGreater(s["pct"], 30)
            # Whose reports: the honest proxy only, of the one connected proxy of group edge.
            self.assertEqual((s["reporters"], s["connected_proxies"]), (1, 1))
        m = self.hf.get("/metrics").body.decode()
        dropped = [line for line in m.splitlines() if line.startswith("holdfast_lrs_reports_dropped_total")]
        self.assertTrue(dropped and float(dropped[0].split()[-1]) >= 5, dropped)
        # A checker may not report load at all.
        bad = LrsStream(creds("checker-shim-a"), "shim-a", "", {"green": 1})
        wait_for(lambda: bad.error is not None, 5)
        self.assertEqual(bad.error.code(), grpc.StatusCode.PERMISSION_DENIED)
        bad.close()

    def test_rotation_keeps_streams(self):
        port = self.hf.xds_port
        old_serial = server_serial(port)
        self.assertEqual(old_serial, file_serial("server-127.0.0.1"))
        c = AdsClient(self.hf.xds, credentials=creds("group-edge"))
        self.addCleanup(c.close)
        c.request(CDS, node_=node("edge-1", "edge"))
        r = c.recv()
        self.assertEqual(sorted(x.name for x in unpack(r, adsclient.cluster_pb2.Cluster)), ["cart"])
        c.ack(r)
        pki("issue", "--dir", PKI, "--server", "127.0.0.1")  # rotate
        new_serial = file_serial("server-127.0.0.1")
        self.assertNotEqual(new_serial, old_serial)
        self.hf.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: server_serial(port) == new_serial, 5)
        self.assertIn("xDS certificate reloaded", self.hf.log())
        # The established stream still gets pushes.
        self.hf.post(API + "/services", {"name": "cart2", "proxy_group": "edge"})
        r = c.recv()
        self.assertEqual(sorted(x.name for x in unpack(r, adsclient.cluster_pb2.Cluster)), ["cart", "cart2"])
        self.assertIsNone(c.error)
        # A new client handshakes against the new certificate and is served.
        self.assertEqual(first_response(creds("group-edge"), "edge"), ["cart", "cart2"])
        # A file change alone (no SIGHUP) is picked up too.
        pki("issue", "--dir", PKI, "--server", "127.0.0.1")
        third = file_serial("server-127.0.0.1")
        wait_for(lambda: server_serial(port) == third, 5)
        # A broken file on reload: the old certificate stays, the log says why.
        with open(os.path.join(PKI, "server-127.0.0.1.key"), "wb") as f:
            f.write(read("group-edge.key"))
        self.hf.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "keeping serial" in self.hf.log(), 5)
        self.assertIn("the key does not match the certificate", self.hf.log())
        self.assertEqual(server_serial(port), third)
        pki("issue", "--dir", PKI, "--server", "127.0.0.1")  # leave a good pair for other tests

    def test_shim_reloads_its_certificate_for_the_next_connection(self):
        mine = os.path.join(self.hf.workdir, "shim-pki")
        os.mkdir(mine)
        for ext in ("crt", "key"):
            shutil.copy(os.path.join(PKI, "checker-shim-a." + ext), os.path.join(mine, "me." + ext))
        args = ["--tls-cert", os.path.join(mine, "me.crt"), "--tls-key", os.path.join(mine, "me.key"),
                "--ca", os.path.join(PKI, "ca.crt")]
        shim = Shim(self.hf.xds, "shim-a", "z1", self.hf.workdir, extra=args)
        self.addCleanup(shim.stop)
        names = lambda: [c["node_id"] for c in self.hf.get(API + "/health").json["checkers"]]  # noqa: E731
        wait_for(lambda: names() == ["shim-a"], 10)
        # Rotate the shim's files to another identity and SIGHUP it: the stream goes on.
        for ext in ("crt", "key"):
            shutil.copy(os.path.join(PKI, "checker-fake." + ext), os.path.join(mine, "me." + ext))
        shim.proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        self.assertEqual(names(), ["shim-a"])
        self.assertEqual(self.events("checker.disconnect"), [])
        # Its next connection presents the new certificate: holdfast restarts, the shim
        # reconnects as checker "fake" claiming shim-a, and is refused.
        self.hf.kill9()
        self.hf.start(extra=[*tls_args(), "--lrs-interval", "200"], keep_ports=True)
        wait_for(lambda: any("checker fake may not check health as 'shim-a'" in e["summary"]
                             for e in self.events("xds.denied")), 10)
        with open(shim.log_path, "rb") as f:
            self.assertIn(b"certificates reloaded", f.read())


class PkiTest(unittest.TestCase):
    def test_pki_files(self):
        d = tempfile.mkdtemp(prefix="hf-pki-t-")
        self.addCleanup(shutil.rmtree, d, True)
        self.assertEqual(pki("init", "--dir", d + "/ca"), [d + "/ca/ca.crt", d + "/ca/ca.key"])
        d += "/ca"
        crt, key = pki("issue", "--dir", d, "--group", "edge")
        self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(d + "/ca.key").st_mode & 0o777, 0o600)
        ca = x509.load_pem_x509_certificate(open(d + "/ca.crt", "rb").read())
        self.assertTrue(ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)

        def sans(path):
            c = x509.load_pem_x509_certificate(open(path, "rb").read())
            v = subprocess.run(["openssl", "verify", "-CAfile", d + "/ca.crt", path], capture_output=True)
            self.assertEqual(v.returncode, 0, v.stdout)
            return c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(sans(crt).get_values_for_type(x509.UniformResourceIdentifier),
                         ["spiffe://holdfast/group/edge"])
        crt, _ = pki("issue", "--dir", d, "--checker", "shim-a.z1")
        self.assertEqual(sans(crt).get_values_for_type(x509.UniformResourceIdentifier),
                         ["spiffe://holdfast/checker/shim-a.z1"])
        crt, _ = pki("issue", "--dir", d, "--server", "127.0.0.1")
        self.assertEqual([str(a) for a in sans(crt).get_values_for_type(x509.IPAddress)], ["127.0.0.1"])
        crt, _ = pki("issue", "--dir", d, "--server", "xds.example.com")
        self.assertEqual(sans(crt).get_values_for_type(x509.DNSName), ["xds.example.com"])
        run = lambda *a: subprocess.run([HOLDFAST, "pki", *a], capture_output=True, text=True)  # noqa: E731
        for bad in (["--group", "Edge"], ["--group", "a/b"], ["--checker", "a/b"], ["--server", "a b"],
                    ["--group", "x", "--checker", "y"], []):
            r = run("issue", "--dir", d, *bad)
            self.assertEqual(r.returncode, 2, (bad, r.stderr))
        r = run("init", "--dir", d)  # one CA per folder: never overwritten
        self.assertEqual(r.returncode, 1)
        self.assertIn("exists already", r.stderr)
        r = run("issue", "--dir", d + "/nope", "--group", "edge")
        self.assertEqual(r.returncode, 1)
        self.assertIn("pki init", r.stderr)


class RestHttpsTest(unittest.TestCase):
    def test_https_with_tokens_and_rotation(self):
        hf = Holdfast()
        self.addCleanup(hf.__exit__)
        pki("issue", "--dir", PKI, "--server", "127.0.0.1")
        hf.ssl_context = ssl.create_default_context(cafile=os.path.join(PKI, "ca.crt"))
        hf.start(extra=["--tls-cert", os.path.join(PKI, "server-127.0.0.1.crt"),
                        "--tls-key", os.path.join(PKI, "server-127.0.0.1.key")])
        self.assertIn("web UI on https://127.0.0.1:", hf.log())
        self.assertEqual(hf.get("/").status, 200)  # the UI
        tok = hf.cli("token", "create", "--role", "admin", "--db", hf.db).stdout.strip()
        self.assertEqual(hf.get(API + "/proxy-groups", token="").status, 401)
        hf.token = tok
        self.assertEqual(hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000}).status, 201)
        self.assertEqual(hf.get(API + "/proxy-groups").json["items"][0]["name"], "edge")
        # Plain HTTP on the HTTPS port gets no API.
        with socket.create_connection(("127.0.0.1", hf.http_port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(3)
            try:
                data = s.recv(100)
            except (socket.timeout, ConnectionResetError):
                data = b""
            self.assertNotIn(b"200", data)
        # Rotation: a new connection sees the new serial.
        ctx = ssl.create_default_context(cafile=os.path.join(PKI, "ca.crt"))

        def serial():
            with socket.create_connection(("127.0.0.1", hf.http_port), timeout=5) as s:
                with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
                    return x509.load_der_x509_certificate(t.getpeercert(binary_form=True)).serial_number
        self.assertEqual(serial(), file_serial("server-127.0.0.1"))
        pki("issue", "--dir", PKI, "--server", "127.0.0.1")
        hf.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: serial() == file_serial("server-127.0.0.1"), 5)
        self.assertEqual(hf.get(API + "/proxy-groups").status, 200)


class StartupTest(unittest.TestCase):
    def run_hf(self, *args):
        tmp = tempfile.mkdtemp(prefix="hf-tls-")
        self.addCleanup(shutil.rmtree, tmp, True)
        return subprocess.run([HOLDFAST, "--db", os.path.join(tmp, "h.db"), "--http", "127.0.0.1:%d" % free_port(),
                               *args], capture_output=True, text=True, timeout=30)

    def test_bad_files_and_addresses(self):
        xds = ["--xds", "127.0.0.1:%d" % free_port()]
        key = os.path.join(PKI, "group-edge.key")
        r = self.run_hf(*xds, "--xds-tls-cert", os.path.join(PKI, "server-127.0.0.1.crt"), "--xds-tls-key", key,
                        "--xds-client-ca", os.path.join(PKI, "ca.crt"))
        self.assertEqual(r.returncode, 1)
        errors = [line for line in r.stderr.splitlines() if " error " in line]
        self.assertEqual(len(errors), 1, r.stderr)
        self.assertIn(key + ": the key does not match the certificate", errors[0])
        missing = os.path.join(PKI, "nope.crt")
        r = self.run_hf(*xds, "--xds-tls-cert", missing, "--xds-tls-key", key,
                        "--xds-client-ca", os.path.join(PKI, "ca.crt"))
        self.assertEqual(r.returncode, 1)
        self.assertIn(missing + ": cannot open it", r.stderr)
        r = self.run_hf(*xds, "--tls-cert", os.path.join(PKI, "ca.key"), "--tls-key", key)
        self.assertEqual(r.returncode, 1)
        self.assertIn("ca.key: not a PEM certificate", r.stderr)
        r = self.run_hf("--xds", "0.0.0.0:%d" % free_port())
        self.assertEqual(r.returncode, 2)
        self.assertIn("is not a loopback address", r.stderr)
        r = self.run_hf(*xds, "--xds-tls-cert", os.path.join(PKI, "server-127.0.0.1.crt"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("go together", r.stderr)
        r = self.run_hf(*xds, "--xds-local", "0.0.0.0:%d" % free_port())
        self.assertEqual(r.returncode, 2)

    def test_plaintext_warns_and_local_listener_serves(self):
        global HF
        hf = HF = Holdfast()
        self.addCleanup(hf.__exit__)
        local = free_port()
        hf.start(extra=[*tls_args(), "--xds-local", "127.0.0.1:%d" % local])
        hf.post(API + "/proxy-groups", {"name": "edge", "listener_port": 10000})
        hf.post(API + "/services", {"name": "cart", "proxy_group": "edge"})
        # The loopback listener is plaintext and open, for on-host proxyless gRPC clients.
        c = AdsClient("127.0.0.1:%d" % local)
        c.request(CDS, node_=node("local-1", "edge", "gRPC C-core"))
        r = c.recv()
        self.assertEqual(sorted(x.name for x in unpack(r, adsclient.cluster_pb2.Cluster)), ["cart"])
        c.close()
        plain = Holdfast()
        self.addCleanup(plain.__exit__)
        plain.start()
        self.assertIn("xDS is plaintext", plain.log())
        self.assertIn("HDS", plain.log())


class ReadmeSecureStartTest(unittest.TestCase):
    """Runs the README's "A secure start" commands (host name and ports changed to the test's),
    the daemon and the shim as background processes, and checks the shim connects over mTLS and
    the API answers over HTTPS with the token."""

    def test_readme_secure_start(self):
        with open(os.path.join(os.environ["HOLDFAST_SOURCE_DIR"], "README.md")) as f:
            text = f.read()
        start = text.index("## A secure start")
        block = text[start:text.index("\n## ", start + 1)].split("```sh\n")[1].split("```")[0]
        http, xds = free_port(), free_port()
        block = (block.replace("build/control-plane/holdfast", HOLDFAST)
                 .replace("build/shim/holdfast-shim", os.environ["HOLDFAST_SHIM_BIN"])
                 .replace("holdfast.example.com", "127.0.0.1")
                 .replace("0.0.0.0:8443", "127.0.0.1:%d" % http).replace("0.0.0.0:18000", "127.0.0.1:%d" % xds)
                 .replace("127.0.0.1:18000", "127.0.0.1:%d" % xds))
        lines = [line.split("  #")[0].strip() for line in block.replace("\\\n", " ").splitlines()]
        tmp = tempfile.mkdtemp(prefix="hf-readme-tls-")
        self.addCleanup(shutil.rmtree, tmp, True)
        env = dict(os.environ)
        procs = []

        def stop_all():
            for i, p in enumerate(procs):
                p.send_signal(signal.SIGTERM)
                rc = p.wait(10)
                with open(os.path.join(tmp, "proc-%d.log" % i), errors="replace") as f:
                    self.assertEqual(rc, 0, f.read()[-6000:])
        self.addCleanup(stop_all)
        token = None
        for line in lines:
            if not line:
                continue
            if line.startswith(("$H --http", os.environ["HOLDFAST_SHIM_BIN"])):
                log = open(os.path.join(tmp, "proc-%d.log" % len(procs)), "w")
                self.addCleanup(log.close)
                procs.append(subprocess.Popen(["bash", "-c", "exec " + line], cwd=tmp, env=env,
                                              stdout=log, stderr=subprocess.STDOUT))
                time.sleep(0.5)
                continue
            if "=" in line.split()[0]:  # H=..., S=...
                k, v = line.split("=", 1)
                env[k] = os.path.expandvars(v.replace("$H", env.get("H", "")))
                continue
            r = subprocess.run(["bash", "-c", line], cwd=tmp, env=env, capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, (line, r.stderr))
            if "token create" in line:
                token = r.stdout.strip()
        self.assertEqual(len(procs), 2)
        ctx = ssl.create_default_context(cafile=os.path.join(tmp, "pki", "ca.crt"))

        def checkers():
            import json
            import urllib.request
            req = urllib.request.Request("https://127.0.0.1:%d/api/v1/health" % http,
                                         headers={"Authorization": "Bearer " + token})
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
                    return [c["node_id"] for c in json.load(resp)["checkers"]]
            except OSError:
                return None
        self.assertEqual(wait_for(checkers, 10), ["shim-a"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
