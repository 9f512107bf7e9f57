#!/usr/bin/env bash
# Connections per second through two middle boxes in series: two gatewayd,
# beside the same topology with dpdk-testpmd io-forwarding in place of each
# gateway, and with the Linux kernel doing the job (what a user would pick
# instead): a bridge per box filtering with nftables conntrack rules.
#
#   benches/cps.sh [--rounds N (5)] [--quick] [seconds-per-run (10)] [concurrency (16)]
#   --quick: one round of 4 s runs (a smoke test, not a figure)
#   GATEWAYD=path: run that gatewayd binary instead of building one (A/B runs of two builds)
#
# Topology: tools/topology.sh double (client ─ in0 [gwt-a] out0 ══ out0
# [gwt-b] in0 ─ server), set up once; each run puts its middle boxes in place
# and takes them away again:
#   gatewayd: net_af_packet on both ports of both middle boxes, the e2e lab
#             policies docs/examples/e2e-gw-{a,b}.yaml (client 198.18.0.1 may
#             open 198.18.0.2:8080): every connection's SYN and SYN-ACK are
#             signed, verified, judged and stripped, one worker each
#             (topology.sh config: idle back-off 20 µs).
#   testpmd:  dpdk-testpmd --forward-mode=io on the same two af_packet ports in
#             each middle namespace, one forwarding core (it busy-polls).
#   kernel:   in each middle namespace a bridge br0 over in0 and out0 with
#             bridge-nf-call-iptables on, so bridged IPv4 passes the inet
#             forward hook, and an nftables table allowing what the lab
#             policies allow: `ct state established,related accept`, new TCP
#             198.18.0.1 -> 198.18.0.2:8080 accepted, IPv6 neighbour
#             discovery accepted (the gateways pass it too), everything else
#             dropped and counted (ARP is not IP: it is bridged). Conntrack tracks every
#             connection, as the gateways' flow tables do.
# Load: ab (apache2-utils) in the client namespace, one new TCP connection per
# request (no keep-alive), against a small asyncio HTTP server in the server
# namespace answering with 6 bytes. Figure: ab's "Requests per second". The
# three runs alternate over the rounds (the order rotates each round); printed:
# per-round connections/s and ratios, their medians and min-max, the load
# average, and `RESULT bench=cps ...` (benches/lib.sh); rounds where ab saw
# failed requests or a side was unreachable are named in problems=.
# Targets: gatewayd >= 0.9 x testpmd, gatewayd >= 1.0 x kernel.
#
# The namespaces have fixed names (gwt-*): the script refuses to run while they
# exist (a test may be using them) unless FORCE=1. Run it under
# `flock /tmp/gw-serial.lock` on a shared machine.
set -eu
. "$(dirname "$0")/lib.sh"
bench_init
bench_opts "$@"
set -- "${ARGS[@]+"${ARGS[@]}"}"
SECS=${1:-$([ "$QUICK" = 1 ] && echo 4 || echo 10)}; CONC=${2:-16}
for c in dpdk-testpmd ab python3 ethtool nft; do
    command -v "$c" >/dev/null || { echo "$c missing: run tools/setup.sh" >&2; exit 1; }
done
if ip netns list | grep -q '^gwt-' && [ "${FORCE:-0}" != 1 ]; then
    echo "gwt-* namespaces exist (a test or another bench is using them); FORCE=1 to take them over" >&2
    exit 1
fi

# GATEWAYD=path runs another build of gatewayd (e.g. a copy of the one before a change, for A/B runs)
if [ -z "${GATEWAYD:-}" ]; then
    echo "building (release)..."
    cargo build --release --locked -q -p controlplane --bin gatewayd
fi
W=$(mktemp -d /tmp/gw-cps-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    bash tools/topology.sh down >/dev/null 2>&1 || true
    bench_cleanup
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

# The machine's busy and total CPU time so far, in clock ticks (/proc/stat's
# cpu line: busy = all but idle and iowait).
cpu_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }

# ab against the server through whatever forwards now
#   -> "rps failed busy% cpu_us_per_connection"
# The last two say what each connection cost the whole machine (ab, the
# server, the forwarders, the kernel): on a machine with few CPUs all busy,
# the rate is that cost's inverse, whoever pays it.
load() {
    ip netns exec gwt-client curl -s --max-time 5 -o /dev/null http://198.18.0.2:8080/ || { echo "0 unreachable - -"; return; }
    local b0 t0 b1 t1
    read -r b0 t0 < <(cpu_ticks)
    # -r: a reset or timed-out connection is counted as failed, not fatal
    ip netns exec gwt-client ab -q -r -s 5 -t "$SECS" -n 10000000 -c "$CONC" http://198.18.0.2:8080/ > "$W/ab.$1.log" 2>&1 || true
    read -r b1 t1 < <(cpu_ticks)
    grep -q '^Requests per second' "$W/ab.$1.log" || { echo "ab ($1) failed:" >&2; tail -n 5 "$W/ab.$1.log" >&2; }
    awk -v busy=$((b1 - b0)) -v total=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" \
        '/^Requests per second/ {r = $4} /^Failed requests/ {f = $3} /^Complete requests/ {n = $3}
         END {printf "%s %s %.0f %s\n", (r == "" ? 0 : r), (f == "" ? "?" : f), (total > 0 ? 100 * busy / total : 0),
              (n > 0 ? sprintf("%.0f", busy * 1e6 / hz / n) : "-")}' "$W/ab.$1.log"
}

