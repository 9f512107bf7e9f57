#!/usr/bin/env bash
# Forwarding rate of gatewayd beside dpdk-testpmd, on the same devices, in
# the same run: net_pcap (infinite_rx=1, a capture scenario-gen writes) into
# net_null, one forwarding core each. Prints Mpps for each and the ratios.
#
#   benches/forwarding.sh [seconds-per-run (8)] [scenario-gen args...]
#   default scenario: tcp-established --flows 1024 --size 64 -c 4096
set -eu
. "$(dirname "$0")/lib.sh"
bench_init
SECS=${1:-8}; shift || true
SCEN=("$@"); [ ${#SCEN[@]} -gt 0 ] || SCEN=(tcp-established --flows 1024 --size 64 -c 4096)
command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd missing: run tools/setup.sh" >&2; exit 1; }

echo "building (release)..."
set -o pipefail
cargo build --release --locked -q -p controlplane --bin gatewayd
cargo build --release --locked -q -p scenario-gen --bin scenario-gen
W=$(mktemp -d /tmp/gw-bench.XXXXXX); trap 'rm -rf "$W"' EXIT
"$T/scenario-gen" "${SCEN[@]}" -o "$W/in.pcap"

# From here pipelines end in a rate parser; a runner stopped by timeout is expected.
set +o pipefail
bench_mem
DEVS=(--vdev "net_pcap0,rx_pcap=$W/in.pcap,infinite_rx=1" --vdev "net_null0,no-rx=1")
EAL=(-l 0-1 --no-pci "${MEM[@]}" --log-level '*:warning')

# Median of the samples after the first two (warm-up).

testpmd() { # mode -> Mpps
    timeout -s INT "$SECS" dpdk-testpmd "${EAL[@]}" --file-prefix "tpm$$" "${DEVS[@]}" -- \
        --forward-mode="$1" --nb-cores=1 --stats-period 1 < /dev/null 2>&1 |
        awk '/Rx-pps:/ {n++; if (n % 2 == 1) print $2 / 1e6}' | tail -n +3 | median
}

gatewayd() { # -> Mpps
    cat > "$W/gw.toml" <<TOML
[eal]
args = [$(printf '"%s", ' "${EAL[@]}")"--file-prefix", "gwb$$", "--vdev", "net_pcap0,rx_pcap=$W/in.pcap,infinite_rx=1", "--vdev", "net_null0,no-rx=1"]
[ports]
inside = "net_pcap0"
outside = "net_null0"
[[workers]]
lcore = 1
TOML
    "$T/gatewayd" --config "$W/gw.toml" --stats-interval 1 --duration "$SECS" 2>&1 |
        awk '/^stats:/ {for (i = 1; i <= NF; i++) if ($i == "in->out") print $(i+1)}' | tail -n +3 | median
}

echo "scenario: ${SCEN[*]}; ${SECS}s per run; EAL memory: ${MEM[*]}"
io=$(testpmd io); echo "testpmd io      : $io Mpps"
sw=$(testpmd 5tswap); echo "testpmd 5tswap  : $sw Mpps"
gw=$(gatewayd); echo "gatewayd        : $gw Mpps"
awk -v g="$gw" -v io="$io" -v sw="$sw" 'BEGIN {
    printf "ratio gatewayd / testpmd io     : %.3f\n", (io > 0 ? g / io : 0)
    printf "ratio gatewayd / testpmd 5tswap : %.3f\n", (sw > 0 ? g / sw : 0)
}'
