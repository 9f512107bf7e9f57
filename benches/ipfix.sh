#!/usr/bin/env bash
# IPFIX export rate: gatewayd's exporter (controlplane/src/ipfix.rs) sending
# N flow records to a real nfcapd on loopback, in rounds. Prints the
# exporter's records/s and what nfcapd stored (nfdump), so that a record
# lost on the way shows.
#
# usage: benches/ipfix.sh [records per round (1000000)] [rounds (3)]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
ROUNDS=${2:-3}
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
    line=$($BIN "udp://127.0.0.1:$port" "$N")
    sleep 1
    kill -INT "$nf"; wait "$nf" 2>/dev/null || true
    stored=$(nfdump -R "$work/$r" -q -o csv 2>/dev/null | grep -c ',198.19.0.2,' || true)
    echo "round $r: $line; nfcapd stored $stored"
done
