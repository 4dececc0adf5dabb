#!/usr/bin/env bash
# Command 1 of the README: installs what is needed, builds, and starts holdfast in the
# foreground with an embedded SQLite database (./holdfast.db unless --db is given).
# Extra arguments go to holdfast, e.g. scripts/run.sh --http 127.0.0.1:9090
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/setup.sh"
"$top/scripts/build.sh"
echo "starting holdfast: REST API on http://127.0.0.1:8080/api/v1 unless --http says otherwise"
exec "$top/build/control-plane/holdfast" "$@"
