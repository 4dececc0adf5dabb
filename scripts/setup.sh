#!/usr/bin/env bash
# Installs everything Holdfast needs to build and test on Debian 12: Debian packages (as root,
# idempotent) and the pinned npm packages (npm ci against the committed package-lock.json).
# Usage: scripts/setup.sh [--no-apt]   (--no-apt skips apt-get, e.g. when not root)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

PKGS=(build-essential cmake pkg-config git ca-certificates curl
      libgrpc-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libprotobuf-dev
      libmicrohttpd-dev libsqlite3-dev sqlite3 libjansson-dev libcmocka-dev libssl-dev
      python3-grpcio python3-protobuf python3-yaml clang-format gnuplot-nox chromium
      libcurl4-openssl-dev libgnutls28-dev libpq-dev postgresql haproxy
      python3-prometheus-client python3-cryptography ccache openssl)

want_apt=1
[ "${1:-}" = "--no-apt" ] && want_apt=0

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Node.js and npm: any install will do (Debian's, or nodesource's which bundles npm).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$want_apt" = 0 ]; then
        echo "setup: missing Debian packages: ${missing[*]}" >&2
        exit 1
    fi
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Pinned npm packages (the Envoy API protos ship inside @grpc/grpc-js-xds).
cd "$top"
if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.holdfast-lock; then
    npm ci --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.holdfast-lock
fi
test -d node_modules/@grpc/grpc-js-xds/deps/envoy-api || {
    echo "setup: node_modules/@grpc/grpc-js-xds/deps/envoy-api is missing" >&2
    exit 1
}
echo "setup: ok"
