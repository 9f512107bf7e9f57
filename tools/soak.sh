#!/usr/bin/env bash
# Soak: two gateways in series (tools/topology.sh double-ext) carry mixed
# real traffic for MINUTES (default 30) while gateway B gets a new policy
# through gwctl every 10 s, and the host on the wire replays scenario-gen
# captures (forged identities, spoofed SYNs) at B. At the end it checks:
#
#   - memory: each gatewayd's RSS after warm-up (5 min, or a fifth of a
#     short run: B's flow ring of 8192 records fills first) and at the
#     end; growth above 4 MiB fails
#   - mbufs: every mbuf back in the pool after the stop (counters JSON)
#   - frames: for each gateway and direction, rx + made = tx + drops +
#     consumed + held (the gateway's own accounting, summed over workers),
#     and the ports' device counters against the workers'
#   - traffic: every allowed request and datagram answered, every rejected
#     one refused; every apply acknowledged
#
# usage: sudo bash tools/soak.sh [minutes]      (SOAK_KEEP=1 keeps the run dir)
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-30}
[ "$(id -u)" = 0 ] || { echo "soak: run as root (namespaces, hugepages)" >&2; exit 1; }
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
PY=/usr/bin/python3 # Debian's python has Debian's scapy
say() { printf '\033[1msoak:\033[0m %s\n' "$*"; }

bash tools/setup.sh >/dev/null
say "building gatewayd, gwctl, scenario-gen (release)"
cargo build --release --locked -p controlplane --bin gatewayd --bin gwctl -p scenario-gen 2>&1 | tail -n 1
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
RUN=$(mktemp -d /tmp/gw-soak.XXXXXX)
GWCTL() { "$BIN/gwctl" --socket "$RUN/b.sock" "$@"; }
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    bash tools/topology.sh down >/dev/null
    [ "${SOAK_KEEP:-0}" = 1 ] && echo "soak: run dir kept: $RUN" || rm -rf "$RUN"
}
trap cleanup EXIT

