#!/usr/bin/env bash
# Benchmark: the cost of mutual TLS on the xDS port. In one run, against a fresh holdfast each:
# N simulated nodes (default 1,000, each on its own gRPC connection) over plaintext, then over
# mutual TLS with a group certificate made by `holdfast pki`; one endpoint change fanned out to
# all. Prints a Markdown table: connect time, fan-out p50/p99, holdfast's CPU per node per push
# and RSS per node.
#   tests/bench/xds_tls_fanout.sh [N]
# Uses build/ binaries unless HOLDFAST_BIN and XDS_LOADGEN say otherwise.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
HOLDFAST_BIN=${HOLDFAST_BIN:-$top/build/control-plane/holdfast}
XDS_LOADGEN=${XDS_LOADGEN:-$top/build/tests/bench/xds_loadgen}
n=${1:-1000}
ulimit -n "$(ulimit -Hn)"

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

work=$(mktemp -d /tmp/hf-tlsbench-XXXXXX)
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

pki=$work/pki
"$HOLDFAST_BIN" pki init --dir "$pki" >/dev/null
"$HOLDFAST_BIN" pki issue --dir "$pki" --server 127.0.0.1 >/dev/null
"$HOLDFAST_BIN" pki issue --dir "$pki" --group edge >/dev/null
server_tls=(--xds-tls-cert "$pki/server-127.0.0.1.crt" --xds-tls-key "$pki/server-127.0.0.1.key"
            --xds-client-ca "$pki/ca.crt")
client_tls=(--tls-cert "$pki/group-edge.crt" --tls-key "$pki/group-edge.key" --ca "$pki/ca.crt")

start_holdfast() {
    http=$(free_port)
    xds=$(free_port)
    rm -f "$work"/db*
    "$HOLDFAST_BIN" --db "$work/db" --http "127.0.0.1:$http" --xds "127.0.0.1:$xds" \
        --log-level warn "$@" 2>"$work/log" &
    pid=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$http/healthz" >/dev/null && break
        sleep 0.05
    done
    local H="http://127.0.0.1:$http/api/v1"
    curl -sf -X POST "$H/proxy-groups" -d '{"name":"edge","listener_port":10000}' >/dev/null
    curl -sf -X POST "$H/services" -d '{"name":"cart","proxy_group":"edge"}' >/dev/null
    curl -sf -X POST "$H/services/cart/fleets" -d '{"name":"blue"}' >/dev/null
    for p in 8081 8082 8083; do
        curl -sf -X POST "$H/services/cart/fleets/blue/endpoints" \
            -d "{\"address\":\"127.0.0.1\",\"port\":$p,\"zone\":\"z1\"}" >/dev/null
    done
}

stop_holdfast() {
    kill "$pid"
    if ! wait "$pid"; then
        echo "holdfast did not exit cleanly" >&2
        cat "$work/log" >&2
        exit 1
    fi
    pid=""
}

# run "server flags" "client flags": one load-generator run against a fresh holdfast.
run() {
    local -a sflags=() cflags=()
    [ -n "$1" ] && sflags=("${server_tls[@]}")
    [ -n "$2" ] && cflags=("${client_tls[@]}")
    start_holdfast "${sflags[@]}"
    local line
    line=$("$XDS_LOADGEN" --xds "127.0.0.1:$xds" --http "127.0.0.1:$http" --pid "$pid" \
        --nodes "$n" "${cflags[@]}") || { echo "load generator failed: $line" >&2; exit 1; }
    stop_holdfast
    echo "$line"
}

get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }

plain=$(run "" "")
tls=$(run tls tls)
echo "| xDS port | nodes | connect (s) | fan-out p50 (ms) | p99 (ms) | CPU per node per push (µs) | RSS per node (KB) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for kind in plain tls; do
    line=${!kind}
    label=plaintext
    [ "$kind" = tls ] && label="mutual TLS"
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$n" "$(get connect_s "$line")" \
        "$(get p50_ms "$line")" "$(get p99_ms "$line")" "$(get cpu_per_node_push_us "$line")" \
        "$(get rss_per_node_kb "$line")"
done
