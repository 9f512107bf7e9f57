#!/usr/bin/env bash
# Fleet mode against a real etcd (issue 12): simulated gateways, many in one
# process (controlplane/examples/fleet_bench), against an etcd this script
# starts (temporary data directory, loopback, free ports, 8 GiB quota) and
# stops at the end.
#
#   benches/fleet.sh [--quick] [--gateways N] [--pus M] [--rounds R] [--full K] [--json FILE] [fleet_bench options…]
#
# Default: 100 gateways × 1000 PUs (100 000 identities), 20 rounds, K = 5
# full agents; --quick is 10 × 100, 5 rounds, 3 full (a smoke run, ~1 min).
# `fleet_bench --help` lists the rest (--rulesets, --steady-s,
# --all-full-rounds, --no-persist, --timeout-s).
#
# K full gateways run the real fleet agent and config store (list, verify
# every signature, build, compile, persist, apply, status), one thread each;
# the other N − K are light: registered under a kept-alive lease, PUs
# published and signed, a watch on the prefix, a status written after every
# change. etcd thus carries the whole fleet (data, watchers, writes), while
# only K agents compile: on a 2-core machine N agents compiling a
# 100k-identity document each on every change would measure the machine,
# not what one gateway (on its own machine) experiences.
#
# Measured, and printed at the end (median, p90, p99, max; target met or
# missed by how much):
#   - one-rule change: `gwctl fleet apply` (operator::apply, validation
#     included) until every full agent's store enforces the new fleet
#     version (stamped from ConfigStore::subscribe on a thread of its own),
#     and until each one's status in etcd says so;
#   - new PU: published directly by a light gateway (what the agent writes:
#     read its PUs, take a number, write the record) until every full agent
#     enforces the identity; and appended to a full agent's PU file (the
#     agent polls it every second: up to 1 s of that is in the figure) until
#     every other full agent does;
#   - re-list after compaction: a real agent restarted, then a change and a
#     compaction between its first list and its watch, so that etcd refuses
#     the watch and it lists again; and the agent's steps timed one by one,
#     cold (every signature verified) and warm (only what changed);
#   - the one-rule change and the direct new PU again with one full agent
#     alone (the others stopped): what a gateway with a core of its own sees;
#   - etcd requests (gRPC messages received) and bytes per gateway and
#     second in steady state and during the changes (etcd's /metrics);
#   - memory: this process's RSS before and after the K agents start, per agent;
#   - with --all-full-rounds (default 3): every light gateway becomes a full
#     agent and the one-rule change is timed again, if the memory fits.
#
# Needs no root. The agents' own log lines ("gatewayd: fleet: …") go to
# ${TMPDIR:-/tmp}/fleet-bench.log with the rest, not to the screen.
set -eu
cd "$(dirname "$0")/.."
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
T=${CARGO_TARGET_DIR:-target}/release
command -v etcd >/dev/null || { echo "etcd is not installed (tools/setup.sh installs etcd-server)" >&2; exit 1; }

echo "building (release)..."
cargo build --release --locked -q -p controlplane --example fleet_bench
W=$(mktemp -d /tmp/gw-fleet.XXXXXX)
ETCD=""
cleanup() {
    if [ -n "$ETCD" ]; then kill "$ETCD" 2>/dev/null || true; wait "$ETCD" 2>/dev/null || true; fi
    rm -rf "$W"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
CLIENT=$(free_port)
PEER=$(free_port)
URL=http://127.0.0.1:$CLIENT
etcd --name bench --data-dir "$W/etcd" \
    --listen-client-urls "$URL" --advertise-client-urls "$URL" \
    --listen-peer-urls "http://127.0.0.1:$PEER" --initial-advertise-peer-urls "http://127.0.0.1:$PEER" \
    --initial-cluster "bench=http://127.0.0.1:$PEER" \
    --quota-backend-bytes $((8 << 30)) > "$W/etcd.log" 2>&1 &
ETCD=$!
for _ in $(seq 1 100); do
    ETCDCTL_API=3 etcdctl --endpoints "$URL" endpoint health >/dev/null 2>&1 && break
    sleep 0.1
done
ETCDCTL_API=3 etcdctl --endpoints "$URL" endpoint health >/dev/null 2>&1 || { cat "$W/etcd.log"; echo "etcd did not start" >&2; exit 1; }
echo "etcd $(etcd --version | awk '/etcd Version/ {print $3}') at $URL (pid $ETCD, data in $W/etcd)"

LOG=$W/bench.log
status=0
"$T/examples/fleet_bench" --etcd "$URL" --etcd-pid "$ETCD" --work-dir "$W" "$@" > >(tee "$LOG" | grep --line-buffered -v '^gatewayd: fleet: ') || status=$?
sleep 0.2 # let tee finish
KEEP=${TMPDIR:-/tmp}/fleet-bench.log
cp "$LOG" "$KEEP"
echo "etcd database: $(du -sh "$W/etcd" | cut -f1); the whole output, the agents' lines too: $KEEP"
exit "$status"
