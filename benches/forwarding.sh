#!/usr/bin/env bash
# Forwarding rate of gatewayd (no policy) beside dpdk-testpmd io and 5tswap,
# on the same devices: net_pcap (infinite_rx=1, a capture scenario-gen
# writes) into net_null, one forwarding core each. The three runs alternate
# over several rounds (testpmd first in odd rounds, gatewayd first in even
# ones); each run's rate is the median of its 1-second samples after two
# warm-up seconds. Printed: per-round rates and ratios, their medians, the
# ratios' min-max, cycles per frame for each side (TSC Hz / rate), the load
# average, and a final `RESULT bench=forwarding ...` line (benches/lib.sh).
#
#   benches/forwarding.sh [--rounds N (5)] [--quick] [seconds-per-run (8)] [scenario-gen args...]
#   default scenario: tcp-established --flows 1024 --size 64 -c 4096
#   --quick: one round of 4 s runs (a smoke test, not a figure)
set -eu
. "$(dirname "$0")/lib.sh"
bench_init
bench_opts "$@"
set -- "${ARGS[@]+"${ARGS[@]}"}"
SECS=${1:-$([ "$QUICK" = 1 ] && echo 4 || echo 8)}; shift || true
SCEN=("$@"); [ ${#SCEN[@]} -gt 0 ] || SCEN=(tcp-established --flows 1024 --size 64 -c 4096)
command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd missing: run tools/setup.sh" >&2; exit 1; }

echo "building (release)..."
set -o pipefail
cargo build --release --locked -q -p controlplane --bin gatewayd
cargo build --release --locked -q -p scenario-gen --bin scenario-gen
W=$(mktemp -d /tmp/gw-bench.XXXXXX); trap 'rm -rf "$W"; bench_cleanup' EXIT
"$T/scenario-gen" "${SCEN[@]}" -o "$W/in.pcap" >/dev/null

# From here pipelines end in a rate parser; a runner stopped by timeout is expected.
set +o pipefail
bench_mem
bench_tsc_hz
DEVS=(--vdev "net_pcap0,rx_pcap=$W/in.pcap,infinite_rx=1" --vdev "net_null0,no-rx=1")
EAL=(-l 0-1 --no-pci "${MEM[@]}" --log-level '*:warning')

testpmd() { # mode -> Mpps (median of the samples after two warm-up seconds)
    timeout -s INT "$SECS" dpdk-testpmd "${EAL[@]}" --file-prefix "tpm$$" "${DEVS[@]}" -- \
        --forward-mode="$1" --nb-cores=1 --stats-period 1 < /dev/null 2>&1 |
        awk '/Rx-pps:/ {n++; if (n % 2 == 1) print $2 / 1e6}' | tail -n +3 | median
}

gatewayd() { # -> Mpps; the stats lines in $W/stats.log
    cat > "$W/gw.toml" <<TOML
[eal]
args = [$(printf '"%s", ' "${EAL[@]}")"--file-prefix", "gwb$$", "--vdev", "net_pcap0,rx_pcap=$W/in.pcap,infinite_rx=1", "--vdev", "net_null0,no-rx=1"]
[ports]
inside = "net_pcap0"
outside = "net_null0"
[[workers]]
lcore = 1
TOML
    "$T/gatewayd" --config "$W/gw.toml" --stats-interval 1 --duration "$SECS" 2>&1 | tee "$W/stats.log" |
        awk '/^stats:/ {for (i = 1; i <= NF; i++) if ($i == "in->out") print $(i+1)}' | tail -n +3 | median
}

echo "machine: $(nproc) cpus, load average $(loadavg); TSC $TSC_HZ Hz"
echo "scenario: ${SCEN[*]}; $ROUNDS rounds of ${SECS}s runs; EAL memory: ${MEM[*]}"
IO=() SW=() GW=() PROBLEMS=() RESULTS=()
CASE_LOAD=$(loadavg)
for r in $(seq 1 "$ROUNDS"); do
    for side in $(round_order "$r"); do
        if [ "$side" = tp ]; then
            io=$(testpmd io); sw=$(testpmd 5tswap)
        else
            gw=$(gatewayd)
            # drops in the measured seconds (after warm-up): none expected without a policy
            d=$(awk '/^stats:/ {n++; if (n > 2) d += $NF} END {print d + 0}' "$W/stats.log")
            [ "$d" = 0 ] || PROBLEMS+=("round$r:gatewayd_dropped_$d")
        fi
    done
    for v in "$io" "$sw" "$gw"; do [ "$v" != 0 ] || PROBLEMS+=("round$r:a_run_gave_no_samples"); done
    IO+=("$io") SW+=("$sw") GW+=("$gw")
    printf 'round %d (%s): io %s, 5tswap %s, gatewayd %s Mpps; gw/io %.3f; load %s\n' "$r" "$(round_order "$r")" \
        "$io" "$sw" "$gw" "$(awk -v a="$gw" -v b="$io" 'BEGIN {print (b > 0 ? a / b : 0)}')" "$(loadavg)"
done
j() { local IFS=,; echo "$*"; }
p=$(j "${PROBLEMS[@]+"${PROBLEMS[@]}"}")
echo "forwarding (${SCEN[*]}):"
report_case forwarding "${SCEN[0]}" "$p" io="$(j "${IO[@]}")" 5tswap="$(j "${SW[@]}")" gw="$(j "${GW[@]}")" -- \
    gw_io=gw/io gw_5tswap=gw/5tswap
[ -z "$p" ] || echo "NOTE: some runs dropped frames or gave no samples: $p"
echo "load after: $(loadavg) (target: gw_io >= 0.85 in the median)"
