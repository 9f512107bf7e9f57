#!/usr/bin/env bash
# The main job: two DPDK gateways in series between a client and a server
# namespace, carrying real Linux TCP. Gateway A (the client's) runs its policy
# from a file; gateway B (the server's) starts with no policy (fail closed)
# and is managed only through gwctl: the policy is applied over the control
# API, and gwctl observe shows every flow with the verified identity of the
# other end, its verdict, reason and rule.
set -euo pipefail
cd "$(dirname "$0")/.."
bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

bash tools/setup.sh
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

bold "building gatewayd and gwctl (release)"
cargo build --release --locked -p controlplane --bin gatewayd --bin gwctl 2>&1 | tail -n 1
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
GW=$BIN/gatewayd
RUN=$(mktemp -d /tmp/gw-demo.XXXXXX)
GWCTL() { "$BIN/gwctl" --socket "$RUN/b.sock" "$@"; }
PIDS=()

# SIGTERM, not SIGINT: a script's background jobs start with SIGINT ignored,
# and the web servers keep it so (gatewayd drains on either). Whatever has
# not ended 5 s later is killed, so the demo always returns.
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    bash tools/topology.sh down
    rm -rf "$RUN"
}
trap cleanup EXIT

# start_gw NAME NAMESPACE CONFIG: starts gatewayd and waits until it runs.
start_gw() {
    ip netns exec "$2" "$GW" --config "$3" > "$RUN/$1.log" 2>&1 &
    PIDS+=($!)
    eval "${1}_PID=$!"
    for _ in $(seq 300); do
        grep -q "gatewayd: running" "$RUN/$1.log" && break
        kill -0 "$!" 2>/dev/null || { cat "$RUN/$1.log"; echo "gatewayd $1 failed to start" >&2; exit 1; }
        sleep 0.1
    done
    grep -q "gatewayd: running" "$RUN/$1.log" || { cat "$RUN/$1.log"; echo "gatewayd $1 did not start" >&2; exit 1; }
    grep "gatewayd:" "$RUN/$1.log" | sed 's/^/    /'
}

bold "topology: client -- gateway A -- wire -- gateway B -- server (namespaces, DPDK net_af_packet)"
bash tools/topology.sh up double
bash tools/topology.sh config gwt-a 1 > "$RUN/a.toml"
cat >> "$RUN/a.toml" <<EOF
[policy]
file = "$PWD/docs/examples/e2e-gw-a.yaml"
EOF
bash tools/topology.sh config gwt-b 1 > "$RUN/b.toml"
cat >> "$RUN/b.toml" <<EOF
[control]
socket = "$RUN/b.sock"
readonly_socket = ""
state_dir = "$RUN/state-b"
EOF
echo "gateway B's control section:"
sed -n '/^\[control\]/,$p' "$RUN/b.toml" | sed 's/^/    /'

bold "starting gateway A (policy docs/examples/e2e-gw-a.yaml: the client, identity 1001, may call app=web on 8080-8081)"
start_gw a gwt-a "$RUN/a.toml"
bold "starting gateway B with no policy: it fails closed until one is applied"
start_gw b gwt-b "$RUN/b.toml"
GWCTL status

bold "server: HTTP on 198.18.0.2, ports 8080 and 8081"
mkdir -p "$RUN/www" && echo "hello from behind two gateways" > "$RUN/www/index.txt"
head -c 20000000 /dev/zero > "$RUN/www/blob"
for port in 8080 8081; do
    ip netns exec gwt-server python3 -m http.server "$port" --bind 198.18.0.2 --directory "$RUN/www" >/dev/null 2>&1 &
    PIDS+=($!)
done
for _ in $(seq 100); do
    [ "$(ip netns exec gwt-server ss -tlnH | grep -c ':808[01]')" -ge 2 ] && break
    sleep 0.1
done

bold "before any policy on B: the client's connection is dropped (fail closed)"
if ip netns exec gwt-client curl -sS --max-time 2 http://198.18.0.2:8080/index.txt; then
    echo "unexpected: B let traffic through with no policy" >&2; exit 1
fi

bold "gwctl apply -f docs/examples/e2e-gw-b.yaml  (the server, identity 2001, accepts app=frontend on 8080 and 8083)"
GWCTL apply -f docs/examples/e2e-gw-b.yaml
GWCTL observe --follow > "$RUN/observe.log" 2>&1 &
PIDS+=($!)
sleep 0.5

bold "client: curl :8080 (allowed by both), curl :8081 (A allows, B rejects: reset), 20 MB over :8080"
ip netns exec gwt-client curl -sS --max-time 10 http://198.18.0.2:8080/index.txt
if ip netns exec gwt-client curl -sS --max-time 5 http://198.18.0.2:8081/index.txt; then
    echo "unexpected: :8081 passed" >&2; exit 1
else
    echo "(curl :8081 was reset, as the policy says)"
fi
start=$(date +%s.%N)
ip netns exec gwt-client curl -sS --max-time 30 -o /dev/null -w '%{size_download} bytes' http://198.18.0.2:8080/blob
end=$(date +%s.%N)
echo " in $(echo "$end - $start" | bc -l 2>/dev/null | cut -c1-5 || echo '?') s"
sleep 1

bold "gwctl observe --follow (what B saw: the client's verified identity, verdict, reason, rule)"
cat "$RUN/observe.log"

bold "a broken policy is refused whole, with every problem; the running one stays"
sed -e 's/subject: app == web/subject: "app == "/' \
    -e 's/peer: gw-a}/peer: nowhere}/' docs/examples/e2e-gw-b.yaml > "$RUN/broken.yaml"
GWCTL apply -f "$RUN/broken.yaml" || echo "(gwctl exited $?)"
ip netns exec gwt-client curl -sS --max-time 10 http://198.18.0.2:8080/index.txt

bold "gwctl stats"
GWCTL stats

bold "stopping the gateways (SIGINT): they drain and print their counters"
kill -INT "$b_PID" "$a_PID"
wait "$b_PID" || true
wait "$a_PID" || true
echo "gateway B:"
sed -n '/gatewayd: stopping/,$p' "$RUN/b.log"

bold "with the gateways stopped, the client is cut off"
if ip netns exec gwt-client curl -sS --max-time 3 http://198.18.0.2:8080/index.txt; then
    echo "unexpected: traffic passed without the gateways" >&2; exit 1
else
    echo "(curl failed, as it must)"
fi
bold "demo done"
