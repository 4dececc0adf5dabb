#!/usr/bin/env bash
# Benchmark: xDS fan-out of one endpoint change to N simulated nodes (each on its own gRPC
# connection), for N = 100, 1,000 and 10,000 (or the N given). Prints a Markdown table.
#   tests/bench/xds_fanout.sh [--smoke] [N ...]
# Each N runs twice against a fresh holdfast: once with every node ACKing (latency, memory, CPU
# including ACK handling), once with nodes that do not ACK the change (CPU of the push alone).
# Uses build/ binaries unless HOLDFAST_BIN and XDS_LOADGEN say otherwise. Starts and stops its
# own holdfast on 127.0.0.1 with a temporary database.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
HOLDFAST_BIN=${HOLDFAST_BIN:-$top/build/control-plane/holdfast}
XDS_LOADGEN=${XDS_LOADGEN:-$top/build/tests/bench/xds_loadgen}
sizes=(100 1000 10000)
if [ "${1:-}" = "--smoke" ]; then
    sizes=(100)
    shift
fi
[ $# -gt 0 ] && sizes=("$@")
ulimit -n "$(ulimit -Hn)"

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

work=$(mktemp -d /tmp/hf-bench-XXXXXX)
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

start_holdfast() {
    http=$(free_port)
    xds=$(free_port)
    rm -f "$work"/db*
    "$HOLDFAST_BIN" --db "$work/db" --http "127.0.0.1:$http" --xds "127.0.0.1:$xds" \
        --log-level warn 2>"$work/log" &
    pid=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$http/healthz" >/dev/null && break
        sleep 0.05
    done
    local H="http://127.0.0.1:$http/api/v1"
    curl -sf -H "Content-Type: application/json" -X POST "$H/proxy-groups" -d '{"name":"edge","listener_port":10000}' >/dev/null
    curl -sf -H "Content-Type: application/json" -X POST "$H/services" -d '{"name":"cart","proxy_group":"edge"}' >/dev/null
    curl -sf -H "Content-Type: application/json" -X POST "$H/services/cart/fleets" -d '{"name":"blue"}' >/dev/null
    for p in 8081 8082 8083; do
        curl -sf -H "Content-Type: application/json" -X POST "$H/services/cart/fleets/blue/endpoints" \
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

# run N [--no-ack]: the load generator against a fresh holdfast; prints its key=value line.
run() {
    start_holdfast
    local line
    line=$("$XDS_LOADGEN" --xds "127.0.0.1:$xds" --http "127.0.0.1:$http" --pid "$pid" \
        --nodes "$@") || { echo "load generator failed: $line" >&2; exit 1; }
    stop_holdfast
    echo "$line"
}

get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }

echo "| nodes | connect (s) | fan-out p50 (ms) | p99 (ms) | max (ms) | RSS per node (KB) | CPU per node per push, with ACK (µs) | CPU per node, push alone (µs) |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for n in "${sizes[@]}"; do
    line=$(run "$n")
    alone=$(run "$n" --no-ack)
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$n" "$(get connect_s "$line")" \
        "$(get p50_ms "$line")" "$(get p99_ms "$line")" "$(get max_ms "$line")" \
        "$(get rss_per_node_kb "$line")" "$(get cpu_per_node_push_us "$line")" \
        "$(get cpu_per_node_push_us "$alone")"
done
