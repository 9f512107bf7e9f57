#!/usr/bin/env bash
# pktgen-lab.sh: runs the Pktgen-DPDK scripts of tools/pktgen-scripts against
# gatewayd, both real, on this machine, and checks that their counters agree.
#
#   tools/pktgen-lab.sh [SCRIPT...]   (default: all five; e.g. tcp-established syn-flood)
#
# For each script: tools/topology.sh up pktgen (pktgen port 0 = p0 -- in0,
# gatewayd's inside; port 1 = p1 -- out0, its outside; veth pairs, net_af_packet
# on both sides), gatewayd with docs/examples/lab-pktgen.yaml and idle back-off,
# pktgen under `script` (it needs a terminal) with --no-huge -m 6144, the
# script's pcap from scenario-gen where it replays one; then it prints pktgen's
# RESULT and PORT lines, gatewayd's port counters and CHECK lines:
#   - every RESULT has tx > 0;
#   - each of the four directions: what one side sent minus what the other
#     received is >= 0 and no more than the drops counted on the way (the
#     sending veth's tx_dropped, the receiving af_packet socket's ring drops,
#     read by tools/af-packet-drops.py: DPDK 22.11's af_packet reports neither);
#   - syn-forged-identity: 0 forged SYNs reached pktgen port 0, and the
#     gateway dropped them for their identity option.
# Rates here are functional, not performance figures: pktgen and gatewayd
# share two CPUs and the kernel's packet sockets.
#
# Environment (besides the scripts' GW_* variables, tools/pktgen-scripts/README.md):
#   PKTGEN         pktgen binary (default: tools/pktgen.sh build)
#   GATEWAYD       gatewayd binary (default: target/release/gatewayd, else target/debug/gatewayd)
#   SCENARIO_GEN   scenario-gen binary (found the same way)
#   GW_LAB_OUT     directory for the logs and counters (default: a new /tmp/gw-pktgen-lab.XXXXXX)
#   GW_DURATION_MS 3000 here; GW_RATE 1 here (% of the 10 Gb/s af_packet reports);
#   GW_LEGIT_RATE  0.5 here; GW_BURST 32 here
# Exit status: 0 all checks passed, 1 a check failed, 3 no pktgen source (skipped).
# Runs as root; takes the fixed namespaces gwt-pktgen and gwt-gw.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
ALL=(tcp-established syn-flood syn-forged-identity udp-request mixed)
say() { echo "pktgen-lab: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (namespaces, veth, af_packet)"
for c in script python3 jq ip; do command -v $c >/dev/null || die "$c is missing (tools/setup.sh installs it)"; done

find_bin() { # name
    local b
    for b in "${CARGO_TARGET_DIR:-target}/release/$1" "${CARGO_TARGET_DIR:-target}/debug/$1"; do
        [ -x "$b" ] && { realpath "$b"; return; }
    done
    die "no $1 built: cargo build -p ${2:-controlplane} (or set $(echo "$1" | tr a-z- A-Z_))"
}

if [ -z "${PKTGEN:-}" ]; then
    PKTGEN=$(bash tools/pktgen.sh build)
    rc=$?
    [ $rc -eq 3 ] && { say "SKIP: pktgen cannot be built here (no source; see above)"; exit 3; }
    [ $rc -eq 0 ] || die "pktgen could not be built (see above)"
fi
GATEWAYD=${GATEWAYD:-$(find_bin gatewayd)}
if [ -z "${SCENARIO_GEN:-}" ]; then
    SCENARIO_GEN=$(dirname "$GATEWAYD")/scenario-gen # the same build as gatewayd's
    [ -x "$SCENARIO_GEN" ] || SCENARIO_GEN=$(find_bin scenario-gen scenario-gen)
fi
OUT=${GW_LAB_OUT:-$(mktemp -d /tmp/gw-pktgen-lab.XXXXXX)}
mkdir -p "$OUT"
export GW_DURATION_MS=${GW_DURATION_MS:-3000} GW_RATE=${GW_RATE:-1} GW_LEGIT_RATE=${GW_LEGIT_RATE:-0.5}
export GW_BURST=${GW_BURST:-32} GW_SCREEN=off
export LUA_PATH="$(dirname "$PKTGEN")/?.lua;;"
[ -f "$(dirname "$PKTGEN")/Pktgen.lua" ] || say "warning: no Pktgen.lua beside $PKTGEN: scripts that require \"Pktgen\" fail"

scripts=("$@")
[ ${#scripts[@]} -gt 0 ] || scripts=("${ALL[@]}")

cleanup() { bash tools/topology.sh down >/dev/null 2>&1; }
trap cleanup EXIT

# The pcap a script replays, written by scenario-gen: "PORT FILE", or nothing.
pcap_for() { # script dir
    case $1 in
    syn-forged-identity)
        # Forged identity SYNs from gw-b's network toward the clients: the
        # direction in which the gateway verifies. The option names gw-b's
        # key 2 toward gw-a's key 1 (kind 253, ExID 4d49, version 1, key id
        # 000201), so each SYN costs the gateway an HMAC before it fails on
        # the MAC (random), as an attacker who read the key ids would make it.
        "$SCENARIO_GEN" syn-flood --forge-option 253:20:4d4910000201 --src-net 10.1.0.0/24 --dst-net 10.0.0.0/24 \
            --dst-port 80 -c 4096 -o "$2/forged.pcap" >&2 || die "scenario-gen failed"
        echo "1 $2/forged.pcap" ;;
    mixed)
        # No --prelude-syn: nobody answers those SYNs here (see mixed.lua).
        "$SCENARIO_GEN" mixed --mix 8:1:1 --size 512 --dst-net 10.1.0.0/24 \
            -c 4096 -o "$2/mixed.pcap" >&2 || die "scenario-gen failed"
        echo "0 $2/mixed.pcap" ;;
    esac
}

start_gatewayd() { # dir
    GW_WORKER_CPU=0 bash tools/topology.sh config gwt-gw 1 "[policy]" "file = \"$ROOT/docs/examples/lab-pktgen.yaml\"" \
        > "$1/gatewayd.toml" || die "topology config failed"
    ip netns exec gwt-gw "$GATEWAYD" --config "$1/gatewayd.toml" --counters-json "$1/counters.json" \
        > "$1/gatewayd.log" 2>&1 &
    GW_PID=$!
    local i
    for i in $(seq 1 300); do
        grep -q "gatewayd: running" "$1/gatewayd.log" && return
        kill -0 $GW_PID 2>/dev/null || { cat "$1/gatewayd.log" >&2; die "gatewayd exited before running"; }
        sleep 0.1
    done
    cat "$1/gatewayd.log" >&2
    die "gatewayd did not start in 30 s"
}

stop_gatewayd() {
    kill -INT $GW_PID 2>/dev/null
    local i
    for i in $(seq 1 200); do kill -0 $GW_PID 2>/dev/null || break; sleep 0.1; done
    kill -0 $GW_PID 2>/dev/null && { say "gatewayd ignored SIGINT for 20 s: killing it"; kill -KILL $GW_PID; }
    wait $GW_PID 2>/dev/null
}

# pktgen under `script` (pktgen insists on a terminal), running the scenario
# through a wrapper that quits pktgen on a Lua error too (pktgen would
# otherwise wait at its prompt).
run_pktgen() { # script dir [pcap-port pcap-file]
    local script=$1 dir=$2 pcap=()
    cat > "$dir/run.lua" <<LUA
local ok, err = pcall(dofile, "$ROOT/tools/pktgen-scripts/$script.lua")
if not ok then
    print("SCRIPT-ERROR " .. tostring(err))
    pktgen.quit()
end
LUA
    unset GW_PCAP_PORTS GW_PCAP
    if [ $# -eq 4 ]; then
        pcap=(-s "$3:$4")
        export GW_PCAP_PORTS=$3
    fi
    # Before pktgen quits (it still holds its ports): its sockets' ring drops.
    export GW_AT_END="python3 $ROOT/tools/af-packet-drops.py \$PPID pktgen > $dir/afpacket-pktgen.txt 2>&1"
    local cmd
    cmd=$(printf '%q ' "$PKTGEN" -l 0-1 --no-huge -m 6144 --no-pci --file-prefix gwt-pktgen --log-level '*:warning' \
        --vdev net_af_packet0,iface=p0 --vdev net_af_packet1,iface=p1 -- -P -T -m '[1].0,[1].1' "${pcap[@]}" \
        -f "$dir/run.lua")
    timeout "${GW_LAB_TIMEOUT:-300}" ip netns exec gwt-pktgen script -qefc "$cmd" "$dir/pktgen.log" \
        < /dev/null > /dev/null 2>&1
    local rc=$?
    # Keep what the script printed, without the terminal's escape sequences.
    sed -e 's/\x1b\[[0-9;?]*[a-zA-Z]//g' -e 's/\x1b[78]//g' "$dir/pktgen.log" | tr -d '\r' |
        grep -a -o -E '(RESULT|PORT|SCRIPT-ERROR|={72}|pktgen Pktgen|[a-z0-9.@%-]+ t=[0-9.]+s) .*' > "$dir/pktgen.txt"
    [ $rc -eq 124 ] && say "pktgen did not finish in ${GW_LAB_TIMEOUT:-300} s"
    return $rc
}

veth_dropped() { # ns dev -> tx_dropped
    ip -n "$1" -s -j link show "$2" | jq '.[0].stats64.tx.dropped'
}

FAILS=0
check() { # ok|fail text
    if [ "$1" = ok ]; then echo "CHECK ok    $2"; else echo "CHECK FAIL  $2"; FAILS=$((FAILS + 1)); fi
}

# sent - received must be in [0, counted drops].
check_path() { # label sent received veth_drops ring_drops
    local lost=$(($2 - $3)) counted=$(($4 + $5))
    local text="$1: sent $2, received $3, lost $lost; counted drops $counted (veth $4, af_packet ring $5)"
    if [ $lost -ge 0 ] && [ $lost -le $counted ]; then check ok "$text"; else check fail "$text"; fi
}

afp() { # file iface -> drops
    awk -v i="iface=$2" '$3 == i { sub("drops=", "", $5); d += $5 } END { print d + 0 }' "$1"
}

port() { # p field -> PORT line value
    awk -v p="$1" -v f="$2" '$1 == "PORT" && $2 == p { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f) print kv[2] } }' "$DIR/pktgen.txt"
}

run_one() { # script
    local s=${1%.lua}
    [ -f "tools/pktgen-scripts/$s.lua" ] || die "no script tools/pktgen-scripts/$s.lua"
    DIR=$OUT/$s
    rm -rf "$DIR" && mkdir -p "$DIR"
    local started=$SECONDS
    bash tools/topology.sh up pktgen > "$DIR/topology.log" 2>&1 || { cat "$DIR/topology.log" >&2; die "topology up failed"; }
    local pcap
    pcap=$(pcap_for "$s" "$DIR") || exit 1
    start_gatewayd "$DIR"
    echo "== $s: $GW_DURATION_MS ms per step at $GW_RATE% of 10 Gb/s (functional rates: 2 shared CPUs); logs in $DIR"
    # shellcheck disable=SC2086 # pcap is "PORT FILE" or empty
    run_pktgen "$s" "$DIR" $pcap
    local rc=$?
    python3 tools/af-packet-drops.py $GW_PID gatewayd > "$DIR/afpacket-gatewayd.txt" 2>&1
    local v_p0 v_p1 v_in v_out
    v_p0=$(veth_dropped gwt-pktgen p0) v_p1=$(veth_dropped gwt-pktgen p1)
    v_in=$(veth_dropped gwt-gw in0) v_out=$(veth_dropped gwt-gw out0)
    stop_gatewayd
    bash tools/topology.sh down > /dev/null 2>&1

    grep -a -E '^(RESULT|PORT|SCRIPT-ERROR)' "$DIR/pktgen.txt"
    cat "$DIR/afpacket-pktgen.txt" "$DIR/afpacket-gatewayd.txt" 2>/dev/null
    grep -a -E '^  port |accounting' "$DIR/gatewayd.log" | sed 's/^ */gatewayd: /'
    [ $rc -eq 0 ] || { check fail "$s: pktgen exited with status $rc (log: $DIR/pktgen.log)"; return; }
    grep -q '^SCRIPT-ERROR' "$DIR/pktgen.txt" && { check fail "$s: the script failed"; return; }
    [ -s "$DIR/counters.json" ] || { check fail "$s: gatewayd wrote no counters (log: $DIR/gatewayd.log)"; return; }
    jq -r '.workers[0] | "gatewayd: drops from_inside {\(.from_inside.drops | with_entries(select(.value > 0)) | to_entries | map("\(.key)=\(.value)") | join(","))} from_outside {\(.from_outside.drops | with_entries(select(.value > 0)) | to_entries | map("\(.key)=\(.value)") | join(","))}"' "$DIR/counters.json"
    jq -r '.workers[0] | "gatewayd: notes from_inside {\(.from_inside.notes | with_entries(select(.value > 0)) | to_entries | map("\(.key)=\(.value)") | join(","))} from_outside {\(.from_outside.notes | with_entries(select(.value > 0)) | to_entries | map("\(.key)=\(.value)") | join(","))}"' "$DIR/counters.json"

    local n bad
    n=$(grep -c '^RESULT' "$DIR/pktgen.txt")
    bad=$(grep '^RESULT' "$DIR/pktgen.txt" | grep -c -E ' tx=0 ')
    if [ "$n" -gt 0 ] && [ "$bad" -eq 0 ]; then check ok "$s: $n RESULT lines, every one with tx > 0"
    else check fail "$s: $n RESULT lines, $bad with tx=0"; fi

    local j=$DIR/counters.json
    local gi_rx gi_tx go_rx go_tx
    gi_rx=$(jq '.ports.inside.rx_packets' "$j") gi_tx=$(jq '.ports.inside.tx_packets' "$j")
    go_rx=$(jq '.ports.outside.rx_packets' "$j") go_tx=$(jq '.ports.outside.tx_packets' "$j")
    local ap=$DIR/afpacket-pktgen.txt ag=$DIR/afpacket-gatewayd.txt
    check_path "$s: pktgen port 0 -> gatewayd inside " "$(port 0 tx)" "$gi_rx" "$v_p0" "$(afp "$ag" in0)"
    check_path "$s: gatewayd outside -> pktgen port 1" "$go_tx" "$(port 1 rx)" "$v_out" "$(afp "$ap" p1)"
    check_path "$s: pktgen port 1 -> gatewayd outside" "$(port 1 tx)" "$go_rx" "$v_p1" "$(afp "$ag" out0)"
    check_path "$s: gatewayd inside -> pktgen port 0 " "$gi_tx" "$(port 0 rx)" "$v_in" "$(afp "$ap" p0)"
    if [ "$s" = syn-forged-identity ]; then
        local leaked rejected
        leaked=$(awk '$1 == "RESULT" && $2 == "forged-syn" && $4 == "rx_port=0" { sub("rx=", "", $5); print $5 }' "$DIR/pktgen.txt")
        rejected=$(jq '[.workers[].from_outside.drops | to_entries[] | select(.key | startswith("identity_")) | .value] | add' "$j")
        if [ "${leaked:-x}" = 0 ] && [ "$rejected" -gt 0 ]; then
            check ok "$s: 0 forged SYNs leaked to pktgen port 0; gatewayd dropped $rejected for their identity option"
        else
            check fail "$s: forged SYNs leaked to pktgen port 0: ${leaked:-no RESULT line}; dropped for their identity option: $rejected"
        fi
    fi
    echo "== $s: $((SECONDS - started)) s"
}

for s in "${scripts[@]}"; do run_one "$s"; done
echo "pktgen-lab: ${#scripts[@]} script(s), $FAILS failed check(s); logs in $OUT"
[ $FAILS -eq 0 ]
