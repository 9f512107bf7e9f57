#!/usr/bin/env bash
# The packet engine's rates beside dpdk-testpmd, on the same devices, in the
# same run (forwarding.sh's method): a capture written by scenario-gen, fed by
# net_pcap (infinite_rx=1) into net_null, one forwarding core each; a run's
# Mpps are the median of its 1-second samples after the first two (warm-up).
# Each case runs testpmd (io, and 5tswap for the established cases) and
# gatewayd in alternating rounds (testpmd first in odd rounds, gatewayd first
# in even ones) and prints the per-round rates and ratios, their medians, the
# ratios' min-max, cycles per frame for each side (TSC Hz / rate), and a
# `RESULT bench=engine case=...` line (benches/lib.sh); `problems=` names the
# rounds whose gatewayd run dropped or skipped work (the checks below).
#
#   benches/engine.sh [--rounds N (5)] [--quick] [seconds-per-run (8)] [case...]
#   cases: est-1k est-l4-1k est-1m est-1m-huge udp-est-1k udp-est-1m syn-insert syn-verify
#          (default: est-1k est-l4-1k est-1m est-1m-huge udp-est-1k syn-insert syn-verify)
#   --quick: one round of 4 s runs (a smoke test, not a figure)
#
# est-1k / est-1m  established TCP, 64-byte frames round-robin over 1024 /
#                  1048576 flows, into gatewayd's inside port with
#                  docs/examples/bench-gw-a.yaml. Flows become established
#                  through the no-flow-state path: the first packet of each
#                  flow (first pass over the capture) is judged by the
#                  external-network rule and re-creates the flow as
#                  established; every later packet is one flow lookup and the
#                  cached verdict. The first pass (1M packets at most) falls in
#                  the two warm-up seconds; `no_flow_state_allowed` is printed
#                  and must equal the flow count. Compared with testpmd io and
#                  5tswap (targets: gatewayd >= 0.6 x 5tswap at 1k flows, >= 0.5 at 1M with hugepages).
#                  1M flows need 1M mbufs held by net_pcap: est-1m uses
#                  --no-huge -m 6144 for testpmd and gatewayd alike (loading the
#                  capture takes some seconds, not counted); est-1m-huge the
#                  same with 6144 MB of hugepages, reserving more 2 MiB pages
#                  for the run when the machine has the memory (given back
#                  at exit; skipped, and said, when it has not). Checked per
#                  run: no_flow_state_allowed = flows, no drops in the
#                  measured seconds.
# udp-est-1k /     established UDP, 64-byte datagrams (scenario-gen udp-request,
# udp-est-1m       18 payload bytes, port 5001) round-robin over 1024 / 1048576
#                  flows, into gatewayd's inside port with
#                  docs/examples/bench-gw-a-udp.yaml, where the destinations
#                  10.1.0.0/24 are a managed UDP network covered by peer gw-b.
#                  So every flow takes the UDP identity handshake path: its
#                  first datagram is held and a signed request goes out of the
#                  outside port. A one-ended run cannot complete a handshake:
#                  the answer must echo the request's nonce, which is fresh and
#                  random, and the outside port is net_null, so nobody answers.
#                  After the default backoff (50/100/200/400 ms: 3 retransmits,
#                  750 ms) the external-network rule `servers-by-address`
#                  decides (note udp_handshake_timeout): each flow becomes
#                  authorized with an allow verdict and no remote identity, and
#                  its held datagram is released. From then on every datagram
#                  is one flow lookup and the cached verdict, the same work as
#                  for a flow authorized by a verified response (the remote
#                  identity is only read when a new policy generation
#                  re-decides the flow). [udp_handshake] pending = hold_total =
#                  flows and hold_per_flow = 1, so all flows are pending at once
#                  and exactly one datagram per flow is held; the others sent
#                  while pending are dropped (udp_hold_queue_full), all in the
#                  two warm-up seconds. Printed and to be checked:
#                  udp_request_sent = udp_handshake_timeout =
#                  external_network_allow = udp_released = flows,
#                  udp_request_retransmit = 3 x flows, udp_handshake_done = 0,
#                  and `drops in measured seconds` = 0 (the drops of the sampled
#                  stats lines). Compared with testpmd io and 5tswap on the same
#                  capture. 1M flows: as est-1m, plus 1M mbufs for held
#                  datagrams, so gatewayd gets --no-huge -m 12288 (8192 is
#                  not enough for the pool); its handshake phase (1M pending
#                  flows, 4M requests, 1M fallbacks) takes several seconds, so
#                  its first 10 samples are warm-up instead of 2.
# syn-insert       SYNs (Linux options) from the PU 10.0.0.0/16 to the managed
#                  10.1.0.0/24 covered by peer gw-b, into the inside port of
#                  bench-gw-a: identity inserted (HMAC), flow upserted.
# syn-verify       the same SYNs signed by gateway A (scenario-gen
#                  --identity-key docs/examples/bench-gw-a.yaml) into the
#                  outside port of bench-gw-b: verified, identity checked
#                  against the peer, judged by policy, stripped.
#                  Target for both SYN cases: >= 4 Mpps. The capture repeats,
#                  so after the first pass each SYN is a retransmission of a
#                  flow in syn_sent: handled in full again (same key, same MAC
#                  work), as the engine does for real retransmissions.
#                  Checked per run: identity_inserted (identity_verified and
#                  policy_allow) > 0, no drops in the measured seconds.
# est-l4-1k       established TCP over 1024 flows authenticated by the layer-4
#                  exchange (docs/identity-l4.md), so every frame is shifted
#                  (sequence and acknowledgment +20, checksum updated), against
#                  the same flows unshifted, through the PMDs. gatewayd is the
#                  server's gateway (docs/examples/bench-gw-b-l4.yaml), the one
#                  side whose exchange a capture can complete: scenario-gen
#                  l4-server writes its inside port's capture (64 established
#                  frames from the servers, a SYN-ACK per flow, 65472 more
#                  established frames; looping, infinite_rx=1) and its outside
#                  port's (a SYN per flow from 10.0.0.0/16 without identity,
#                  then the client's ACK per flow carrying gateway A's record,
#                  signed with bench-gw-a.yaml's key; read once). The worker
#                  polls inside then outside, a full burst each, so each
#                  SYN-ACK meets its flow after the SYN and each record after
#                  the SYN-ACK (tools/scenario-gen/src/layer4.rs). In the first
#                  pass (warm-up) the first 64 frames meet no flow
#                  (no_flow_state_from_peer) and the servers' frames before
#                  their flow's record are dropped (l4_pending); from then on
#                  the capture's SYN-ACKs (1024 of 66560 frames a pass, 1.5%)
#                  are retransmissions on established flows, passed on by the
#                  full path, and the rest are shifted on the fast path.
#                  `plain`: the same captures with a bare ACK instead of each
#                  record (--no-record: a client gateway without layer 4), so
#                  the address rule `clients-by-address` decides and the flows
#                  stay unshifted; the inside capture is the same file, byte for
#                  byte. Each round runs testpmd (io, 5tswap on the inside
#                  capture), gatewayd plain and gatewayd layer 4, in the order
#                  tp plain l4 in odd rounds, l4 plain tp in even ones. Checked
#                  per run: l4_record_verified = l4_record_sent = policy_allow
#                  = 1024 (plain: l4_peer_without_record = external_network_allow
#                  = 1024, l4_record_verified = 0) from the final counters, and
#                  no drops in the measured seconds (so every flow was set up
#                  in the warm-up). Target: l4/plain >= 0.9 (issue 15).
set -eu
. "$(dirname "$0")/lib.sh"
bench_init
[ -z "${GW_ONLY:-}" ] || ROUNDS=${ROUNDS:-1}
bench_opts "$@"
set -- "${ARGS[@]+"${ARGS[@]}"}"
# The seconds are optional: `engine.sh est-1k` runs that case for the default.
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then SECS=$1; shift; else SECS=$([ "$QUICK" = 1 ] && echo 4 || echo 8); fi
KNOWN="est-1k est-l4-1k est-1m est-1m-huge udp-est-1k udp-est-1m syn-insert syn-verify"
CASES=("$@"); [ ${#CASES[@]} -gt 0 ] || CASES=(est-1k est-l4-1k est-1m est-1m-huge udp-est-1k syn-insert syn-verify)
for c in "${CASES[@]}"; do
    [[ " $KNOWN " == *" $c "* ]] || { echo "engine.sh: unknown case '${c:0:40}' (cases: $KNOWN)" >&2; exit 2; }
done
command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd missing: run tools/setup.sh" >&2; exit 1; }

set -o pipefail
# BENCH_PREBUILT=1: the release binaries as they are (benches/observability.sh builds once, then runs this many times)
# GATEWAYD=path: run that gatewayd binary (e.g. a copy of the build before a change, for A/B runs)
if [ -z "${BENCH_PREBUILT:-}" ]; then
    echo "building (release)..."
    cargo build --release --locked -q -p controlplane --bin gatewayd
    cargo build --release --locked -q -p scenario-gen --bin scenario-gen
fi
W=$(mktemp -d /tmp/gw-engine-bench.XXXXXX); trap 'rm -rf "$W"; bench_cleanup' EXIT
set +o pipefail # from here pipelines end in a rate parser; runners stopped by timeout are expected

bench_mem; HUGE=("${MEM[@]}")
bench_tsc_hz

# testpmd MODE PCAP MBUFS MEM... -> Mpps (not run with GW_ONLY=1: A/B runs of gatewayd alone,
# benches/observability.sh; the RESULT line then has gw_ only, and the rounds default to 1)
testpmd() {
    local mode=$1 pcap=$2 mbufs=$3; shift 3
    # (loading a large capture happens before the first sample: allow ~25 s per 1M frames on a loaded machine)
    timeout -s INT "$((SECS + mbufs / 40000))" dpdk-testpmd -l 0-1 --no-pci "$@" --log-level '*:warning' --file-prefix "tpm$$" \
        --vdev "net_pcap0,rx_pcap=$pcap,infinite_rx=1" --vdev "net_null0,no-rx=1" -- \
        --forward-mode="$mode" --nb-cores=1 --total-num-mbufs="$mbufs" --stats-period 1 < /dev/null 2>&1 |
        awk '/Rx-pps:/ {n++; if (n % 2 == 1) print $2 / 1e6}' | tail -n +3 | median
}

# testpmd, run once more (and said, on stderr) when it gave no rate: the first testpmd after
# est-1m-huge reserves its hugepages forwarded a few hundred frames in its whole run and printed
# no stats line (in 5 of 11 runs on 2026-12-06; a second run on the same pages was normal)
testpmd_again() {
    local r; r=$(testpmd "$@")
    if [ "$r" = 0 ] || [ -z "$r" ]; then
        echo "  (testpmd $1 gave no rate: run again)" >&2
        r=$(testpmd "$@")
    fi
    echo "${r:-0}"
}

# gatewayd RXPORT(inside|outside) PCAP POLICY FLOWS MBUFS MEM... -> Mpps (counters in $W/counters.json,
# stats lines in $W/stats.log); $GW_TOML is appended to its configuration; the first $GW_SKIP samples are warm-up
# (GW_EXTRA_TOML: more configuration for every run, e.g. [metrics] for benches/observability.sh)
GW_TOML=${GW_EXTRA_TOML:-} GW_SKIP=2
gatewayd() {
    local from=$1 pcap=$2 policy=$3 flows=$4 mbufs=$5; shift 5
    local eal=(-l 0-1 --no-pci "$@" --log-level '*:warning')
    local inside=net_pcap0 outside=net_null0 field="in->out" other="net_null0,no-rx=1"
    [ "$from" = outside ] && { inside=net_null0; outside=net_pcap0; field="out->in"; }
    # GW_PEER_PCAP: the opposite port reads this capture once (no loop) instead of nothing (est-l4-1k)
    [ -n "${GW_PEER_PCAP:-}" ] && { other="net_pcap1,rx_pcap=$GW_PEER_PCAP"; [ "$from" = inside ] && outside=net_pcap1 || inside=net_pcap1; }
    cat > "$W/gw.toml" <<TOML
[eal]
args = [$(printf '"%s", ' "${eal[@]}")"--file-prefix", "gwb$$", "--vdev", "net_pcap0,rx_pcap=$pcap,infinite_rx=1", "--vdev", "$other"]
[ports]
inside = "$inside"
outside = "$outside"
[[workers]]
lcore = 1
[tuning]
mbufs = $mbufs
[policy]
file = "$PWD/docs/examples/$policy"
[flows]
capacity = $flows
$GW_TOML
TOML
    rm -f "$W/counters.json"
    "${GATEWAYD:-$T/gatewayd}" --config "$W/gw.toml" --stats-interval 1 --duration "$((SECS + mbufs / 100000))" --counters-json "$W/counters.json" 2>&1 |
        tee "$W/stats.log" | awk -v f="$field" '/^stats:/ {for (i = 1; i <= NF; i++) if ($i == f) print $(i+1)}' |
        tail -n +$((GW_SKIP + 1)) | median
    # GW_STATS_LOG: keep the run's stats lines (benches/observability.sh reads worker-cpu from them)
    [ -z "${GW_STATS_LOG:-}" ] || cp "$W/stats.log" "$GW_STATS_LOG"
}

# What the gateway did, from its final counters: "forwarded=… drops=… note=…".
counters() { # dir notes...
    local dir=$1; shift
    [ -s "$W/counters.json" ] || { echo "(no counters: gatewayd failed)"; return; }
    jq -r --arg d "$dir" --argjson notes "$(printf '%s\n' "$@" | jq -R . | jq -s .)" '
        [.workers[][$d]] as $w
        | ([$w[].tx_packets] | add) as $tx
        | ([$w[].drops | to_entries[] | select(.value > 0) | "\(.key)=\(.value)"] | join(",")) as $drops
        | "forwarded=\($tx) drops={\($drops)} " + ([$notes[] as $n | "\($n)=\([$w[].notes[$n]] | add)"] | join(" "))
    ' "$W/counters.json"
}
note() { # dir note -> the note's total (0 without counters)
    [ -s "$W/counters.json" ] || { echo 0; return; }
    jq -r --arg d "$1" --arg n "$2" '[.workers[][$d].notes[$n]] | add // 0' "$W/counters.json"
}
measured_drops() { awk -v s="$GW_SKIP" '/^stats:/ {n++; if (n > s) d += $NF} END {print d + 0}' "$W/stats.log"; }

# check ROUND COND WHAT: adds "roundR:WHAT" to PROBLEMS unless COND (an awk expression) holds
check() { awk "BEGIN {exit !($2)}" || PROBLEMS+=("round$1:$3"); }

# run_case CASE FLOWS PCAP MBUFS SWAP(0|1) GW-ARGS... -- TESTPMD-MEM...: the rounds of one case
# (per-run checks in the function check_gw, set by the caller), then its report
run_case() {
    local c=$1 n=$2 pcap=$3 mb=$4 swap=$5; shift 5
    local gwargs=() tpmem=() io sw gw r side
    while [ "$1" != -- ]; do gwargs+=("$1"); shift; done
    shift; tpmem=("$@")
    local IO=() SW=() GW=(); PROBLEMS=()
    CASE_LOAD=$(loadavg)
    echo "$c ($n flows, ${mb} mbufs): $ROUNDS rounds, load $CASE_LOAD"
    for r in $(seq 1 "$ROUNDS"); do
        for side in $(round_order "$r"); do
            if [ "$side" = tp ] && [ -n "${GW_ONLY:-}" ]; then
                io=0 sw=0
            elif [ "$side" = tp ]; then
                io=$(testpmd_again io "$pcap" "$mb" "${tpmem[@]}")
                sw=0; [ "$swap" = 1 ] && sw=$(testpmd_again 5tswap "$pcap" "$mb" "${tpmem[@]}")
            else
                gw=$(gatewayd "${gwargs[@]}")
                check_gw "$r"
                check "$r" "$(measured_drops) == 0" "dropped_$(measured_drops)_in_measured_seconds"
            fi
        done
        check "$r" "($io > 0 || ${GW_ONLY:-0} + 0 > 0) && $gw > 0" "a_run_gave_no_samples"
        IO+=("$io") SW+=("$sw") GW+=("$gw")
        printf '  round %d (%s): io %s%s, gatewayd %s Mpps; %s; load %s\n' "$r" "$(round_order "$r")" "$io" \
            "$([ "$swap" = 1 ] && echo ", 5tswap $sw")" "$gw" "$GW_SAID" "$(loadavg)"
    done
    local p j_io j_sw j_gw
    p=$(IFS=,; echo "${PROBLEMS[*]}")
    j_io=$(IFS=,; echo "${IO[*]}") j_sw=$(IFS=,; echo "${SW[*]}") j_gw=$(IFS=,; echo "${GW[*]}")
    if [ -n "${GW_ONLY:-}" ]; then
        report_case engine "$c" "$p" gw="$j_gw"
    elif [ "$swap" = 1 ]; then
        report_case engine "$c" "$p" io="$j_io" 5tswap="$j_sw" gw="$j_gw" -- gw_io=gw/io gw_5tswap=gw/5tswap
    else
        report_case engine "$c" "$p" io="$j_io" gw="$j_gw" -- gw_io=gw/io
    fi
    [ -z "$p" ] && return
    echo "  NOTE: some runs dropped or skipped work: $p"
    HAD_PROBLEMS=1
}

# run_l4_case N PCAP-IN PCAP-OUT PCAP-OUT-PLAIN MBUFS: est-l4-1k's rounds (testpmd, gatewayd plain,
# gatewayd layer 4), its checks and its report (l4/plain: the shifted flows' rate over the plain ones')
run_l4_case() {
    local n=$1 pin=$2 pout=$3 pplain=$4 mb=$5 c=est-l4-1k
    local IO=() SW=() PL=() L4=() io=0 sw=0 pl=0 l4=0 r side order said_pl said_l4 x
    PROBLEMS=()
    CASE_LOAD=$(loadavg)
    echo "$c ($n flows, ${mb} mbufs): $ROUNDS rounds, load $CASE_LOAD"
    for r in $(seq 1 "$ROUNDS"); do
        order="tp plain l4"; [ $((r % 2)) = 0 ] && order="l4 plain tp"
        for side in $order; do
            case $side in
            tp)
                [ -n "${GW_ONLY:-}" ] && continue
                io=$(testpmd io "$pin" "$mb" "${HUGE[@]}")
                sw=$(testpmd 5tswap "$pin" "$mb" "${HUGE[@]}")
                ;;
            plain)
                pl=$(GW_PEER_PCAP=$pplain gatewayd inside "$pin" bench-gw-b-l4.yaml 65536 "$mb" "${HUGE[@]}")
                said_pl="$(counters from_outside l4_peer_without_record external_network_allow l4_record_verified)"
                for x in l4_peer_without_record external_network_allow; do
                    check "$r" "$(note from_outside $x) == $n" "plain_${x}_not_$n"
                done
                check "$r" "$(note from_outside l4_record_verified) == 0" "plain_l4_record_verified"
                check "$r" "$(measured_drops) == 0" "plain_dropped_$(measured_drops)_in_measured_seconds"
                ;;
            l4)
                l4=$(GW_PEER_PCAP=$pout gatewayd inside "$pin" bench-gw-b-l4.yaml 65536 "$mb" "${HUGE[@]}")
                said_l4="$(counters from_outside l4_record_verified l4_record_sent policy_allow)"
                for x in l4_record_verified l4_record_sent policy_allow; do
                    check "$r" "$(note from_outside $x) == $n" "l4_${x}_not_$n"
                done
                check "$r" "$(measured_drops) == 0" "l4_dropped_$(measured_drops)_in_measured_seconds"
                ;;
            esac
        done
        check "$r" "$pl > 0 && $l4 > 0" "a_run_gave_no_samples"
        IO+=("$io") SW+=("$sw") PL+=("$pl") L4+=("$l4")
        printf '  round %d (%s): io %s, 5tswap %s, plain %s, l4 %s Mpps (l4/plain %s); load %s\n' "$r" "$order" \
            "$io" "$sw" "$pl" "$l4" "$(awk -v a="$l4" -v b="$pl" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}')" "$(loadavg)"
        printf '    plain: %s\n    l4: %s\n' "$said_pl" "$said_l4"
    done
    local p j_io j_sw j_pl j_l4
    p=$(IFS=,; echo "${PROBLEMS[*]}")
    j_io=$(IFS=,; echo "${IO[*]}") j_sw=$(IFS=,; echo "${SW[*]}") j_pl=$(IFS=,; echo "${PL[*]}") j_l4=$(IFS=,; echo "${L4[*]}")
    if [ -n "${GW_ONLY:-}" ]; then
        report_case engine "$c" "$p" plain="$j_pl" l4="$j_l4" -- l4_plain=l4/plain
    else
        report_case engine "$c" "$p" io="$j_io" 5tswap="$j_sw" plain="$j_pl" l4="$j_l4" -- \
            l4_plain=l4/plain plain_5tswap=plain/5tswap l4_5tswap=l4/5tswap
    fi
    [ -z "$p" ] && return
    echo "  NOTE: some runs dropped or skipped work: $p"
    HAD_PROBLEMS=1
}

