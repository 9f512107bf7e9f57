#!/usr/bin/env bash
# Policy swaps under load: does an apply of the 10k-rule/100k-identity
# document lose packets, and how long does it take end to end?
#
#   benches/swap.sh [applies (6)]
#
# gatewayd forwards established TCP (scenario-gen tcp-established, 1024 flows
# of 64-byte frames; net_pcap infinite_rx into the inside port, net_null out,
# one worker) under docs/examples/bench-gw-a.yaml, with the gRPC control socket
# on. Meanwhile gwctl applies, in turn, that policy plus the 10k-rule/100k-
# identity load (benches/examples/big_policy: the flows' own rules are
# unchanged) and bench-gw-a.yaml alone, `applies` times in all. Each apply
# publishes a new snapshot, so every flow is re-decided on its next packet.
# Printed: each apply's wall time as gwctl saw it (connect, send, validate,
# compile, persist, swap, ACK), the forwarding rate before/while/after, and
# from gatewayd's final counters: frames received, forwarded, dropped (by
# reason) and flows re-decided. Zero loss: forwarded = received, no drops.
set -eu
. "$(dirname "$0")/lib.sh"
bench_init
APPLIES=${1:-6}

echo "building (release)..."
cargo build --release --locked -q -p controlplane --bin gatewayd --bin gwctl
cargo build --release --locked -q -p scenario-gen --bin scenario-gen
cargo build --release --locked -q -p gw-benches --example big_policy
W=$(mktemp -d /tmp/gw-swap.XXXXXX)
GW=""
cleanup() { [ -n "$GW" ] && kill "$GW" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT

"$T/scenario-gen" tcp-established --flows 1024 --size 64 -c 4096 -o "$W/est.pcap" >/dev/null
"$T/examples/big_policy" docs/examples/bench-gw-a.yaml > "$W/big.yaml"
echo "big document: $(du -h "$W/big.yaml" | cut -f1) of YAML"

bench_mem
cat > "$W/gw.toml" <<TOML
[eal]
args = ["-l", "0-1", "--no-pci", $(printf '"%s", ' "${MEM[@]}")"--log-level", "*:warning", "--file-prefix", "gws$$", "--vdev", "net_pcap0,rx_pcap=$W/est.pcap,infinite_rx=1", "--vdev", "net_null0,no-rx=1"]
[ports]
inside = "net_pcap0"
outside = "net_null0"
[[workers]]
lcore = 1
[tuning]
mbufs = 36864
[policy]
file = "$PWD/docs/examples/bench-gw-a.yaml"
[flows]
capacity = 65536
[control]
socket = "$W/gw.sock"
readonly_socket = ""
state_dir = "$W/state"
TOML
mkdir -p "$W/state"
DURATION=$((12 + APPLIES * 6))
"$T/gatewayd" --config "$W/gw.toml" --stats-interval 1 --duration "$DURATION" --counters-json "$W/counters.json" \
    > "$W/gw.log" 2>&1 &
GW=$!
wait_socket "$W/gw.sock" "$W/gw.log"
sleep 4 # warm-up: every flow established

ms() { date +%s%N; }
for i in $(seq 1 "$APPLIES"); do
    if [ $((i % 2)) = 1 ]; then f="$W/big.yaml"; what="10k rules/100k identities"; else f=docs/examples/bench-gw-a.yaml; what="bench-gw-a alone"; fi
    t0=$(ms)
    # --replace: each apply swaps the whole document for a very different one on purpose
    out=$("$T/gwctl" --socket "$W/gw.sock" --timeout 60 apply --replace -f "$f" 2>&1) || { echo "$out"; echo "apply $i refused" >&2; exit 1; }
    t1=$(ms)
    printf 'apply %d (%s): %s ms end to end  [%s]\n' "$i" "$what" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", (b - a) / 1e6}')" "$(echo "$out" | head -1)"
    sleep 2
done
wait "$GW" || true
GW=""
echo "rates (in->out Mpps, one per second): $(awk '/^stats:/ {for (i = 1; i <= NF; i++) if ($i == "in->out") printf "%s ", $(i+1)}' "$W/gw.log")"
[ -s "$W/counters.json" ] || { cat "$W/gw.log"; echo "no counters: gatewayd failed" >&2; exit 1; }
jq -r '
    [.workers[].from_inside] as $w
    | ([$w[].rx_packets] | add) as $rx | ([$w[].tx_packets] | add) as $tx
    | ([$w[].drops | to_entries[] | select(.value > 0) | "\(.key)=\(.value)"] | join(",")) as $drops
    | ([$w[].notes.redecided] | add) as $re
    | "received=\($rx) forwarded=\($tx) drops={\($drops)} redecided=\($re)"
      + (if $rx == $tx and $drops == "" then "  -> zero loss" else "  -> LOSS: \($rx - $tx) frames" end)
' "$W/counters.json"
