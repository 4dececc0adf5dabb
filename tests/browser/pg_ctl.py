"""Stops or starts the PostgreSQL cluster that tests/pg/pgcluster.py `run` started for this test
(HF_TEST_PG_DIR, HF_TEST_PG_PORT), with pgcluster's own commands: `pg_ctl.py stop|start`."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pg"))
from pgcluster import PgCluster  # noqa: E402


def main(argv):
    if len(argv) != 2 or argv[1] not in ("stop", "start"):
        print("usage: pg_ctl.py stop|start", file=sys.stderr)
        return 2
    c = PgCluster(port=int(os.environ["HF_TEST_PG_PORT"]))
    c.dir = os.environ["HF_TEST_PG_DIR"]  # initialised already: start() only starts it
    if argv[1] == "stop":
        c.running = True
        c.stop(mode="fast")
    else:
        c.start()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
