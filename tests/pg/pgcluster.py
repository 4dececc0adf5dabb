"""A throwaway PostgreSQL 15 cluster for tests (Debian's postgresql package).

The cluster lives in a temporary directory owned by an unprivileged user (initdb refuses root,
and CI runs as root), listens on a Unix socket in that directory and on a loopback port, trusts
local connections, and is stopped and removed by stop(). Every step is bounded in time.

As a library:  c = PgCluster(); c.start(); url = c.create_database("t1"); ...; c.stop()
As a wrapper:  pgcluster.py run -- COMMAND ARGS...   (starts a cluster, runs COMMAND with
               HF_TEST_PG=<admin URL>, HF_TEST_PG_DIR, HF_TEST_PG_PORT, stops the cluster and
               exits with COMMAND's status)
"""
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

PG_BIN = os.environ.get("HF_PG_BIN", "/usr/lib/postgresql/15/bin")
PG_USER = "postgres"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PgCluster:
    def __init__(self, port=None):
        self.port = port or free_port()
        self.dir = None
        self.running = False

    def _as_user(self, argv):
        if os.geteuid() == 0:
            return ["runuser", "-u", PG_USER, "--"] + argv
        return argv

    def _run(self, argv, timeout=60):
        return subprocess.run(self._as_user(argv), check=True, timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    @property
    def data(self):
        return os.path.join(self.dir, "data")

    def start(self):
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="hf-pg-")
            if os.geteuid() == 0:
                pw = pwd.getpwnam(PG_USER)
                os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._run([f"{PG_BIN}/initdb", "-D", self.data, "-U", PG_USER, "--auth=trust",
                       "-E", "UTF8", "--locale=C", "--no-sync"], timeout=120)
        self._run([f"{PG_BIN}/pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "log"),
                   "-w", "-t", "60", "-o",
                   f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                   "-c max_connections=300 -c shared_buffers=32MB", "start"], timeout=90)
        self.running = True
        return self

    def stop(self, mode="fast"):
        if self.running:
            try:
                self._run([f"{PG_BIN}/pg_ctl", "-D", self.data, "-w", "-t", "60", "-m", mode,
                           "stop"], timeout=90)
            finally:
                self.running = False

    def destroy(self):
        self.stop()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def url(self, db="postgres", tcp=False):
        """A libpq URL to db: over the Unix socket, or postgresql://USER@127.0.0.1:PORT/DB."""
        if tcp:
            return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{db}"
        return f"postgresql://{PG_USER}@/{db}?host={self.dir}&port={self.port}"

    def psql(self, sql, db="postgres"):
        out = subprocess.run([f"{PG_BIN}/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                              "-h", self.dir, "-p", str(self.port), "-U", PG_USER, "-d", db,
                              "-c", sql], check=True, timeout=60, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        return out.stdout.strip()

    def create_database(self, name):
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log(self):
        try:
            with open(os.path.join(self.dir, "log")) as f:
                return f.read()
        except OSError:
            return ""


def main(argv):
    if len(argv) < 3 or argv[1] != "run" or argv[2] != "--":
        print("usage: pgcluster.py run -- COMMAND ARGS...", file=sys.stderr)
        return 2
    cluster = PgCluster()
    t0 = time.monotonic()
    try:
        cluster.start()
    except subprocess.CalledProcessError as e:
        print(f"pgcluster: cannot start PostgreSQL: {e.output}", file=sys.stderr)
        cluster.destroy()
        return 1
    print(f"pgcluster: PostgreSQL on {cluster.dir} port {cluster.port} "
          f"({time.monotonic() - t0:.1f} s)", file=sys.stderr)
    env = dict(os.environ, HF_TEST_PG=cluster.url(), HF_TEST_PG_DIR=cluster.dir,
               HF_TEST_PG_PORT=str(cluster.port))
    try:
        rc = subprocess.call(argv[3:], env=env, timeout=1200)
    finally:
        cluster.destroy()
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
