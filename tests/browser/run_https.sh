#!/usr/bin/env bash
# The browser tests of the web UI over HTTPS (issue 13): makes a CA and a certificate for
# 127.0.0.1 with `holdfast pki`, has Node's fetch trust that CA and Chromium trust exactly that
# certificate's key (an SPKI pin), and runs ui.test.js with holdfast started with --tls-cert.
set -euo pipefail
dir=$(mktemp -d /tmp/hf-ui-tls-XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$HOLDFAST_BIN" pki init --dir "$dir/pki" >/dev/null
"$HOLDFAST_BIN" pki issue --dir "$dir/pki" --server 127.0.0.1 >/dev/null
export HOLDFAST_UI_TLS_DIR=$dir/pki
export NODE_EXTRA_CA_CERTS=$dir/pki/ca.crt
HOLDFAST_UI_SPKI=$(openssl x509 -in "$dir/pki/server-127.0.0.1.crt" -pubkey -noout |
    openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)
export HOLDFAST_UI_SPKI
node --test "$(dirname "$0")/ui.test.js"
