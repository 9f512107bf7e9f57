#!/usr/bin/env bash
# Connections per second through two gateways in series, beside the same
# topology with dpdk-testpmd io-forwarding in place of each gateway.
#
#   benches/cps.sh [seconds-per-run (10)] [concurrency (16)]
#
# Topology: tools/topology.sh double (client ─ in0 [gwt-a] out0 ══ out0
# [gwt-b] in0 ─ server), net_af_packet on both ports of both middle boxes.
#   gatewayd: the e2e lab policies docs/examples/e2e-gw-{a,b}.yaml (client
#             198.18.0.1 may open 198.18.0.2:8080): every connection's SYN and
#             SYN-ACK are signed, verified, judged and stripped, one worker
#             each (topology.sh config: idle back-off 20 µs).
#   testpmd:  dpdk-testpmd --forward-mode=io on the same two af_packet ports in
#             each middle namespace, one forwarding core (it busy-polls).
# Load: ab (apache2-utils) in the client namespace, one new TCP connection per
# request (no keep-alive), against a small asyncio HTTP server in the server
# namespace answering with 6 bytes. Figure: ab's "Requests per second"; the
# target is gatewayd >= 0.9 x testpmd.
#
# The namespaces have fixed names (gwt-*): the script refuses to run while they
# exist (a test may be using them) unless FORCE=1.
set -eu
. "$(dirname "$0")/lib.sh"
bench_init
SECS=${1:-10}; CONC=${2:-16}
for c in dpdk-testpmd ab python3 ethtool; do
    command -v "$c" >/dev/null || { echo "$c missing: run tools/setup.sh" >&2; exit 1; }
done
if ip netns list | grep -q '^gwt-' && [ "${FORCE:-0}" != 1 ]; then
    echo "gwt-* namespaces exist (a test or another bench is using them); FORCE=1 to take them over" >&2
    exit 1
fi

echo "building (release)..."
cargo build --release --locked -q -p controlplane --bin gatewayd
W=$(mktemp -d /tmp/gw-cps-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    bash tools/topology.sh down >/dev/null 2>&1 || true
    [ "${KEEP:-0}" = 1 ] && echo "kept $W" || rm -rf "$W"
}
trap cleanup EXIT

bash tools/topology.sh up double >/dev/null
# one connection per request: let the client reuse TIME_WAIT ports
ip netns exec gwt-client sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65535"
cat > "$W/server.py" <<'PY'
import asyncio
R = b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n"
async def handle(r, w):
    try:
        await r.readuntil(b"\r\n\r\n")
        w.write(R)
        await w.drain()
    except Exception:
        pass
    w.close()
async def main():
    s = await asyncio.start_server(handle, "0.0.0.0", 8080, backlog=4096)
    async with s:
        await s.serve_forever()
asyncio.run(main())
PY
ip netns exec gwt-server python3 "$W/server.py" & PIDS+=($!); disown
for _ in $(seq 100); do ip netns exec gwt-server ss -tlnH 'sport = :8080' | grep -q . && break; sleep 0.1; done

# ab against the server through whatever forwards now -> "rps failed"
load() {
    ip netns exec gwt-client curl -s --max-time 5 -o /dev/null http://198.18.0.2:8080/ || { echo "0 unreachable"; return; }
    # -r: a reset or timed-out connection is counted as failed, not fatal
    ip netns exec gwt-client ab -q -r -s 5 -t "$SECS" -n 10000000 -c "$CONC" http://198.18.0.2:8080/ > "$W/ab.$1.log" 2>&1 || true
    grep -q '^Requests per second' "$W/ab.$1.log" || { echo "ab ($1) failed:" >&2; tail -n 5 "$W/ab.$1.log" >&2; }
    awk '/^Requests per second/ {r = $4} /^Failed requests/ {f = $3} END {print (r == "" ? 0 : r), (f == "" ? "?" : f)}' "$W/ab.$1.log"
}

stop_all() {
    for p in "${PIDS[@]:1}"; do kill -INT "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]:1}"; do wait "$p" 2>/dev/null || true; done
    PIDS=("${PIDS[0]}")
}

echo "machine: $(nproc) cpus, $(uptime | sed 's/.*load average/load average/')"
echo "${SECS}s of ab -c $CONC per run"

# 1. testpmd io in each middle namespace
for ns in gwt-a gwt-b; do
    ip netns exec "$ns" dpdk-testpmd -l 0-1 --no-pci --no-huge -m 512 --log-level '*:warning' --file-prefix "cps-$ns" \
        --vdev net_af_packet0,iface=in0 --vdev net_af_packet1,iface=out0 -- \
        --forward-mode=io --nb-cores=1 --total-num-mbufs=16384 --stats-period 3600 < /dev/null > "$W/$ns.testpmd.log" 2>&1 &
    PIDS+=($!)
done
for ns in gwt-a gwt-b; do
    for _ in $(seq 100); do grep -q "Press enter\|forwarding - ports" "$W/$ns.testpmd.log" 2>/dev/null && break; sleep 0.1; done
done
sleep 1
read -r tp tp_failed < <(load testpmd)
stop_all

# 2. gatewayd with the lab policies
for g in a b; do
    bash tools/topology.sh config "gwt-$g" 1 > "$W/gw-$g.toml"
    printf '[policy]\nfile = "%s"\n[flows]\ncapacity = 262144\n' "$PWD/docs/examples/e2e-gw-$g.yaml" >> "$W/gw-$g.toml"
    ip netns exec "gwt-$g" "$T/gatewayd" --config "$W/gw-$g.toml" --counters-json "$W/gw-$g.json" > "$W/gw-$g.log" 2>&1 &
    PIDS+=($!)
done
for g in a b; do
    for _ in $(seq 300); do grep -q "gatewayd: running" "$W/gw-$g.log" && break; sleep 0.1; done
done
read -r gw gw_failed < <(load gatewayd)
stop_all
sleep 0.5
notes() { jq -r '[.workers[].from_inside.notes.identity_inserted] | add' "$1" 2>/dev/null || echo "?"; }
echo "gateway A identity_inserted: $(notes "$W/gw-a.json"), gateway B identity_inserted: $(notes "$W/gw-b.json")"

echo
printf '%-36s %14s %8s\n' "two middle boxes" "connections/s" "failed"
printf '%-36s %14s %8s\n' "dpdk-testpmd io (af_packet)" "$tp" "$tp_failed"
printf '%-36s %14s %8s\n' "gatewayd + identity + policy" "$gw" "$gw_failed"
awk -v g="$gw" -v t="$tp" 'BEGIN {printf "ratio gatewayd / testpmd: %.3f (target >= 0.9)\n", (t > 0 ? g / t : 0)}'
echo "load after: $(uptime | sed 's/.*load average/load average/')"
