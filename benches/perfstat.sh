#!/usr/bin/env bash
# On-CPU time per frame of one forwarding core, from `perf stat` on its
# thread (the EAL's lcore-worker thread of testpmd or gatewayd): a figure that
# holds up better than Mpps on a loaded machine, since it counts only the time
# the thread was on a CPU (a co-runner still costs it caches). Printed as ns
# and as TSC cycles per frame. Where the CPU has a PMU (not this VM: perf
# reports instructions and cycles <not supported>) pass events such as
# instructions,cycles and get them per frame too.
#
#   benches/perfstat.sh SIDE CASE [seconds (5)] [perf events (task-clock,context-switches)]
#   SIDE: io | 5tswap (dpdk-testpmd) | gw (gatewayd)
#   CASE: fwd (no policy; forwarding.sh's capture), est-1k, syn-insert,
#         syn-verify, est-l4-1k (engine.sh's captures and policies), est-l4-1k-plain
#         (est-l4-1k's flows unshifted: its comparison)
#
# The process runs with --stats-period/--stats-interval 1; after 3 warm-up
# seconds `perf stat -p PID` counts for the given seconds, and the frames
# forwarded in those seconds are the rate lines' sum over the same seconds
# (the stats lines of the process, so about ±1 line of drift: use 5 s or
# more). Prints one line:
#   PERF side=gw case=est-1k frames=… task_clock_ns_per_frame=… oncpu_cycles_per_frame=… [<event>_per_frame=…] load=…
# `perf record` the same way (software clock sampling without a PMU):
#   PERF_CMD="record -e cpu-clock -o /tmp/x.data" benches/perfstat.sh gw est-1k
set -eu
. "$(dirname "$0")/lib.sh"
bench_init
SIDE=${1:?side: io, 5tswap or gw}; CASE=${2:?case: fwd, est-1k, syn-insert, syn-verify, est-l4-1k, est-l4-1k-plain}; SECS=${3:-5}
EVENTS=${4:-task-clock,context-switches}
command -v perf >/dev/null || { echo "perf missing (linux-perf)" >&2; exit 1; }
# GATEWAYD=path runs another build of gatewayd (e.g. a copy of the one before a change, for A/B rounds)
[ -n "${GATEWAYD:-}" ] || cargo build --release --locked -q -p controlplane --bin gatewayd
GATEWAYD=${GATEWAYD:-$T/gatewayd}
cargo build --release --locked -q -p scenario-gen --bin scenario-gen
W=$(mktemp -d /tmp/gw-perfstat.XXXXXX)
PID=""
# testpmd runs until told to stop (SIGINT: it releases its hugepages), gatewayd for --duration
trap '[ -n "$PID" ] && kill -INT "$PID" 2>/dev/null; wait 2>/dev/null; bench_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$W"' EXIT
bench_mem
bench_tsc_hz
# fwd: the pools forwarding.sh gives (each program's default); the engine cases: engine.sh's
MBUFS=49152; [ "$CASE" = fwd ] && MBUFS=
from=inside policy="" peer=""
case $CASE in
fwd | est-1k) "$T/scenario-gen" tcp-established --flows 1024 --size 64 -c 4096 -o "$W/in.pcap" >/dev/null
    [ "$CASE" = est-1k ] && policy=bench-gw-a.yaml ;;
syn-insert) "$T/scenario-gen" syn-flood -c 16384 -o "$W/in.pcap" >/dev/null; policy=bench-gw-a.yaml ;;
# engine.sh's est-l4-1k: shifted flows after the layer-4 exchange, or (-plain) the same flows unshifted;
# the outside port reads the exchange's other half once
est-l4-1k | est-l4-1k-plain)
    rec=(--identity-key docs/examples/bench-gw-a.yaml); [ "$CASE" = est-l4-1k-plain ] && rec=(--no-record)
    "$T/scenario-gen" l4-server --flows 1024 -c 65536 "${rec[@]}" -o "$W/in.pcap" --outside "$W/out.pcap" >/dev/null
    policy=bench-gw-b-l4.yaml peer="net_pcap1,rx_pcap=$W/out.pcap" MBUFS=99328 ;;
syn-verify) "$T/scenario-gen" syn-flood -c 16384 --identity-key docs/examples/bench-gw-a.yaml -o "$W/in.pcap" >/dev/null 2>&1
    policy=bench-gw-b.yaml from=outside ;;