START=$(date +%s)
END=$((START + MINUTES * 60))
# Warm-up: until B's GetFlows ring (flow_ring, below) has filled with the
# replays' drop events (~300/s: under a minute), plus margin.
WARM=$((MINUTES >= 20 ? 300 : MINUTES * 12)) # seconds
now() { date +%s; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

bash tools/topology.sh up double-ext >/dev/null
for g in a b; do
    bash tools/topology.sh config "gwt-$g" 1 > "$RUN/$g.toml"
    printf '[flows]\ncapacity = 65536\n' >> "$RUN/$g.toml"
done
cat >> "$RUN/a.toml" <<EOF
[policy]
file = "$PWD/docs/examples/soak-gw-a.yaml"
EOF
cat >> "$RUN/b.toml" <<EOF
[control]
socket = "$RUN/b.sock"
readonly_socket = ""
state_dir = "$RUN/state-b"
flow_ring = 8192
EOF

start_gw() { # name
    ip netns exec "gwt-$1" "$BIN/gatewayd" --config "$RUN/$1.toml" --counters-json "$RUN/$1.json" > "$RUN/$1.log" 2>&1 &
    PIDS+=($!)
    eval "${1}_PID=$!"
    for _ in $(seq 300); do
        grep -q "gatewayd: running" "$RUN/$1.log" && return 0
        kill -0 "$!" 2>/dev/null || break
        sleep 0.1
    done
    cat "$RUN/$1.log"; echo "soak: gatewayd $1 did not start" >&2; exit 1
}
start_gw a
start_gw b
GWCTL apply -f docs/examples/soak-gw-b.yaml >/dev/null

# Servers: HTTP on 8080/8081 (8081 rejected by B), UDP echo on 9000/9001.
mkdir -p "$RUN/www"
echo "hello soak" > "$RUN/www/index.txt"
head -c 5000000 /dev/urandom > "$RUN/www/blob"
BLOB_MD5=$(md5sum < "$RUN/www/blob" | cut -d' ' -f1)
for port in 8080 8081; do
    ip netns exec gwt-server python3 -m http.server "$port" --bind 198.18.0.2 --directory "$RUN/www" >/dev/null 2>&1 &
    PIDS+=($!)
done
cat > "$RUN/udp_echo.py" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.18.0.2", int(sys.argv[1])))
while True:
    d, a = s.recvfrom(2048)
    s.sendto(d, a)
EOF
for port in 9000 9001; do
    ip netns exec gwt-server python3 "$RUN/udp_echo.py" "$port" &
    PIDS+=($!)
done
for _ in $(seq 100); do
    [ "$(ip netns exec gwt-server ss -tlnH | grep -c ':808[01]')" -ge 2 ] && break
    sleep 0.1
done

# Traffic loops: each appends one line per attempt, "ok" or "fail", and
# stops at END.
loop() { # name interval command...
    local name=$1 every=$2; shift 2
    while [ "$(now)" -lt "$END" ]; do
        if "$@" > /dev/null 2>&1; then echo ok; else echo fail; fi
        sleep "$every"
    done >> "$RUN/$name.results"
}
blob_ok() {
    [ "$(ip netns exec gwt-client curl -sS --max-time 20 http://198.18.0.2:8080/blob | md5sum | cut -d' ' -f1)" = "$BLOB_MD5" ]
}
loop web 0.2 ip netns exec gwt-client curl -sS --max-time 5 -o /dev/null http://198.18.0.2:8080/index.txt &
PIDS+=($!)
loop blob 3 blob_ok &
PIDS+=($!)
loop rejected 2 ip netns exec gwt-client curl -sS --max-time 3 -o /dev/null http://198.18.0.2:8081/index.txt &
PIDS+=($!)
cat > "$RUN/udp_client.py" <<'EOF'
# A new socket (a new flow, a new UDP identity handshake) every 50
# datagrams; prints "ok" per datagram echoed within 2 s, else "fail" with
# the time, the socket's port and the index. An echo that comes later is
# reported as "late" (and then not counted as lost).
import socket, sys, time
port, end = int(sys.argv[1]), float(sys.argv[2])
while time.time() < end:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    waiting = set()
    for i in range(50):
        if time.time() >= end:
            break
        msg = b"soak %d" % i
        s.sendto(msg, ("198.18.0.2", port))
        ok = False
        try:
            while not ok:
                got = s.recv(2048)
                ok = got == msg
                if not ok and got in waiting:
                    waiting.discard(got)
                    print("late", got.decode(), flush=True)
        except OSError:
            pass
        if ok:
            print("ok", flush=True)
        else:
            waiting.add(msg)
            print("fail %.3f port %d index %d" % (time.time(), s.getsockname()[1], i), flush=True)
        time.sleep(0.05)
    s.close()
EOF
ip netns exec gwt-client python3 "$RUN/udp_client.py" 9000 "$END" > "$RUN/udp.results" &
PIDS+=($!)
ip netns exec gwt-client python3 "$RUN/udp_client.py" 9001 "$END" > "$RUN/udp_rejected.results" &
PIDS+=($!)

# Replays from the host on the wire towards B: SYNs with forged identity
# options spoofing the client, and SYNs without identity to a port B rejects
# (resets within the unverified budget), mixed with established-looking TCP.
SG=$BIN/scenario-gen
"$SG" syn-flood -c 2000 --forge-identity --src-net 198.18.0.1/32 --dst-net 198.18.0.2/32 --dst-port 8080 \
    --src-mac "$(ip netns exec gwt-ext cat /sys/class/net/eth0/address)" \
    --dst-mac "$(ip netns exec gwt-server cat /sys/class/net/eth0/address)" -o "$RUN/forged.pcap" >/dev/null
"$SG" mixed -c 2000 --src-net 198.18.0.3/32 --dst-net 198.18.0.2/32 --dst-port 8084 --mix 4:4:2 \
    --src-mac "$(ip netns exec gwt-ext cat /sys/class/net/eth0/address)" \
    --dst-mac "$(ip netns exec gwt-server cat /sys/class/net/eth0/address)" -o "$RUN/mixed.pcap" >/dev/null
REPLAYED=0
replay() {
    while [ "$(now)" -lt "$END" ]; do
        for f in forged mixed; do
            ip netns exec gwt-ext "$PY" -c "from scapy.all import rdpcap, sendp; sendp(rdpcap('$RUN/$f.pcap'), iface='eth0', verbose=False)" \
                && echo 2000 >> "$RUN/replayed.count"
        done
        sleep 10
    done
}
replay &
PIDS+=($!)

# Applies every 10 s: a new revision, with and without the rule `alt`.
apply_loop() {
    local n=0
    while [ "$(now)" -lt "$END" ]; do
        sleep 10
        n=$((n + 1))
        if [ $((n % 2)) = 0 ]; then
            sed "s/^revision: .*/revision: soak-b-$n/" docs/examples/soak-gw-b.yaml
        else
            sed -e "s/^revision: .*/revision: soak-b-$n/" -e '/name: alt,/d' docs/examples/soak-gw-b.yaml
        fi > "$RUN/apply.yaml"
        if GWCTL apply -f "$RUN/apply.yaml" >> "$RUN/apply.log" 2>&1; then echo ok; else echo fail; fi
    done >> "$RUN/apply.results"
}
apply_loop &
PIDS+=($!)

say "running for $MINUTES min (until $(date -d "@$END" +%T)); warm-up ${WARM}s; run dir $RUN"
RSS_WARM_A=0 RSS_WARM_B=0
while [ "$(now)" -lt "$END" ]; do
    sleep 30
    t=$(($(now) - START))
    ra=$(rss_kb "$a_PID") rb=$(rss_kb "$b_PID")
    if [ "$RSS_WARM_A" = 0 ] && [ "$t" -ge "$WARM" ]; then RSS_WARM_A=$ra RSS_WARM_B=$rb; fi
    count() { grep -c "^$2" "$RUN/$1.results" 2>/dev/null || true; }
    say "t=${t}s rss A ${ra} kB, B ${rb} kB; web ok $(count web ok) fail $(count web fail); udp ok $(count udp ok) fail $(count udp fail); applies ok $(count apply ok)"
done
sleep 3 # the loops see END and write their last lines
RSS_END_A=$(rss_kb "$a_PID") RSS_END_B=$(rss_kb "$b_PID")

# Where a frame can be lost outside the gateways: veth drops, UDP socket
# buffer overflows, in every namespace (read before the topology goes).
for ns in gwt-client gwt-a gwt-wire gwt-b gwt-server gwt-ext; do
    drops=$(ip -n "$ns" -s -j link show 2>/dev/null | jq '[.[] | (.stats64.rx.dropped + .stats64.tx.dropped)] | add // 0')
    udp=$(ip netns exec "$ns" nstat -az 2>/dev/null | awk '/^Udp(InErrors|RcvbufErrors|SndbufErrors)/ {s = s " " $1 " " $2} END {print s}')
    echo "    $ns: link drops $drops;$udp"
done > "$RUN/kernel.txt"
kill -INT "$a_PID" "$b_PID"
for p in "$a_PID" "$b_PID"; do
    for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
done

FAILED=0
check() { # ok? message
    if [ "$1" = 1 ]; then echo "  PASS  $2"; else echo "  FAIL  $2"; FAILED=$((FAILED + 1)); fi
}
n() { grep -c "^$2\$" "$RUN/$1.results" 2>/dev/null || true; }
echo
say "results after $MINUTES min"
for g in A B; do
    lg=$(echo "$g" | tr AB ab)
    warm=$([ "$g" = A ] && echo "$RSS_WARM_A" || echo "$RSS_WARM_B")
    end=$([ "$g" = A ] && echo "$RSS_END_A" || echo "$RSS_END_B")
    grow=$((end - warm))
    check "$([ "$warm" -gt 0 ] && [ "$grow" -le 4096 ] && echo 1)" \
        "gateway $g RSS after warm-up ${warm} kB, at the end ${end} kB (growth ${grow} kB, bound 4096)"
    [ -s "$RUN/$lg.json" ] || { check 0 "gateway $g wrote its counters"; continue; }
    jq -r --arg g "$g" '
      def sum(f): [.workers[] | f] | add;
      "  gateway \($g): from inside rx \(sum(.from_inside.rx_packets)) tx \(sum(.from_inside.tx_packets)) drops \(sum(.from_inside.drops | add)) made \(sum(.from_inside.notes.frames_made)) consumed \(sum(.from_inside.notes.frames_consumed)) held \(sum(.held)); from outside rx \(sum(.from_outside.rx_packets)) tx \(sum(.from_outside.tx_packets)) drops \(sum(.from_outside.drops | add)) made \(sum(.from_outside.notes.frames_made)) consumed \(sum(.from_outside.notes.frames_consumed))",
      "  gateway \($g): ports: inside rx \(.ports.inside.rx_packets) tx \(.ports.inside.tx_packets), outside rx \(.ports.outside.rx_packets) tx \(.ports.outside.tx_packets); drops by reason: \([.workers[] | (.from_inside.drops, .from_outside.drops) | to_entries[] | select(.value > 0) | "\(.key) \(.value)"] | join(", "))"
    ' "$RUN/$lg.json"
    un=$(jq '.unaccounted.from_inside, .unaccounted.from_outside' "$RUN/$lg.json" | tr '\n' ' ')
    check "$([ "$un" = "0 0 " ] && echo 1)" "gateway $g: every frame accounted for, per direction (unaccounted: $un)"
    ports=$(jq '[.ports.inside.rx_packets == ([.workers[].from_inside.rx_packets] | add),
                 .ports.outside.rx_packets == ([.workers[].from_outside.rx_packets] | add)] | all' "$RUN/$lg.json")
    check "$([ "$ports" = true ] && echo 1)" "gateway $g: the ports' rx counters equal the workers'"
    inuse=$(jq '.mbufs.in_use' "$RUN/$lg.json")
    check "$([ "$inuse" = 0 ] && echo 1)" "gateway $g: mbufs in use after the stop: $inuse"
done
check "$([ "$(n web fail)" = 0 ] && [ "$(n web ok)" -gt 0 ] && echo 1)" "allowed HTTP requests: $(n web ok) ok, $(n web fail) failed"
check "$([ "$(n blob fail)" = 0 ] && [ "$(n blob ok)" -gt 0 ] && echo 1)" "5 MB downloads, md5 checked: $(n blob ok) ok, $(n blob fail) failed"
check "$([ "$(n rejected ok)" = 0 ] && echo 1)" "requests to the port B rejects: $(n rejected fail) refused, $(n rejected ok) passed"
udp_fail=$(grep -c '^fail' "$RUN/udp.results" || true)
udp_late=$(grep -c '^late' "$RUN/udp.results" || true)
lost=$((udp_fail - udp_late))
check "$([ "$lost" = 0 ] && [ "$(n udp ok)" -gt 0 ] && echo 1)" "allowed UDP datagrams echoed: $(n udp ok) within 2 s, $udp_late late, $lost lost"
{ grep '^fail' "$RUN/udp.results" || true; } | head -5 | sed 's/^/        /'
echo "  kernel counters of the namespaces (drops outside the gateways):"
cat "$RUN/kernel.txt"
check "$([ "$(grep -c '^ok' "$RUN/udp_rejected.results" || true)" = 0 ] && echo 1)" "UDP to the port B rejects: $(grep -c '^fail' "$RUN/udp_rejected.results" || true) refused, $(grep -c '^ok' "$RUN/udp_rejected.results" || true) passed"
check "$([ "$(n apply fail)" = 0 ] && [ "$(n apply ok)" -gt 0 ] && echo 1)" "applies every 10 s: $(n apply ok) acknowledged, $(n apply fail) refused"
replayed=$(awk '{s += $1} END {print s + 0}' "$RUN/replayed.count" 2>/dev/null || echo 0)
echo "  (frames replayed from the wire host: $replayed)"
if [ "$FAILED" -gt 0 ]; then
    say "$FAILED check(s) failed; logs: $RUN/a.log $RUN/b.log"
    SOAK_KEEP=1
    exit 1
fi
say "all checks passed"