# 1. testpmd io in each middle namespace
testpmd_up() {
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
}

# 2. gatewayd with the lab policies
gatewayd_up() {
    for g in a b; do
        bash tools/topology.sh config "gwt-$g" 1 > "$W/gw-$g.toml"
        printf '[policy]\nfile = "%s"\n[flows]\ncapacity = 262144\n' "$PWD/docs/examples/e2e-gw-$g.yaml" >> "$W/gw-$g.toml"
        rm -f "$W/gw-$g.json"
        ip netns exec "gwt-$g" "${GATEWAYD:-$T/gatewayd}" --config "$W/gw-$g.toml" --counters-json "$W/gw-$g.json" > "$W/gw-$g.log" 2>&1 &
        PIDS+=($!)
    done
    for g in a b; do
        for _ in $(seq 300); do grep -q "gatewayd: running" "$W/gw-$g.log" && break; sleep 0.1; done
    done
}

# 3. the kernel: a bridge per middle box, nftables conntrack rules
kernel_up() {
    for ns in gwt-a gwt-b; do
        ip -n "$ns" link add br0 type bridge stp_state 0 forward_delay 0
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.br0.disable_ipv6=1
        ip -n "$ns" link set in0 master br0
        ip -n "$ns" link set out0 master br0
        ip -n "$ns" link set br0 up
        ip netns exec "$ns" sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
        ip netns exec "$ns" nft -f - <<'NFT'
table inet cps {
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept
        ip saddr 198.18.0.1 ip daddr 198.18.0.2 tcp dport 8080 ct state new accept
        counter
    }
}
NFT
    done
}
kernel_down() {
    for ns in gwt-a gwt-b; do
        KERNEL_DROPS+=$(ip netns exec "$ns" nft list chain inet cps forward 2>/dev/null | awk '/counter packets/ {print $3}')" "
        ip netns exec "$ns" nft delete table inet cps 2>/dev/null || true
        ip -n "$ns" link del br0 2>/dev/null || true
    done
}

stop_all() {
    for p in "${PIDS[@]:1}"; do kill -INT "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]:1}"; do wait "$p" 2>/dev/null || true; done
    PIDS=("${PIDS[0]}")
}

# run MODE -> sets RATE, FAILED (ab's figures), and notes problems
run() {
    case $1 in
    testpmd) testpmd_up ;;
    gatewayd) gatewayd_up ;;
    kernel) KERNEL_DROPS=; kernel_up ;;
    esac
    read -r RATE FAILED BUSY CPU_US < <(load "$1")
    case $1 in
    kernel) kernel_down ;;
    *) stop_all ;;
    esac
    [ "$RATE" != 0 ] || PROBLEMS+=("round$r:${1}_unreachable_or_failed")
    [ "$FAILED" = 0 ] || PROBLEMS+=("round$r:${1}_${FAILED}_failed_requests")
    local said=""
    if [ "$1" = gatewayd ]; then
        sleep 0.5
        said="identity_inserted A $(notes "$W/gw-a.json"), B $(notes "$W/gw-b.json")"
    elif [ "$1" = kernel ]; then
        said="dropped by the nft rules (a, b): ${KERNEL_DROPS% }"
    fi
    printf '    %-8s %10s connections/s, %s failed, machine %s%% busy, %s us of CPU per connection  %s\n' \
        "$1" "$RATE" "$FAILED" "$BUSY" "$CPU_US" "$said"
}
notes() { jq -r '[.workers[].from_inside.notes.identity_inserted] | add' "$1" 2>/dev/null || echo "?"; }

echo "machine: $(nproc) cpus, load average $(loadavg)"
echo "$ROUNDS rounds; ${SECS}s of ab -c $CONC per run"
MODES=(testpmd kernel gatewayd) TP=() KN=() GW=() PROBLEMS=() RESULTS=()
declare -A CPU=()
CASE_LOAD=$(loadavg)
for r in $(seq 1 "$ROUNDS"); do
    k=$(((r - 1) % 3))
    order=("${MODES[@]:k}" "${MODES[@]:0:k}")
    echo "round $r (${order[*]}), load $(loadavg)"
    for m in "${order[@]}"; do
        run "$m"
        case $m in testpmd) TP+=("$RATE") ;; kernel) KN+=("$RATE") ;; gatewayd) GW+=("$RATE") ;; esac
        CPU[$m]+="$CPU_US "
    done
done
UNIT=connections/s UNIT_KEY=cps
j() { local IFS=,; echo "$*"; }
p=$(j "${PROBLEMS[@]+"${PROBLEMS[@]}"}")
echo "connections/s through two middle boxes:"
report_case cps "c$CONC" "$p" testpmd="$(j "${TP[@]}")" kernel="$(j "${KN[@]}")" gw="$(j "${GW[@]}")" -- \
    gw_testpmd=gw/testpmd gw_kernel=gw/kernel
for m in "${MODES[@]}"; do
    printf '  %-8s us of machine CPU per connection, per round: %s median %s\n' "$m" "${CPU[$m]}" \
        "$(tr ' ' '\n' <<<"${CPU[$m]}" | grep -v '^-\?$' | spread | cut -d' ' -f1)"
done
[ -z "$p" ] || echo "NOTE: some runs failed requests or were unreachable: $p"
echo "targets: gw_testpmd >= 0.9, gw_kernel >= 1.0; load after: $(loadavg)"