*) echo "unknown case $CASE" >&2; exit 2 ;;
esac
EAL=(-l 0-1 --no-pci "${MEM[@]}" --log-level '*:warning')
if [ "$SIDE" = gw ]; then
    inside=net_pcap0 outside=net_null0 field="in->out"
    [ "$from" = outside ] && { inside=net_null0; outside=net_pcap0; field="out->in"; }
    [ -n "$peer" ] && outside=net_pcap1
    {
        echo "[eal]"
        echo "args = [$(printf '"%s", ' "${EAL[@]}")\"--file-prefix\", \"gwp$$\", \"--vdev\", \"net_pcap0,rx_pcap=$W/in.pcap,infinite_rx=1\", \"--vdev\", \"${peer:-net_null0,no-rx=1}\"]"
        printf '[ports]\ninside = "%s"\noutside = "%s"\n[[workers]]\nlcore = 1\n' "$inside" "$outside"
        [ -n "$MBUFS" ] && printf '[tuning]\nmbufs = %s\n' "$MBUFS"
        [ -n "$policy" ] && printf '[policy]\nfile = "%s"\n[flows]\ncapacity = 65536\n' "$PWD/docs/examples/$policy"
    } > "$W/gw.toml"
    "$GATEWAYD" --config "$W/gw.toml" --stats-interval 1 --duration $((SECS + 6)) > "$W/out.log" 2>&1 &
    PID=$!
    rate() { awk -v f="$field" '/^stats:/ {for (i = 1; i <= NF; i++) if ($i == f) print $(i+1)}' "$W/out.log"; }
else
    dpdk-testpmd "${EAL[@]}" --file-prefix "tpp$$" \
        --vdev "net_pcap0,rx_pcap=$W/in.pcap,infinite_rx=1" --vdev "net_null0,no-rx=1" -- \
        --forward-mode="$SIDE" --nb-cores=1 ${MBUFS:+--total-num-mbufs=$MBUFS} --stats-period 1 < /dev/null > "$W/out.log" 2>&1 &
    PID=$!
    rate() { awk '/Rx-pps:/ {n++; if (n % 2 == 1) print $2 / 1e6}' "$W/out.log"; }
fi
# wait for the first rate line, then warm up
for _ in $(seq 300); do [ -n "$(rate)" ] && break; sleep 0.1; done
[ -n "$(rate)" ] || { echo "no rate lines from $SIDE:" >&2; tail -5 "$W/out.log" >&2; exit 1; }
sleep 2
# the forwarding lcore's thread (the EAL names it lcore-worker-1 / rte-worker-1)
TID=$(grep -l 'worker' /proc/"$PID"/task/*/comm 2>/dev/null | head -1 | cut -d/ -f5 || true)
[ -n "$TID" ] || { echo "no lcore worker thread in process $PID" >&2; exit 1; }
n0=$(rate | wc -l)
load=$(loadavg)
# shellcheck disable=SC2086
perf ${PERF_CMD:-stat -x, -o $W/perf.csv} -e "$EVENTS" -t "$TID" -- sleep "$SECS" 2>/dev/null
sleep 1.2
frames=$(rate | tail -n +$((n0 + 1)) | head -n "$SECS" | awk '{s += $1 * 1e6} END {printf "%.0f", s}')
if [ -z "${PERF_CMD:-}" ]; then
    awk -F, -v mem="${MEM[*]}" -v f="$frames" -v side="$SIDE" -v c="$CASE" -v load="$load" -v hz="$TSC_HZ" '
        /^#/ || NF < 3 || $1 ~ /not/ {next}
        {v[$3] = $1}
        END {
            printf "PERF side=%s case=%s frames=%s", side, c, f
            if (f > 0 && v["task-clock"] > 0)
                printf " task_clock_ns_per_frame=%.2f oncpu_cycles_per_frame=%.1f", v["task-clock"] * 1e6 / f, v["task-clock"] * 1e-3 * hz / f
            for (k in v) if (f > 0 && k != "task-clock") printf " %s_per_frame=%.4g", k, v[k] / f
            if (v["cycles"] > 0) printf " ipc=%.2f", v["instructions"] / v["cycles"]
            printf " load=%s mem=%s\n", load, mem
        }' "$W/perf.csv"
fi
