"""Test harness: starts the real holdfast binary on 127.0.0.1 with free ports and a database in a
temporary folder, and talks to its REST API with urllib. Every process started is stopped."""

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

HOLDFAST = os.environ.get("HOLDFAST_BIN", "")
SHIM = os.environ.get("HOLDFAST_SHIM_BIN", "")

# Under tests/pg/pgcluster.py (the .pg test variants) every Holdfast gets a fresh database in
# that real PostgreSQL cluster instead of a SQLite file.
PG_DIR = os.environ.get("HF_TEST_PG_DIR")
PG_PORT = os.environ.get("HF_TEST_PG_PORT")
PG = PG_DIR is not None and PG_PORT is not None
PG_BIN = os.environ.get("HF_PG_BIN", "/usr/lib/postgresql/15/bin")
_pg_counter = [0]


def psql(sql, db="postgres"):
    """Runs sql in the test cluster; returns its output (unaligned, tuples only)."""
    out = subprocess.run([PG_BIN + "/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                          "-h", PG_DIR, "-p", PG_PORT, "-U", "postgres", "-d", db, "-c", sql],
                         check=True, capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


def pg_url(name):
    return "postgresql://postgres@/%s?host=%s&port=%s" % (name, PG_DIR, PG_PORT)


def fresh_pg_database():
    """A new empty database in the test cluster; returns (name, URL)."""
    _pg_counter[0] += 1
    name = "hf_it_%d_%d" % (os.getpid(), _pg_counter[0])
    psql('CREATE DATABASE "%s"' % name)
    return name, pg_url(name)


def fresh_db(workdir, name="holdfast.db"):
    """What --db gets in a test: a SQLite file name in workdir, or under the .pg variants a new
    PostgreSQL database."""
    return fresh_pg_database()[1] if PG else os.path.join(workdir, name)


class Shim:
    """One holdfast-shim process."""

    def __init__(self, server, node_id, zone, workdir, extra=()):
        self.node_id = node_id
        self.log_path = os.path.join(workdir, "shim-%s.log" % node_id)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([SHIM, "--server", server, "--node-id", node_id, "--zone", zone,
                                      *extra], stdout=self._log, stderr=self._log)

    def stop(self, sig=signal.SIGTERM):
        """Stops the shim; after SIGTERM it must exit 0 (under the sanitizers: no leak)."""
        if self._log.closed:
            return self.proc.returncode
        signalled = self.proc.poll() is None
        if signalled:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self._log.close()
        if signalled and sig == signal.SIGTERM and self.proc.returncode != 0:
            with open(self.log_path, "rb") as f:
                raise AssertionError("holdfast-shim %s exited %s:\n%s" % (
                    self.node_id, self.proc.returncode, f.read().decode(errors="replace")[-3000:]))
        return self.proc.returncode


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_bootstrap(path, xds, node_id, cluster="edge", zone=None):
    """Writes a gRPC xDS bootstrap file pointing at holdfast's xDS address."""
    node = {"id": node_id, "cluster": cluster}
    if zone:
        node["locality"] = {"zone": zone}
    with open(path, "w") as f:
        json.dump({"xds_servers": [{"server_uri": xds, "channel_creds": [{"type": "insecure"}],
                                    "server_features": ["xds_v3"]}], "node": node}, f)
    return path


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self):
        return json.loads(self.body)


class Holdfast:
    """One holdfast process. Use as a context manager, or call start()/stop()."""

    def __init__(self, workdir=None, db=None):
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hf-it-")
            workdir = self._tmp.name
        self.workdir = workdir
        self.db = db or fresh_db(workdir)
        self.proc = None
        self.token = None
        self.log_path = os.path.join(workdir, "holdfast.log")
        self.ssl_context = None  # an ssl.SSLContext: the REST API is served over HTTPS

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def start(self, extra=(), wait=True, keep_ports=False):
        if not keep_ports or not getattr(self, "http_port", None):
            self.http_port = free_port()
            self.xds_port = free_port()
        self.base = "%s://127.0.0.1:%d" % ("https" if self.ssl_context else "http", self.http_port)
        self.xds = "127.0.0.1:%d" % self.xds_port
        args = [HOLDFAST, "--db", self.db, "--http", "127.0.0.1:%d" % self.http_port,
                "--xds", "127.0.0.1:%d" % self.xds_port, "--log-level", "debug", *extra]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=self._log)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("holdfast exited with %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                if self.request("GET", "/healthz").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("holdfast did not become ready:\n" + self.log())

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Stops the process; returns its exit code."""
        if self.proc is None:
            return None
        signalled = self.proc.poll() is None
        if signalled:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("holdfast ignored %s for %ss:\n%s" % (sig, timeout, self.log()))
        self._log.close()
        rc = self.proc.returncode
        self.proc = None
        # A clean shutdown exits 0; under the sanitizers a leak or error makes it non-zero.
        if signalled and sig == signal.SIGTERM and rc != 0:
            raise AssertionError("holdfast exited %s after SIGTERM:\n%s" % (rc, self.log()[-4000:]))
        return rc

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def db_name(self):
        return self.db.split("?")[0].rsplit("/", 1)[1] if PG else None

    def db_set_schema_version(self, version):
        """Writes a schema version into the stopped holdfast's database."""
        if PG:
            psql("UPDATE holdfast_schema SET version = %d" % version, self.db_name())
            return
        import sqlite3
        db = sqlite3.connect(self.db)
        db.execute("PRAGMA user_version = %d" % version)
        db.close()

    def db_bytes(self):
        """Everything the database holds, as bytes (the file, or a pg_dump)."""
        if PG:
            return subprocess.run([PG_BIN + "/pg_dump", "-h", PG_DIR, "-p", PG_PORT, "-U",
                                   "postgres", self.db_name()], check=True, capture_output=True,
                                  timeout=60).stdout
        with open(self.db, "rb") as f:
            return f.read()

    def cli(self, *args):
        return subprocess.run([HOLDFAST, *args], capture_output=True, text=True, timeout=30)

    def request(self, method, path, body=None, raw=None, token=None, headers=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None or method not in ("GET", "HEAD"):
            # Holdfast refuses a change without a JSON content type (415), body or not.
            req.add_header("Content-Type", "application/json")
        tok = token if token is not None else self.token
        if tok:
            req.add_header("Authorization", "Bearer " + tok)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=10, context=self.ssl_context) as r:
                return Response(r.status, r.headers, r.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, e.headers, e.read())

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.request("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def state(self):
        """Everything the API shows, for 'nothing changed' checks (events included)."""
        out = {}
        out["groups"] = self.get("/api/v1/proxy-groups").json["items"]
        services = self.get("/api/v1/services").json["items"]
        out["services"] = services
        for s in services:
            fleets = self.get("/api/v1/services/%s/fleets" % s["name"]).json["items"]
            out["fleets/" + s["name"]] = fleets
            for f in fleets:
                path = "/api/v1/services/%s/fleets/%s/endpoints" % (s["name"], f["name"])
                out["endpoints/%s/%s" % (s["name"], f["name"])] = self.get(path).json["items"]
        out["events"] = self.get("/api/v1/events?limit=1000").json["items"]
        return out
