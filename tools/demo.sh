#!/usr/bin/env bash
# The main job: a DPDK gateway between a client and a server namespace,
# carrying real Linux TCP, with its counters shown live and at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

bash tools/setup.sh
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

bold "building gatewayd (release)"
cargo build --release --locked -p controlplane --bin gatewayd 2>&1 | tail -n 1
GW=$PWD/target/release/gatewayd
RUN=$(mktemp -d /tmp/gw-demo.XXXXXX)

cleanup() {
    [ -n "${GW_PID:-}" ] && kill -INT "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null || true
    bash tools/topology.sh down
    rm -rf "$RUN"
}
trap cleanup EXIT

bold "topology: client ns -- gateway (DPDK, net_af_packet) -- server ns"
bash tools/topology.sh up single
bash tools/topology.sh config gwt-gw 1 > "$RUN/gatewayd.toml"
sed 's/^/    /' "$RUN/gatewayd.toml"

bold "starting gatewayd"
ip netns exec gwt-gw "$GW" --config "$RUN/gatewayd.toml" --stats-interval 2 > "$RUN/gatewayd.log" 2>&1 &
GW_PID=$!
for _ in $(seq 100); do grep -q "gatewayd: running" "$RUN/gatewayd.log" && break; sleep 0.1; done
grep "gatewayd:" "$RUN/gatewayd.log"

bold "server: HTTP on 198.18.0.2:8080 and a TCP sink on :9000"
mkdir -p "$RUN/www" && echo "hello from behind the gateway" > "$RUN/www/index.txt"
ip netns exec gwt-server python3 -m http.server 8080 --bind 198.18.0.2 --directory "$RUN/www" >/dev/null 2>&1 &
ip netns exec gwt-server sh -c "nc -l 9000 > /dev/null" &
sleep 1

bold "client: ping, curl (IPv4), 20 MB over TCP"
ip netns exec gwt-client ping -c 3 -i 0.2 198.18.0.2 | tail -n 2
ip netns exec gwt-client curl -sS --max-time 10 http://198.18.0.2:8080/index.txt
head -c 20000000 /dev/zero > "$RUN/blob"
start=$(date +%s.%N)
ip netns exec gwt-client nc -q 1 -w 10 198.18.0.2 9000 < "$RUN/blob"
end=$(date +%s.%N)
echo "20 MB in $(echo "$end - $start" | bc -l 2>/dev/null | cut -c1-5 || echo '?') s"

bold "gateway rate lines so far"
grep "^stats:" "$RUN/gatewayd.log" | tail -n 3 || true

bold "stopping gatewayd (SIGINT): it drains and prints its counters"
kill -INT "$GW_PID"; wait "$GW_PID" || true; GW_PID=
sed -n '/gatewayd: stopping/,$p' "$RUN/gatewayd.log"

bold "with the gateway stopped, the client is cut off"
if ip netns exec gwt-client curl -sS --max-time 3 http://198.18.0.2:8080/index.txt; then
    echo "unexpected: traffic passed without the gateway" >&2; exit 1
else
    echo "(curl failed, as it must)"
fi
bold "demo done"