RESULTS=() HAD_PROBLEMS=0 GW_SAID=
echo "machine: $(nproc) cpus, load average $(loadavg); TSC $TSC_HZ Hz"
echo "$ROUNDS rounds of ${SECS}s runs per case; EAL memory: ${HUGE[*]} (1M flows: --no-huge -m 6144, est-1m-huge: -m 6144 of hugepages)"
for c in "${CASES[@]}"; do
    case $c in
    est-1k | est-1m | est-1m-huge)
        if [ "$c" = est-1k ]; then n=1024; frames=4096; mem=("${HUGE[@]}"); cap=65536
        else n=1048576; frames=1048576; mem=(--no-huge -m 6144); cap=2097152; fi
        if [ "$c" = est-1m-huge ]; then
            bench_hugepages 6400 || { echo "$c: skipped (not enough memory for 6400 MB of hugepages)"; HAD_PROBLEMS=1; continue; }
            mem=(-m 6144)
        fi
        "$T/scenario-gen" tcp-established --flows "$n" --size 64 -c "$frames" -o "$W/$c.pcap" >/dev/null
        mb=$((frames + 32768))
        check_gw() {
            GW_SAID="$(counters from_inside no_flow_state_allowed)"
            check "$1" "$(note from_inside no_flow_state_allowed) == $n" "no_flow_state_allowed_not_$n"
        }
        run_case "$c" "$n" "$W/$c.pcap" "$mb" 1 inside "$W/$c.pcap" bench-gw-a.yaml "$cap" "$mb" "${mem[@]}" -- "${mem[@]}"
        ;;
    est-l4-1k)
        n=1024 est=${EST_L4_FRAMES:-65536} # established frames a pass (besides the 1024 SYN-ACKs)
        "$T/scenario-gen" l4-server --flows "$n" -c "$est" --identity-key docs/examples/bench-gw-a.yaml \
            -o "$W/$c-in.pcap" --outside "$W/$c-out.pcap" >/dev/null
        "$T/scenario-gen" l4-server --flows "$n" -c "$est" --no-record \
            -o "$W/$c-in-plain.pcap" --outside "$W/$c-out-plain.pcap" >/dev/null
        cmp -s "$W/$c-in.pcap" "$W/$c-in-plain.pcap" || { echo "$c: the two inside captures differ" >&2; exit 1; }
        run_l4_case "$n" "$W/$c-in.pcap" "$W/$c-out.pcap" "$W/$c-out-plain.pcap" $((est + n + 32768))
        ;;
    udp-est-1k | udp-est-1m)
        if [ "$c" = udp-est-1k ]; then n=1024; frames=4096; mem=("${HUGE[@]}"); gmem=("${HUGE[@]}"); cap=65536
        else n=1048576; frames=1048576; mem=(--no-huge -m 6144); gmem=(--no-huge -m 12288); cap=2097152; GW_SKIP=10; fi
        "$T/scenario-gen" udp-request --flows "$n" --size 64 -c "$frames" -o "$W/$c.pcap" >/dev/null
        mb=$((frames + 32768))
        GW_TOML=$(printf '[udp_handshake]\npending = %d\nhold_total = %d\nhold_per_flow = 1' "$n" "$n")
        check_gw() {
            GW_SAID="$(counters from_inside udp_request_sent udp_request_retransmit udp_handshake_timeout \
                external_network_allow udp_released udp_handshake_done)"
            local x
            for x in udp_request_sent udp_handshake_timeout external_network_allow udp_released; do
                check "$1" "$(note from_inside $x) == $n" "${x}_not_$n"
            done
            check "$1" "$(note from_inside udp_request_retransmit) == 3 * $n" "udp_request_retransmit_not_3x$n"
        }
        # the pool also holds one datagram per pending flow, and the generated requests
        run_case "$c" "$n" "$W/$c.pcap" "$mb" 1 inside "$W/$c.pcap" bench-gw-a-udp.yaml "$cap" "$((mb + n + 64))" "${gmem[@]}" -- "${mem[@]}"
        GW_TOML=${GW_EXTRA_TOML:-} GW_SKIP=2
        ;;
    syn-insert | syn-verify)
        frames=16384
        if [ "$c" = syn-insert ]; then
            "$T/scenario-gen" syn-flood -c "$frames" -o "$W/$c.pcap" >/dev/null
            from=inside policy=bench-gw-a.yaml notes=(identity_inserted); dir=from_inside
        else
            "$T/scenario-gen" syn-flood -c "$frames" --identity-key docs/examples/bench-gw-a.yaml -o "$W/$c.pcap" 2>/dev/null >/dev/null
            from=outside policy=bench-gw-b.yaml notes=(identity_verified policy_allow); dir=from_outside
        fi
        mb=$((frames + 32768))
        check_gw() {
            GW_SAID="$(counters "$dir" "${notes[@]}")"
            local x
            for x in "${notes[@]}"; do check "$1" "$(note "$dir" "$x") > 0" "no_$x"; done
        }
        run_case "$c" "$frames" "$W/$c.pcap" "$mb" 0 "$from" "$W/$c.pcap" "$policy" 65536 "$mb" "${HUGE[@]}" -- "${HUGE[@]}"
        ;;
    *) echo "unknown case $c" >&2; exit 2 ;;
    esac
done
echo
echo "summary (medians over rounds; targets: est-1k gw_5tswap >= 0.6, est-l4-1k l4_plain >= 0.9, est-1m-huge >= 0.5, SYN cases >= 4 Mpps = <= $(awk -v hz="$TSC_HZ" 'BEGIN {printf "%.0f", hz / 4e6}') cycles/frame):"
printf '%s\n' "${RESULTS[@]}"
[ "$HAD_PROBLEMS" = 0 ] || echo "NOTE: some runs dropped or skipped work (problems= above)"
echo "load after: $(loadavg)"
