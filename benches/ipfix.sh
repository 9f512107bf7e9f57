#!/usr/bin/env bash
# IPFIX export rate: gatewayd's exporter (controlplane/src/ipfix.rs) sending
# N flow records to a real nfcapd on loopback, in rounds. Prints the
# exporter's records/s and what nfcapd stored (nfdump), so that a record
# lost on the way shows.
#
# usage: benches/ipfix.sh [records per round (1000000)] [rounds (3)] [rate (0)]
#   rate: records/s offered at most (in batches of 4096, as gatewayd's control
#   thread offers them), e.g. 500000 for the sustained target; 0 = as fast as
#   the exporter sends (then the collector, on the same 2 cores, may lose some)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
ROUNDS=${2:-3}
RATE=${3:-0}
command -v nfcapd >/dev/null || { echo "ipfix.sh: nfcapd not found (tools/setup.sh installs nfdump)" >&2; exit 1; }
cargo build -q --release -p controlplane --example ipfix_bench
BIN=target/release/examples/ipfix_bench
work=$(mktemp -d)
trap 'kill "${nf:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
for r in $(seq 1 "$ROUNDS"); do
    mkdir -p "$work/$r"
    nfcapd -b 127.0.0.1 -p "$port" -w "$work/$r" -t 3600 -B 67108864 >/dev/null 2>&1 &
    nf=$!
    sleep 0.5
    l0=$(uptime | sed 's/.*load average: //')
    line=$($BIN "udp://127.0.0.1:$port" "$N" "$RATE")
    sleep 1
    kill -INT "$nf"; wait "$nf" 2>/dev/null || true
    stored=$(nfdump -R "$work/$r" -q -o csv 2>/dev/null | grep -c ',198.19.0.2,' || true)
    echo "round $r: $line; nfcapd stored $stored (load $l0)"
done
